"""The GAN training loop runs, augments as documented and returns an EMA generator."""

import numpy as np
import torch

from breastdx.training.gan import GanSettings, diff_augment, dihedral, train_gan


def test_dihedral_and_diffaugment_keep_shapes_and_content():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    assert torch.equal(dihedral(x, torch.tensor([0, 0])), x)
    assert torch.equal(dihedral(x, torch.tensor([1, 4])), torch.stack([torch.rot90(x[0], 1, (1, 2)), x[1].flip(2)]))
    y = diff_augment(x.requires_grad_(), torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    y.sum().backward()  # differentiable
    assert x.grad is not None


def test_train_gan_runs_a_few_steps_on_tiny_data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 20, 20, 3), dtype=np.uint8)
    labels = np.arange(12) % 2
    seen = []
    g, info = train_gan(images, labels, GanSettings(steps=4, batch_size=4, z_dim=8, g_widths=(16, 8, 8),
                                                    d_widths=(4, 8, 8, 8), log_every=2),
                        progress=lambda step, gen, row: seen.append(step))
    assert seen == [2, 4] and info["steps_run"] == 4 and len(info["history"]) == 2
    assert info["n_train_per_class"] == [6, 6] and not g.training
    assert g(torch.randn(2, 8), torch.tensor([0, 1])).shape == (2, 3, 20, 20)
