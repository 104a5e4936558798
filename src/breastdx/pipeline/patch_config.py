"""Options shared by the histopathology patch specs (pcam, idc, breakhis): :class:`PatchConfig` and its check.

Their datasets are read by :mod:`breastdx.data.patch_datasets`; the pipeline is
:mod:`breastdx.pipeline.classification`'s, like every image classifier's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from breastdx.config import ConfigError, option
from breastdx.data.splits import DEFAULT_SPLIT_METHOD, SPLIT_METHODS
from breastdx.pipeline.classification import ImageClassificationConfig


def _split_ratios_sum_to_one(config: Any) -> None:
    if len(config.split_ratios) != 3 or abs(sum(config.split_ratios) - 1) > 1e-6:
        raise ConfigError(f"The 'split-ratios' option of this task must be three fractions summing to 1 (train,val,"
                          f"test). Got {','.join(map(str, config.split_ratios))!r} instead.")


@dataclass(frozen=True)
class PatchConfig(ImageClassificationConfig):
    """Options of the histopathology patch specs (pcam, idc, breakhis): every option of
    :class:`ImageClassificationConfig`, and:

    Attributes:
        hed_sigma: Half-range of the HED stain factors (0 with ``hed_bias`` 0: no stain jitter).
        hed_bias: Half-range of the HED optical-density shifts.
        stain_normalisation: ``none`` or ``macenko`` (every patch, in training and prediction, normalised to one
            reference patch; the model folder keeps its stain matrix and maximal concentrations in ``meta.json``).
        stain_target: Image file of the Macenko reference; empty: the first training patch that is half tissue.
        split_file: A split file to reuse (PCam: empty for the official split).
        split_seed: Seed of a new patient-level split.
        split_ratios: Fractions of train, val and test of a new patient-level split.
        split_method: How a new split places the patients: ``proportional`` (each split gets patients of every size
            in proportion) or ``absolute`` (the rule before 2026-12-06, which puts the patients with the most patches
            into training; it reproduces the splits made then); see :data:`breastdx.data.splits.SPLIT_METHODS`.
        cv_folds: Patient-grouped k-fold cross-validation with this many folds instead of one split (0: off); see
            :mod:`breastdx.pipeline.crossval`. Validation takes ``split_ratios``' share among train and val.
        cv_workers: Folds of ``--cv-folds`` trained at once, each in its own process with ``--threads`` threads and
            its log in ``folds/f<k>/fold.log`` (:mod:`breastdx.pipeline.fold_runner`); the runs and out-of-fold
            predictions are those of one fold after the other.
    """

    target_sensitivity: float = option(0.0, ge=0, le=1)
    hed_sigma: float = option(0.1, ge=0, lt=1)
    hed_bias: float = option(0.1, ge=0)
    stain_normalisation: str = option("none", choices=("none", "macenko"))
    stain_target: str = ""
    split_file: str = ""
    split_seed: int = option(0, ge=0, le=2**32 - 1)  # NumPy seeds are 32-bit
    split_ratios: tuple[float, ...] = option((0.7, 0.1, 0.2), ge=0, each=True)
    split_method: str = option(DEFAULT_SPLIT_METHOD, choices=SPLIT_METHODS)
    cv_folds: int = option(0, ge=0)
    cv_workers: int = option(1, ge=1)


PATCH_CHECK = _split_ratios_sum_to_one
"""The patch specs' ``check`` hook: the split ratios sum to one."""
