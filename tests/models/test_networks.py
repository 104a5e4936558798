"""Network factories: every registered name builds, shapes, resolved arguments rebuild the same network."""

import json

import pytest
import torch

from breastdx.models.networks import (CLASSIFICATION_NETWORKS, NETWORKS, SEGMENTATION_NETWORKS, NetworkEntry,
                                      build_network, check_input_size, count_parameters, gradcam_layer, network_args)
from breastdx.registry import UnknownNameError


def test_registry_holds_the_promised_networks():
    # other modules register more (unet_multitask, compact_cnn); these are the ones networks.py promises
    assert set(SEGMENTATION_NETWORKS) | set(CLASSIFICATION_NETWORKS) <= set(NETWORKS.names())
    assert {"unet", "attention_unet"} <= set(SEGMENTATION_NETWORKS)
    assert {"densenet121", "resnet18", "resnet50", "efficientnet_b0"} == set(CLASSIFICATION_NETWORKS)


def test_registry_is_complete_whichever_module_imports_it_first():
    """A fresh interpreter that imports only networks.py sees the networks defined in other modules too
    (``breastdx train breastmnist --archs compact_cnn`` once failed with "Unknown network")."""
    import subprocess
    import sys

    code = "from breastdx.models.networks import NETWORKS; print(' '.join(sorted(NETWORKS.names())))"
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    others = {"compact_cnn", "unet_multitask", "vit", "swin", "seg_ensemble", "cls_ensemble"}
    # at least these (a contributor's new network adds to them without editing this test)
    assert {*others, *SEGMENTATION_NETWORKS, *CLASSIFICATION_NETWORKS} <= set(names)


@pytest.mark.parametrize("name", SEGMENTATION_NETWORKS)
def test_segmentation_shapes(name):
    torch.manual_seed(0)
    net, args = build_network(name, in_channels=1, out_channels=2)
    x = torch.rand(2, 1, 48, 80)  # not square: H and W are only required to be multiples of 16
    with torch.no_grad():
        y = net.eval()(x)
    assert y.shape == (2, 2, 48, 80)
    json.dumps(args)  # storable in meta.json


@pytest.mark.parametrize("name", CLASSIFICATION_NETWORKS)
def test_classification_shapes(name):
    net, args = build_network(name, in_channels=3, out_channels=3)
    with torch.no_grad():
        y = net.eval()(torch.rand(2, 3, 64, 64))
    assert y.shape == (2, 3)
    json.dumps(args)


def test_resolved_arguments_rebuild_the_same_network():
    torch.manual_seed(0)
    net, args = build_network("unet", 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
    assert args == {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1, "norm": "instance",
                    "dropout": 0.0}
    again, args2 = build_network("unet", 1, 2, **json.loads(json.dumps(args)))
    assert args2 == args
    again.load_state_dict(net.state_dict())  # same keys and shapes
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), again.eval()(x))


def test_default_unet_fits_the_zoo_size_limit():
    net, _ = build_network("unet", 1, 2)
    assert count_parameters(net) * 4 < 10 * 1024 * 1024  # float32 bytes


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'unet'"):
        build_network("unett", 1, 2)


def test_unknown_argument_lists_the_accepted_ones():
    with pytest.raises(TypeError, match="accepts channels, strides"):
        network_args("unet", chanels=(8, 16))


def test_channel_counts_are_checked():
    with pytest.raises(ValueError, match="at least 1"):
        build_network("unet", 0, 2)


# ------------------------------------------------------------------------------------ registry entries
def test_every_entry_is_one_frozen_record_of_its_name():
    import dataclasses

    for name in NETWORKS.names():
        entry = NETWORKS.get(name)
        assert isinstance(entry, NetworkEntry) and entry.name == name
        assert entry.kind in ("segmentation", "classification")
        with pytest.raises(dataclasses.FrozenInstanceError):
            entry.kind = "classification"
    # the trainable segmentation networks, and the ensemble of trained ones (models/ensemble.py)
    segmentation = {n for n in NETWORKS.names() if NETWORKS.get(n).kind == "segmentation"}
    assert {*SEGMENTATION_NETWORKS, "seg_ensemble"} <= segmentation
    assert [n for n in NETWORKS.names() if not NETWORKS.get(n).trainable] == ["cls_ensemble", "seg_ensemble"]


@pytest.mark.parametrize("name, kwargs", [("resnet18", {}), ("densenet121", {}), ("efficientnet_b0", {}),
                                          ("compact_cnn", {}), ("compact_cnn", {"widths": [8, 16, 32]}),
                                          ("unet_multitask", {}), ("unet_multitask", {"channels": [8, 16, 32],
                                                                                      "strides": [2, 2]})])
def test_gradcam_layer_is_a_module_of_the_network_built_with_the_same_arguments(name, kwargs):
    net, _ = build_network(name, 1, 2, **kwargs)
    layer = gradcam_layer(name, **kwargs)
    assert layer in dict(net.named_modules())
    own = getattr(net, "gradcam_layer", None)  # networks that name their own layer agree with the registry
    assert own is None or own == layer


def test_known_gradcam_layers_and_none_for_segmentation():
    assert gradcam_layer("resnet18") == gradcam_layer("resnet50") == "layer4"
    assert gradcam_layer("efficientnet_b0") == "_bn1"
    assert gradcam_layer("densenet121") == "class_layers.relu"
    assert gradcam_layer("compact_cnn", widths=[8, 16]) == "stages.1"
    assert all(gradcam_layer(n) is None for n in SEGMENTATION_NETWORKS)
    assert all(gradcam_layer(n) for n in NETWORKS.names()
               if NETWORKS.get(n).kind == "classification" and n != "cls_ensemble")
    members = [{"architecture": "compact_cnn", "architecture_args": {"widths": [8, 16]}},
               {"architecture": "compact_cnn", "architecture_args": {"widths": [8, 16, 32]}}]
    assert gradcam_layer("cls_ensemble", members=members) == "members.0.stages.1,members.1.stages.2"


@pytest.mark.parametrize("name, kwargs, size", [("densenet121", {}, 29), ("efficientnet_b0", {}, 32),
                                                ("compact_cnn", {}, 15), ("compact_cnn", {"stem_stride": 1}, 8)])
def test_min_size_is_the_smallest_size_that_runs(name, kwargs, size):
    net, _ = build_network(name, 1, 2, **kwargs)
    check_input_size(name, size, size, **kwargs)
    with torch.no_grad():
        assert net.eval()(torch.rand(1, 1, size, size)).shape == (1, 2)
    with pytest.raises(ValueError, match=rf"needs images of at least {size} x {size} pixels; got {size - 1} x"):
        check_input_size(name, size - 1, size - 1, **kwargs)
    with pytest.raises(RuntimeError):
        with torch.no_grad():
            net.eval()(torch.rand(1, 1, size - 1, size - 1))


def test_size_multiple_follows_the_strides():
    check_input_size("unet", 48, 80)
    with pytest.raises(ValueError, match="each side a multiple of 16; got 48 x 72"):
        check_input_size("unet", 48, 72)
    check_input_size("unet", 12, 20, channels=[8, 16, 32], strides=[2, 2])
    with pytest.raises(ValueError, match="at least 32 x 32 pixels"):
        check_input_size("unet_multitask", 16, 16)


def test_a_network_argument_may_share_a_name_with_the_helpers_parameters():
    """``fcn`` takes ``width`` (its channels): the helpers take the name and sizes positionally, so ``width=8``
    reaches the network (``--arch-args '{"fcn": {"width": 8}}'`` once failed with "got multiple values for
    argument 'width'")."""
    check_input_size("fcn", 64, 64, width=8)
    assert network_args("fcn", width=8)["width"] == 8
    net, args = build_network("fcn", 1, 2, width=8)
    assert args["width"] == 8 and gradcam_layer("fcn", width=8) is None


@pytest.mark.parametrize("name, kwargs, said", [
    ("unet", {"strides": [2, 2, 2, 2, 2]}, "strides needs one entry fewer than channels"),  # MONAI: a warning
    ("attention_unet", {"strides": [2, 2, 2, 2, 2]}, "strides needs one entry fewer"),  # MONAI: ignored
    ("attention_unet", {"strides": [2, 2]}, "strides needs one entry fewer"),  # MONAI: IndexError
    ("segresnet", {"blocks_up": [1, 1]}, "blocks_up needs one entry fewer than blocks_down"),  # MONAI: at forward
    ("attention_unet", {"channels": [16], "strides": []}, "channels needs at least 2 entries"),  # MONAI: IndexError
    ("unet", {"strides": [0, 2, 2, 2]}, "strides must be integers >= 1"),  # MONAI: built, failed when called
    ("unet_multitask", {"strides": [0, 2, 2, 2]}, "must be positive integers"),  # the same
    ("segresnet", {"init_filters": 0}, "init_filters must be a positive integer"),  # the same
    ("swin", {"image_size": 32, "window_size": 0}, "window_size must be at least 1"),  # ZeroDivisionError when called
    ("densenet121", {"dropout": -0.5}, r"dropout must be in \[0, 1\)"),  # MONAI: no dropout, no word
])
def test_network_arguments_that_cannot_work_are_refused_when_built(name, kwargs, said):
    """A U-Net with an extra stride was built on its first strides only, while its size facts multiplied them all
    (size multiple 32 for a network of multiple 16); a SegResNet with too few up blocks, a stride of 0 or a Swin
    window of 0 were built and failed at their first call; a negative DenseNet dropout was taken as none."""
    with pytest.raises(ValueError, match=said):
        build_network(name, 1, 2, **kwargs)
    build_network("segresnet", 1, 2, blocks_down=[1, 2, 2, 4, 4], blocks_up=[1, 1, 1, 1])  # a fifth level fits
    build_network("segresnet", 1, 2, blocks_down=[0, 1], blocks_up=[0])  # a level may have no residual block
