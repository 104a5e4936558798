"""Per-image segmentation scores (Dice, IoU, HD95) and their summary with bootstrap 95% CIs.

Scores are computed on binary masks at the original image size. Conventions for empty masks (no lesion
pixel), applied everywhere in breastdx:

* **Dice and IoU**: 1.0 when both masks are empty; 0.0 when exactly one is empty.
* **HD95**: 0.0 when both masks are empty; when exactly one is empty it is *undefined*, and breastdx
  scores it as the length of the image diagonal (the largest distance possible inside the image), in
  pixels, or in mm when the pixel spacing is known. This penalises a missed lesion (or a lesion found in
  an image without one) rather than dropping the image, so the mean stays finite and comparable; the
  share of missed lesions is reported beside it.

HD95 is the 95th percentile Hausdorff distance of MONAI: the larger of the two directed 95th percentiles
of the distances from each boundary pixel of one mask to the nearest boundary pixel of the other
(boundary = mask minus its erosion by the 4-connected cross).

Aggregates (:func:`summarize_segmentation`) are means over images with a percentile-bootstrap 95% CI:
``dice``, ``iou`` and ``hd95`` over images with a lesion (BUSI benign + malignant), the same per class
(``dice_benign``, ...), ``missed_share`` (lesion images with an empty prediction) and, for images without
a lesion (BUSI normal), ``normal_fp_share``: the share of images with any false-positive area.

References:
    Dice, L. R. (1945). Ecology 26(3):297-302. doi:10.2307/1932409
    Huttenlocher, Klanderman & Rucklidge (1993). Comparing images using the Hausdorff distance. IEEE TPAMI
    15(9):850-863. doi:10.1109/34.232073
    Maier-Hein, L. et al. (2024). Metrics reloaded. Nature Methods 21:195-212. doi:10.1038/s41592-023-02151-z
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from breastdx.evaluation.ci import mean_ci, proportion_ci

SEGMENTATION_METRICS = ("dice", "iou", "hd95")
"""Per-image scores, in report order."""

SCORE_TERMS = ("Dice, IoU and HD95 (pixels, at the original image size) are means over the images with a lesion; "
               "missed_share: lesion images given an empty mask (their HD95 counts as the image diagonal); "
               "normal_fp_share: normal images given any lesion pixel (the two shares' intervals: the bootstrap's, or the "
               "Wilson score interval when none or all of the images count).")
"""What the names of a lesion-segmentation summary mean, as the command line and the model card say it."""


def _check_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred).astype(bool)
    t = np.asarray(target).astype(bool)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"Masks must be 2D and of the same shape, got prediction {p.shape} and reference {t.shape}.")
    return p, t


def _overlap(pred: Any, target: Any) -> tuple[Any, Any, Any]:
    """Per case: intersection and summed areas of two batches of binary masks, and the torch module (None for
    NumPy input, whose counts are int64)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(pred, torch.Tensor):
        p, t = pred.bool(), torch.as_tensor(target, device=pred.device).bool()
    else:
        torch = None
        p, t = np.asarray(pred).astype(bool), np.asarray(target).astype(bool)
    if tuple(p.shape) != tuple(t.shape) or p.ndim < 2:
        raise ValueError(f"Masks must be batches (B, ...) of the same shape, got prediction {tuple(p.shape)} and "
                         f"reference {tuple(t.shape)}.")
    p, t = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
    inter, total = (p & t).sum(1), p.sum(1) + t.sum(1)
    return (inter.float(), total.float(), torch) if torch is not None else (inter, total, None)


def dice_per_case(pred: Any, target: Any) -> Any:
    """Dice similarity coefficient of binary masks, one value per case: ``2 |P & T| / (|P| + |T|)``.

    The one Dice of breastdx: training's validation Dice (torch, at network size) and the reports' Dice
    (NumPy, at the original size, :func:`dice_iou`) both come from here.

    Args:
        pred: Predicted masks, bool or {0, 1}: a ``torch.Tensor`` or a NumPy array of shape ``(B, ...)``
            (``(B, H, W)`` or ``(B, 1, H, W)``).
        target: Reference masks, same shape and values (a tensor is moved to ``pred``'s device).

    Returns:
        Shape ``(B,)`` in [0, 1]: float32 tensor on ``pred``'s device for a tensor ``pred``, else float64
        array. A case where both masks are empty scores 1.0; one where exactly one is empty scores 0.0.

    Raises:
        ValueError: If the shapes differ or have no batch axis beside the mask (fewer than 2 dimensions).

    References:
        Dice, L. R. (1945). Ecology 26(3):297-302. doi:10.2307/1932409
    """
    inter, total, torch = _overlap(pred, target)
    if torch is not None:
        return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)


def dice_iou(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Dice similarity coefficient and intersection over union of two binary masks.

    Args:
        pred: Predicted mask, bool or {0, 1}, shape ``(H, W)``.
        target: Reference mask, same shape.

    Returns:
        ``(dice, iou)`` in [0, 1]; ``(1.0, 1.0)`` when both masks are empty.

    Raises:
        ValueError: If the shapes differ or are not 2D.

    References:
        Dice, L. R. (1945). Ecology 26(3):297-302. doi:10.2307/1932409
        Jaccard, P. (1912). New Phytologist 11(2):37-50. doi:10.1111/j.1469-8137.1912.tb05611.x
    """
    p, t = _check_pair(pred, target)
    inter, total, _ = _overlap(p[None], t[None])
    dice = float(dice_per_case(p[None], t[None])[0])
    union = int(total[0]) - int(inter[0])
    return dice, (int(inter[0]) / union if union else 1.0)


def _edges(mask: np.ndarray) -> np.ndarray:
    return mask ^ ndimage.binary_erosion(mask)


def hd95(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None,
         percentile: float = 95.0) -> float:
    """95th percentile (symmetric) Hausdorff distance between the boundaries of two binary masks.

    Args:
        pred: Predicted mask, bool or {0, 1}, shape ``(H, W)``.
        target: Reference mask, same shape.
        spacing: Pixel spacing ``(row, col)`` in mm, or None for pixels.
        percentile: Percentile of the directed distances (95 gives HD95, 100 the Hausdorff distance).

    Returns:
        Distance in pixels (or mm with ``spacing``). 0.0 when both masks are empty; the image diagonal
        when exactly one is empty (see the module notes).

    Raises:
        ValueError: If the shapes differ or are not 2D, or ``spacing`` is not two positive numbers.

    References:
        Huttenlocher, Klanderman & Rucklidge (1993). IEEE TPAMI 15(9):850-863. doi:10.1109/34.232073
    """
    p, t = _check_pair(pred, target)
    sampling = (1.0, 1.0) if spacing is None else tuple(float(s) for s in spacing)
    if len(sampling) != 2 or min(sampling) <= 0:
        raise ValueError(f"spacing must be two positive numbers (row, col) in mm, got {spacing!r}.")
    p_any, t_any = p.any(), t.any()
    if not p_any and not t_any:
        return 0.0
    if p_any != t_any:
        return float(np.hypot(p.shape[0] * sampling[0], p.shape[1] * sampling[1]))
    # Crop to the union's bounding box with a margin: distances are unchanged, the transform is cheaper.
    rows, cols = np.nonzero(p | t)
    r0, r1 = max(rows.min() - 1, 0), min(rows.max() + 2, p.shape[0])
    c0, c1 = max(cols.min() - 1, 0), min(cols.max() + 2, p.shape[1])
    ep, et = _edges(p)[r0:r1, c0:c1], _edges(t)[r0:r1, c0:c1]
    d_pt = ndimage.distance_transform_edt(~et, sampling=sampling)[ep]
    d_tp = ndimage.distance_transform_edt(~ep, sampling=sampling)[et]
    return float(max(np.percentile(d_pt, percentile), np.percentile(d_tp, percentile)))


def case_scores(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None) -> dict[str, Any]:
    """Every per-image score of one predicted mask against its reference.

    Args:
        pred: Predicted mask, bool ``(H, W)`` at the original image size.
        target: Reference mask, same shape.
        spacing: Pixel spacing ``(row, col)`` in mm, or None.

    Returns:
        ``dice``, ``iou``, ``hd95`` (pixels), ``hd95_mm`` (None without spacing), ``pred_area_px``,
        ``target_area_px``, ``fp_area_px`` (predicted pixels outside the reference), ``has_lesion``,
        ``missed`` (a lesion and an empty prediction) and ``false_positive`` (no lesion but a non-empty
        prediction).

    Raises:
        ValueError: If the shapes differ or are not 2D.
    """
    p, t = _check_pair(pred, target)
    dice, iou = dice_iou(p, t)
    pred_area, target_area = int(p.sum()), int(t.sum())
    return {
        "dice": dice,
        "iou": iou,
        "hd95": hd95(p, t),
        "hd95_mm": hd95(p, t, spacing) if spacing is not None else None,
        "pred_area_px": pred_area,
        "target_area_px": target_area,
        "fp_area_px": int(np.count_nonzero(p & ~t)),
        "has_lesion": target_area > 0,
        "missed": target_area > 0 and pred_area == 0,
        "false_positive": target_area == 0 and pred_area > 0,
    }


def summarize_segmentation(scores: Sequence[dict[str, Any]], labels: Sequence[str], *,
                           lesion_classes: Sequence[str] = ("benign", "malignant"),
                           normal_class: str = "normal", n_boot: int = 2000,
                           seed: int = 0) -> dict[str, dict[str, Any]]:
    """Aggregate per-image scores into means with percentile-bootstrap 95% CIs.

    Args:
        scores: Output of :func:`case_scores`, one per image.
        labels: Class of each image (``"normal"``, ``"benign"``, ``"malignant"``).
        lesion_classes: Classes whose images hold a lesion; ``dice``, ``iou``, ``hd95`` pool them.
        normal_class: Class of images without a lesion, scored by ``normal_fp_share``.
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``{name: {"value": float, "ci95": [low, high], "n": int}}`` with ``dice``, ``iou``, ``hd95``,
        ``hd95_mm`` (only when every lesion image has a spacing), ``missed_share``, then ``dice_<class>``,
        ``iou_<class>``, ``hd95_<class>`` per lesion class present, then ``normal_fp_share`` when normal
        images are present.

    Raises:
        ValueError: If ``scores`` and ``labels`` differ in length.
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} score records but {len(labels)} labels.")
    labels = [str(x) for x in labels]
    lesion = [s for s, lab in zip(scores, labels) if lab in lesion_classes]
    out: dict[str, dict[str, Any]] = {}
    for name in SEGMENTATION_METRICS:
        out[name] = mean_ci([s[name] for s in lesion], n_boot, seed)
    if lesion and all(s.get("hd95_mm") is not None for s in lesion):
        out["hd95_mm"] = mean_ci([s["hd95_mm"] for s in lesion], n_boot, seed)
    out["missed_share"] = proportion_ci([float(s["missed"]) for s in lesion], n_boot, seed)
    for cls in lesion_classes:
        group = [s for s, lab in zip(scores, labels) if lab == cls]
        if not group:
            continue
        for name in SEGMENTATION_METRICS:
            out[f"{name}_{cls}"] = mean_ci([s[name] for s in group], n_boot, seed)
    normal = [s for s, lab in zip(scores, labels) if lab == normal_class]
    if normal:
        out["normal_fp_share"] = proportion_ci([float(s["false_positive"]) for s in normal], n_boot, seed)
    return out


PER_IMAGE_FIELDS = ("case", "label", "dice", "iou", "hd95", "target_area_px", "pred_area_px", "fp_area_px", "missed",
                    "false_positive", "n_components", "max_prob")
"""Columns of a per-image CSV (``test_per_image.csv``, ``val_per_image.csv``), plus ``p_normal`` when present."""


def write_per_image_csv(scores: Sequence[dict[str, Any]], path: Any) -> None:
    """One row per image of :func:`case_scores` records (with ``case``, ``label``, ``n_components`` and ``max_prob``
    added by the caller): floats to 4 decimals, booleans as ``True`` / ``False``."""
    import csv

    fields = list(PER_IMAGE_FIELDS) + (["p_normal"] if any("p_normal" in s for s in scores) else [])
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for s in scores:
            w.writerow({k: (f"{s[k]:.4f}" if isinstance(s[k], float) else s[k]) for k in fields})
