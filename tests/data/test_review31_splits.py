"""Review 31: defects found in splits, patch splits and near-duplicate hashing (each test failed before its fix)."""

from __future__ import annotations

import numpy as np
import pytest

from breastdx.data.duplicates import perceptual_hash, thumbnail


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.int64])
def test_colour_image_of_another_dtype_is_refused_not_cast(dtype) -> None:
    """A float or 16-bit colour image was cast to uint8 (wrapping, or 0-1 floats all to 0) and hashed, although a
    non-uint8 image is documented to raise ValueError (a gray one did)."""
    rgb = (np.random.default_rng(0).random((20, 24, 3)) * (1 if dtype is np.float32 else 60000)).astype(dtype)
    with pytest.raises(ValueError, match="uint8"):
        perceptual_hash(rgb)
    with pytest.raises(ValueError, match="uint8"):
        thumbnail(rgb)


def test_split_file_written_by_rank_zero_only_and_other_ranks_go_on(tmp_path, monkeypatch) -> None:
    """In a distributed run's other ranks write_json writes nothing, and to_json then renamed a temporary file that
    did not exist: FileNotFoundError on every rank but 0 (busi-seg --split-file under DDP)."""
    from breastdx.data.splits import SplitFile

    sf = SplitFile(None, "abc", 0, (0.7, 0.1, 0.2), ["a"], ["b"], ["c"])
    monkeypatch.setenv("RANK", "1")
    sf.to_json(tmp_path / "s.json")
    assert sf.path == tmp_path / "s.json"
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("RANK", "0")
    sf.to_json(tmp_path / "s.json")
    assert SplitFile.from_json(tmp_path / "s.json").train == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
