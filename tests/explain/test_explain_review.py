"""Golden agreement of breastdx's Grad-CAM / Grad-CAM++ maps with a direct call of MONAI's own classes: the map drawn
for a class is MONAI's map of that class, image by image, in a batch whose images explain different classes, and for
an ensemble's layers the mean of MONAI's map of each layer."""

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


@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
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
