"""The per-patient part of ``breastdx data summary`` for patch datasets with patient ids (IDC, BreakHis).

What practitioners ask of IDC before training (Janowczyk & Madabhushi 2016, doi:10.4103/2153-3539.186902):
how the classes are spread over patients, which patches are defective and what the reader does with them, how
much is blank background, and how the stain differs from patient to patient. :func:`summarize_patients` writes
``patients.json``, ``patients.html`` and its figures beside the dataset summary:

* class balance per patient: patches and positive share per patient, the patients with one class only, and a
  histogram of the per-patient positive share;
* patch-size defects: patches whose stored size is not the dataset's (IDC's edge patches), read from the file
  headers, with what the reader does (pads them with white on the bottom and right);
* blank background: patches whose pixels are mostly background (brightness >= 220 and saturation < 0.08 on at
  least 90% of the pixels);
* colour and stain per patient: mean RGB and the mean haematoxylin and eosin optical densities (colour
  deconvolution, Ruifrok & Johnston 2001, PMID 11531144, scikit-image's ``rgb2hed``), and their spread over
  patients.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

BLANK_BRIGHTNESS = 220
"""Gray level (0-255) above which a pixel may be background."""
BLANK_SATURATION = 0.08
"""HSV saturation (0-1) below which a bright pixel is background."""
BLANK_SHARE = 0.9
"""A patch is blank when at least this share of its pixels is background."""


def background_share(image: np.ndarray) -> float:
    """Share of the pixels of an RGB ``uint8`` ``(H, W, 3)`` image that are bright and unsaturated (background).

    Returns:
        A float in [0, 1].
    """
    rgb = image.astype(np.float32)
    hi, lo = rgb.max(axis=-1), rgb.min(axis=-1)
    saturation = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1), 0)
    gray = rgb.mean(axis=-1)
    return float(((gray >= BLANK_BRIGHTNESS) & (saturation < BLANK_SATURATION)).mean())


def stain_means(image: np.ndarray) -> tuple[float, float]:
    """Mean haematoxylin and eosin optical density of an RGB ``uint8`` image (scikit-image's ``rgb2hed``)."""
    from skimage.color import rgb2hed

    hed = rgb2hed(image)
    return float(hed[..., 0].mean()), float(hed[..., 1].mean())


def _stored_sizes(source: Any) -> list[tuple[int, int]] | None:
    """``(height, width)`` of each file as stored (headers only), or None for an in-memory source."""
    paths = getattr(source, "paths", None)
    root = getattr(source, "root", None)
    if paths is None:
        return None
    from PIL import Image

    sizes = []
    for p in paths:
        try:
            with Image.open(Path(root) / p if root is not None else p) as im:
                sizes.append((im.height, im.width))
        except Exception:  # noqa: BLE001 - unreadable: listed by the stain pass, not a size defect
            sizes.append(None)
    return sizes


def summarize_patients(source: Any, out_dir: str | Path, expected_size: tuple[int, int] | None = None,
                       positive: int = 1, reader_note: str = "") -> dict[str, Any] | None:
    """Per-patient figures of a patch dataset (see the module docstring); None when it has no patient ids.

    Args:
        source: A :class:`~breastdx.data.patches.PatchSource` with ``groups`` (patient ids).
        out_dir: The summary's folder (``patients.json``, ``patients.html``, PNG figures are written there).
        expected_size: The dataset's patch ``(height, width)``; stored sizes that differ are defects.
        positive: Index of the positive class (IDC: 1).
        reader_note: What the reader does with defective patches, in words.

    Returns:
        The content of ``patients.json``.
    """
    groups = source.groups
    if groups is None:
        return None
    import matplotlib.pyplot as plt

    from breastdx.evaluation.plots import save_figure
    from breastdx.evaluation.report import HtmlReport
    from breastdx.runs import write_json

    out = Path(out_dir)
    groups = np.asarray(groups).astype(str)
    labels = np.asarray(source.labels)
    names = list(source.class_names)
    blank, rgb, hed = np.full(len(source), np.nan), np.full((len(source), 3), np.nan), np.full((len(source), 2), np.nan)
    unreadable = []
    for i in range(len(source)):
        try:
            image, _ = source.get(i)
        except (OSError, ValueError) as err:  # ImageReadError and DataError are ValueErrors: listed, not fatal
            logger.warning("summary: %s cannot be read: %s", source.ids[i], err)
            unreadable.append({"id": str(source.ids[i]), "reason": str(err)})
            continue
        blank[i] = background_share(image)
        rgb[i] = image.reshape(-1, 3).mean(axis=0)
        hed[i] = stain_means(image)
    read = ~np.isnan(blank)  # a patient's stain and background figures are over the images that could be read
    patients = sorted(set(groups.tolist()), key=lambda v: (len(v), v))
    rows = []
    for p in patients:
        m = groups == p
        r = m & read if (m & read).any() else m  # a patient none of whose images could be read: NaN figures
        rows.append({"patient": p, "n": int(m.sum()), **{c: int((labels[m] == k).sum()) for k, c in enumerate(names)},
                     "positive_share": float((labels[m] == positive).mean()),
                     "blank": int((blank[m] >= BLANK_SHARE).sum()),
                     "mean_rgb": [round(float(v), 1) for v in rgb[r].mean(axis=0)],
                     "mean_h_od": round(float(hed[r, 0].mean()), 4), "mean_e_od": round(float(hed[r, 1].mean()), 4)})
    share = np.array([r["positive_share"] for r in rows])
    n = np.array([r["n"] for r in rows])
    result: dict[str, Any] = {
        "n_patients": len(rows), "patches_per_patient": {"min": int(n.min()), "median": float(np.median(n)),
                                                         "max": int(n.max())},
        "positive_class": names[positive],
        "patients_with_one_class": {c: sum(1 for r in rows if r[c] == r["n"]) for c in names},
        "positive_share": {"mean": float(share.mean()), "median": float(np.median(share)),
                           "overall": float((labels == positive).mean())},
        "blank": {"n": int((blank >= BLANK_SHARE).sum()), "share": float((blank >= BLANK_SHARE).mean()),
                  "rule": f">= {BLANK_SHARE:.0%} of pixels with gray >= {BLANK_BRIGHTNESS} and saturation < "
                          f"{BLANK_SATURATION}"},
        "stain_spread_over_patients": {"h_od_cv": float(np.std([r["mean_h_od"] for r in rows])
                                                        / max(abs(np.mean([r["mean_h_od"] for r in rows])), 1e-9)),
                                       "e_od_cv": float(np.std([r["mean_e_od"] for r in rows])
                                                        / max(abs(np.mean([r["mean_e_od"] for r in rows])), 1e-9))},
        "rows": rows,
        "unreadable": unreadable,
    }
    sizes = _stored_sizes(source)
    if sizes is not None and expected_size is not None:
        bad = [(source.ids[i], s) for i, s in enumerate(sizes) if s is not None and s != tuple(expected_size)]
        result["size_defects"] = {"expected": list(expected_size), "n": len(bad), "reader": reader_note,
                                  "examples": [{"id": i, "stored": list(s)} for i, s in bad[:20]]}

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].hist(share, bins=np.linspace(0, 1, 21), color="#b03060")
    axes[0].set_xlabel(f"share of {names[positive]} patches")
    axes[0].set_ylabel("patients")
    axes[0].set_title(f"{names[positive]} share per patient ({len(rows)} patients)", fontsize=9)
    axes[1].scatter([r["mean_h_od"] for r in rows], [r["mean_e_od"] for r in rows], s=8 + n, alpha=0.6)
    axes[1].set_xlabel("mean haematoxylin OD")
    axes[1].set_ylabel("mean eosin OD")
    axes[1].set_title("stain per patient (point size: patches)", fontsize=9)
    hist_png = save_figure(fig, out / "patients_share_and_stain.png")
    write_json(result, out / "patients.json")

    rep = HtmlReport(f"breastdx — {getattr(source, 'name', 'dataset')}: patients")
    one = ", ".join(f"{v} only {c}" for c, v in result["patients_with_one_class"].items())
    rep.paragraph(f"{len(rows)} patients, {int(n.min())} to {int(n.max())} patches each (median {np.median(n):g}); "
                  f"{one}. {names[positive]} share: {result['positive_share']['overall']:.3f} overall, "
                  f"{result['positive_share']['mean']:.3f} mean over patients. Blank background: "
                  f"{result['blank']['n']} patches ({result['blank']['share']:.1%}; {result['blank']['rule']}). "
                  f"Stain spread over patients (coefficient of variation of the patient means): haematoxylin "
                  f"{result['stain_spread_over_patients']['h_od_cv']:.2f}, eosin "
                  f"{result['stain_spread_over_patients']['e_od_cv']:.2f}.")
    if unreadable:
        rep.paragraph(f"Unreadable images: {len(unreadable)} (not in the stain and background figures): "
                      + "; ".join(f"{u['id']}: {u['reason']}" for u in unreadable[:20])
                      + (f"; and {len(unreadable) - 20} more (patients.json)" if len(unreadable) > 20 else "") + ".")
    if "size_defects" in result:
        d = result["size_defects"]
        rep.paragraph(f"Patch-size defects: {d['n']} patches are not {d['expected'][0]} x {d['expected'][1]} as "
                      f"stored. {d['reader']}")
    rep.figure(hist_png, f"Per-patient {names[positive]} share, and the mean stain of each patient")
    rep.table(["patient", "patches", *names, f"{names[positive]} share", "blank", "mean RGB", "H OD", "E OD"],
              [[r["patient"], r["n"], *[r[c] for c in names], f"{r['positive_share']:.2f}", r["blank"],
                ", ".join(f"{v:.0f}" for v in r["mean_rgb"]), f"{r['mean_h_od']:.3f}", f"{r['mean_e_od']:.3f}"]
               for r in rows])
    rep.write(out / "patients.html")
    logger.info("per-patient summary of %d patients written to %s", len(rows), out / "patients.html")
    return result
