"""MoNuSeg nucleus segmentation: scoring of whole tiles, the run's report and the model card.

:func:`evaluate_tiles` scores tiles (foreground Dice, AJI of Kumar et al. 2017, panoptic quality of Kirillov et al.
2019 with a match at IoU > 0.5; :mod:`breastdx.evaluation.instances`) and measures the Street et al. (1993) nucleus
features of the predicted and reference nuclei; :func:`write_outputs` writes ``per_tile.csv``, ``morphometry.csv``,
the overlays and ``report.html`` of a run; :func:`write_card` writes a model folder's ``MODEL_CARD.md``. Used by
:mod:`breastdx.tasks.monuseg` (train, evaluate, calibrate).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

TARGETS = {"dice": 0.80, "aji": 0.60}
"""Issue 17's targets on the 2 breast test tiles."""
SCORES = ("dice", "aji", "pq", "sq", "dq")
CYTOLOGY_NOTE = (
    "These features are measured on H&E tissue sections. The cytology classifier of breastdx (task wdbc) was trained "
    "on the same ten features measured on fine-needle aspirates (Street et al. 1993), which differ in preparation, "
    "staining, magnification and outline method, so its decision is not applied to them and they carry no diagnosis. "
    "They are offered for research on nuclear pleomorphism, the nuclear component of the Nottingham grade.")


def score_table(evaluation: dict[str, Any]) -> list[list[Any]]:
    """Rows of the per-tile score table (header first, the mean over tiles last) of :func:`evaluate_tiles`' output."""
    tiles = evaluation["tiles"]
    return [["tile", "Dice", "AJI", "PQ", "SQ", "DQ", "nuclei (pred / ref)", "s"],
            *[[t["tile"], *(f"{t[k]:.3f}" for k in SCORES), f"{t['n_pred']} / {t['n_ref']}", t["seconds"]]
              for t in tiles],
            ["mean", *(f"{evaluation['summary'][k]['value']:.3f}" for k in SCORES), "", ""]]


def benchmark_notes(evaluation: dict[str, Any]) -> list[str]:
    """The issue's targets beside the mean scores, and :data:`CYTOLOGY_NOTE`."""
    m = evaluation["summary"]
    return [f"Benchmark: mean Dice {m['dice']['value']:.3f} (target >= {TARGETS['dice']}), AJI "
            f"{m['aji']['value']:.3f} (target >= {TARGETS['aji']}) over {len(evaluation['tiles'])} tile(s); "
            f"PQ matches nuclei at IoU > 0.5.", CYTOLOGY_NOTE]


def evaluate_tiles(predictor: Any, tiles: list[tuple[np.ndarray, np.ndarray]], names: list[str],
                   microns_per_pixel: float | Sequence[float]) -> dict[str, Any]:
    """Scores and morphometry (predicted and reference nuclei) of each tile, and the means over tiles.

    Args:
        predictor: A :class:`breastdx.inference.nuclei.NucleusPredictor`.
        tiles: ``(image, reference)`` pairs: RGB uint8 ``(H, W, 3)`` and instance labels int ``(H, W)``.
        names: A name per tile.
        microns_per_pixel: Resolution for the features in µm: one for all tiles, or one per tile (each tile's
            annotation's, which MoNuSeg's XML states); recorded per tile as ``microns_per_pixel``.

    Returns:
        ``summary`` (per score: mean ``value``, ``per_tile``; ``ci95`` None, as two tiles give no interval),
        ``tiles`` (scores, counts, seconds and morphometry per tile), and the predicted ``labels`` and ``images``.
    """
    from breastdx.evaluation.instances import instance_scores
    from breastdx.morphometry.features import grey_levels
    from breastdx.morphometry.summary import in_microns, measure_nuclei, tile_summary

    out = []
    if isinstance(microns_per_pixel, (int, float)):
        microns_per_pixel = [float(microns_per_pixel)] * len(tiles)
    for name, (image, ref), mpp in zip(names, tiles, microns_per_pixel, strict=True):
        start = time.perf_counter()
        labels, _ = predictor.predict(image)
        seconds = time.perf_counter() - start
        grey = grey_levels(image)
        feats = {k: tile_summary(in_microns(measure_nuclei(lab, grey, microns_per_pixel=mpp), mpp))
                 for k, lab in (("predicted", labels), ("reference", ref))}
        out.append({"tile": name, **instance_scores(labels, ref), "seconds": round(seconds, 2),
                    "microns_per_pixel": mpp, "morphometry_um": feats, "labels": labels, "image": (image, ref)})
    summary = {k: {"value": float(np.mean([t[k] for t in out])), "ci95": None,
                   "per_tile": [float(t[k]) for t in out]} for k in SCORES}
    return {"summary": summary, "tiles": [{k: v for k, v in t.items() if k not in ("labels", "image")}
                                          for t in out],
            "labels": [t["labels"] for t in out], "images": [t["image"] for t in out]}


def write_outputs(run_dir: Path, predictor: Any, evaluation: dict[str, Any], metrics: dict[str, Any],
                  grid: list[list[Any]] | None, title: str) -> None:
    """``per_tile.csv``, ``morphometry.csv`` (30 columns, predicted and reference nuclei, µm), overlays and
    ``report.html``. A tile name that a spreadsheet would run as a formula (``=...``, ``+``, ``-``, ``@``) is written
    to the CSVs with a leading apostrophe (:func:`breastdx.inference.csv_safety.safe_cell`)."""
    from breastdx.evaluation.report import HtmlReport
    from breastdx.inference.csv_safety import safe_cell
    from breastdx.morphometry.summary import TILE_COLUMNS
    from breastdx.visualize.instances import instance_overlay

    with open(run_dir / "per_tile.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["tile", *SCORES, "tp", "fp", "fn", "n_pred", "n_ref", "seconds"])
        for t in evaluation["tiles"]:
            w.writerow([safe_cell(t["tile"]), *(f"{t[k]:.4f}" for k in SCORES),
                        *(t[k] for k in ("tp", "fp", "fn", "n_pred", "n_ref", "seconds"))])
    with open(run_dir / "morphometry.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["tile", "nuclei", *TILE_COLUMNS])
        for t in evaluation["tiles"]:
            for which, row in t["morphometry_um"].items():
                w.writerow([safe_cell(t["tile"]), which,  # NaN (no nucleus summarised) as an empty cell
                            *("" if row[k] != row[k] else f"{row[k]:.5g}" for k in TILE_COLUMNS)])
    rep = HtmlReport(title)
    rep.paragraph(f"Model: MONAI U-Net ({predictor.meta.get('n_parameters', 0):,} parameters), three classes "
                  f"(background, interior, boundary), marker watershed {predictor.postprocessing.to_meta()}; "
                  f"sliding windows of {predictor.windows.roi_size} px, overlap {predictor.windows.overlap}, "
                  f"Gaussian blending. Split: {metrics['split']}. Matching: {metrics['matching']}.")
    rep.heading("Scores per tile")
    rep.table(*(lambda t: (t[0], t[1:]))(score_table(evaluation)))
    rep.paragraph(benchmark_notes(evaluation)[0] + " With two test tiles no interval is given: the "
                  "per-tile values show the spread.")
    rep.heading("Nuclear morphometry (µm), predicted against reference nuclei")
    means = [c for c in TILE_COLUMNS if c.endswith("_mean")]
    rep.table(["tile", "nuclei", *means], [[t["tile"], which, *(row[k] for k in means)]
                                           for t in evaluation["tiles"]
                                           for which, row in t["morphometry_um"].items()])
    rep.paragraph(CYTOLOGY_NOTE)
    rep.heading("Test tiles (green: reference outlines, yellow: predicted)")
    for t, labels, (image, ref) in zip(evaluation["tiles"], evaluation["labels"], evaluation["images"]):
        png = run_dir / f"overlay_{t['tile']}.png"
        save_png(instance_overlay(image, labels, ref), png)
        rep.figure(png, f"{t['tile']}: Dice {t['dice']:.3f}, AJI {t['aji']:.3f}, PQ {t['pq']:.3f}")
    if grid:
        rep.heading("Watershed thresholds chosen on the held-out rows of the training tiles")
        rep.table(*grid_table(grid))
    from breastdx.training.trainer import read_training_log

    curves = read_training_log(run_dir)
    if curves.get("epoch"):
        from breastdx.evaluation.segmentation_plots import plot_training_curves

        plot_training_curves(curves, run_dir / "training_curves.png", "Training curves")
        rep.figure(run_dir / "training_curves.png", "Loss and validation Dice per epoch")
    rep.write(run_dir / "report.html")


def grid_table(grid: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the watershed candidates (:func:`breastdx.training.nuclei.choose_postprocessing` rows);
    candidates with other fields (a fourth item, a dict such as ``{"markers": "distance"}``) get an ``other``
    column, ``-`` where a row has none."""
    header = ["seed threshold", "foreground threshold", "min seed (px)", "mean AJI"]
    if all(len(r) == 4 for r in grid):
        return header, grid
    rows = [[*r[:3], ", ".join(f"{k} {v}" for k, v in (r[3] if len(r) == 5 else {}).items()) or "-", r[-1]]
            for r in grid]
    return header[:3] + ["other", "mean AJI"], rows


def loss_text(focal_gamma: float, distance_weight: float = 0.0) -> str:
    """The training loss in words: Dice + cross-entropy, or Dice + focal loss of ``focal_gamma`` > 0; with
    ``distance_weight`` > 0, plus the distance output's binary cross-entropy at that weight."""
    if focal_gamma and focal_gamma > 0:
        text = f"Dice + focal loss (gamma {focal_gamma:g}; Lin et al. 2017, doi:10.1109/ICCV.2017.324)"
    else:
        text = "Dice + cross-entropy"
    if distance_weight and distance_weight > 0:
        text += (f", + {distance_weight:g} x binary cross-entropy of a fourth output, each nucleus's distance to its "
                 f"outline scaled to 1 (Naylor et al. 2019, doi:10.1109/TMI.2018.2865709)")
    return text


def _data_line(model_dir: Path) -> str:
    """The card's first line on the data: MoNuSeg's breast tiles when the split (``split.json`` of the model folder)
    names exactly them, else the counts of the tiles read, which the card does not give MoNuSeg's origin."""
    import json

    from breastdx.data.monuseg import BREAST_TILES

    split = json.loads((Path(model_dir) / "split.json").read_text(encoding="utf-8"))
    tiles = {part: tuple(sorted(split.get(part, []))) for part in BREAST_TILES}
    if tiles == {part: tuple(sorted(names)) for part, names in BREAST_TILES.items()}:
        return ("- MoNuSeg 2018 (Kumar et al. 2017, doi:10.1109/TMI.2017.2677499; 2020, "
                "doi:10.1109/TMI.2019.2947628), breast tiles only: 6 training and 2 test tiles of 1000x1000 px, "
                "H&E, 40x, TCGA, one patient each; CC BY-NC-SA 4.0 (non-commercial).")
    return (f"- {len(tiles['train'])} training and {len(tiles['test'])} test tiles in MoNuSeg's folder layout, not "
            f"the MoNuSeg 2018 breast tiles (Kumar et al. 2017, doi:10.1109/TMI.2017.2677499): a part of them or other "
            f"data, whose origin is the data owner's to state.")


def write_card(model_dir: Path, meta: dict[str, Any], evaluation: dict[str, Any],
               grid: list[list[Any]]) -> None:
    """``MODEL_CARD.md`` of a ``monuseg`` model folder from its ``meta.json`` and its test-tile scores."""
    from breastdx.models.saved import write_model_card

    tr = meta["training"]
    rows = "\n".join(f"| {r[0]} | " + " | ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in r[1:])
                     + " |" for r in score_table(evaluation)[1:])
    write_model_card(
        model_dir, meta, title="MoNuSeg breast nucleus instance segmentation",
        summary=(f"MONAI U-Net ({meta['architecture_args']}; {meta['n_parameters']:,} parameters), RGB input, "
                 f"3 classes (background, interior, boundary), {loss_text(tr.get('focal_gamma', 0.0), tr.get('distance_weight', 0.0))}, AdamW, "
                 f"{tr['epochs_run']} epochs of {tr['patches_per_epoch']} random {tr['patch_size']} px patches "
                 f"({tr['train_seconds'] / 60:.0f} min, {tr['torch_threads']} thread(s), best epoch "
                 f"{tr['best_epoch']}). Instances: marker watershed {meta['postprocessing']} (chosen by AJI on "
                 f"held-out rows). Tiles of any size in {meta['inference']['windows']['roi_size']} px windows "
                 f"with Gaussian blending; test-time augmentation: {tta_text(meta)}. {recipe_text(meta)}"),
        data=(_data_line(model_dir) + "\n"
              f"- Split: `split.json`: {meta['training_config']['val_rows']} bottom rows of every training tile "
              "held out (epoch and watershed choice); test tiles never seen.\n"
              "- Instance masks from the XML polygons; two training tiles without XML are split from their binary "
              "masks by a distance-transform watershed."),
        evaluation=("Per tile: foreground Dice, AJI (Kumar et al. 2017) and panoptic quality (Kirillov et al. "
                    "2019; a match is a pair with IoU > 0.5). The table below gives the mean over the two "
                    "test tiles (no interval: n = 2).\n\n| tile | Dice | AJI | PQ | SQ | DQ | nuclei | s |\n"
                    "|---|---|---|---|---|---|---|---|\n" + rows + "\n\n**Morphometry.** " + CYTOLOGY_NOTE),
        limitations=[
            "Eight tiles from eight patients: too few to estimate performance on other scanners, stains or "
            "tumour types; the two test scores are not a population estimate.",
            "The six training tiles come from diagnostic (FFPE) slides (TCGA barcodes ...-01Z-00-DX1); both test "
            "tiles from frozen-tissue slides (...-01A-01-TS1 and -BSA), whose nuclei and staining look "
            "different. The held-out rows of the training tiles (validation) show none of that shift, so "
            "validation scores are optimistic for frozen sections.",
            "Two training tiles have only binary masks (no XML): their touching nuclei were split by a distance "
            "watershed, not by an annotator.",
            "Features from tissue sections are not the aspirate features of the WDBC table; the wdbc classifier "
            "is not applied to them.",
            "Research use only; not for diagnosis.",
        ])


def recipe_text(meta: dict[str, Any]) -> str:
    """Stain normalisation, training augmentation and, when recorded (``recipe_choice``), the cross-validation that
    chose them, in words."""
    stain = meta.get("stain_normalisation", {})
    tr = meta.get("training", {})
    text = "Stain normalisation: none. "
    if stain.get("method") == "macenko":
        text = (f"Stain normalisation: Macenko (Macenko et al. 2009), every tile to the stains of training tile "
                f"{stain.get('target_source', '?')} (its stain matrix and concentrations in `meta.json`). ")
    if tr.get("augment", True):
        parts = [f"HED jitter {tr.get('hed_sigma')} / {tr.get('hed_bias')}", "brightness and contrast",
                 "flips and 90° turns"]
        if tr.get("blur_sigma"):
            parts.append(f"Gaussian blur up to sigma {tr['blur_sigma']} px on half the patches")
        if tr.get("scale"):
            parts.append(f"zoom ±{tr['scale']}")
        text += f"Augmentation: {', '.join(parts)}."
    else:
        text += "Augmentation: none."
    choice = meta.get("recipe_choice")
    if choice:
        text += (f" Recipe chosen by leave-site-out cross-validation of the training tiles (each TCGA site's tiles "
                 f"held out whole in turn; the test tiles unread): {choice['text']}")
    return text


def tta_text(meta: dict[str, Any]) -> str:
    """The model's test-time augmentation in words, with the held-out AJI of each one compared."""
    tta = meta.get("inference", {}).get("tta", "none")
    rows = meta.get("validation", {}).get("tta")
    compared = "; held-out AJI " + ", ".join(f"{m} {a:.4f}" for m, a in rows) if rows else ""
    return {"none": "none", "flip": "the mean over 4 symmetries of the square (identity, two mirrorings, 180°)",
            "d8": "the mean over the 8 symmetries of the square"}[tta] + compared


def save_png(rgb: np.ndarray, path: Path) -> Path:
    """Write an RGB uint8 image as a PNG (fast compression); returns the path."""
    from PIL import Image

    Image.fromarray(rgb).save(path, optimize=False, compress_level=1)
    return path
