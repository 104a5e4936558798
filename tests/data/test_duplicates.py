"""Perceptual hashing, grouping by union-find, and the aligned "same image" test."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from breastdx.data.duplicates import (
    DEFAULT_HASH_THRESHOLD,
    SAME_IMAGE_CORRELATION,
    aligned_correlation,
    group_near_duplicates,
    hamming_distance,
    hamming_matrix,
    perceptual_hash,
    thumbnail,
)
from breastdx.data.images import read_image


def _speckle(seed: int, h: int = 151, w: int = 203, speckle_seed: int | None = None) -> np.ndarray:
    """An ultrasound-like test image: a smooth structure plus seeded speckle (grains of a few pixels)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed if speckle_seed is None else speckle_seed)
    y, x = np.mgrid[0:h, 0:w]
    lesion = ((x - 100) / 40) ** 2 + ((y - 70) / 25) ** 2 < 1
    base = 90 + 60 * np.sin(x / 17.0 + seed) * np.cos(y / 23.0) - 70 * lesion
    speckle = gaussian_filter(rng.normal(0, 1, (h, w)), 1.5)
    return np.clip(base + 25 * speckle / speckle.std(), 0, 255).astype(np.uint8)


def test_hamming_golden():
    assert hamming_distance(0b1011, 0b0001) == 2
    assert hamming_distance(0, 2**64 - 1) == 64
    m = hamming_matrix([0, 0b111, 2**63])
    assert m.tolist() == [[0, 3, 1], [3, 0, 4], [1, 4, 0]]


def test_group_near_duplicates_union_find_golden():
    hashes = [0b0, 0b1, 0b1111_0000, 0b11, 2**40, 0b1111_0001]
    # links at threshold 1: 0-1, 1-3, 0-4, 2-5 (0-3 is 2 bits, joined through 1)
    assert group_near_duplicates(hashes, 1) == [0, 0, 1, 0, 0, 1]
    assert group_near_duplicates(hashes, 0) == [0, 1, 2, 3, 4, 5]
    assert group_near_duplicates([], 5) == []
    with pytest.raises(ValueError, match="0-64"):
        group_near_duplicates(hashes, 65)


def test_thumbnail_correlation_cuts_links():
    hashes = [0, 0, 0]
    t = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # item 2 does not correlate with 0 and 1
    assert group_near_duplicates(hashes, 2, thumbnails=t, min_correlation=0.5) == [0, 0, 1]
    with pytest.raises(ValueError, match="one row per hash"):
        group_near_duplicates(hashes, 2, thumbnails=t[:2])


def test_perceptual_hash_is_robust_to_small_changes_and_separates_images():
    a = _speckle(0)
    h = perceptual_hash(a)
    assert 0 <= h < 2**64 and bin(h).count("1") == 32  # median split: exactly half the bits set
    assert perceptual_hash(a) == h  # deterministic
    assert perceptual_hash(np.repeat(a[..., None], 3, axis=-1)) == h  # RGB with equal channels
    noisy = np.clip(a.astype(int) + np.random.default_rng(5).integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    assert hamming_distance(perceptual_hash(noisy), h) <= DEFAULT_HASH_THRESHOLD
    other = np.ascontiguousarray(_speckle(3)[::-1, ::-1])
    assert hamming_distance(perceptual_hash(other), h) > DEFAULT_HASH_THRESHOLD
    with pytest.raises(ValueError, match="uint8"):
        perceptual_hash(a.astype(np.float32))


def test_thumbnail_is_unit_norm():
    t = thumbnail(_speckle(1))
    assert t.shape == (32 * 32,) and t.dtype == np.float32
    assert float(np.linalg.norm(t)) == pytest.approx(1.0, abs=1e-5) and abs(float(t.mean())) < 1e-5
    assert not thumbnail(np.full((9, 11), 7, np.uint8)).any()


def test_aligned_correlation_sees_through_crops_and_rescaling():
    a = _speckle(2, 181, 241)
    crop = a[3:170, 9:236]  # re-cropped copy
    assert aligned_correlation(a, crop) >= SAME_IMAGE_CORRELATION
    small = np.asarray(Image.fromarray(a[2:, 4:]).resize((190, 143), Image.LANCZOS))  # cropped, shrunk 0.8x
    assert aligned_correlation(small, a) >= SAME_IMAGE_CORRELATION
    # another "frame": same structure, fresh speckle
    frame = _speckle(2, 181, 241, speckle_seed=99)
    assert aligned_correlation(a, frame) < SAME_IMAGE_CORRELATION
    assert aligned_correlation(a, np.full_like(a, 3)) == 0.0


def test_real_known_duplicates(data_root):
    busi = data_root / "busi"
    b433 = read_image(busi / "benign" / "benign (433).png").array
    m145 = read_image(busi / "malignant" / "malignant (145).png").array
    np.testing.assert_array_equal(b433, m145)  # the same image filed as benign and as malignant
    assert perceptual_hash(b433) == perceptual_hash(m145)
    # a re-cropped copy under two labels, and an unrelated image
    b42 = read_image(busi / "benign" / "benign (42).png").array
    m51 = read_image(busi / "malignant" / "malignant (51).png").array
    assert b42.shape != m51.shape
    assert hamming_distance(perceptual_hash(b42), perceptual_hash(m51)) <= DEFAULT_HASH_THRESHOLD
    assert aligned_correlation(b42, m51) >= SAME_IMAGE_CORRELATION
    b1 = read_image(busi / "benign" / "benign (1).png").array
    assert hamming_distance(perceptual_hash(b1), perceptual_hash(m51)) > DEFAULT_HASH_THRESHOLD
