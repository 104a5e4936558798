"""Is an input within what an image model was trained on? Checks of modality and size, said plainly.

A classifier answers every image with probabilities, also one it has never seen the like of (busi-cls answered a
28 x 28 BreastMNIST thumbnail with P(malignant) 0.977). Before its answer is read, each input is checked:

* **modality**: a grey-ultrasound model (``preprocessing.mode == "gray"``) flags a colour image, an H&E model
  (``"rgb"``) a grey one. Colour is the image's mean chroma as stored (:attr:`breastdx.data.images.ImageRecord.
  colourfulness`): measured here, BUSI images have at most 0.006, BUS-UCLM ultrasound (coloured markers) 0.03-0.044,
  the BrEaST sample 0, while H&E patches and images (IDC, BreakHis, MoNuSeg) have a median of 0.17-0.23 and 88%
  of BreakHis images are over 0.05; so a grey model flags a mean chroma over :data:`MAX_CHROMA_GRAY` and a colour
  model one under :data:`MIN_CHROMA_RGB`, or a dark image with little colour (mean chroma under
  :data:`MAX_CHROMA_GRAY` and brightness under :data:`MAX_BRIGHTNESS_GRAY`: ultrasound with coloured markers,
  BUS-UCLM, which a chroma rule alone keeps; measured: all 15 BUS-UCLM, 56 BrEaST and 764 of 780 BUSI images,
  and 2 of 3,000 IDC, 5 of 3,000 PCam and 0 of 839 BreakHis images);
* **structure** (grey-ultrasound models): an image whose neighbouring pixels do not correlate
  (:func:`neighbour_correlation` under :data:`MIN_NEIGHBOUR_CORRELATION`) is noise, not an ultrasound image, whose
  speckle and tissue are smooth over several pixels. Measured here, each pixel against its right-hand neighbour:
  BUSI 0.965-0.999 (780 images), BrEaST 0.987 or more (56), BUS-UCLM 0.980 or more (15), BreastMNIST's 28 x 28
  thumbnails 0.882 or more (780); uniform random noise about 0 (busi-cls answered such an image "benign" in scope,
  its features near enough to BUSI's). H&E patches are not checked: IDC's 50 x 50 patches go down to 0.03;
* **blank** (every model): an image whose pixels all have one value (busi-seg outlined a "lesion" of 26,787 px
  on an all-black image);
* **size**: an image whose shorter side is under half the size the model was trained at (``source_size``, else
  ``image_size``) is flagged as too small to carry what the model looks at (a 28 x 28 thumbnail for a 256 x 256
  ultrasound model; not for BreastMNIST's own 28 x 28 model).

* **features** (a classifier whose model folder has an ``ood`` record): the distance of the image's penultimate
  features to the k-th nearest training image (:mod:`breastdx.inference.ood`, deep nearest neighbours) over the
  99th percentile of the validation images' distances. This sees what colour and size do not: busi-cls flags with
  it 92% of BreakHis, 83% of IDC and 48% of PCam images and 1% of the BUSI test split, and none of BUS-UCLM and
  BrEaST (ultrasound from other scanners).

A flagged image is still predicted; ``in_scope`` is false and ``scope_note`` says why, in ``predictions.csv``
and in the service's answer. These checks do not see a grey image of another kind (an X-ray, say), nor an
H&E image of very pale stain; the model card says what was measured.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MAX_CHROMA_GRAY = 0.05
"""A grey-image model flags a mean chroma over this (ultrasound here: at most 0.044)."""

MIN_CHROMA_RGB = 0.005
"""A colour-image model flags a mean chroma under this (a grey image; blank IDC patches have about 0.01)."""

MIN_NEIGHBOUR_CORRELATION = 0.5
"""A grey-image model flags an image whose pixels correlate with their neighbours less than this (ultrasound: at
least 0.88; uniform random noise about 0)."""

MAX_BRIGHTNESS_GRAY = 0.5
"""A colour-image model flags an image with mean chroma under :data:`MAX_CHROMA_GRAY` whose brightness is under
this (ultrasound: 0.12-0.67, median 0.33; H&E under 0.5: 2 of 3,000 IDC and 5 of 3,000 PCam patches)."""


@dataclass(frozen=True)
class Scope:
    """The scope check of one input.

    Attributes:
        in_scope: False when any check flags the input.
        note: Why it is out of scope (every reason, ``; ``-joined), or empty.
    """

    in_scope: bool
    note: str = ""


def neighbour_correlation(image: Any) -> float | None:
    """Pearson correlation of each pixel with its right-hand neighbour, on about 100,000 pixel pairs.

    Args:
        image: uint8 ``(H, W)`` or ``(H, W, C)`` (channels averaged).

    Returns:
        The correlation in [-1, 1]; None for an image under 2 pixels wide or without variation.
    """
    a = np.asarray(image)
    if a.ndim == 3:
        a = a.mean(axis=-1)
    if a.ndim != 2 or a.shape[1] < 2:
        return None
    step = max(1, int(a.shape[0] * a.shape[1] / 100_000))  # every step-th row, all its neighbour pairs
    rows = a[::step].astype(np.float64)
    x, y = rows[:, :-1].ravel(), rows[:, 1:].ravel()
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def check_scope(record: Any, predictor: Any, output: Any = None) -> Scope:
    """Check one decoded input against an image model's training data.

    Args:
        record: An :class:`~breastdx.data.images.ImageRecord` (its ``colourfulness``, ``full_shape`` or
            ``shape``).
        predictor: The model's predictor: its ``preprocessing`` (``mode``, ``image_size``) and, for models
            trained on small images, ``source_size``.
        output: The model's output for the input, or None; its ``ood_note``
            (:class:`~breastdx.inference.classifier.ClassificationOutput`) is the feature-space check.

    Returns:
        The :class:`Scope`; unknown colour (None) is not flagged, nor is structure when the record holds no
        ``array``.
    """
    reasons = []
    chroma = getattr(record, "colourfulness", None)
    preprocessing = predictor.preprocessing
    mode = getattr(preprocessing, "mode", "gray")
    if chroma is not None and mode == "gray" and chroma > MAX_CHROMA_GRAY:
        reasons.append(f"a colour image (mean chroma {chroma:.2f}; the grey ultrasound this model was trained on has "
                       f"at most {MAX_CHROMA_GRAY}): an H&E slide or a photograph is not an ultrasound image")
    array = getattr(record, "array", None)
    if array is not None and np.size(array) and np.min(array) == np.max(array):
        reasons.append(f"blank (every pixel has the value {np.min(array)}): there is nothing to read in it")
    r = neighbour_correlation(array) if mode == "gray" and array is not None else None
    if r is not None and r < MIN_NEIGHBOUR_CORRELATION:
        reasons.append(f"without spatial structure (neighbouring pixels correlate r = {r:.2f}; ultrasound images have "
                       f"r of 0.88 or more): noise, not an ultrasound image")
    brightness = getattr(record, "brightness", None)
    if chroma is not None and mode == "rgb" and chroma < MIN_CHROMA_RGB:
        reasons.append(f"a grey image (mean chroma {chroma:.3f}); this model was trained on colour H&E images")
    elif chroma is not None and brightness is not None and mode == "rgb" and chroma < MAX_CHROMA_GRAY \
            and brightness < MAX_BRIGHTNESS_GRAY:
        reasons.append(f"a dark image with little colour (mean chroma {chroma:.3f}, brightness {brightness:.2f}), "
                       f"like ultrasound; this model was trained on H&E-stained tissue")
    trained = getattr(predictor, "source_size", None) or getattr(preprocessing, "image_size", None)
    h, w = getattr(record, "full_shape", None) or record.shape
    if trained and min(h, w) < trained / 2:
        reasons.append(f"{min(h, w)} px on its shorter side, under half the {trained} x {trained} px this model was "
                       f"trained at: too small to hold what the model looks at")
    if getattr(output, "ood_note", ""):
        reasons.append(output.ood_note)
    return Scope(not reasons, "; ".join(reasons))


def scope_cell(row: Mapping[str, Any]) -> str:
    """The console tables' ``in scope`` column of one ``predictions.csv`` row: ``yes``, or ``NO`` when its
    ``in_scope`` is ``"false"`` (the reason is the row's ``scope_note``)."""
    return "NO" if row.get("in_scope") == "false" else "yes"


def warn_out_of_scope(rows: Sequence[Mapping[str, Any]], item: str, csv_name: str) -> list[Mapping[str, Any]]:
    """Log one warning that counts the rows whose ``in_scope`` is ``"false"`` and gives the first one's reason.

    Args:
        rows: One row per input (``source``, ``in_scope``, ``scope_note``), as written to ``csv_name``.
        item: What an input is, for the message (``"input image"``, ``"input tile"``).
        csv_name: The file whose ``in_scope`` and ``scope_note`` columns hold every reason.

    Returns:
        The flagged rows (none: nothing is logged).
    """
    flagged = [r for r in rows if r.get("in_scope") == "false"]
    if flagged:
        log.warning("%d of %d %s(s) are unlike what this model was trained on (in_scope, scope_note in %s), e.g. "
                    "%s: %s. What the model says of them is not that of a case it can judge.", len(flagged),
                    len(rows), item, csv_name, Path(str(flagged[0]["source"])).name, flagged[0]["scope_note"])
    return flagged
