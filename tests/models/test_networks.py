"""Network factories: every registered name builds, shapes, resolved arguments rebuild the same network."""

import json

import pytest
import torch

from breastdx.models.networks import (CLASSIFICATION_NETWORKS, NETWORKS, SEGMENTATION_NETWORKS, build_network,
                                      count_parameters, network_args)
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
    assert {"compact_cnn", "unet_multitask", *SEGMENTATION_NETWORKS, *CLASSIFICATION_NETWORKS} == set(names)


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
