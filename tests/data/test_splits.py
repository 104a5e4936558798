"""Grouped stratified splits, split files, and the BUSI split with its duplicate policy."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastdx.data.errors import DataError
from breastdx.data.splits import (
    DEFAULT_SPLIT_NAME,
    SPLIT_METHODS,
    SplitFile,
    busi_split,
    default_split_path,
    grouped_stratified_split,
)



def _synthetic(n: int = 301, seed: int = 0) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    labels = list(rng.choice(["normal", "benign", "malignant"], size=n, p=[0.17, 0.56, 0.27]))
    groups, g = [], 0
    while len(groups) < n:  # groups of 1-4 consecutive items, labels mostly shared
        size = int(rng.integers(1, 5))
        groups.extend([g] * size)
        g += 1
    return labels, groups[:n]


def _check_no_group_crosses(parts: dict[str, list[int]], groups) -> None:
    where = {}
    for split, idx in parts.items():
        for i in idx:
            assert where.setdefault(groups[i], split) == split


def test_grouped_stratified_split_properties():
    labels, groups = _synthetic()
    parts = grouped_stratified_split(labels, groups, (0.7, 0.1, 0.2), seed=3)
    assert sorted(i for v in parts.values() for i in v) == list(range(len(labels)))
    _check_no_group_crosses(parts, groups)
    n = len(labels)
    for split, ratio in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        assert abs(len(parts[split]) / n - ratio) < 0.03
    whole = Counter(labels)
    for split in ("train", "test"):
        c = Counter(labels[i] for i in parts[split])
        for lab in whole:
            assert abs(c[lab] / len(parts[split]) - whole[lab] / n) < 0.05
    assert grouped_stratified_split(labels, groups, (0.7, 0.1, 0.2), seed=3) == parts  # deterministic
    assert grouped_stratified_split(labels, groups, (0.7, 0.1, 0.2), seed=4) != parts


def test_grouped_split_golden_small_case():
    # ten singletons of one class: exactly 7 / 1 / 2
    parts = grouped_stratified_split(["a"] * 10, list(range(10)), (0.7, 0.1, 0.2), seed=0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [7, 1, 2]
    # a zero ratio leaves its split empty
    parts = grouped_stratified_split(["a"] * 10, list(range(10)), (0.8, 0.0, 0.2), seed=0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [8, 0, 2]


def _sized_groups() -> tuple[list[str], list[int]]:
    """BUSI's shape: one group of 7, 6 of 4, 20 of 3, 120 pairs and 430 single images, two classes in turn."""
    labels, groups = [], []
    for g, size in enumerate([7] + [4] * 6 + [3] * 20 + [2] * 120 + [1] * 430):
        labels += ["ab"[g % 2]] * size
        groups += [g] * size
    return labels, groups


def _multi_groups_per_split(parts: dict[str, list[int]], groups: list[int]) -> dict[str, int]:
    g = np.asarray(groups)
    return {s: int((np.unique(g[idx], return_counts=True)[1] > 1).sum()) for s, idx in parts.items()}


def test_absolute_method_puts_every_group_in_training_proportional_spreads_them():
    """Largest first into the split furthest below its target *in items* (the rule before 2026-12-06) fills
    training with every group of two or more while training has room, so val and test held single images only
    (BUSI's shipped split: 0 of 149 groups there). Relative to the target, the groups spread in proportion."""
    labels, groups = _sized_groups()
    absolute = grouped_stratified_split(labels, groups, (0.7, 0.1, 0.2), seed=0, method="absolute")
    proportional = grouped_stratified_split(labels, groups, (0.7, 0.1, 0.2), seed=0)
    assert _multi_groups_per_split(absolute, groups) == {"train": 147, "val": 0, "test": 0}
    spread = _multi_groups_per_split(proportional, groups)
    assert spread == {"train": 103, "val": 15, "test": 29}
    assert spread["val"] / 147 == pytest.approx(0.1, abs=0.02) and spread["test"] / 147 == pytest.approx(0.2, abs=0.02)
    for parts in (absolute, proportional):
        _check_no_group_crosses(parts, groups)
        sizes = [len(parts[s]) / len(labels) for s in ("train", "val", "test")]
        assert sizes == pytest.approx([0.7, 0.1, 0.2], abs=0.005)
    with pytest.raises(ValueError, match="split method must be one of proportional, absolute; got 'sized'"):
        grouped_stratified_split(labels, groups, method="sized")


def test_mixed_group_is_stratified_by_most_severe_label():
    labels = ["benign"] * 10 + ["malignant"] + ["benign"]
    groups = list(range(10)) + [10, 10]  # the last group mixes benign and malignant
    severity = ("malignant", "benign", "normal")
    for seed in range(5):
        parts = grouped_stratified_split(labels, groups, (0.5, 0.0, 0.5), seed=seed, severity=severity)
        _check_no_group_crosses(parts, groups)
        # the mixed group is the only "malignant" stratum member: it goes to train (largest deficit first)
        assert {10, 11} <= set(parts["train"])


def test_grouped_split_rejects_bad_input():
    with pytest.raises(ValueError, match="sum to 1"):
        grouped_stratified_split(["a"], [0], (0.7, 0.1, 0.1))
    with pytest.raises(ValueError, match="three fractions"):
        grouped_stratified_split(["a"], [0], (0.5, 0.5))
    with pytest.raises(ValueError, match="same length; got 2 and 1"):
        grouped_stratified_split(["a", "b"], [0])


def _split_file() -> SplitFile:
    return SplitFile(None, "abc", 7, (0.7, 0.1, 0.2), ["benign (1)", "normal (2)"], ["benign (3)"],
                     ["malignant (4)"], groups=[["benign (1)", "benign (9)"]],
                     conflicts=[{"members": ["benign (9)", "malignant (9)"], "labels": ["benign", "malignant"],
                                 "kind": "identical image", "same_image_pairs": []}],
                     excluded=[{"name": "benign (9)", "label": "benign", "reason": "r", "group": []}],
                     hash_threshold=10)


def test_split_file_round_trip(tmp_path):
    sf = _split_file()
    path = tmp_path / "sub" / "split.json"
    sf.to_json(path)
    assert sf.path == path and not list(path.parent.glob(".*tmp*"))
    back = SplitFile.from_json(path)
    assert back.path == path
    for field in ("data_checksum", "seed", "ratios", "train", "val", "test", "groups", "conflicts", "excluded",
                  "hash_threshold", "dataset"):
        assert getattr(back, field) == getattr(sf, field), field
    assert back.assignment()["benign (3)"] == "val" and back.excluded_names() == ["benign (9)"]
    assert default_split_path(tmp_path, 3) == tmp_path / "busi_split_seed3.json"
    assert DEFAULT_SPLIT_NAME.format(seed=0) == "busi_split_seed0.json"


def test_split_file_keeps_its_method_and_an_older_file_reads_as_absolute(tmp_path):
    sf = _split_file()
    assert sf.method == "proportional" and SPLIT_METHODS == ("proportional", "absolute")
    path = tmp_path / "split.json"
    for method in ("absolute", None):  # None: a split made otherwise (PCam's official one)
        sf.method = method
        sf.to_json(path)
        assert SplitFile.from_json(path).method == method
    data = json.loads(path.read_text())
    del data["method"]  # every split file written before 2026-12-06
    path.write_text(json.dumps(data))
    assert SplitFile.from_json(path).method == "absolute"
    data["method"] = "largest"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="not a valid split file") as err:
        SplitFile.from_json(path)
    assert "method: expected one of proportional, absolute, got 'largest'" in str(err.value.problems)


def test_split_file_is_never_renamed_over_a_device_or_folder(tmp_path):
    """The atomic rename would replace /dev/null (or a folder) with a file: refused, and nothing is touched."""
    sf = _split_file()
    (tmp_path / "folder").mkdir()
    for target in (Path("/dev/null"), tmp_path / "folder"):
        with pytest.raises(ValueError, match="not a regular file"):
            sf.to_json(target)
    assert Path("/dev/null").is_char_device() and (tmp_path / "folder").is_dir()


def test_split_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json: not a valid split file \(invalid JSON"):
        SplitFile.from_json(bad)
    data = _split_file().to_dict()
    data["val"] = ["benign (1)"]
    del data["seed"]
    (tmp_path / "two.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"two\.json: not a valid split file") as info:
        SplitFile.from_json(tmp_path / "two.json")
    assert any("seed" in p for p in info.value.problems)
    with pytest.raises(FileNotFoundError):
        SplitFile.from_json(tmp_path / "missing.json")
    # BreastMNIST's split file given where a BUSI/IDC split is expected: named as what it is
    from breastdx.zoo import shipped_models

    with pytest.raises(DataError, match=r"split\.json: not a valid split file\. It is a split of 'breastmnist', "
                                        r"in another layout\."):
        SplitFile.from_json(shipped_models()["breastmnist"] / "split.json")


# -- BUSI split on synthetic data: both conflict policies ----------------------------------------------


def _frame(structure: int, speckle: int, h: int = 121, w: int = 163) -> np.ndarray:
    """An ultrasound-like frame: a smooth random anatomy (seeded by ``structure``), a dark lesion, speckle."""
    from scipy.ndimage import gaussian_filter

    rs = np.random.default_rng(structure)
    field = gaussian_filter(rs.normal(0, 1, (h, w)), 10)
    y, x = np.mgrid[0:h, 0:w]
    cx, cy, r = rs.uniform(40, w - 40), rs.uniform(30, h - 30), rs.uniform(15, 30)
    base = 110 + 45 * field / field.std() - 60 * (((x - cx) / r) ** 2 + ((y - cy) / (0.7 * r)) ** 2 < 1)
    noise = gaussian_filter(np.random.default_rng(1000 + speckle).normal(0, 1, (h, w)), 1.5)
    return np.clip(base + 8 * noise / noise.std(), 0, 255).astype(np.uint8)


def _write_case(root: Path, label: str, n: int, image: np.ndarray) -> None:
    Image.fromarray(image).save(root / label / f"{label} ({n}).png")
    Image.fromarray(np.zeros(image.shape, np.uint8)).save(root / label / f"{label} ({n})_mask.png")


def test_busi_split_policies_on_synthetic_data(tmp_path):
    root = tmp_path / "busi"
    for label in ("normal", "benign", "malignant"):
        (root / label).mkdir(parents=True)
    k = 0
    for label, count in (("normal", 6), ("benign", 14), ("malignant", 8)):
        for n in range(1, count + 1):
            k += 1
            _write_case(root, label, n, _frame(structure=k, speckle=k))
    same = _frame(structure=500, speckle=1)
    _write_case(root, "benign", 20, same)  # the same image under two labels: excluded
    _write_case(root, "malignant", 20, same[2:, 3:])  # (re-cropped)
    _write_case(root, "benign", 21, _frame(structure=600, speckle=1))  # two frames of one lesion
    _write_case(root, "malignant", 21, _frame(structure=600, speckle=2))  # under two labels: kept together
    sf = busi_split(tmp_path, seed=1)
    assert sf.path is None  # not saved: the data folder is read-only
    assert sorted(sf.excluded_names()) == ["benign (20)", "malignant (20)"]
    assert "malignant (20)" in sf.excluded[0]["reason"]
    kinds = {tuple(c["members"]): c["kind"] for c in sf.conflicts}
    assert kinds == {("benign (20)", "malignant (20)"): "identical image",
                     ("benign (21)", "malignant (21)"): "near-duplicate"}
    where = sf.assignment()
    assert where["benign (21)"] == where["malignant (21)"]
    assert len(where) == 28 + 2
    assert ["benign (21)", "malignant (21)"] in sf.groups


# -- real data: a subset of BUSI (fast) and the whole of it (slow) -------------------------------------

SUBSET = (["benign (433)", "malignant (145)", "benign (42)", "benign (131)", "malignant (51)", "benign (435)"]
          + [f"benign ({n})" for n in range(1, 16)] + [f"malignant ({n})" for n in range(2, 12)]
          + [f"normal ({n})" for n in range(2, 10)])


def test_busi_split_real_subset(data_root, tmp_path, link_busi_subset):
    root = link_busi_subset(data_root, tmp_path / "data" / "busi", SUBSET)
    split_path = tmp_path / "run" / "split.json"
    sf = busi_split(tmp_path / "data", split_path, seed=0)
    assert split_path.is_file() and sf.path == split_path
    excluded = sf.excluded_names()
    assert {"benign (433)", "malignant (145)", "benign (42)", "benign (131)", "malignant (51)"} == set(excluded)
    reason = next(e["reason"] for e in sf.excluded if e["name"] == "benign (433)")
    assert "malignant (145) (identical pixels)" in reason
    assert ["benign (433)", "malignant (145)"] in sf.groups
    # the malignant (6)-(9) frames of one lesion are grouped, and no group crosses splits
    where = sf.assignment()
    for group in sf.groups:
        assert len({where[n] for n in group if n in where}) <= 1
    assert any({"malignant (6)", "malignant (7)", "malignant (8)", "malignant (9)"} <= set(g) for g in sf.groups)
    assert len(where) + len(excluded) == len(SUBSET)
    # deterministic for a seed, and reused from the file
    assert busi_split(tmp_path / "data", None, seed=0).assignment() == where
    again = busi_split(tmp_path / "data", split_path, seed=5)  # the stored seed wins
    assert again.seed == 0 and again.assignment() == where
    # the data change: the stored split is refused
    (root / "normal" / "normal (10).png").symlink_to(data_root / "busi" / "normal" / "normal (10).png")
    (root / "normal" / "normal (10)_mask.png").symlink_to(data_root / "busi" / "normal" / "normal (10)_mask.png")
    with pytest.raises(DataError, match=r"split\.json: the split was made from data with checksum .* the data changed"):
        busi_split(tmp_path / "data", split_path)


@pytest.mark.slow
def test_busi_split_full(data_root, tmp_path):
    path = tmp_path / "split.json"
    sf = busi_split(data_root, path, seed=0)
    assert sf.summary["near_duplicate_groups"] >= 140 and sf.summary["conflicts"] >= 8
    assert {"benign (433)", "malignant (145)"} <= set(sf.excluded_names())
    n = len(sf.train) + len(sf.val) + len(sf.test)
    assert n + len(sf.excluded) == 780
    for split, ratio in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        assert abs(len(getattr(sf, split)) / n - ratio) < 0.02
    label = {name: name.split(" (")[0] for name in sf.assignment()}
    whole = Counter(label.values())
    for split in ("train", "val", "test"):
        c = Counter(label[x] for x in getattr(sf, split))
        for lab in whole:
            assert abs(c[lab] / len(getattr(sf, split)) - whole[lab] / n) < 0.03
    where = sf.assignment()
    for group in sf.groups:
        assert len({where[x] for x in group if x in where}) <= 1
    assert busi_split(data_root, None, seed=0).to_dict()["train"] == sf.train  # deterministic
    assert busi_split(data_root, path).train == sf.train  # reused, checksum verified


def test_busi_split_absolute_reproduces_the_shipped_split_and_the_default_spreads_groups(data_root):
    """The shipped busi-seg / busi-cls split (seed 0) was made by the rule then, which left val and test without a
    near-duplicate group; ``method="absolute"`` makes it again case for case. The default puts groups there too."""
    shipped = json.loads((Path(__file__).resolve().parents[2] / "src/breastdx/zoo/busi-seg/split.json").read_text())
    assert "method" not in shipped  # read as "absolute"
    old = busi_split(data_root, None, seed=0, method="absolute")
    assert [getattr(old, s) for s in ("train", "val", "test")] == [shipped[s] for s in ("train", "val", "test")]
    assert old.summary["images_in_groups_per_split"] == {"train": 317, "val": 0, "test": 0}
    new = busi_split(data_root, None, seed=0)
    assert new.method == "proportional" and new.to_dict()["method"] == "proportional"
    assert new.summary["images_in_groups_per_split"] == {"train": 217, "val": 36, "test": 64}
    assert new.summary["cases"] == {"train": 531, "val": 78, "test": 153, "excluded": 18}


def test_a_split_file_to_reuse_that_does_not_exist_is_refused_not_written(tmp_path):
    """--split-file of busi-seg/busi-cls is a file to reuse: a mistyped path got a new split written to it, in
    silence (even /nonexistent.json at the root)."""
    from breastdx.data.splits import busi_split

    typo = tmp_path / "typo" / "split.json"
    with pytest.raises(FileNotFoundError, match=r"typo/split.json: no such split file"):
        busi_split(tmp_path / "no-data-needed", typo, reuse_only=True)
    assert not typo.exists() and not typo.parent.exists()


def test_more_folds_than_groups_is_a_data_error_naming_the_option():
    """It escaped as a ValueError, which 'train' reported as an unexpected error, 'likely a bug'."""
    from breastdx.data.errors import DataError
    from breastdx.data.splits import grouped_stratified_folds

    with pytest.raises(DataError, match=r"needs 2 <= k <= the number of groups, patients or lesions \(3\); got "
                                        r"k = 5 \(--cv-folds\)"):
        grouped_stratified_folds(["a", "b", "a", "b"], [1, 2, 3, 3], 5, seed=0)


def _golden_input() -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(5)
    return [str(x) for x in rng.choice(["a", "b", "c"], size=97)], [int(x) for x in rng.integers(0, 40, size=97)]


def test_integer_group_ids_keep_their_split():
    """Golden values recorded before text ids were accepted: integer ids (the shipped splits') split as before."""
    labels, groups = _golden_input()
    parts = grouped_stratified_split(labels, groups, (0.6, 0.2, 0.2), seed=11, method="absolute")
    assert parts["val"] == [7, 12, 18, 26, 38, 40, 44, 46, 48, 52, 57, 59, 60, 65, 72, 73, 81, 87, 96]
    assert parts["test"] == [0, 3, 9, 11, 13, 21, 24, 28, 34, 39, 42, 43, 55, 56, 77, 80, 90, 92, 94]
    parts = grouped_stratified_split(labels, np.asarray(groups), (0.6, 0.2, 0.2), seed=11)  # NumPy ids alike
    assert parts["val"] == [4, 8, 10, 25, 27, 29, 30, 32, 36, 51, 61, 63, 68, 69, 71, 74, 78, 82, 83, 84, 88]
    assert parts["test"] == [1, 12, 16, 17, 19, 22, 31, 38, 40, 44, 46, 48, 59, 65, 70, 72, 76, 81, 85, 91]


def test_text_group_ids_are_grouped_as_given():
    """Patient ids as text (``"P-07"``) are split like the integers they stand for, when they sort alike; they used to
    fail on a bare ``int()``. Ids are never converted: ``"7"`` and ``"07"`` are two patients."""
    labels, groups = _golden_input()
    text = [f"P-{g:02d}" for g in groups]
    for method in SPLIT_METHODS:
        parts = grouped_stratified_split(labels, text, (0.6, 0.2, 0.2), seed=11, method=method)
        assert parts == grouped_stratified_split(labels, groups, (0.6, 0.2, 0.2), seed=11, method=method)
        _check_no_group_crosses(parts, text)
    assert grouped_stratified_split(labels, np.asarray(text), (0.6, 0.2, 0.2), seed=11, method=method) == parts
    parts = grouped_stratified_split(["a"] * 4, ["7", "07", "7", "07"], (0.5, 0.5, 0.0), seed=0)
    assert sorted(map(sorted, parts.values())) == [[], [0, 2], [1, 3]]
