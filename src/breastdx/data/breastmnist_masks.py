"""BUSI's lesion masks for BreastMNIST images: each 28 x 28 image matched to the BUSI image it was made from.

MedMNIST v2 made BreastMNIST from BUSI (Yang et al. 2023): each BUSI image cropped to its central square and
resized to 28 x 28. Resizing the central square of every BUSI image with PIL's bilinear filter (anti-aliased)
reproduces every one of the 780 BreastMNIST images: Pearson r of 0.9992 or more with its source, median 0.99999999,
while the second-best BUSI image scores a median 0.09 lower (checked on ``../shared/data``; the direct resize without
the crop reaches a median r of 0.95 only); 567 of the 780 are byte-identical. For 242 images another BUSI frame
comes within 0.01 of r (BUSI's near-duplicates), and twice the best source of one image is the exact source of
another (``benign (152)`` and ``benign (18)``, ``benign (233)`` and ``benign (299)``): MedMNIST made one image of each
BUSI image, so the matching is an assignment, each BUSI image the source of one image (:func:`match_busi`; all
splits together in :func:`match_splits`). So BUSI's lesion masks, cropped the same
way, are masks of the BreastMNIST images, and a multi-task network can learn them beside the class (``breastdx
train breastmnist --lesion-masks true``, which reads the masks of the training images only). :func:`leaking_test_images`
matches all three splits, to find the test images that have a frame of their lesion in training. A breastmnist model
reads any image the same way (``preprocessing.source_crop``, :func:`breastdx.data.classification.resize_for_network`).

Ties: ``benign (433)`` and ``malignant (145)`` are one image in BUSI (see :mod:`breastdx.data.busi`), so two
BreastMNIST images (training image 115, labelled malignant, and test image 76, normal or benign: one picture under
two labels) match both equally; each takes the BUSI case whose class agrees with its own label.

References:
    Yang, J. et al. (2023). MedMNIST v2. Scientific Data 10:41. doi:10.1038/s41597-022-01721-8
    Al-Dhabyani, W. et al. (2020). Dataset of breast ultrasound images. Data in Brief 28:104863.
    doi:10.1016/j.dib.2019.104863
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from breastdx.data.errors import DataError
from breastdx.data.transforms import central_square, resize_uint8

logger = logging.getLogger(__name__)

MIN_R = 0.99
"""Smallest Pearson r between a BreastMNIST image and the thumbnail of the BUSI image it is matched to."""

TIE_BONUS = 1e-5
"""Added to r where the BUSI class agrees with the BreastMNIST label: breaks the tie of BUSI's one image filed under
two classes, and nothing else (other pairs differ by more)."""


def thumbnail(image: np.ndarray, size: int = 28) -> np.ndarray:
    """MedMNIST's BreastMNIST image of a BUSI image: the central square, PIL bilinear resize to ``size``.

    Args:
        image: uint8 gray ``(H, W)``.
        size: Output side (28 for BreastMNIST).

    Returns:
        float32 ``(size, size)``, values 0-255.
    """
    return resize_uint8(central_square(image), size).astype(np.float32)


@dataclass(frozen=True)
class BusiMatch:
    """The BUSI source of one BreastMNIST image.

    Attributes:
        case: BUSI case name, e.g. ``"benign (12)"``.
        label: Its BUSI class (``normal``, ``benign``, ``malignant``).
        r: Pearson r between the BreastMNIST image and the case's thumbnail, in [-1, 1].
    """

    case: str
    label: str
    r: float


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1).astype(np.float64)
    x = x - x.mean(1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def match_busi(images: np.ndarray, malignant: np.ndarray, thumbnails: np.ndarray, cases: Sequence[object],
               ids: Sequence[str] | None = None) -> list[BusiMatch]:
    """Match each BreastMNIST image to the BUSI case whose :func:`thumbnail` it is, one case per image (the
    assignment with the largest sum of Pearson r, ``scipy.optimize.linear_sum_assignment``).

    Args:
        images: uint8 ``(N, 28, 28)`` BreastMNIST images.
        malignant: ``(N,)`` 1 where the image is labelled malignant (breastdx's encoding), else 0; breaks ties
            between identical BUSI images of different classes.
        thumbnails: float32 ``(M, 28, 28)``, the :func:`thumbnail` of each BUSI case.
        cases: The ``M`` :class:`breastdx.data.busi.BusiCase` (``name``, ``label``).
        ids: Names of the images for errors (default ``image <i>``).

    Returns:
        One :class:`BusiMatch` per image.

    Raises:
        DataError: If an image has no BUSI thumbnail with r >= :data:`MIN_R`, or none left for it (all such images
            are named).
    """
    from scipy.optimize import linear_sum_assignment

    r = _standardise(images) @ _standardise(thumbnails).T
    ids = list(ids) if ids is not None else [f"image {i}" for i in range(len(images))]
    problems = [f"{ids[i]}: no BUSI image matches it (best Pearson r {r[i].max():.3f}, expected >= {MIN_R})"
                for i in range(len(images)) if r[i].max() < MIN_R]
    if problems:
        raise DataError("BreastMNIST images without their BUSI source (is the data root's busi/ the public "
                        "release?):\n" + "\n".join(problems), problems=problems)
    case_malignant = np.array([c.label == "malignant" for c in cases])  # type: ignore[attr-defined]
    agree = case_malignant[None, :] == (np.asarray(malignant) != 0)[:, None]
    score = np.where(r >= MIN_R, r + TIE_BONUS * agree, -1.0)
    rows, cols = linear_sum_assignment(score, maximize=True)  # one BUSI image per BreastMNIST image
    out: list[BusiMatch] = [None] * len(images)  # type: ignore[list-item]
    for i, j in zip(rows, cols):
        if r[i, j] < MIN_R:  # more images than sources that fit them: each BUSI image was used once
            problems.append(f"{ids[i]}: its BUSI source is already the source of another image (best Pearson r "
                            f"{r[i].max():.5f})")
        out[i] = BusiMatch(cases[j].name, cases[j].label, float(r[i, j]))  # type: ignore[attr-defined]
    if problems:
        raise DataError("BreastMNIST images without a BUSI source of their own:\n" + "\n".join(problems),
                        problems=problems)
    return out


def match_splits(data: object, thumbnails: np.ndarray, cases: Sequence[object],
                 splits: Sequence[str] = ("train", "val", "test")) -> dict[str, list[BusiMatch]]:
    """:func:`match_busi` of the images of several splits of a BreastMNIST file together, so that no two images
    of any of them share a BUSI source.

    Args:
        data: A :class:`breastdx.data.breastmnist.BreastMNIST` (``split(name)`` gives ``images``, ``labels``, ``n``).
        thumbnails, cases: As :func:`match_busi`.
        splits: The splits to match.

    Returns:
        ``{split: [BusiMatch per image]}``.

    Raises:
        DataError: As :func:`match_busi`.
    """
    parts = [data.split(s) for s in splits]  # type: ignore[attr-defined]
    matches = match_busi(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                         thumbnails, cases, [f"{s}_{i}" for s, p in zip(splits, parts) for i in range(p.n)])
    out, start = {}, 0
    for s, p in zip(splits, parts):
        out[s] = matches[start:start + p.n]
        start += p.n
    return out


def _busi_index(data_root: str | Path, masks: bool = True) -> tuple[list, np.ndarray, dict[str, np.ndarray]]:
    """BUSI's cases, the :func:`thumbnail` of each and (with ``masks``; else no mask file is read) the central
    square of each one's lesion mask."""
    from breastdx.data.busi import find_busi_root, load_case, scan_busi
    from breastdx.data.images import read_image

    cases = scan_busi(find_busi_root(data_root))
    thumbs, lesion = [], {}
    for c in cases:
        if masks:
            image, mask = load_case(c, mode="gray")
            lesion[c.name] = central_square(mask)
        else:
            image = read_image(c.image, mode="gray").array
        thumbs.append(thumbnail(image))
    return cases, np.stack(thumbs), lesion


def busi_lesion_masks(images: np.ndarray, malignant: np.ndarray, data_root: str | Path,
                      ids: Sequence[str] | None = None) -> tuple[list[np.ndarray], list[BusiMatch]]:
    """BUSI's lesion mask of each BreastMNIST image, cropped as the image was (the central square).

    Args:
        images: uint8 ``(N, 28, 28)`` BreastMNIST images.
        malignant: ``(N,)`` labels, 1 = malignant.
        data_root: Data root holding ``busi/`` (:func:`breastdx.data.busi.find_busi_root`).
        ids: Names of the images for errors.

    Returns:
        ``(masks, matches)``: bool ``(S, S)`` masks at the source's resolution (S = the shorter side of the BUSI
        image; all False for normal images), and the :class:`BusiMatch` of each image.

    Raises:
        DataError: If BUSI is missing or an image has no source in it.
        breastdx.data.images.ImageReadError: If a BUSI file cannot be read (named).
    """
    cases, thumbs, lesion = _busi_index(data_root)
    matches = match_busi(np.asarray(images), np.asarray(malignant), thumbs, cases, ids)
    logger.info("matched %d BreastMNIST images to BUSI (smallest r %.4f)", len(matches), min(m.r for m in matches))
    return [lesion[m.case] for m in matches], matches


def leaking_test_images(data: object, data_root: str | Path, groups: Sequence[Sequence[str]]
                        ) -> tuple[np.ndarray, dict[str, int]]:
    """The test images of a BreastMNIST file that have a frame of the same lesion among its training and
    validation images.

    A test image leaks when its BUSI source, or another member of its source's near-duplicate group, is the source
    of a training or validation image.

    Args:
        data: A :class:`breastdx.data.breastmnist.BreastMNIST` (its ``split(name)`` gives ``images`` and ``labels``).
        data_root: Data root holding ``busi/``.
        groups: BUSI's near-duplicate groups, lists of case names (a BUSI split file's ``groups``,
            :mod:`breastdx.data.duplicates`).

    Returns:
        ``(leak, counts)``: bool ``(n_test,)``, and the counts ``test``, ``leaking``, ``leaking_malignant``,
        ``clean``, ``clean_malignant``, ``same_source_in_training`` (test images whose very BUSI image is in
        training or validation).

    Raises:
        DataError: If an image has no BUSI source.
    """
    cases, thumbs, _ = _busi_index(data_root, masks=False)
    sources = {s: [m.case for m in ms] for s, ms in match_splits(data, thumbs, cases).items()}
    group = {n: i for i, g in enumerate(groups) for n in g}
    seen = set(sources["train"]) | set(sources["val"])
    seen_groups = {group[n] for n in seen if n in group}
    leak = np.array([c in seen or group.get(c, -1) in seen_groups for c in sources["test"]], dtype=bool)
    y = np.asarray(data.split("test").labels)  # type: ignore[attr-defined]
    return leak, {"test": int(leak.size), "leaking": int(leak.sum()), "leaking_malignant": int(y[leak].sum()),
                  "clean": int((~leak).sum()), "clean_malignant": int(y[~leak].sum()),
                  "same_source_in_training": int(sum(c in seen for c in sources["test"]))}
