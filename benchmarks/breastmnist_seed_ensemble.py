"""BreastMNIST: several training seeds of one recipe, alone and averaged, on the validation and test splits.

Each argument is a BreastMNIST model folder (a run's ``model/``) trained with the same recipe and another
``--seed``, all on the official split. Every member predicts the validation and test images with its own
temperature and test-time augmentation; the ensemble is the mean of the members' probabilities. For each member,
their mean and the ensemble this prints the validation AUROC and NLL (the split that may choose between them) and
the test AUROC and accuracy at argmax with 95% percentile intervals over 2,000 bootstrap resamples of the test
images, the members' mean figures, then the ensemble's test AUROC minus the first member's, paired over the same
test images (:func:`breastdx.evaluation.paired.paired_auroc_test`, with its p value).
Choose on the validation lines; the test lines are for the record.

Usage::

    python benchmarks/breastmnist_seed_ensemble.py runs/bm-seeds/s0/model runs/bm-seeds/s1/model [...] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from busi_lesion_aware import _nll

N_BOOT = 2000


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    from breastdx.evaluation.metrics import auroc

    return float(auroc(y, p[:, 1]))


def _accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(p.argmax(1) == y))


def _ci(fn, y: np.ndarray, p: np.ndarray) -> dict:
    """``fn(y, p)`` with a 95% percentile interval over resampled images."""
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(N_BOOT):
        idx = rng.integers(0, y.size, y.size)
        if np.unique(y[idx]).size == 2:
            boot.append(fn(y[idx], p[idx]))
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"value": fn(y, p), "ci95": [float(low), float(high)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="BreastMNIST model folders, one per seed")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    from breastdx.data.breastmnist import load_breastmnist
    from breastdx.evaluation.paired import paired_auroc_test
    from breastdx.inference.classifier import ClassificationPredictor

    data = load_breastmnist(Path(os.environ.get("BREASTDX_DATA", "../shared/data")))
    splits = {s: data.split(s) for s in ("val", "test")}
    probs: dict[str, dict[str, np.ndarray]] = {}
    for folder in args.models:
        model = ClassificationPredictor.from_dir(folder, task="breastmnist")
        probs[str(folder)] = {s: model.predict_proba(list(v.images)) for s, v in splits.items()}
    names = list(probs)
    rows = {**{n: probs[n] for n in names},
            "ensemble (mean probability)": {s: np.mean([probs[n][s] for n in names], 0) for s in splits}}
    y = {s: v.labels.astype(int) for s, v in splits.items()}
    out: dict = {"members": names, "rows": {}}
    print(f"{'model':<40} {'val AUROC':>9} {'val NLL':>8}   test AUROC [95% CI]      test accuracy [95% CI]")
    for name, p in rows.items():
        r = {"val_auroc": _auroc(y["val"], p["val"]), "val_nll": _nll(y["val"], p["val"]),
             "test_auroc": _ci(_auroc, y["test"], p["test"]), "test_accuracy": _ci(_accuracy, y["test"], p["test"])}
        out["rows"][name] = r
        a, c = r["test_auroc"], r["test_accuracy"]
        print(f"{name[-40:]:<40} {r['val_auroc']:9.3f} {r['val_nll']:8.3f}   {a['value']:.3f} [{a['ci95'][0]:.3f}, "
              f"{a['ci95'][1]:.3f}]    {c['value']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]")
    single = [out["rows"][n] for n in names]
    out["members_mean"] = {k: float(np.mean([r[k] if k.startswith("val") else r[k]["value"] for r in single]))
                           for k in ("val_auroc", "val_nll", "test_auroc", "test_accuracy")}
    m = out["members_mean"]
    print(f"{'members, mean of their figures':<40} {m['val_auroc']:9.3f} {m['val_nll']:8.3f}   {m['test_auroc']:.3f}"
          f"                    {m['test_accuracy']:.3f}")
    ens = rows["ensemble (mean probability)"]["test"]
    d = paired_auroc_test(y["test"], ens[:, 1], probs[names[0]]["test"][:, 1], n_boot=N_BOOT, seed=0)
    out["test_auroc_ensemble_minus_first"] = d
    print(f"test AUROC, ensemble minus {names[0]}: {d['difference']:+.3f} [{d['ci95'][0]:+.3f}, "
          f"{d['ci95'][1]:+.3f}], p = {d['p_value']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
