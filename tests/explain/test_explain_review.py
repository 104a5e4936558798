"""Golden agreement of breastdx's Grad-CAM maps with a direct call of MONAI's own classes: the map drawn for a class is
MONAI's map of that class, image by image, in a batch whose images explain different classes, and for an ensemble's
layers the mean of MONAI's map of each layer. Grad-CAM++ against the paper's equations written out (Chattopadhay et al.
2018, doi:10.1109/WACV.2018.00097): MONAI's alpha differs from Eq. 19."""

import copy

import pytest
import torch
from monai.visualize import GradCAM, GradCAMpp
from torch import nn

from breastdx.explain.cam import CamExplainer

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # MONAI's own call, input without grad


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x):
        return self.head(self.b(self.a(x)))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return _Tiny().eval()


def _monai(net: nn.Module, method: str, layer: str, x: torch.Tensor, k: int) -> torch.Tensor:
    cls = GradCAM if method == "gradcam" else GradCAMpp
    return cls(nn_module=copy.deepcopy(net), target_layers=layer).compute_map(x, class_idx=k, layer_idx=-1)[0, 0]


@pytest.mark.parametrize("method", ["gradcam"])  # Grad-CAM++: see test_gradcampp_weights_follow_equation_19_per_image
@pytest.mark.parametrize("fast", [False, True])
def test_each_image_gets_monai_s_map_of_its_own_class(tiny, method, fast):
    torch.manual_seed(1)
    x = torch.rand(3, 1, 16, 16)
    explainer = CamExplainer(copy.deepcopy(tiny), layer="b", method=method, fast_backward=fast)
    _, idx, maps = explainer.raw_maps(x, class_idx=torch.tensor([2, 0, 1]))
    assert idx.tolist() == [2, 0, 1] and maps.shape == (3, 8, 8)
    for i, k in enumerate([2, 0, 1]):
        torch.testing.assert_close(maps[i], _monai(tiny, method, "b", x[i:i + 1], k), rtol=1e-5, atol=1e-6)


def test_several_layers_give_the_mean_of_monai_s_maps_resized_to_the_first(tiny):
    torch.manual_seed(2)
    x = torch.rand(1, 1, 16, 16)
    _, _, maps = CamExplainer(copy.deepcopy(tiny), layer="b,a", method="gradcam").raw_maps(x, class_idx=1)
    b, a = _monai(tiny, "gradcam", "b", x, 1), _monai(tiny, "gradcam", "a", x, 1)
    a8 = nn.functional.interpolate(a[None, None], size=(8, 8), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(maps[0], (b + a8) / 2, rtol=1e-5, atol=1e-6)


def _paper_gradcampp(net: nn.Module, layer: str, x: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. 19 and 9 of the paper, written out: with ``Y = exp(S)``, ``g = dS/dA``,
    ``alpha_ij = g_ij^2 / (2 g_ij^2 + (sum_ab A_ab) g_ij^3)`` (0 where that is 0/0),
    ``w_k = sum_ij alpha_ij relu(exp(S) g_ij)``, map ``relu(sum_k w_k A_k)``."""
    kept = {}
    handle = dict(net.named_modules())[layer].register_forward_hook(lambda _m, _i, o: kept.__setitem__("a", o))
    score = net(x)[0, k]
    handle.remove()
    (grad,) = torch.autograd.grad(score, kept["a"])
    acti, g = kept["a"].detach()[0].double(), grad[0].double()
    out = torch.zeros(acti.shape[1:], dtype=torch.float64)
    for c in range(acti.shape[0]):
        total = acti[c].sum()
        denom = 2 * g[c] ** 2 + total * g[c] ** 3
        alpha = torch.where(denom != 0, g[c] ** 2 / torch.where(denom != 0, denom, 1.0), 0.0)
        out += (alpha * torch.relu(score.detach().double().exp() * g[c])).sum() * acti[c]
    return torch.relu(out).float()


@pytest.mark.parametrize("fast", [False, True])
def test_gradcampp_weights_follow_equation_19_per_image(tiny, fast):
    """MONAI's GradCAMpp sums ``A_ab * g_ab^3`` over the map in the denominator of alpha; Eq. 19 has
    ``(sum_ab A_ab) * g_ij^3``. Layer ``a`` has gradients that vary over the map, so the two differ there."""
    torch.manual_seed(3)
    x = torch.rand(3, 1, 16, 16)
    explainer = CamExplainer(copy.deepcopy(tiny), layer="a", method="gradcampp", fast_backward=fast)
    _, idx, maps = explainer.raw_maps(x, class_idx=torch.tensor([2, 0, 1]))
    assert idx.tolist() == [2, 0, 1]
    for i, k in enumerate([2, 0, 1]):
        ref = _paper_gradcampp(copy.deepcopy(tiny), "a", x[i:i + 1], k)
        monai = GradCAMpp(nn_module=copy.deepcopy(tiny), target_layers="a").compute_map(x[i:i + 1], class_idx=k)[0, 0]
        assert not torch.allclose(monai / monai.max(), ref / ref.max(), atol=1e-3)  # the test tells them apart
        torch.testing.assert_close(maps[i], ref, rtol=1e-4, atol=1e-6)
