"""Fixtures for the data tests: the real data root (from BREASTDX_DATA) and small BUSI-layout folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _real_root() -> Path | None:
    env = os.environ.get("BREASTDX_DATA")
    return Path(env) if env else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root; the test is skipped when BREASTDX_DATA is not set or lacks BUSI."""
    root = _real_root()
    if root is None:
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    if not (root / "busi").is_dir():
        pytest.skip(f"real data not available: {root / 'busi'} does not exist")
    return root


@pytest.fixture(scope="session")
def monuseg_root() -> Path:
    """``monuseg_breast/`` below the real data root; the test is skipped without it."""
    root = _real_root()
    if root is None:
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    if not (root / "monuseg_breast").is_dir():
        pytest.skip(f"real data not available: {root / 'monuseg_breast'} does not exist")
    return root / "monuseg_breast"


@pytest.fixture(scope="session")
def busi_sample(data_root) -> Path:
    """``busi_original_sample/``: 17 files (6 images, 11 masks) exactly as the public BUSI release ships them."""
    p = data_root / "busi_original_sample"
    if not p.is_dir():
        pytest.skip(f"real data not available: {p} does not exist")
    return p


def _link_busi_subset(data_root: Path, dest: Path, names: list[str]) -> Path:
    """A BUSI folder in ``dest`` holding symbolic links to the named real cases (images and masks)."""
    src = data_root / "busi"
    for name in names:
        label = name.split(" (")[0]
        (dest / label).mkdir(parents=True, exist_ok=True)
        for f in sorted(src.glob(f"{label}/{name}*.png")):
            stem = f.stem
            if stem == name or stem.startswith(name + "_mask"):
                (dest / label / f.name).symlink_to(f)
    for label in ("normal", "benign", "malignant"):
        (dest / label).mkdir(parents=True, exist_ok=True)
    return dest


def _write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Save ``array`` with Pillow (the mode inferred from the dtype and shape unless given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    if mode is not None and im.mode != mode:
        im = im.convert(mode)
    im.save(path)
    return path


def _make_synthetic_busi(root: Path, spec: dict[str, list[int]], size: tuple[int, int] = (21, 27),
                        extra_masks: dict[str, int] | None = None, seed: int = 0) -> Path:
    """A tiny BUSI-layout folder: ``spec`` maps class to case numbers; each image gets a mask.

    Images are random gray ``size`` (H, W); masks hold a rectangle (empty for normal).
    ``extra_masks`` maps a case name to how many further masks (``_mask_1``...) it has.
    """
    rng = np.random.default_rng(seed)
    extra_masks = extra_masks or {}
    for label in ("normal", "benign", "malignant"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for label, numbers in spec.items():
        for n in numbers:
            name = f"{label} ({n})"
            _write_png(root / label / f"{name}.png", rng.integers(0, 256, size, dtype=np.uint8))
            for k in range(1 + extra_masks.get(name, 0)):
                m = np.zeros(size, dtype=np.uint8)
                if label != "normal":
                    m[2 + k:5 + k, 3 + 2 * k:9 + 2 * k] = 255
                suffix = "_mask" if k == 0 else f"_mask_{k}"
                _write_png(root / label / f"{name}{suffix}.png", m)
    return root


# The helpers are handed out as fixtures, so that test modules need not import this file.


@pytest.fixture
def write_png():
    """``write_png(path, array, mode=None) -> path``: save an array with Pillow."""
    return _write_png


@pytest.fixture
def make_synthetic_busi():
    """``make_synthetic_busi(root, {class: [n, ...]}, size=(21, 27), extra_masks=None, seed=0) -> root``."""
    return _make_synthetic_busi


@pytest.fixture
def link_busi_subset():
    """``link_busi_subset(data_root, dest, names) -> dest``: symbolic links to real BUSI cases."""
    return _link_busi_subset
