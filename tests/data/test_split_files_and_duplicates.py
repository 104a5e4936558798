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


@pytest.mark.parametrize("groups", [["benign (1)", "benign (2)"], [[1, 2]], [{"members": ["benign (1)"]}]])
def test_split_file_with_malformed_groups_is_refused(tmp_path, groups) -> None:
    """A split file whose near-duplicate groups were not lists of case names was read silently: a flat list of names
    became groups of single characters (so cross-validation folds no longer kept the frames of a lesion together)."""
    import json

    from breastdx.data.errors import DataError
    from breastdx.data.splits import SplitFile

    path = tmp_path / "s.json"
    SplitFile(None, "abc", 0, (0.7, 0.1, 0.2), ["benign (1)"], ["benign (2)"], ["benign (3)"]).to_json(path)
    data = json.loads(path.read_text())
    data["groups"] = groups
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="s.json") as err:
        SplitFile.from_json(path)
    assert "groups: expected a list of lists of case names" in str(err.value)


@pytest.mark.parametrize("box", [(110, 10, 88, 200), (10, 130, 180, 105), (105, 125, 95, 115), (5, 7, 190, 230)])
def test_a_crop_from_beyond_the_middle_is_the_same_image(box) -> None:
    """Phase correlation gives the offset modulo the padded size, so a crop taken from beyond the middle of the
    image came back with a negative offset, the overlap was empty and the same pixels scored 0.0 instead of 1.0."""
    from scipy.ndimage import gaussian_filter

    from breastdx.data.duplicates import SAME_IMAGE_CORRELATION, aligned_correlation

    rng = np.random.default_rng(0)
    a = (128 + 40 * gaussian_filter(rng.normal(0, 1, (200, 240)), 2)).clip(0, 255).astype(np.uint8)
    y, x, h, w = box
    b = a[y:y + h, x:x + w]
    assert aligned_correlation(a, b) >= SAME_IMAGE_CORRELATION
    assert aligned_correlation(b, a) >= SAME_IMAGE_CORRELATION
    other = (128 + 40 * gaussian_filter(rng.normal(0, 1, (200, 240)), 2)).clip(0, 255).astype(np.uint8)
    assert aligned_correlation(other, b) < 0.5
