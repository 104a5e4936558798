"""BreastMNIST: one model or the five-seed ensemble? Stratified k-fold cross-validation of the official train + val.

The 78 validation images cannot tell the shipped ``breastmnist`` from ``breastmnist-ensemble`` apart (see the README,
*BreastMNIST over five seeds*). This asks the question on the 624 training and validation images instead; the
official test split is never read.

``prepare`` cuts the official train + val images into ``K`` stratified folds (seeded) and writes, per fold ``k``, a
file in MedMNIST's layout, ``DIR/f<k>/breastmnist.npz``: ``test`` is fold ``k``, ``val`` a stratified eighth of the
other folds (the share the official validation split has of train + val), ``train`` the rest; the labels are stored
as MedMNIST stores them (0 = malignant). Then train the recipe with each seed on each fold (``commands`` prints the
commands; run them two at a time on 2 cores, e.g. ``... commands DIR | xargs -P 2 -I{} sh -c '{}'``).

``compare`` loads every fold's models, predicts its held-out fold (each model with its own temperature and
test-time augmentation; the ensemble is the mean of the seeds' probabilities, as ``cls_ensemble`` computes it), pools
the out-of-fold predictions over the 624 images and prints, for each seed alone, the seeds' mean and the ensemble:
AUROC, balanced accuracy at argmax, their mean (the training monitor ``val_score`` that chose every breastmnist
model), NLL, with 95% percentile intervals over 2,000 resamples of the images, and the ensemble minus seed 0,
paired over the same images. The rule, fixed before the runs: the ensemble becomes the default when its pooled
out-of-fold ``val_score`` is higher than the seeds' mean ``val_score``.

A recipe is an *arm*: ``commands --arm lm --recipe "..."`` puts its runs in ``f<k>/lm-s<seed>`` (the shipped
recipe's arm is the empty name, ``f<k>/s<seed>``), and ``compare --arm lm --against ""`` adds, paired over the same
images, the arm minus the other arm (each seed's model, and the ensembles of the same seeds).

Usage::

    python benchmarks/breastmnist_cv_seeds.py prepare DIR [--folds 5] [--seed 0]
    python benchmarks/breastmnist_cv_seeds.py commands DIR [--seeds 0,1,2,3,4] [--arm NAME --recipe "OPTIONS"]
    python benchmarks/breastmnist_cv_seeds.py compare DIR [--seeds 0,1,2,3,4] [--arm NAME] [--against NAME] [--json F]
    python benchmarks/breastmnist_cv_seeds.py external DIR --arms ",lm,mt" [--seeds 0] [--json F]

``external`` scores every fold model of each arm on the two shared external samples (BrEaST and BUS-UCLM, normal
and benign mapped to normal-or-benign; each image's central square, as the models read it) and prints, per arm, the
mean and sd over the fold models of AUROC (malignant vs rest) and of benign-vs-malignant AUROC (lesions only). It
shows whether a change travels; the samples choose nothing (issue 13).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

RECIPE = ("--archs compact_cnn --image-size 64 --epochs 60 --label-smoothing 0.1 --weight-decay 5e-4 --tta hflip "
          "--target-sensitivity 0.9")
"""The shipped breastmnist recipe (README, Imaging tasks)."""


def _stratified_folds(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index per image, each class dealt round-robin after a shuffle."""
    fold = np.empty(labels.size, dtype=np.int64)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold[idx] = np.arange(idx.size) % k
    return fold


def prepare(out: Path, k: int, seed: int) -> None:
    from breastdx.data.breastmnist import load_breastmnist

    data = load_breastmnist(Path(os.environ.get("BREASTDX_DATA", "../shared/data")))
    tr, va = data.split("train"), data.split("val")
    images = np.concatenate([tr.images, va.images])
    stored = np.concatenate([tr.medmnist_labels, va.medmnist_labels])
    rng = np.random.default_rng(seed)
    fold = _stratified_folds(stored, k, rng)
    for f in range(k):
        rest = np.flatnonzero(fold != f)
        inner = _stratified_folds(stored[rest], 8, rng)
        parts = {"train": rest[inner != 0], "val": rest[inner == 0], "test": np.flatnonzero(fold == f)}
        folder = out / f"f{f}"
        folder.mkdir(parents=True, exist_ok=False)
        np.savez_compressed(folder / "breastmnist.npz",
                            **{f"{s}_images": images[i] for s, i in parts.items()},
                            **{f"{s}_labels": stored[i].reshape(-1, 1) for s, i in parts.items()})
        (folder / "fold.json").write_text(json.dumps(
            {"source": str(data.path), "source_sha256": data.sha256, "folds": k, "fold": f, "seed": seed,
             "pool": "official train (indices 0-545) + val (546-623)", **{s: i.tolist() for s, i in parts.items()}}))
        print(f"f{f}: train {parts['train'].size}, val {parts['val'].size}, test {parts['test'].size} "
              f"({int((stored[parts['test']] == 0).sum())} malignant)")


def _run(folder: Path, arm: str, seed: int) -> Path:
    """The run folder of ``arm`` with ``seed`` in a fold's folder."""
    return folder / (f"{arm}-s{seed}" if arm else f"s{seed}")


def commands(out: Path, seeds: list[int], arm: str = "", recipe: str = RECIPE) -> None:
    for f in sorted(p.name for p in out.glob("f*") if p.is_dir()):
        for s in seeds:
            run = _run(out / f, arm, s)
            print(f"breastdx train breastmnist --data-file {out / f / 'breastmnist.npz'} {recipe} --seed {s} "
                  f"--threads 1 --progress-bar false --n-bootstrap 200 --gradcam-examples 0 --out {run} "
                  f"> {run}.log 2>&1")


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from breastdx.evaluation.metrics import auroc

    a = float(auroc(y, p[:, 1]))
    pred = p.argmax(1)
    bacc = float(np.mean([np.mean(pred[y == c] == c) for c in (0, 1)]))
    nll = float(-np.mean(np.log(np.clip(p[np.arange(y.size), y], 1e-12, 1))))
    return {"auroc": a, "balanced_accuracy": bacc, "val_score": (a + bacc) / 2, "nll": nll}


def _ci(y: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    """95% percentile intervals of every :func:`_metrics` figure over resampled images."""
    from breastmnist_seed_ensemble import _ci as interval

    return {k: interval(lambda yy, pp, k=k: _metrics(yy, pp)[k], y, p)["ci95"] for k in _metrics(y, p)}


def _oof(out: Path, seeds: list[int], arm: str) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Labels (1 = malignant), the pooled out-of-fold probabilities of each seed of ``arm`` and of their mean, and
    the number of folds."""
    from breastdx.inference.classifier import ClassificationPredictor

    folds = sorted(p for p in out.glob("f*") if p.is_dir())
    ys, probs = [], {s: [] for s in seeds}
    for folder in folds:
        data = np.load(folder / "breastmnist.npz")
        images, y = data["test_images"], (data["test_labels"].reshape(-1) == 0).astype(int)  # 1 = malignant
        ys.append(y)
        for s in seeds:
            model = ClassificationPredictor.from_dir(_run(folder, arm, s) / "model", task="breastmnist",
                                                     dtype="float32")
            probs[s].append(model.predict_proba(list(images)))
    rows = {f"seed {s}": np.concatenate(probs[s]) for s in seeds}
    rows["ensemble (mean probability)"] = np.mean(list(rows.values()), axis=0)
    return np.concatenate(ys), rows, len(folds)


def compare(out: Path, seeds: list[int], json_path: Path | None, arm: str = "", against: str | None = None) -> None:
    from breastdx.evaluation.paired import paired_auroc_test

    y, rows, n_folds = _oof(out, seeds, arm)
    result: dict = {"n": int(y.size), "n_malignant": int(y.sum()), "folds": n_folds, "arm": arm, "rows": {}}
    print(f"pooled out of fold over {y.size} images ({int(y.sum())} malignant), {n_folds} folds, 95% intervals")
    print(f"{'model':<30} {'AUROC':>22} {'balanced acc.':>22} {'val_score':>22} {'NLL':>22}")
    for name, p in rows.items():
        m, ci = _metrics(y, p), _ci(y, p)
        result["rows"][name] = {"value": m, "ci95": ci}
        print(f"{name:<30} " + " ".join(f"{m[k]:.3f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]".rjust(22)
                                         for k in ("auroc", "balanced_accuracy", "val_score", "nll")))
    singles = [result["rows"][f"seed {s}"]["value"] for s in seeds]
    mean = {k: float(np.mean([r[k] for r in singles])) for k in singles[0]}
    result["seeds_mean"] = mean
    print(f"{'seeds, mean of their figures':<30} " + " ".join(f"{mean[k]:.3f}".rjust(22)
                                                           for k in ("auroc", "balanced_accuracy", "val_score", "nll")))
    ens = rows["ensemble (mean probability)"]
    d = paired_auroc_test(y, ens[:, 1], rows[f"seed {seeds[0]}"][:, 1], n_boot=2000, seed=0)
    result["auroc_ensemble_minus_first_seed"] = d
    print(f"AUROC, ensemble minus seed {seeds[0]}, paired: {d['difference']:+.3f} [{d['ci95'][0]:+.3f}, "
          f"{d['ci95'][1]:+.3f}], p = {d['p_value']:.3f}")
    e = result["rows"]["ensemble (mean probability)"]["value"]["val_score"]
    result["ensemble_chosen"] = bool(e > mean["val_score"])
    print(f"rule (ensemble val_score > the seeds' mean): {e:.3f} vs {mean['val_score']:.3f}: "
          f"{'the ensemble' if result['ensemble_chosen'] else 'one model'}")
    if against is not None:
        _, other, _ = _oof(out, seeds, against)
        result["against"] = {"arm": against, "rows": {}}
        print(f"arm {arm or '(shipped recipe)'!r} minus arm {against or '(shipped recipe)'!r}, paired over the same images:")
        for name, p in rows.items():
            m, o = result["rows"][name]["value"], _metrics(y, other[name])
            d = paired_auroc_test(y, p[:, 1], other[name][:, 1], n_boot=2000, seed=0)
            result["against"]["rows"][name] = {"other": o, "auroc_difference": d}
            print(f"  {name:<28} AUROC {m['auroc']:.3f} vs {o['auroc']:.3f}: {d['difference']:+.3f} "
                  f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}], p = {d['p_value']:.3f}; val_score {m['val_score']:.3f} "
                  f"vs {o['val_score']:.3f}; NLL {m['nll']:.3f} vs {o['nll']:.3f}")
    if json_path:
        json_path.write_text(json.dumps(result, indent=1))


EXTERNAL = ("breast_lesions_usg_sample", "bus_uclm_sample")
"""The shared external samples (other sites and scanners), under the data root."""


def external(out: Path, arms: list[str], seeds: list[int], json_path: Path | None) -> None:
    from breastdx.data.external import label_indices, read_external
    from breastdx.data.images import read_image
    from breastdx.evaluation.metrics import auroc
    from breastdx.inference.classifier import ClassificationPredictor

    root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    sets = {}
    for name in EXTERNAL:
        data = read_external(root / name)
        y = label_indices(data, ("normal_or_benign", "malignant"), {"normal": "normal_or_benign",
                                                                     "benign": "normal_or_benign"})
        lesion = np.array([label != "normal" for label in data.labels])
        sets[name] = ([read_image(p, mode="gray").array for p in data.images], y, lesion)
    folds = sorted(p for p in out.glob("f*") if p.is_dir())
    result: dict = {}
    print(f"{'arm':<12} " + " ".join(f"{n + ' ' + k:>44}" for n in EXTERNAL for k in ("AUROC", "benign vs malignant")))
    for arm in arms:
        scores: dict = {n: {"auroc": [], "lesions_auroc": []} for n in EXTERNAL}
        for folder in folds:
            for s in seeds:
                model = ClassificationPredictor.from_dir(_run(folder, arm, s) / "model", task="breastmnist",
                                                         dtype="float32")
                for name, (images, y, lesion) in sets.items():
                    p = model.predict_proba(images)[:, 1]
                    scores[name]["auroc"].append(float(auroc(y, p)))
                    scores[name]["lesions_auroc"].append(float(auroc(y[lesion], p[lesion])))
        result[arm or "(shipped recipe)"] = {n: {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)),
                                                     "models": v} for k, v in d.items()} for n, d in scores.items()}
        print(f"{arm or '(shipped)':<12} " + " ".join(
            f"{np.mean(v):.3f} ({np.std(v, ddof=1):.3f}), n = {len(v)}".rjust(44)
            for n in EXTERNAL for v in (scores[n]["auroc"], scores[n]["lesions_auroc"])))
    if json_path:
        json_path.write_text(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("prepare", "commands", "compare", "external"))
    parser.add_argument("dir", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="training seeds")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--arm", default="", help="the recipe's name: runs in f<k>/<arm>-s<seed> ('': f<k>/s<seed>)")
    parser.add_argument("--recipe", default=RECIPE, help="training options of the arm (commands)")
    parser.add_argument("--against", default=None, help="another arm to compare with (compare)")
    parser.add_argument("--arms", default="", help="comma-separated arms (external); '' is the shipped recipe")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.action == "prepare":
        prepare(args.dir, args.folds, args.seed)
    elif args.action == "commands":
        commands(args.dir, seeds, args.arm, args.recipe)
    elif args.action == "external":
        external(args.dir, args.arms.split(","), seeds, args.json)
    else:
        compare(args.dir, seeds, args.json, args.arm, args.against)


if __name__ == "__main__":
    main()
