"""The conditional generator and projection discriminator: shapes, determinism, safetensors round trip."""

import json

import numpy as np
import pytest
import torch

from breastdx.models.gan import (ConditionalGenerator, ProjectionDiscriminator, generate, latents, load_generator,
                                 save_generator)
from breastdx.models.saved import ModelFolderError


def test_shapes_at_the_idc_size_and_an_odd_one():
    for size, widths in ((50, (32, 16, 8, 8)), (33, (16, 8, 8))):
        g = ConditionalGenerator(2, size, z_dim=8, widths=widths, embed_dim=4)
        x = g(torch.randn(3, 8), torch.tensor([0, 1, 1]))
        assert x.shape == (3, 3, size, size) and x.min() >= -1 and x.max() <= 1
        d = ProjectionDiscriminator(2, (4, 8, 8, 16))
        assert d(x, torch.tensor([0, 1, 0])).shape == (3,)
    with pytest.raises(ValueError, match="widths needs 4 entries"):
        ConditionalGenerator(2, 50, widths=(8, 8))


def test_generate_is_deterministic_and_prefix_stable(tmp_path):
    torch.manual_seed(0)
    g = ConditionalGenerator(2, 50, z_dim=8, widths=(16, 8, 8, 8), embed_dim=4)
    a = generate(g, 5, 1, seed=3)
    assert a.dtype == np.uint8 and a.shape == (5, 50, 50, 3)
    assert np.array_equal(a, generate(g, 5, 1, seed=3)) and np.array_equal(a[:2], generate(g, 2, 1, seed=3))
    assert not np.array_equal(a, generate(g, 5, 1, seed=4)) and not np.array_equal(a, generate(g, 5, 0, seed=3))
    assert torch.equal(latents(4, 8, 3), latents(4, 8, 3))
    save_generator(tmp_path, g, {"task": "idc-synthesis", "class_names": ["normal", "tumour"]})
    loaded, meta = load_generator(tmp_path)
    assert meta["kind"] == "generator" and meta["architecture_args"]["widths"] == [16, 8, 8, 8]
    assert np.array_equal(generate(loaded, 5, 1, seed=3), a)
    with pytest.raises(ValueError, match="label must be a class index"):
        generate(g, 1, 2)


def test_load_generator_refuses_other_folders(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"kind": "classification", "architecture": "compact_cnn"}))
    with pytest.raises(ModelFolderError, match="not a generator folder"):
        load_generator(tmp_path)
