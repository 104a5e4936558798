"""The nucleus module's validation: foreground Dice summed over all validation pixels."""

import numpy as np
import pytest
import torch

from breastdx.training.nuclei import NucleusModule


class _Fixed(torch.nn.Module):
    """Returns given logits whatever the input."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.logits + 0 * self.p


def test_validation_dice_of_the_foreground():
    # prediction: interior on 2 pixels and boundary on 1 (foreground 3); reference foreground 2, overlap 2
    cls = torch.tensor([[[1, 2, 1], [0, 0, 0]]])  # (1, 2, 3) predicted classes
    logits = torch.nn.functional.one_hot(cls, 3).permute(0, 3, 1, 2).float() * 10
    module = NucleusModule(_Fixed(logits))
    module.on_validation_epoch_start()
    target = torch.tensor([[[[2, 1, 0], [0, 0, 0]]]])  # classes differ, foreground overlaps
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, float(torch.as_tensor(value).detach()))
    module.validation_step({"image": torch.zeros(1, 3, 2, 3), "mask": target}, 0)
    module._trainer = type("T", (), {"world_size": 1})()
    module.on_validation_epoch_end()
    assert logged["val_dice"] == pytest.approx(2 * 2 / (3 + 2))  # 0.8
    assert np.isfinite(logged["val_loss"])


def test_distance_output_adds_its_binary_cross_entropy_to_the_class_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    batch = {"mask": torch.randint(0, 3, (2, 1, 5, 6)), "distance": torch.rand(2, 1, 5, 6)}
    plain = NucleusModule(_Fixed(logits[:, :3]))
    base = plain.compute_loss(logits[:, :3], batch)
    assert torch.isclose(base, plain.loss_fn(logits[:, :3], batch["mask"]))
    weighted = NucleusModule(_Fixed(logits), distance_weight=0.5).compute_loss(logits, batch)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 3:], batch["distance"])
    assert torch.isclose(weighted, base + 0.5 * bce)
    # a distance logit that matches the map better lowers the loss
    better = logits.clone()
    better[:, 3:] = torch.logit(batch["distance"].clamp(0.01, 0.99))
    assert NucleusModule(_Fixed(better), distance_weight=0.5).compute_loss(better, batch) < weighted
    with pytest.raises(ValueError, match="distance_weight"):
        NucleusModule(_Fixed(logits), distance_weight=-1)
