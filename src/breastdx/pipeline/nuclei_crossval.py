"""Leave-tiles-out cross-validation of MoNuSeg nucleus segmentation (``breastdx train monuseg --cv-folds K``).

The held-out bottom rows of the training tiles choose the epoch, the test-time augmentation and the watershed, but
they share their tile's slide, stain and scanner with the rows the network trained on, so they cannot show what a
change does to a slide never seen (issue 17: Macenko stain normalisation scored held-out AJI 0.619 against 0.628,
yet the frozen-section test tiles went from 0.430 to 0.543). Holding out whole tiles can: each training tile is its
own patient and slide, and the 6 come from 3 TCGA tissue source sites (A7, AR, E2; 2 tiles each), none of them
the test tiles' sites. The training tiles are cut into ``K`` folds, a site's tiles together (:func:`tile_folds`;
``K = 3`` leaves one site out at a time); fold ``f`` is one whole
training run of the recipe on the other tiles (``--holdout-tiles``: their bottom rows still choose epoch,
augmentation and watershed), scored on the tiles of fold ``f``, whole. Every training tile is scored once, by the
model that never saw it.

**The test tiles are not read**: they stay the final, once-read test of the recipe chosen here.

The run folder holds ``folds/f<k>/`` (full runs: model, ``per_tile.csv``, report), ``folds.json`` (the tiles of
every fold), ``oof_per_tile.csv`` (each training tile's Dice, AJI, PQ, SQ and DQ from the model of its fold) and
``metrics.json``: the means over the tiles, with each tile's score (no interval: 6 tiles give none worth printing),
and per fold the held-out-row choices; ``report.html`` shows them (:mod:`breastdx.pipeline.cv_report`: what was
cross-validated, the means and each tile's scores, the folds with a link to each fold's report), after
``metrics.json``, so a run resumed with ``--resume`` ends with it as well.

References:
    Varoquaux, G. et al. (2017). Assessing and tuning brain decoders: cross-validation, caveats, and guidelines.
    NeuroImage 145:166-179. doi:10.1016/j.neuroimage.2016.10.038
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SCORES = ("dice", "aji", "pq", "sq", "dq")


def tissue_source_site(name: str) -> str:
    """The TCGA tissue source site of a tile (``TCGA-A7-A13E-01Z-00-DX1`` -> ``A7``), or the name itself.

    Tiles of one site share its staining protocol and scanner, so they stay in one fold: a fold then tests a stain
    the network never saw, as the test tiles (other sites, frozen sections) do.
    """
    parts = name.split("-")
    return parts[1] if len(parts) > 2 and parts[0] == "TCGA" else name


def tile_folds(names: list[str], k: int, seed: int) -> list[list[str]]:
    """``k`` folds of whole tiles, the tiles of one TCGA tissue source site (:func:`tissue_source_site`) together.

    Sites are shuffled (``seed``) and each goes to the fold with the fewest tiles so far.

    Args:
        names: Tile names (any order: they are sorted first, so the folds do not depend on the reading order).
        k: Folds, ``2 <= k <=`` the number of sites.
        seed: Seed of the shuffle.

    Returns:
        ``k`` sorted lists of names; every name in exactly one.

    Raises:
        ValueError: If ``k < 2`` or ``k`` exceeds the number of sites.
    """
    sites: dict[str, list[str]] = {}
    for n in sorted(names):
        sites.setdefault(tissue_source_site(n), []).append(n)
    if not 2 <= k <= len(sites):
        raise ValueError(f"leave-tiles-out cross-validation needs 2 to {len(sites)} folds for the {len(names)} "
                         f"tiles of {len(sites)} tissue source sites (one site's tiles stay in one fold); got {k}")
    folds: list[list[str]] = [[] for _ in range(k)]
    for i in np.random.default_rng(seed).permutation(len(sites)):
        min(folds, key=len).extend(list(sites.values())[i])
    return [sorted(f) for f in folds]


def cross_validate_monuseg(task: Any, config: Any, data_root: Path, run_dir: Path) -> Any:
    """``--cv-folds K``: ``K`` training runs of monuseg, each with one fold of training tiles held out whole.

    Args:
        task: The monuseg task (:class:`breastdx.tasks.monuseg.MonusegTask`).
        config: Its :class:`~breastdx.tasks.monuseg.MonusegConfig`, ``cv_folds >= 2``, no ``holdout_tiles``.
        data_root: The data root (``monuseg_breast`` under it).
        run_dir: The run folder.

    Returns:
        A :class:`breastdx.pipeline.task.RunResult`; ``metrics["metrics"]`` holds, per score, the mean over the
        training tiles (``value``) and ``per_tile`` in the order of ``metrics["tiles"]``.

    Raises:
        ConfigError: If ``--cv-folds`` is 1 or more than the training tiles, or is given with ``--holdout-tiles``
            or ``--max-tiles``.
    """
    from breastdx.config import ConfigError, save_yaml, to_dict
    from breastdx.data.monuseg import find_monuseg_root, monuseg_checksum, scan_monuseg
    from breastdx.pipeline.task import RunResult
    from breastdx.runs import number, write_json, write_versions

    if config.holdout_tiles or config.max_tiles:
        raise ConfigError("--cv-folds chooses the held-out tiles itself and uses every training tile: drop "
                          "--holdout-tiles and --max-tiles.")
    cases = scan_monuseg(find_monuseg_root(data_root))
    names = [c.name for c in cases if c.part == "train"]
    try:
        folds = tile_folds(names, int(config.cv_folds), config.seed)
    except ValueError as e:
        raise ConfigError(f"--cv-folds: {e}.") from None
    k = len(folds)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml({"task": task.name, **to_dict(config), "data_root": str(data_root),
               "data_checksum": monuseg_checksum(cases)}, run_dir / "config.yaml")
    write_versions(run_dir)
    write_json({"k": k, "seed": config.seed, "folds": folds, "test_tiles_read": False}, run_dir / "folds.json")
    rows, per_fold = [], []
    jobs = []
    for f, held in enumerate(folds):
        fold_dir = run_dir / "folds" / f"f{f}"
        fold_dir.mkdir(parents=True, exist_ok=True)  # there already when a stopped run is resumed
        jobs.append((dataclasses.replace(config, cv_folds=0, cv_workers=1, holdout_tiles=",".join(held)), fold_dir))
    from breastdx.pipeline.fold_runner import run_folds

    results = run_folds(task, jobs, data_root, int(getattr(config, "cv_workers", 1)),
                        [f"leave-tiles-out fold {f + 1} of {k}: holding out {c.holdout_tiles}"
                         for f, (c, _) in enumerate(jobs)])
    for f, (held, result) in enumerate(zip(folds, results)):
        m = result.metrics
        rows += [{"tile": t["tile"], "fold": f, **{s: number(t[s]) for s in SCORES}} for t in m["per_tile"]]
        per_fold.append({"fold": f, "held_out_tiles": held, "best_val_dice": m["training"].get("best_val_dice"),
                         "best_epoch": m["training"].get("best_epoch"), "postprocessing": m["postprocessing"],
                         "tta": m["tta"], "held_out_aji_per_tta": m["held_out_aji_per_tta"]})
    rows.sort(key=lambda r: names.index(r["tile"]))
    summary = {s: {"value": float(np.mean([r[s] for r in rows])), "ci95": None, "per_tile": [r[s] for r in rows]}
               for s in SCORES}
    metrics = {"task": task.name, "kind": "cross_validation", "k": k, "n": len(rows),
               "split": f"leave-tiles-out {k}-fold cross-validation of the {len(rows)} MoNuSeg 2018 breast training "
                        f"tiles, each scored whole by the model of the fold that held it out; the test tiles were "
                        f"not read",
               "tiles": [r["tile"] for r in rows], "metrics": summary, "per_fold": per_fold,
               "metrics_note": "means over tiles; no interval (6 tiles, 6 patients)",
               "stain_normalisation": config.stain_normalisation}
    write_json(metrics, run_dir / "metrics.json")
    with open(run_dir / "oof_per_tile.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["tile", "fold", *SCORES])
        w.writeheader()
        w.writerows(rows)
    from breastdx.pipeline.cv_report import write_nuclei_cv_report

    write_nuclei_cv_report(run_dir, task.title, metrics, [r.metrics for r in results], tissue_source_site, SCORES)
    table = [["tile", "fold", *SCORES]] + [[r["tile"], str(r["fold"]), *(f"{r[s]:.3f}" for s in SCORES)] for r in rows]
    table.append(["mean", "", *(f"{summary[s]['value']:.3f}" for s in SCORES)])
    return RunResult(run_dir, metrics, f"monuseg: {metrics['split']}", table,
                     [f"Run folder: {run_dir} (report.html; folds/f0..f{k - 1} hold each fold's full run); the test "
                      f"tiles were not read."])


def read_recipe_choice(files: str) -> dict[str, Any] | None:
    """The cross-validation comparisons of ``--recipe-choice`` (JSON of ``benchmarks/monuseg_cv_compare.py``), with
    a sentence each for the model card, or None.

    Raises:
        ConfigError: If a file is missing, is not JSON, or lacks a comparison's fields.
    """
    import json

    from breastdx.config import ConfigError

    records = []
    for name in [f.strip() for f in files.split(",") if f.strip()]:
        try:
            r = json.loads(Path(name).read_text(encoding="utf-8"))
            text = (f"{Path(r['b']).name} against {Path(r['a']).name}: mean out-of-fold AJI {r['aji']['mean_b']:.3f} "
                    f"against {r['aji']['mean_a']:.3f} (higher on {r['aji']['b_wins']} tiles), Dice "
                    f"{r['dice']['mean_b']:.3f} against {r['dice']['mean_a']:.3f}; rule: {r['rule']}; chosen: "
                    f"{Path(r['b'] if r['choice'] == 'B' else r['a']).name}.")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"--recipe-choice {name}: expected the JSON that benchmarks/monuseg_cv_compare.py "
                              f"--json writes ({type(e).__name__}: {e}).") from None
        records.append({"file": Path(name).name, "comparison": r, "text": text})
    if not records:
        return None
    return {"comparisons": records, "text": " ".join(r["text"] for r in records)}
