"""Near-duplicate images: perceptual hashes, grouping, and a pixel-level "same image" test.

Ultrasound datasets hold several frames of one lesion (with and without calipers, slightly moved probe,
re-cropped screenshots). A split that puts two of them on both sides leaks. Detection has three steps:

1. :func:`perceptual_hash`: the 64-bit DCT perceptual hash (pHash) of ``imagehash`` on a 32 x 32 gray
   thumbnail. Its 64 bits are the low-frequency DCT coefficients compared with their median, so exactly
   32 bits are set and Hamming distances between hashes are even.
2. :func:`group_near_duplicates`: two images are linked when their Hamming distance is at most
   ``threshold`` and (when thumbnails are given) the Pearson correlation of their 32 x 32 thumbnails
   (:func:`thumbnail`) is at least ``min_correlation``; groups are the connected components (union-find).
3. :func:`aligned_correlation`: to tell "the same image filed twice" from "another frame of the same
   lesion", the two full-resolution images are aligned (offset by phase correlation, after shrinking the
   larger one when their sizes differ by more than 2 %) and correlated on their overlap.
   Re-cropped copies of one frame score >= 0.999 on BUSI; different frames of one lesion <= 0.98
   (speckle differs); :data:`SAME_IMAGE_CORRELATION` is 0.99.

Calibration on BUSI (780 images; all 303,810 pairs; montages of matched pairs were inspected by eye):

====================  =====  ========================================================================
Hamming distance      pairs  what the pairs are
====================  =====  ========================================================================
0                     44     the same frame (often re-cropped by a few pixels)
2 / 4 / 6 / 8         94 / 48 / 24 / 6  the same frame or another frame of the same lesion
10                    10     other frames of the same lesion (calipers added, probe moved)
12                    21     mixed: frames of one lesion, and different lesions (e.g. benign (127)
                             vs normal (28))
14 / 16               60 / 298  mostly different lesions that share the dark background and layout
====================  =====  ========================================================================

:data:`DEFAULT_HASH_THRESHOLD` = 10 is the largest distance at which every inspected pair was a frame of
the same lesion. Thumbnail correlation does not separate the pairs at distance 12 (true matches 0.63-0.95,
false ones 0.76-0.78) and all pairs at distance <= 10 correlate >= 0.76 (frames of one lesion with a
drawn box or calipers), so :data:`DEFAULT_MIN_CORRELATION` = 0.7 is only a guard against images that
share a layout but little else (on BUSI it removes no pair at distance <= 10). At these settings BUSI
has 149 groups of 2-7 images (335 images in groups) and 8 groups mixing classes, each holding one
frame filed under two labels (``benign (433)`` = ``malignant (145)`` pixel for pixel; the others are
re-cropped or rescaled copies). Pawłowska et al. (2023) report 235 duplicated images in BUSI.

References:
    Zauner, C. (2010). Implementation and benchmarking of perceptual image hash functions. Master's
    thesis, Upper Austria University of Applied Sciences. (pHash)
    Buchner, J. imagehash: a Python perceptual image hashing module. https://github.com/JohannesBuchner/imagehash
    Pawłowska, A., Karwat, P. & Żołek, N. (2023). Letter to the Editor. Re: "Dataset of breast
    ultrasound images". Data in Brief 48:109247. doi:10.1016/j.dib.2023.109247
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_HASH_THRESHOLD: int = 10
"""Largest pHash Hamming distance (of 64 bits) at which two images are near-duplicates; see the module
docstring for the calibration on BUSI."""

DEFAULT_MIN_CORRELATION: float = 0.7
"""Smallest Pearson correlation of 32 x 32 thumbnails for a hash match to count (a guard, see above)."""

FLAG_HASH_THRESHOLD: int = 8
"""Largest pHash Hamming distance at which ``predict`` calls an input a near-duplicate of a training image
(:class:`NearDuplicateIndex`). Stricter than :data:`DEFAULT_HASH_THRESHOLD` because a model folder keeps no thumbnail
for the correlation guard: at 10 bits, one image of the BrEaST sample (another hospital; ``case186``) fell within
reach of a BUSI training image whose thumbnail it correlates with at 0.62 only. Every BreastMNIST image is within 4
bits of its BUSI source's central square (780 of 780), and BUSI's copies of one frame within 8
(``benchmarks/zoo_near_duplicates.py`` prints the counts)."""

SAME_IMAGE_CORRELATION: float = 0.99
"""Smallest :func:`aligned_correlation` at which two files hold the same image (re-cropped or rescaled)."""

THUMBNAIL_SIZE = 32


def _gray_pil(image: np.ndarray):
    from PIL import Image

    a = np.asarray(image)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(f"expected an image of shape (H, W) or (H, W, 3); got shape {a.shape}.")
    if a.dtype != np.uint8:  # before the colour conversion, which would cast (0-1 floats all to 0)
        raise ValueError(f"expected a uint8 image (as read_image returns); got dtype {a.dtype}.")
    if a.ndim == 3:
        a = np.asarray(Image.fromarray(np.ascontiguousarray(a)).convert("L"))
    return Image.fromarray(np.ascontiguousarray(a))


def perceptual_hash(image: np.ndarray) -> int:
    """64-bit DCT perceptual hash (``imagehash.phash``, hash size 8 on a 32 x 32 thumbnail).

    Args:
        image: ``uint8`` image, shape ``(H, W)`` or ``(H, W, 3)`` (colour is turned to gray first).

    Returns:
        The hash as an int in [0, 2**64), bit 63 = first coefficient (row-major order).

    Raises:
        ValueError: If the image is not 2-D gray or RGB ``uint8``.
    """
    import imagehash

    h = imagehash.phash(_gray_pil(image), hash_size=8)
    bits = np.asarray(h.hash, dtype=bool).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def thumbnail(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """Zero-mean, unit-norm gray thumbnail (Lanczos resize), for correlating two images.

    Args:
        image: ``uint8`` image, shape ``(H, W)`` or ``(H, W, 3)``.
        size: Side of the square thumbnail.

    Returns:
        ``float32`` vector of length ``size * size``; the dot product of two is their Pearson correlation
        (all zeros for a constant image).
    """
    from PIL import Image

    t = np.asarray(_gray_pil(image).resize((size, size), Image.LANCZOS), dtype=np.float64).ravel()
    t = t - t.mean()
    norm = np.linalg.norm(t)
    return (t / norm if norm > 0 else t).astype(np.float32)


def model_view_hash(image: np.ndarray, source_crop: str | None = None) -> int:
    """:func:`perceptual_hash` of the part of an image a model reads: the whole image, or its central square when
    the model cuts one (``preprocessing.source_crop``: BreastMNIST's 28 x 28 images are the central squares of BUSI
    images, so a full BUSI file and its BreastMNIST version hash within 4 bits of each other; all 780 measured).

    Raises:
        ValueError: If the image is not 2-D gray or RGB ``uint8``, or ``source_crop`` is unknown.
    """
    from breastdx.data.transforms import cut_source

    return perceptual_hash(cut_source(image, source_crop))


@dataclass(frozen=True)
class NearDuplicateIndex:
    """The perceptual hashes of a model's training images, to tell whether an input is a near-duplicate of one:
    the same frame re-saved, re-cropped, rescaled or with calipers drawn, or another frame of the same lesion
    (a Hamming distance of at most ``threshold`` bits, :data:`FLAG_HASH_THRESHOLD`; see the module docstring for
    the calibration on BUSI).

    Attributes:
        hashes: uint64 ``(n,)`` :func:`model_view_hash` of each training image.
        threshold: Largest Hamming distance, 0-64, of a near-duplicate.
        source_crop: The crop the model applies before hashing (``"central_square"``) or None.
    """

    hashes: np.ndarray
    threshold: int = FLAG_HASH_THRESHOLD
    source_crop: str | None = None

    def distance(self, image: np.ndarray) -> int:
        """Smallest Hamming distance (0-64) between the image's :func:`model_view_hash` and a training image's; 64
        when the index is empty.

        Raises:
            ValueError: As :func:`model_view_hash`.
        """
        if len(self.hashes) == 0:
            return 64
        x = np.asarray(self.hashes, dtype=np.uint64) ^ np.uint64(model_view_hash(image, self.source_crop))
        return int(_bits_set(x).min())

    def is_near(self, image: np.ndarray) -> bool:
        """Whether :meth:`distance` is at most :attr:`threshold`."""
        return self.distance(image) <= self.threshold


def _bits_set(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each element of a uint64 array, int64 of the same shape (NumPy 1.x has no
    ``bitwise_count``)."""
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1, dtype=np.int64)


def hamming_distance(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return bin(int(a) ^ int(b)).count("1")


def hamming_matrix(hashes: Sequence[int]) -> np.ndarray:
    """All pairwise Hamming distances of 64-bit hashes.

    Args:
        hashes: n hashes in [0, 2**64).

    Returns:
        ``int64`` array of shape ``(n, n)``.
    """
    h = np.asarray([int(x) for x in hashes], dtype=np.uint64)
    n = len(h)
    out = np.zeros((n, n), dtype=np.int64)
    step = 512  # rows per block, to keep memory at n * 512 * 8 bytes
    for start in range(0, n, step):
        x = h[start:start + step, None] ^ h[None, :]
        out[start:start + step] = _bits_set(x)
    return out


def group_near_duplicates(hashes: Sequence[int], threshold: int = DEFAULT_HASH_THRESHOLD,
                          thumbnails: np.ndarray | Sequence[np.ndarray] | None = None,
                          min_correlation: float = DEFAULT_MIN_CORRELATION) -> list[int]:
    """Group images whose hashes are within ``threshold`` bits (and thumbnails correlate), by union-find.

    Args:
        hashes: One 64-bit perceptual hash per image (:func:`perceptual_hash`).
        threshold: Largest Hamming distance of a link, 0-64.
        thumbnails: Optional, one :func:`thumbnail` per image; a link then also needs their correlation
            to be at least ``min_correlation``.
        min_correlation: See ``thumbnails``.

    Returns:
        A group id per image: ints numbered from 0 in the order of each group's first image; images
        without a near-duplicate have a group of their own.

    Raises:
        ValueError: If ``threshold`` is outside 0-64, or ``thumbnails`` does not have one row per hash.
    """
    if not 0 <= int(threshold) <= 64:
        raise ValueError(f"threshold must be a Hamming distance in 0-64; got {threshold}.")
    n = len(hashes)
    if n == 0:
        return []
    d = hamming_matrix(hashes)
    linked = d <= threshold
    if thumbnails is not None:
        t = np.asarray(thumbnails, dtype=np.float64)
        if t.ndim != 2 or t.shape[0] != n:
            raise ValueError(f"thumbnails must have one row per hash ({n}); got shape {t.shape}.")
        linked &= (t @ t.T) >= min_correlation
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in zip(*np.nonzero(np.triu(linked, k=1))):
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    ids: dict[int, int] = {}
    out = []
    for i in range(n):
        out.append(ids.setdefault(find(i), len(ids)))
    return out


def aligned_correlation(a: np.ndarray, b: np.ndarray, min_overlap: float = 0.5) -> float:
    """Pearson correlation of two images after aligning them: about 1.0 for the same pixels, whatever the crop.

    The offset between the images is found by phase correlation
    (``skimage.registration.phase_cross_correlation``) and the correlation is taken on the overlapping
    pixels. When the sizes differ by more than 2 %, the larger image is also shrunk (Lanczos) to scales
    around the size ratio (a search in 1 % then 0.25 % steps, since a copy may be both rescaled and
    re-cropped), and the best correlation is returned. The search is skipped when the images already
    correlate at :data:`SAME_IMAGE_CORRELATION` or more without rescaling.

    Args:
        a: ``uint8`` image, shape ``(H, W)`` or ``(H, W, 3)``.
        b: ``uint8`` image, shape ``(H', W')`` or ``(H', W', 3)``.
        min_overlap: Smallest overlap, as a fraction of the smaller image's area, for an alignment to
            count.

    Returns:
        Correlation in [-1, 1]; 0.0 when no alignment overlaps enough or an image is constant.

    Raises:
        ValueError: If an image is not 2-D gray or RGB ``uint8``.
    """
    pa, pb = _gray_pil(a), _gray_pil(b)
    if pa.size[0] * pa.size[1] < pb.size[0] * pb.size[1]:
        pa, pb = pb, pa  # pa is the larger one, shrunk when the scales differ
    small = np.asarray(pb, dtype=np.float64)
    best = _shift_correlation(np.asarray(pa, dtype=np.float64), small, min_overlap)
    ratios = (pb.size[0] / pa.size[0], pb.size[1] / pa.size[1])
    if max(abs(r - 1.0) for r in ratios) <= 0.02 or best >= SAME_IMAGE_CORRELATION:
        return best

    def at(scale: float) -> float:
        from PIL import Image

        size = (max(1, round(pa.size[0] * scale)), max(1, round(pa.size[1] * scale)))
        return _shift_correlation(np.asarray(pa.resize(size, Image.LANCZOS), dtype=np.float64), small,
                                  min_overlap)

    coarse = np.arange(min(ratios) * 0.97, min(1.0, max(ratios) * 1.03) + 1e-9, 0.01)
    scores = {float(s): at(float(s)) for s in coarse}
    centre = max(scores, key=scores.__getitem__)
    for s in np.arange(centre - 0.0075, centre + 0.0076, 0.0025):
        if 0 < s <= 1.0:
            scores[float(s)] = at(float(s))
    return max(best, max(scores.values()))


def _shift_correlation(a: np.ndarray, b: np.ndarray, min_overlap: float) -> float:
    from skimage.registration import phase_cross_correlation

    h, w = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
    pa = np.zeros((h, w))
    pb = np.zeros((h, w))
    pa[:a.shape[0], :a.shape[1]] = a
    pb[:b.shape[0], :b.shape[1]] = b
    if a.std() == 0 or b.std() == 0:
        return 0.0
    shift, _, _ = phase_cross_correlation(pa, pb)
    # the shift is found modulo the padded size: a crop from beyond the middle of a comes back as dy - h (dx - w)
    ys = {int(round(shift[0])) % h, int(round(shift[0])) % h - h}
    xs = {int(round(shift[1])) % w, int(round(shift[1])) % w - w}
    found = [c for c in (_overlap_correlation(a, b, dy, dx, min_overlap) for dy in ys for dx in xs) if c is not None]
    return max(found, default=0.0)


def _overlap_correlation(a: np.ndarray, b: np.ndarray, dy: int, dx: int, min_overlap: float) -> float | None:
    """Pearson correlation of ``a`` and ``b`` moved by ``(dy, dx)`` on their overlap; None when it is too small."""
    # b moved by (dy, dx) lies on a: a[y, x] ~ b[y - dy, x - dx]
    y0, x0 = max(0, dy), max(0, dx)
    y1, x1 = min(a.shape[0], b.shape[0] + dy), min(a.shape[1], b.shape[1] + dx)
    area = max(0, y1 - y0) * max(0, x1 - x0)
    if area < min_overlap * min(a.size, b.size) or area == 0:
        return None
    oa = a[y0:y1, x0:x1]
    ob = b[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    oa = oa - oa.mean()
    ob = ob - ob.mean()
    denom = float(np.sqrt((oa * oa).sum() * (ob * ob).sum()))
    return float((oa * ob).sum() / denom) if denom > 0 else 0.0
