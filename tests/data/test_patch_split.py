"""Patient-level splits of patch sources: no patient in two splits, stratification, seeding, the split file
(written once, reused only for the same data) and applying it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from breastdx.data.errors import DataError
from breastdx.data.patch_split import apply_split, check_patch_split, make_patch_split, patch_split
from breastdx.data.patches import ArrayPatchSource, ConcatPatchSource, PatchSubset
from breastdx.data.splits import SplitFile


def _source(n_patients=25, seed=0, groups=True):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, size=n_patients)
    patient = np.repeat([f"P{k:03d}" for k in range(n_patients)], sizes)
    tumour_rate = rng.uniform(0, 1, size=n_patients)
    labels = (rng.uniform(size=patient.size) < np.repeat(tumour_rate, sizes)).astype(int)
    images = rng.integers(0, 256, size=(patient.size, 7, 9, 3), dtype=np.uint8)
    return ArrayPatchSource(images, labels, name="toy", ids=[f"item{i:04d}" for i in range(patient.size)],
                            groups=patient.tolist() if groups else None)


def _owners(src, split):
    position = {item: i for i, item in enumerate(src.ids)}
    owner: dict[str, set[str]] = {}
    for s in ("train", "val", "test"):
        for item in split.split(s):
            owner.setdefault(src.groups[position[item]], set()).add(s)
    return owner


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_patient_in_two_splits_and_every_item_once(seed):
    src = _source(seed=seed)
    split = make_patch_split(src, ratios=(0.6, 0.2, 0.2), seed=seed)
    assert all(len(s) == 1 for s in _owners(src, split).values())
    items = split.train + split.val + split.test
    assert sorted(items) == sorted(src.ids)
    assert split.dataset == "toy" and split.data_checksum == src.checksum
    assert split.summary["grouped_by"] == "patient"
    assert sum(split.summary["n_patients"].values()) == len(set(src.groups))
    for s in ("train", "val", "test"):
        assert set(split.summary["patients"][s]) == {p for p, where in _owners(src, split).items() if s in where}


def test_split_is_seeded_and_roughly_proportional():
    src = _source(n_patients=200, seed=9)
    a = make_patch_split(src, ratios=(0.7, 0.1, 0.2), seed=1)
    assert make_patch_split(src, ratios=(0.7, 0.1, 0.2), seed=1).to_dict()["train"] == a.train
    assert make_patch_split(src, ratios=(0.7, 0.1, 0.2), seed=2).train != a.train
    n = len(src)
    assert abs(len(a.train) / n - 0.7) < 0.05 and abs(len(a.test) / n - 0.2) < 0.05
    for s in ("train", "test"):
        counts = a.summary["counts"][s]
        rate = counts["tumour"] / (counts["normal"] + counts["tumour"])
        assert abs(rate - src.labels.mean()) < 0.1


def test_without_groups_the_split_is_stratified_and_flagged(caplog):
    src = _source(groups=False)
    with caplog.at_level(logging.WARNING, logger="breastdx.data.patch_split"):
        split = make_patch_split(src, seed=0)
    assert "no patient ids" in caplog.text
    assert split.summary["grouped_by"] is None and "patients" not in split.summary
    assert "optimistic" in split.summary["warning"]


def test_split_file_is_written_once_and_reused(tmp_path):
    src = _source()
    path = tmp_path / "runs" / "split.json"
    first = patch_split(src, path, seed=3)
    assert path.is_file() and first.path == path
    data = json.loads(path.read_text())
    assert data["data_checksum"] == src.checksum and data["dataset"] == "toy" and data["seed"] == 3
    again = patch_split(src, path, seed=99)  # reused: keeps its own seed
    assert again.seed == 3 and again.train == first.train and again.test == first.test


def test_reuse_refuses_changed_data(tmp_path):
    src = _source()
    path = tmp_path / "split.json"
    patch_split(src, path)
    images = np.array(src._images)
    images[0, 0, 0, 0] ^= 1
    changed = ArrayPatchSource(images, src.labels, name="toy", ids=src.ids, groups=src.groups.tolist())
    with pytest.raises(DataError, match=r"split.json: made from data with checksum [0-9a-f]{64}, but the toy data "
                                        r"now have checksum [0-9a-f]{64}"):
        patch_split(changed, path)


def test_check_finds_crossing_patients_and_unknown_ids(tmp_path):
    src = _source()
    split = make_patch_split(src, seed=0)
    position = {item: i for i, item in enumerate(src.ids)}
    sizes = {g: int(np.sum(src.groups == g)) for g in set(src.groups)}
    victim = next(i for i in split.train if sizes[src.groups[position[i]]] > 1)  # its patient stays in train
    patient = src.groups[position[victim]]
    moved = SplitFile(path=tmp_path / "s.json", data_checksum=split.data_checksum, seed=0, ratios=split.ratios,
                      train=[i for i in split.train if i != victim], val=split.val + [victim], test=split.test)
    with pytest.raises(DataError, match=rf"(?s)s.json: does not fit the toy data.*patient '{patient}' has items in both"):
        check_patch_split(src, moved)
    ghost = SplitFile(path=None, data_checksum=split.data_checksum, seed=0, ratios=split.ratios,
                      train=split.train + ["nope"], val=split.val, test=split.test)
    with pytest.raises(DataError, match=r"1 ids are not in the toy data \(first: 'nope'\)"):
        check_patch_split(src, ghost)
    with pytest.raises(DataError, match=r"id 'nope' of train is not in the toy data"):
        apply_split(src, ghost)
    # a split of another dataset says so, rather than that the data changed; one of this dataset, that they did
    other = SplitFile(path=tmp_path / "busi.json", data_checksum="0" * 64, seed=0, ratios=split.ratios,
                      train=split.train, val=split.val, test=split.test, dataset="busi")
    with pytest.raises(DataError, match=r"busi.json: a split of dataset 'busi', not of toy\."):
        check_patch_split(src, other)
    with pytest.raises(DataError, match=r"made from data with checksum 0{64}, but the toy data now have"):
        check_patch_split(src, SplitFile(path=None, data_checksum="0" * 64, seed=0, ratios=split.ratios,
                                         train=split.train, val=split.val, test=split.test, dataset=src.name))


def test_check_finds_items_in_no_split(tmp_path):
    """A split file that leaves items out (edited by hand, or cut short) would drop them silently from every split."""
    src = _source()
    split = make_patch_split(src, seed=0)
    dropped = split.test[-2:]
    short = SplitFile(path=tmp_path / "short.json", data_checksum=split.data_checksum, seed=0, ratios=split.ratios,
                      train=split.train, val=split.val, test=split.test[:-2], dataset=src.name)
    with pytest.raises(DataError, match=rf"(?s)short.json: does not fit the toy data.*2 of the {len(src)} toy items "
                                        rf"are in no split and not excluded \(first: '{dropped[0]}'\)"):
        check_patch_split(src, short)
    short.excluded = [{"name": n, "reason": "held out"} for n in dropped]  # excluded with a reason: covered
    check_patch_split(src, short)
    check_patch_split(src, split)


def test_apply_split_gives_views():
    src = _source()
    split = make_patch_split(src, seed=0)
    parts = apply_split(src, split)
    assert set(parts) == {"train", "val", "test"}
    assert sum(len(p) for p in parts.values()) == len(src)
    test = parts["test"]
    assert isinstance(test, PatchSubset) and list(test.ids) == split.test
    k = src.ids.index(split.test[0])
    np.testing.assert_array_equal(test.get(0)[0], src.get(k)[0])
    assert test.labels[0] == src.labels[k] and test.groups[0] == src.groups[k]
    assert test.checksum == src.checksum
    both = ConcatPatchSource([parts["val"], parts["test"]])
    assert len(both) == len(split.val) + len(split.test)
    np.testing.assert_array_equal(both.get(len(split.val))[0], src.get(k)[0])


def test_idc_absolute_reproduces_the_shipped_split_and_the_default_spreads_large_patients(data_root):
    """The shipped idc model's split (seed 0) was made by the rule then, which put the patients with the most
    patches into training (its test patients had 2-28, training up to 69); ``method="absolute"`` makes it again,
    and the default gives val and test patients of every size."""
    from pathlib import Path

    from breastdx.data.patches import load_patch_dataset

    source = load_patch_dataset("idc", data_root)
    shipped = json.loads((Path(__file__).resolve().parents[2] / "src/breastdx/zoo/idc/split.json").read_text())
    old = make_patch_split(source, seed=0, method="absolute")
    assert [old.split(s) for s in ("train", "val", "test")] == [shipped[s] for s in ("train", "val", "test")]
    new = make_patch_split(source, seed=0)
    assert new.method == "proportional"

    def largest(split, part):
        owner = dict(zip(source.ids, source.groups))
        return max(np.unique([owner[i] for i in split.split(part)], return_counts=True)[1])

    assert (largest(old, "train"), largest(old, "val"), largest(old, "test")) == (69, 20, 28)
    assert (largest(new, "train"), largest(new, "val"), largest(new, "test")) == (69, 63, 63)


def test_breakhis_absolute_reproduces_the_shipped_split(data_root):
    """The shipped breakhis model's patient split (seed 0, 8 subtypes of the derived copy) is made again, patch for
    patch, by the rule of its day."""
    from pathlib import Path

    from breastdx.data.patches import load_patch_dataset

    source = load_patch_dataset("breakhis", data_root, labels="subtype")
    shipped = json.loads((Path(__file__).resolve().parents[2] / "src/breastdx/zoo/breakhis/split.json").read_text())
    old = make_patch_split(source, seed=0, method="absolute")
    assert [old.split(s) for s in ("train", "val", "test")] == [shipped[s] for s in ("train", "val", "test")]
    assert old.summary["train_only"] == shipped["summary"]["train_only"]
