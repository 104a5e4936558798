"""Penultimate features: for every registered classifier, the tapped features are what its last linear layer turns
into the logits, so the out-of-distribution score reads the representation the decision is made from."""

import numpy as np
import pytest
import torch
from torch import nn

from breastdx.models.networks import NETWORKS, build_network
from breastdx.models.penultimate import FeatureTap, feature_layer, penultimate_features

# cls_ensemble's logits are the log of its members' mean probability, not a linear map: its tap reads the last
# member's head (tests/models/test_cls_ensemble.py)
CLASSIFIERS = [n for n in NETWORKS.names() if NETWORKS.get(n).kind == "classification" and n != "cls_ensemble"]
SMALL = {"compact_cnn": {"widths": [8, 16]}, "unet_multitask": {"channels": [8, 16, 32], "strides": [2, 2]},
         "vit": {"image_size": 32}, "swin": {"image_size": 32}}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_the_last_linear_layer_maps_the_tapped_features_to_the_logits(name):
    torch.manual_seed(0)
    net, _ = build_network(name, 3, 4, **SMALL.get(name, {}))
    net.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), FeatureTap(net) as tap:
        logits = net(x)
    feats = tap.features()
    assert feats.shape[0] == 2 and feats.dtype == torch.float32
    with torch.no_grad():
        again = feature_layer(net)(feats)
    torch.testing.assert_close(again, logits, rtol=1e-4, atol=1e-5)
    assert not feature_layer(net)._forward_pre_hooks  # the hook is gone after the block


def test_penultimate_features_concatenates_batches_in_order():
    torch.manual_seed(0)
    net, _ = build_network("compact_cnn", 1, 2, widths=[8, 16])
    x = torch.rand(5, 1, 24, 24)
    whole = penultimate_features(net, [x])
    parts = penultimate_features(net, [x[:2], x[2:]])
    assert whole.shape == (5, 16)
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-6)


def test_a_network_without_a_linear_layer_is_refused():
    with pytest.raises(ValueError, match="Conv2d has no linear layer"):
        FeatureTap(nn.Conv2d(1, 2, 3))
