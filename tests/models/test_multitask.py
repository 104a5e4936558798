"""The multi-task U-Net: MONAI UNet outputs unchanged, an encoder-only classifier, registry, Grad-CAM layer."""

import pytest
import torch

from breastdx.models.multitask import MultiTaskUNet
from breastdx.models.networks import NETWORKS, build_network


def test_registered_and_built_by_name():
    assert "unet_multitask" in NETWORKS
    net, args = build_network("unet_multitask", 1, 3)
    assert isinstance(net, MultiTaskUNet) and args["channels"] == [16, 32, 64, 128, 256] and args["decoder"] is True


def test_segmentation_output_equals_monai_unet():
    torch.manual_seed(0)
    net = MultiTaskUNet(1, 3).eval()  # eval: the head's dropout is off
    x = torch.rand(2, 1, 48, 64)  # odd aspect, divisible by 16
    logits, seg = net.forward_multitask(x)
    assert logits.shape == (2, 3) and seg.shape == (2, 2, 48, 64)
    torch.testing.assert_close(seg, net.unet(x))  # the decoder is MONAI's, unchanged
    torch.testing.assert_close(net(x), logits)  # forward runs the encoder only


def test_keys_match_busi_seg_unet():
    seg_net, _ = build_network("unet", 1, 2)
    net = MultiTaskUNet(1, 3)
    keys = {k[len("unet."):] for k in net.state_dict() if k.startswith("unet.")}
    assert keys == set(seg_net.state_dict())
    enc = net.encoder_parameter_names()
    assert enc and all(k.startswith("unet.model.") for k in enc)
    modules = dict(net.named_modules())
    assert not any(isinstance(modules[k.rsplit(".", 1)[0]], torch.nn.ConvTranspose2d) for k in enc)  # no decoder
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in modules.values())


def test_encoder_only_variant():
    full = MultiTaskUNet(1, 2)
    small = MultiTaskUNet(1, 2, decoder=False)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in full.parameters())
    assert small(torch.rand(1, 1, 32, 32)).shape == (1, 2)
    with pytest.raises(RuntimeError, match="decoder=False"):
        small.forward_multitask(torch.rand(1, 1, 32, 32))


def test_gradcam_layer_is_the_bottom():
    net = MultiTaskUNet(1, 3, channels=(8, 16, 32), strides=(2, 2), head_levels=1)
    assert dict(net.named_modules())[net.gradcam_layer] is net.bottom
    feats = net.encode(torch.rand(1, 1, 32, 32))
    assert [f.shape[1] for f in feats] == [8, 16, 32] and feats[-1].shape[-1] == 8


def test_bad_arguments():
    with pytest.raises(ValueError, match="one entry fewer"):
        MultiTaskUNet(1, 3, channels=(8, 16), strides=(2, 2))
    with pytest.raises(ValueError, match="head_levels"):
        MultiTaskUNet(1, 3, head_levels=9)
