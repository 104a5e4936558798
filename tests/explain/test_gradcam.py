"""Grad-CAM maps (shape, range, per-image classes) and the localisation metrics on hand-made maps (overlays: tests/visualize)."""

import copy

import numpy as np
import pytest
import torch

from breastdx.explain.cam import CamExplainer
from breastdx.explain.gradcam import (cam_mass_in_mask, localisation_summary,
                                      pointing_game_hit, target_layer, upsample_map)
from breastdx.models.multitask import MultiTaskUNet
from breastdx.models.networks import build_network


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    net, _ = build_network("resnet18", 1, 3)
    return net.eval()


@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
def test_maps_at_image_size_in_unit_range(resnet, method):
    explainer = CamExplainer(copy.deepcopy(resnet), "resnet18", method)
    x = torch.rand(2, 1, 64, 64)
    logits, idx, maps = explainer(x, sizes=[(37, 53), (64, 64)])
    assert logits.shape == (2, 3) and idx.tolist() == logits.argmax(1).tolist()
    assert maps[0].shape == (37, 53) and maps[1].shape == (64, 64)
    for m in maps:
        assert m.dtype == np.float32 and m.min() >= 0.0 and m.max() <= 1.0
        assert m.max() == pytest.approx(1.0) or m.max() == 0.0


def test_per_image_classes_match_single_image_maps(resnet):
    """A batch with different classes per image gives each image the map of its own class."""
    explainer = CamExplainer(copy.deepcopy(resnet), "resnet18")
    x = torch.rand(3, 1, 64, 64)
    _, idx, batch_maps = explainer.raw_maps(x, class_idx=torch.tensor([0, 1, 2]))
    assert idx.tolist() == [0, 1, 2]
    for i in range(3):
        _, _, single = explainer.raw_maps(x[i:i + 1], class_idx=i)
        torch.testing.assert_close(batch_maps[i], single[0], rtol=1e-4, atol=1e-5)
    explainer.remove()
    assert not any(m._forward_hooks for m in explainer.network.modules())


def test_fast_backward_gives_the_same_maps(resnet):
    x = torch.rand(2, 1, 64, 64)
    slow = CamExplainer(copy.deepcopy(resnet), "resnet18").raw_maps(x, class_idx=2)[2]
    fast_net = copy.deepcopy(resnet)
    fast = CamExplainer(fast_net, "resnet18", fast_backward=True).raw_maps(x, class_idx=2)[2]
    torch.testing.assert_close(slow, fast)
    # the graph starts at the target layer's output: no weight gradient is computed anywhere
    assert not any(p.requires_grad for p in fast_net.parameters())
    assert all(p.grad is None for p in fast_net.parameters())


def test_target_layers():
    assert target_layer(torch.nn.Identity(), "resnet18") == "layer4"  # from the network registry's entry
    assert target_layer(torch.nn.Identity(), "efficientnet_b0") == "_bn1"
    net = MultiTaskUNet(1, 3)
    assert target_layer(net, "unet_multitask") == net.gradcam_layer
    with pytest.raises(ValueError, match="No Grad-CAM target layer"):
        target_layer(torch.nn.Linear(2, 2), "linear")
    with pytest.raises(ValueError, match="Unknown explanation method"):
        CamExplainer(net, method="lime")


def test_multitask_network_map_is_finer():
    net = MultiTaskUNet(1, 3).eval()
    _, _, maps = CamExplainer(net, "unet_multitask", fast_backward=True).raw_maps(torch.rand(1, 1, 64, 64))
    assert maps.shape == (1, 4, 4)  # 1/16 of the input


def test_upsample_map_scales_to_unit_range():
    from skimage.transform import resize

    m = upsample_map(torch.tensor([[0.0, 2.0], [1.0, 4.0]]), (4, 6))
    assert m.shape == (4, 6) and m.max() == pytest.approx(1.0) and m.min() >= 0
    # pixel centres (half-pixel rule, edges held): the corners are the inputs / 4; m[1, 1] sits at row 0.25, col 0
    # of the input, 0.75 x 0 + 0.25 x 1 = 0.25, / 4 (align_corners=True would give 0.2)
    assert [m[0, 0], m[0, -1], m[-1, 0], m[-1, -1], m[1, 1]] == pytest.approx([0, 0.5, 0.25, 1, 0.0625], abs=1e-6)
    np.testing.assert_allclose(m, resize(np.array([[0.0, 2.0], [1.0, 4.0]]), (4, 6), order=1, mode="edge",
                                         anti_aliasing=False) / 4, atol=1e-6)
    assert upsample_map(np.zeros((2, 2)), (3, 3)).max() == 0.0


def test_mass_in_mask_golden():
    cam = np.zeros((4, 4))
    cam[0, 0], cam[1, 1], cam[3, 3] = 1.0, 2.0, 1.0
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    assert cam_mass_in_mask(cam, mask) == pytest.approx(3 / 4)
    uniform = np.ones((4, 4))
    assert cam_mass_in_mask(uniform, mask) == pytest.approx(4 / 16)  # the mask's area fraction
    assert np.isnan(cam_mass_in_mask(np.zeros((4, 4)), mask))
    assert np.isnan(cam_mass_in_mask(cam, np.zeros((4, 4), bool)))
    with pytest.raises(ValueError, match="differ"):
        cam_mass_in_mask(cam, mask[:3])


def test_pointing_game_golden():
    mask = np.zeros((50, 50), bool)
    mask[10:20, 10:20] = True
    cam = np.zeros((50, 50))
    cam[15, 15] = 1.0
    assert pointing_game_hit(cam, mask) == 1.0  # inside
    cam = np.zeros((50, 50))
    cam[19, 30] = 1.0  # 11 px right of the mask's last column (x = 19)
    assert pointing_game_hit(cam, mask, tolerance_px=15) == 1.0
    assert pointing_game_hit(cam, mask, tolerance_px=10) == 0.0
    cam = np.zeros((50, 50))
    cam[45, 45] = 1.0
    assert pointing_game_hit(cam, mask) == 0.0
    assert pointing_game_hit(np.zeros((50, 50)), mask) == 0.0  # points nowhere
    assert np.isnan(pointing_game_hit(cam, np.zeros((50, 50), bool)))


def test_localisation_summary():
    mask = np.zeros((20, 20), bool)
    mask[2:6, 2:6] = True
    inside = np.zeros((20, 20))
    inside[3, 3] = 1.0
    outside = np.zeros((20, 20))
    outside[19, 19] = 1.0
    s = localisation_summary([inside, outside, np.zeros((20, 20)), inside], [mask, mask, mask, np.zeros((20, 20), bool)],
                             tolerance_px=2, n_boot=100)
    assert s["n_images"] == 3 and s["n_empty_maps"] == 1  # the lesion-free image is left out
    assert s["pointing_game"]["value"] == pytest.approx(1 / 3)
    assert s["cam_mass_in_mask"]["value"] == pytest.approx(0.5)  # 1 and 0; the empty map is NaN and dropped
    assert s["mask_area_fraction"]["value"] == pytest.approx(16 / 400)
    assert s["pointing_game_center"]["value"] == 0.0  # the centre (10, 10) is 7.1 px from (5, 5)
