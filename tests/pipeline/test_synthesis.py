"""``breastdx synthesize``: N distinct PNG patches, the same for the same seed; the idc reader's synthetic option."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.models.gan import ConditionalGenerator, save_generator
from breastdx.pipeline.synthesis import synthesize

runner = CliRunner()


@pytest.fixture()
def tiny_generator(tmp_path):
    torch.manual_seed(0)
    g = ConditionalGenerator(2, 50, z_dim=8, widths=(16, 8, 8, 8), embed_dim=4)
    save_generator(tmp_path / "gen", g, {"task": "idc-synthesis", "class_names": ["normal", "tumour"]})
    return tmp_path / "gen"


def _read(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_same_seed_same_files_other_seed_other_files(tiny_generator, tmp_path):
    a = synthesize("idc", 6, 1, tmp_path / "a", seed=7, model=tiny_generator)
    synthesize("idc", 6, 1, tmp_path / "b", seed=7, model=str(tiny_generator))
    synthesize("idc", 6, 1, tmp_path / "c", seed=8, model=tiny_generator)
    assert len(a["files"]) == 6 and a["label"] == "tumour"
    assert _read(tmp_path / "a") == _read(tmp_path / "b")
    assert set(_read(tmp_path / "a").values()).isdisjoint(_read(tmp_path / "c").values())
    record = json.loads((tmp_path / "a" / "synthesis.json").read_text())
    assert record["seed"] == 7 and record["n"] == 6 and "research" in record["intended_use"].lower()
    with pytest.raises(ValueError, match="--label must be a class index"):
        synthesize("idc", 1, 2, tmp_path / "d", model=tiny_generator)
    with pytest.raises(ValueError, match="generator for idc"):
        synthesize("pcam", 1, 1, tmp_path / "e", model=tiny_generator)
    with pytest.raises(ValueError, match="--n must be from 1 to 100,000"):  # not a memory error after a while
        synthesize("idc", 100_001, 1, tmp_path / "f", model=tiny_generator)
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("seed", [2**64, -1])
def test_a_seed_outside_64_bits_is_refused_before_the_output_folder_is_made(tiny_generator, tmp_path, seed):
    """2**64 failed with torch's 'Overflow when unpacking long long' after --out was made; -1 gave the patches of
    seed 2**64 - 2 (torch maps a negative seed onto a positive one)."""
    with pytest.raises(ValueError, match=rf"--seed must be from 0 to {2**64 - 1} \(a 64-bit seed\)\. Got {seed}"):
        synthesize("idc", 1, 1, tmp_path / "out", seed=seed, model=tiny_generator)
    assert not (tmp_path / "out").exists()
    synthesize("idc", 1, 1, tmp_path / "max", seed=2**64 - 1, model=tiny_generator)
    assert len(list((tmp_path / "max").glob("*.png"))) == 1


def test_cli_writes_64_distinct_idc_patches_with_the_shipped_model(tmp_path):
    out = tmp_path / "syn"
    result = runner.invoke(app, ["synthesize", "idc", "--n", "64", "--label", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.png"))
    assert len(files) == 64
    arrays = [np.asarray(Image.open(f)) for f in files]
    assert all(a.shape == (50, 50, 3) and a.dtype == np.uint8 for a in arrays)
    assert len({a.tobytes() for a in arrays}) == 64
    data_root = Path(os.environ.get("BREASTDX_DATA", ""))
    if (data_root / "idc").is_dir():  # no near-copy of a training patch (exact among the 16 Euclidean-nearest)
        from breastdx.evaluation.generative import nearest_patch_distance
        from breastdx.pipeline.synthesis import read_idc_patches

        train = read_idc_patches(data_root)["train"]["images"]
        assert nearest_patch_distance(np.stack(arrays), train, candidates=16)["distance"].min() >= 8
    again = runner.invoke(app, ["synthesize", "idc", "--n", "64", "--label", "1", "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output
    negative = runner.invoke(app, ["synthesize", "idc", "--n", "1", "--label", "1", "--threads", "-1", "--out",
                                   str(tmp_path / "neg")])
    assert negative.exit_code == 2 and "--threads" in negative.output


def test_the_idc_reader_adds_synthetic_tumour_patches_to_training_only(tiny_generator, tmp_path):
    data_root = Path(os.environ.get("BREASTDX_DATA", ""))
    if not (data_root / "idc").is_dir():
        pytest.skip("IDC data not found under BREASTDX_DATA")
    from breastdx.tasks.idc import IDC, IdcConfig
    from breastdx.zoo import shipped_models

    split = shipped_models()["idc"] / "split.json"
    plain = IDC.spec.read(IdcConfig(), data_root, split, tmp_path / "a.json")
    config = IdcConfig(synthetic_idc=5, synthetic_model=str(tiny_generator), synthetic_seed=2)
    more = IDC.spec.read(config, data_root, split, tmp_path / "b.json")
    train, extra = plain.parts["train"], more.parts["train"]
    assert len(extra) == len(train) + 5 and extra.labels[-5:].tolist() == [1] * 5
    assert extra.groups[-1] == "synthetic" and extra.ids[-1].startswith("synthetic/")
    image, mask = extra.read(len(train) + 4)
    assert image.shape == (50, 50, 3) and mask is None
    assert len(more.parts["test"]) == len(plain.parts["test"])
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_compare_training_of_a_model_with_itself_gives_zero_differences():
    from breastdx.pipeline.synthesis import compare_training
    from breastdx.zoo import shipped_models

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(24, 50, 50, 3), dtype=np.uint8)
    test = {"images": images, "labels": np.arange(24) % 2, "groups": np.repeat(np.arange(8), 3).astype(str)}
    idc = shipped_models()["idc"]
    out = compare_training({"a": idc, "b": idc}, test, "a", n_boot=50)
    assert out["n_patients"] == 8 and out["n_patches"] == 24 and set(out["differences"]) == {"b"}
    for d in out["differences"]["b"].values():
        assert d["value"] == 0 and d["ci95"] == [0, 0]
    assert out["models"]["a"] == out["models"]["b"]
