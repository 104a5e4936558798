"""Instance segmentation scores of nuclei: pixel Dice, aggregated Jaccard index (AJI) and panoptic quality (PQ).

* **Dice** of the foregrounds (any nucleus against any nucleus), ignoring instances.
* **AJI** (Kumar et al. 2017): each reference nucleus ``G_i`` is paired with the predicted nucleus ``S_j`` of largest
  IoU with it (a predicted nucleus may be paired with several reference nuclei, as in the original definition);
  ``AJI = sum |G_i ∩ S_j| / (sum |G_i ∪ S_j| + sum of the areas of predicted nuclei paired with none)``. A reference
  nucleus that no prediction touches adds its area to the denominator.
* **PQ** (Kirillov et al. 2019): a predicted and a reference nucleus match when their IoU is above 0.5 (such a
  match is unique); ``PQ = sum IoU(matches) / (TP + FP / 2 + FN / 2)`` = SQ (mean IoU of matches) x DQ (F1 of
  detection).

References:
    Kumar, N. et al. (2017). A dataset and a technique for generalized nuclear segmentation for computational
    pathology. IEEE Trans Med Imaging 36(7):1550-1560. doi:10.1109/TMI.2017.2677499
    Kirillov, A. et al. (2019). Panoptic segmentation. CVPR, 9404-9413. doi:10.1109/CVPR.2019.00963
"""

from __future__ import annotations

import numpy as np

PQ_IOU = 0.5
"""Matching rule of PQ: IoU strictly above this."""


def _renumber(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Flat labels renumbered 0 (background) and 1..K, and K + 1."""
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.ravel()
    zero = int(np.searchsorted(ids, 0))  # 0 is not the first id when a nucleus has a negative label
    if zero < len(ids) and ids[zero] == 0:
        return np.where(inverse == zero, 0, inverse + (inverse < zero)), len(ids)
    return inverse + 1, len(ids) + 1


def contingency(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlap counts of two instance masks, the table AJI and PQ are computed from.

    Args:
        pred: Predicted instance labels, int ``(H, W)``, 0 background (any label values).
        target: Reference instance labels, same shape.

    Returns:
        Pixel counts int64 ``(G + 1, P + 1)`` (row / column 0: background; instances renumbered 1..G and 1..P in
        the order of their labels), and the areas in pixels of the G reference and the P predicted instances.

    Raises:
        ValueError: If the shapes differ.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"Instance masks must have the same shape, got prediction {pred.shape} and reference "
                         f"{target.shape}.")
    p, n_p = _renumber(pred)
    g, n_g = _renumber(target)
    table = np.bincount(g * n_p + p, minlength=n_g * n_p).reshape(n_g, n_p)
    return table, table[1:].sum(1), table[:, 1:].sum(0)


def aji(pred: np.ndarray, target: np.ndarray) -> float:
    """Aggregated Jaccard index of two instance masks (int ``(H, W)``, 0 background); 1.0 when both are empty."""
    table, area_g, area_p = contingency(pred, target)
    inter = table[1:, 1:].astype(np.float64)
    if inter.size == 0:
        return 1.0 if area_g.sum() + area_p.sum() == 0 else 0.0
    union = area_g[:, None] + area_p[None, :] - inter
    iou = inter / np.maximum(union, 1)
    best = iou.argmax(1)
    rows = np.arange(len(best))
    touched = inter[rows, best] > 0
    c = inter[rows, best][touched].sum()
    u = union[rows, best][touched].sum() + area_g[~touched].sum()
    used = np.zeros(len(area_p), bool)
    used[best[touched]] = True
    u += area_p[~used].sum()
    return float(c / u) if u > 0 else 1.0


def panoptic_quality(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """PQ, SQ, DQ and the TP / FP / FN counts of two instance masks, matching at IoU > :data:`PQ_IOU`.

    Both empty: PQ = SQ = DQ = 1.0.
    """
    table, area_g, area_p = contingency(pred, target)
    inter = table[1:, 1:].astype(np.float64)
    union = area_g[:, None] + area_p[None, :] - inter
    iou = inter / np.maximum(union, 1)
    tp_iou = iou[iou > PQ_IOU]
    tp = len(tp_iou)
    fp, fn = len(area_p) - tp, len(area_g) - tp
    if tp + fp + fn == 0:
        return {"pq": 1.0, "sq": 1.0, "dq": 1.0, "tp": 0, "fp": 0, "fn": 0}
    sq = float(tp_iou.mean()) if tp else 0.0
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    return {"pq": sq * dq, "sq": sq, "dq": float(dq), "tp": tp, "fp": fp, "fn": fn}


def instance_scores(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Dice of the foregrounds, AJI, PQ (with SQ, DQ, TP, FP, FN) and the instance counts of one tile.

    As in :func:`contingency`, 0 is the background and every other label value a nucleus (a negative one too), so
    ``n_pred = tp + fp`` and ``n_ref = tp + fn``.
    """
    from breastdx.evaluation.segmentation import dice_iou

    pred, target = np.asarray(pred), np.asarray(target)
    dice, _ = dice_iou(pred != 0, target != 0)
    pq = panoptic_quality(pred, target)
    return {"dice": float(dice), "aji": aji(pred, target), **pq,
            "n_pred": int(len(np.unique(pred[pred != 0]))), "n_ref": int(len(np.unique(target[target != 0])))}
