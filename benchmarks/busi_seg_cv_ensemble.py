"""Fold ensemble or one model? A nested cross-validation of busi-seg answers it (issue 13, part 2).

A cross-validation's fold models cannot be scored as an ensemble out of fold: each of them trained on the others'
test folds. So the question "ship the fold ensemble, or one model trained on all the cases" is asked one level down:
for outer fold ``f`` of a cross-validation run ``CV`` (``breastdx train busi-seg --cv-folds 5 ... --out CV``),
``NESTED/f<f>`` is a ``--cv-folds K`` run on that fold's split file (``CV/folds/f<f>/split.json``: the inner folds
cut its train + val cases and never read its test fold). Outer fold ``f``'s test cases are then scored twice:

* **ensemble**: the ``K`` inner fold models, their probabilities averaged (``NESTED/f<f>/ensemble``, written by the
  cross-validation; for older runs written here into a temporary folder);
* **single**: outer fold ``f``'s own model ``CV/folds/f<f>/model``, trained once on all of that fold's train cases
  (validation for the epoch and postprocessing), as a refit would be.

Both are scored by ``breastdx evaluate busi-seg`` with ``--dtype float32`` (the same code and precision for both).
Printed: one JSON line per outer fold, then the pooled figures over every outer fold present: Dice over lesion
images and the share of normal images with a false lesion, per arm with 95% bootstrap intervals, and the paired
Dice difference (ensemble minus single) per lesion image with its interval over images and over near-duplicate groups
(the frames of one lesion resampled together: the interval to quote); then which arm cross-validation favours (the
higher pooled Dice). The outer folds' test cases are the cross-validation's, never the base split's test.

Usage::

    python benchmarks/busi_seg_cv_ensemble.py CV NESTED [--folds 0 1 2 3 4] [--n-bootstrap 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _evaluate(model: Path, split_file: Path, out: Path, *options: str) -> dict[str, dict[str, str]]:
    """Per-image rows of ``evaluate busi-seg`` (float32, and ``options``) on the test part of ``split_file``."""
    cmd = [str(Path(sys.executable).with_name("breastdx")), "evaluate", "busi-seg", "--model", str(model),
           "--split-file", str(split_file), "--dtype", "float32", "--n-bootstrap", "1", "--out", str(out), *options]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    with open(out / "test_per_image.csv", newline="") as fh:
        return {r["case"]: r for r in csv.DictReader(fh)}


def _ci(values: np.ndarray, draws: np.ndarray) -> dict:
    low, high = np.percentile(values[draws].mean(1), [2.5, 97.5])
    return {"value": float(values.mean()), "ci95": [float(low), float(high)], "n": int(len(values))}


def _group_ci(values: np.ndarray, cases: list[str], groups: list[list[str]], n_boot: int, seed: int) -> dict:
    """Mean of ``values`` (one per case) with a 95% interval from resampling the near-duplicate ``groups`` (the
    frames of one lesion together, a case outside every group a group of its own): the interval to quote, since
    an image bootstrap treats the frames of one lesion as independent."""
    from breastdx.evaluation.ci import patient_bootstrap

    group_of = {name: k for k, members in enumerate(groups) for name in members}
    ids = np.asarray([f"g{group_of[c]}" if c in group_of else f"c:{c}" for c in cases])
    r = patient_bootstrap(lambda idx: float(values[idx].mean()), ids, n_boot=n_boot, seed=seed)
    return {"value": r["value"], "ci95": r["ci95"], "n": int(len(values)), "n_groups": r["n_patients"]}


def _base_groups(cv: Path) -> list[list[str]]:
    """The near-duplicate groups of a cross-validation run's base split (``base_split.json``)."""
    return json.loads((cv / "base_split.json").read_text()).get("groups", [])


def _draws(rows: list[dict], n_boot: int, seed: int) -> tuple[list[dict], list[dict], np.ndarray, np.ndarray]:
    """The lesion and the normal rows, and ``n_boot`` bootstrap draws of each (indices, one row per resample)."""
    rng = np.random.default_rng(seed)
    lesion = [r for r in rows if r["label"] != "normal"]
    normal = [r for r in rows if r["label"] == "normal"]
    return (lesion, normal, rng.integers(0, len(lesion), (n_boot, len(lesion))),
            rng.integers(0, len(normal), (n_boot, len(normal))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv", type=Path)
    parser.add_argument("nested", type=Path)
    parser.add_argument("--folds", type=int, nargs="*", default=None)
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from breastdx.pipeline.ensemble import write_ensemble

    k_outer = json.loads((args.cv / "folds.json").read_text())["k"]
    folds = args.folds if args.folds is not None else [f for f in range(k_outer)
                                                       if (args.nested / f"f{f}" / "metrics.json").is_file()]
    if not folds:
        raise SystemExit(f"{args.nested}: no finished inner cross-validation (f<k>/metrics.json)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in folds:
            inner = args.nested / f"f{f}"
            k_inner = json.loads((inner / "folds.json").read_text())["k"]
            ensemble = inner / "ensemble"
            if not (ensemble / "meta.json").is_file():
                ensemble = Path(tmp) / f"ensemble{f}"
                write_ensemble([inner / "folds" / f"f{i}" / "model" for i in range(k_inner)], ensemble)
            split = args.cv / "folds" / f"f{f}" / "split.json"
            inner_base = json.loads((inner / "base_split.json").read_text())
            outer = json.loads(split.read_text())
            if inner_base["test"] != outer["test"]:
                raise SystemExit(f"{inner}: its base split is not outer fold {f}'s split ({split})")
            ens = _evaluate(ensemble, split, Path(tmp) / f"ens{f}")
            one = _evaluate(args.cv / "folds" / f"f{f}" / "model", split, Path(tmp) / f"one{f}")
            for case, r in ens.items():
                rows.append({"fold": f, "case": case, "label": r["label"], "ensemble": float(r["dice"]),
                             "single": float(one[case]["dice"]), "ensemble_fp": r["false_positive"] == "True",
                             "single_fp": one[case]["false_positive"] == "True"})
            lesion = [r for r in rows if r["fold"] == f and r["label"] != "normal"]
            normal = [r for r in rows if r["fold"] == f and r["label"] == "normal"]
            line = {"outer_fold": f, "inner_folds": k_inner, "n_lesion": len(lesion), "n_normal": len(normal),
                    "dice_ensemble": float(np.mean([r["ensemble"] for r in lesion])),
                    "dice_single": float(np.mean([r["single"] for r in lesion])),
                    "normal_fp_ensemble": float(np.mean([r["ensemble_fp"] for r in normal])),
                    "normal_fp_single": float(np.mean([r["single_fp"] for r in normal]))}
            print(json.dumps(line), flush=True)
    lesion, normal, dl, dn = _draws(rows, args.n_bootstrap, args.seed)
    ens, one = (np.array([r[a] for r in lesion]) for a in ("ensemble", "single"))
    efp, ofp = (np.array([r[a] for r in normal], dtype=float) for a in ("ensemble_fp", "single_fp"))
    groups = _base_groups(args.cv)
    pooled = {"outer_folds": folds, "dice_ensemble": _ci(ens, dl), "dice_single": _ci(one, dl),
              "dice_ensemble_minus_single": _ci(ens - one, dl),
              "normal_fp_ensemble": _ci(efp, dn), "normal_fp_single": _ci(ofp, dn),
              "normal_fp_ensemble_minus_single": _ci(efp - ofp, dn),
              # the same differences with intervals over near-duplicate groups: the ones to quote
              "dice_ensemble_minus_single_by_group": _group_ci(ens - one, [r["case"] for r in lesion], groups,
                                                               args.n_bootstrap, args.seed),
              "normal_fp_ensemble_minus_single_by_group": _group_ci(efp - ofp, [r["case"] for r in normal], groups,
                                                                    args.n_bootstrap, args.seed)}
    print(json.dumps(pooled))

    def t(m: dict) -> str:
        return f"{m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"

    def d(m: dict) -> str:
        return f"{m['value']:+.3f} [{m['ci95'][0]:+.3f}, {m['ci95'][1]:+.3f}]"

    print(f"\n| arm | Dice, {len(lesion)} lesion images | normal images with a false lesion ({len(normal)}) |")
    print("|---|---|---|")
    print(f"| fold ensemble (inner folds, mean probability) | {t(pooled['dice_ensemble'])} | "
          f"{t(pooled['normal_fp_ensemble'])} |")
    print(f"| single model (outer fold's own) | {t(pooled['dice_single'])} | {t(pooled['normal_fp_single'])} |")
    print(f"| ensemble minus single, paired | {d(pooled['dice_ensemble_minus_single'])} | "
          f"{d(pooled['normal_fp_ensemble_minus_single'])} |")
    bg, bn = pooled["dice_ensemble_minus_single_by_group"], pooled["normal_fp_ensemble_minus_single_by_group"]
    print(f"| the same, interval over near-duplicate groups ({bg['n_groups']} / {bn['n_groups']}) | {d(bg)} | "
          f"{d(bn)} |")
    better = "the fold ensemble" if pooled["dice_ensemble"]["value"] > pooled["dice_single"]["value"] else \
        "the single model"
    lo, hi = pooled["dice_ensemble_minus_single_by_group"]["ci95"]
    print(f"\nNested cross-validation over outer folds {folds} favours {better}; the paired interval over "
          f"near-duplicate groups {'excludes' if lo > 0 or hi < 0 else 'includes'} 0.")


if __name__ == "__main__":
    main()
