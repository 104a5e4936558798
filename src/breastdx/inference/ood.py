"""Out-of-distribution score in a classifier's feature space: distance to the k-th nearest training image.

Deep nearest neighbours (Sun, Ming, Zhu & Li 2022, "Out-of-distribution detection with deep nearest
neighbors", ICML, arXiv:2204.06507): the penultimate features of an image (the input of the classifier's
last linear layer, :mod:`breastdx.models.penultimate`) are L2-normalised, and the score is the cosine
distance ``1 - cos`` to its k-th nearest neighbour among the training images' normalised features. An image
far from every training image gets a large distance whatever the class probabilities say.

Calibration, stored in a model folder:

* the **bank**: the normalised features of the training images (at most :data:`MAX_BANK` of them, drawn
  with the seed; float16 in ``ood_features.safetensors``; the training images are the model's own, so nothing
  is seen that the weights have not already seen);
* ``k`` = ``min(50, max(1, n_bank // 10))`` (Sun et al. use k = 50 for 50,000 images, and a k that shrinks
  with a subsampled bank);
* the **threshold**: the :data:`THRESHOLD_QUANTILE` quantile of the same distance on the validation images,
  which the network never trained on (training images lie closer to the bank than any new image, so their
  distances would set the threshold too low). About 1% of new images like the validation ones are flagged.

``meta.json`` holds ``"ood": {"method": "knn", "reference", "k", "threshold", "quantile", "n_bank",
"n_calibration", "features", "bank_file"}``; training writes it, and :func:`breastdx.pipeline.calibrate.calibrate`
(``breastdx calibrate TASK --fit ood``) adds it to an older folder.

Measured for busi-cls (k = 50, threshold at validation's 99th percentile; ``benchmarks/ood_scope.py``): flagged
1 of the 152 BUSI test images, none of 15 BUS-UCLM and 56 BrEaST images (other scanners stay in scope), and 92%
of 100 BreakHis, 76% of 100 IDC and 50% of 100 PCam images (which the colour check flags anyway). For an H&E
model the score is weaker (idc: none of the ultrasound images; the colour and brightness check flags them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.models.saved import ordinal

OOD_FILE = "ood_features.safetensors"
"""The bank of normalised training features in a model folder (tensor ``features``, float16 ``(n, F)``)."""

MAX_BANK = 2000
"""Most training images kept in the bank (a seeded random subset beyond that)."""

THRESHOLD_QUANTILE = 0.99
"""Quantile of the validation distances above which an image is flagged."""


def normalise(features: Any) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32 ``(n, F)`` (a zero row stays zero)."""
    f = np.asarray(features, dtype=np.float32)
    if f.ndim != 2:
        raise ValueError(f"features must be (n, F), got shape {f.shape}.")
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.maximum(norm, 1e-12)


def choose_k(n_bank: int) -> int:
    """``min(50, max(1, n_bank // 10))``."""
    return int(min(50, max(1, n_bank // 10)))


def knn_distance(features: Any, bank: Any, k: int, chunk: int = 1024) -> np.ndarray:
    """Cosine distance of each (normalised) feature row to its ``k``-th nearest bank row.

    Args:
        features: Normalised features, float ``(n, F)``.
        bank: Normalised bank, float ``(m, F)``, ``m >= k``.
        k: Neighbour rank, 1-based.
        chunk: Rows per matrix product (memory ``chunk x m``).

    Returns:
        float64 ``(n,)`` in [0, 2]: 0 when ``k`` bank rows equal the feature.

    Raises:
        ValueError: If the widths differ or ``k`` is not in ``[1, m]``.
    """
    x, b = np.asarray(features, dtype=np.float32), np.asarray(bank, dtype=np.float32)
    if x.ndim != 2 or b.ndim != 2 or (len(x) and x.shape[1] != b.shape[1]):
        raise ValueError(f"features {x.shape} and bank {b.shape} must be (n, F) and (m, F) with the same F.")
    if not 1 <= k <= len(b):
        raise ValueError(f"k must be in [1, {len(b)}] (the bank's size), got {k}.")
    out = np.empty(len(x), dtype=np.float64)
    for s in range(0, len(x), chunk):
        sim = x[s:s + chunk] @ b.T
        out[s:s + chunk] = 1.0 - np.partition(sim, len(b) - k, axis=1)[:, len(b) - k]
    return np.clip(out, 0.0, 2.0)


def fit_ood(train_features: Any, val_features: Any, *, seed: int = 0,
            features: str = "") -> tuple[dict[str, Any], np.ndarray]:
    """The ``"ood"`` record of ``meta.json`` and the bank, from training and validation features.

    Args:
        train_features: Penultimate features of the training images, float ``(n, F)`` (not normalised).
        val_features: Those of the validation images, float ``(m, F)``, ``m >= 1``.
        seed: Seed of the subset drawn when there are more than :data:`MAX_BANK` training images.
        features: What the features are, for the record.

    Returns:
        ``(record, bank)``: bank float16 ``(min(n, MAX_BANK), F)``, normalised.

    Raises:
        ValueError: With no training or validation features, or widths that differ.
    """
    train, val = normalise(train_features), normalise(val_features)
    if not len(train) or not len(val):
        raise ValueError(f"The out-of-distribution record needs training and validation images "
                         f"(got {len(train)} and {len(val)}).")
    if len(train) > MAX_BANK:
        train = train[np.sort(np.random.default_rng(seed).choice(len(train), MAX_BANK, replace=False))]
    bank = train.astype(np.float16)
    k = choose_k(len(bank))
    dist = knn_distance(val, bank, k)
    threshold = float(np.quantile(dist, THRESHOLD_QUANTILE))
    record = {"method": "knn", "reference": "Sun et al. 2022, ICML, arXiv:2204.06507", "k": k,
              "threshold": round(threshold, 6), "quantile": THRESHOLD_QUANTILE, "n_bank": int(len(bank)),
              "n_calibration": int(len(val)), "features": features or "input of the last linear layer, L2-normalised",
              "bank_file": OOD_FILE}
    return record, bank


def save_bank(bank: np.ndarray, path: Path) -> Path:
    """Write the bank as safetensors (tensor ``features``)."""
    import torch
    from safetensors.torch import save_file

    save_file({"features": torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float16))}, str(path))
    os.chmod(path, 0o644)  # readable by everyone, like the weights
    return path


def load_bank(path: Path) -> np.ndarray:
    """Read a bank written by :func:`save_bank`, float32 ``(n, F)``.

    Raises:
        ValueError: If the file is unreadable or has no ``features`` tensor of two dimensions.
    """
    from safetensors.numpy import load_file

    try:
        bank = load_file(str(path))["features"]
    except Exception as e:  # SafetensorError, OSError, KeyError
        raise ValueError(f"{path}: cannot read the out-of-distribution bank ({type(e).__name__}: {e}).") from None
    if bank.ndim != 2 or not len(bank):
        raise ValueError(f"{path}: the out-of-distribution bank must be a non-empty (n, F) tensor, got {bank.shape}.")
    return bank.astype(np.float32)


class OodScorer:
    """Scores penultimate features against a model folder's bank.

    Args:
        record: ``meta["ood"]``.
        bank: The normalised bank, float ``(n, F)``.

    Raises:
        ValueError: If the record lacks ``k`` or ``threshold``, or ``k`` exceeds the bank.
    """

    def __init__(self, record: dict[str, Any], bank: np.ndarray) -> None:
        self.record, self.bank = record, bank
        try:
            self.k, self.threshold = int(record["k"]), float(record["threshold"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the out-of-distribution record needs 'k' (an integer) and 'threshold' (a number); "
                             f"{type(e).__name__}: {e}.") from None
        if not 1 <= self.k <= len(bank):
            raise ValueError(f"the out-of-distribution record's k ({self.k}) does not fit its bank of {len(bank)}.")

    @classmethod
    def from_dir(cls, model_dir: Path, record: dict[str, Any]) -> "OodScorer":
        """Load the bank named by ``record`` from ``model_dir``.

        Raises:
            ValueError: As :func:`load_bank`, or a bank file outside the folder.
        """
        name = record.get("bank_file", OOD_FILE)
        if Path(name).name != name:
            raise ValueError(f"{model_dir}: the out-of-distribution bank must be a file of the model folder, "
                             f"got {name!r}.")
        return cls(record, load_bank(Path(model_dir) / name))

    def distances(self, features: Any) -> np.ndarray:
        """k-th neighbour cosine distances of raw penultimate features ``(n, F)``, float64 ``(n,)``."""
        return knn_distance(normalise(features), self.bank, self.k)

    def note(self, distance: float) -> str:
        """The ``scope_note`` part for a distance over the threshold; empty when within it."""
        if distance <= self.threshold:
            return ""
        return (f"unlike the training images in the model's feature space (distance {distance:.3f} to the "
                f"{ordinal(self.k)} nearest training image; {self.record.get('quantile', THRESHOLD_QUANTILE):.0%} of "
                f"validation images are within {self.threshold:.3f})")
