"""Write the BreastMNIST seed ensemble as a model folder, calibrate it, score it, and print its figures.

The members are BreastMNIST model folders of one recipe with other ``--seed`` values, on the official split (see
``benchmarks/breastmnist_seed_ensemble.py``, which compares them and their ensemble on validation first). This
script makes the folder that ships (``src/breastdx/zoo/breastmnist`` when the validation figures choose it):

1. :func:`breastdx.pipeline.ensemble.write_ensemble` (``cls_ensemble``, weights stored in float16);
2. ``breastdx calibrate breastmnist --fit temperature,conformal,ood``: temperature, threshold at the members'
   target sensitivity, prediction sets and the out-of-distribution record, all on the 78 validation images;
3. ``breastdx evaluate breastmnist`` on the validation and test splits (float32), the test figures written into
   ``meta.json`` (``metrics``, ``calibration``) as a training run writes them;
4. ``breastdx evaluate breastmnist --external DIR`` on both shared external samples (float32);
5. the model card, with the members, the test figures and sections on the external samples, prediction sets,
   out-of-scope inputs and the test images with a frame of the same lesion in training (``breastmnist_leak.py``);
6. the ensemble against ``--baseline`` (default: the shipped ``breastmnist``): validation AUROC, balanced accuracy
   and the training monitor ``val_score`` ((AUROC + balanced accuracy) / 2, at argmax), and the test AUROC
   difference paired over the same images (:func:`breastdx.evaluation.paired.paired_auroc_test`).

Usage::

    python benchmarks/breastmnist_ship_ensemble.py runs/bm-seeds/s{0,1,2,3,4}/model --out DIR [--work DIR]
        [--cv FILE.json] [--recipe "Members trained with ...; the recipe chosen by ..."]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

TITLE = "BreastMNIST malignant vs normal-or-benign: {n}-seed ensemble"
MAPPING = "normal=normal_or_benign,benign=normal_or_benign"
EXTERNAL = {"breast_lesions_usg_sample": "BrEaST-Lesions-USG sample (Poland, several scanners; "
                                         "`breast_lesions_usg_sample`)",
            "bus_uclm_sample": "BUS-UCLM sample (Spain, Siemens ACUSON S2000; `bus_uclm_sample`)"}


def _cli(*args: str) -> None:
    from typer.testing import CliRunner

    from breastdx.cli import app

    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        raise SystemExit(f"breastdx {' '.join(args)} failed:\n{result.output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="BreastMNIST model folders, one per seed")
    parser.add_argument("--out", type=Path, required=True, help="the new model folder")
    parser.add_argument("--baseline", default="breastmnist", help="model to compare with (default: the shipped one)")
    parser.add_argument("--cv", type=Path, help="compare.json of benchmarks/breastmnist_cv_seeds.py, for the card")
    parser.add_argument("--work", type=Path, help="folder for the calibrate and evaluate runs (default: temporary)")
    parser.add_argument("--recipe", default="", help="the card's sentence on the members' training command and how "
                                                     "that recipe was chosen")
    args = parser.parse_args()
    from breastdx.evaluation.tables import ci_text
    from breastdx.pipeline.ensemble import write_ensemble, write_ensemble_card
    from breastdx.runs import write_json

    data = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    work = args.work or Path(tempfile.mkdtemp(prefix="bm-ensemble-"))
    out = args.out
    title = TITLE.format(n=len(args.models))
    write_ensemble(args.models, out, title=title, weights_dtype="float16")
    _cli("calibrate", "breastmnist", "--model", str(out), "--data-dir", str(data), "--fit", "temperature,conformal,ood",
         "--out", str(work / "calibrate"))
    runs = {}
    for split in ("val", "test"):
        _cli("evaluate", "breastmnist", "--model", str(out), "--data-dir", str(data), "--split", split, "--dtype",
             "float32", "--out", str(work / split))
        runs[split] = json.loads((work / split / "metrics.json").read_text())
    for name in EXTERNAL:
        _cli("evaluate", "breastmnist", "--model", str(out), "--external", str(data / name), "--label-map", MAPPING,
             "--dtype", "float32", "--out", str(work / name))
        runs[name] = json.loads((work / name / "metrics.json").read_text())
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text())
    test = runs["test"]
    meta.update(metrics=test["metrics"], metrics_split=test["split"], calibration=test["calibration"])
    write_json(meta, meta_path)  # NaN as null

    against = _compare(out, args.baseline, data)
    if args.cv:
        cv = json.loads(args.cv.read_text())
        e, m1 = cv["rows"]["ensemble (mean probability)"], cv["seeds_mean"]
        cv_auroc = {"value": e["value"]["auroc"], "ci95": e["ci95"]["auroc"]}
        d = cv["auroc_ensemble_minus_first_seed"]
        against += (f" Cross-validation decided instead (`benchmarks/breastmnist_cv_seeds.py`, stratified {cv['folds']}"
                    f"-fold over the {cv['n']} training and validation images, each seed trained on every fold, test "
                    f"split not read): pooled out-of-fold val_score {e['value']['val_score']:.3f} against "
                    f"{m1['val_score']:.3f} for the seeds alone on average, AUROC {ci_text(cv_auroc)} "
                    f"against {m1['auroc']:.3f}, NLL {e['value']['nll']:.3f} against {m1['nll']:.3f}; ensemble "
                    f"minus seed 0, paired AUROC {d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]. "
                    f"{'So the ensemble is the default model.' if cv['ensemble_chosen'] else 'So one model stays.'}")
    m, v = test["metrics"], runs["val"]["metrics"]
    print(f"validation (n = {runs['val']['n']}): AUROC {ci_text(v['auroc'])}, accuracy {ci_text(v['accuracy'])}")
    print(f"test (n = {test['n']}): AUROC {ci_text(m['auroc'])}, accuracy {ci_text(m['accuracy'])}, sensitivity "
          f"{ci_text(m['sensitivity'])}, specificity {ci_text(m['specificity'])}")
    notes = ((args.recipe.rstrip() + " " if args.recipe else "")
             + f"Official MedMNIST v2 test split (n = {test['n']}); 95% bootstrap intervals over images. Test AUROC "
             f"{ci_text(m['auroc'])}, accuracy (argmax) {ci_text(m['accuracy'])}; validation (n = "
             f"{runs['val']['n']}) AUROC {ci_text(v['auroc'])}. {against} "
             f"Sensitivity, specificity, PPV, NPV and F1 are at the operating threshold "
             f"{meta['threshold']:.3f} on P(malignant), chosen on validation ({meta['threshold_rule']}); the "
             f"temperature {meta['temperature']:.3f} scales the ensemble's logits, fitted on validation after "
             f"each member's own. MedMNIST v2 table: ResNet-18 (28) 0.901 / 0.863, Google AutoML Vision 0.919 / "
             f"0.861.")
    write_ensemble_card(out, title, notes)
    rows = []
    for name, label in EXTERNAL.items():
        r = runs[name]
        lo = r["lesions_only"]
        rows.append(f"| {label} | {r['n']} | {ci_text(r['metrics']['auroc'])} | {ci_text(lo['auroc'])} (n = "
                    f"{lo['n']}) | {ci_text(r['metrics']['accuracy'])} |")
        print(f"{name}: n = {r['n']}, AUROC {ci_text(r['metrics']['auroc'])}, benign vs malignant "
              f"{ci_text(lo['auroc'])}, accuracy {ci_text(r['metrics']['accuracy'])}")
    leak = _leak(out, data)
    conf = test["conformal"]
    per = "; ".join(f"{c} {x['conformal_coverage']:.3f} (n = {x['n']})" for c, x in conf["per_class"].items())
    ood = meta["ood"]
    sections = [
        "## External evaluation", "",
        f"Other sites and scanners, never used for training or model choice; figures from `breastdx evaluate "
        f"breastmnist --external DIR --label-map {MAPPING} --dtype float32` (2,000 bootstrap resamples over images, "
        f"seed 0). Samples this small give wide intervals.", "",
        "| external set | n | AUROC malignant vs rest | benign vs malignant AUROC (lesions only) | accuracy (argmax) |",
        "|---|---|---|---|---|", *rows, "",
        "The model reads 28 x 28 images: each external image is cut to its central square and resized to 28 x 28, as "
        "MedMNIST made BreastMNIST from BUSI.", "",
        *leak,
        "## Prediction sets (conformal)", "",
        f"`predict` and the service give a `prediction_set`: split conformal prediction with adaptive prediction "
        f"sets (APS; Romano et al. 2020, arXiv:2006.02544), calibrated on the {conf['n_calibration']} validation "
        f"cases (`meta.json` → `conformal`). At the {conf['level']:g} level, on the test split (n = {conf['n']}): "
        f"coverage {ci_text(conf['conformal_coverage'])}, mean set size {ci_text(conf['mean_set_size'])}; per "
        f"class: {per}. Coverage is marginal over cases like the calibration cases: it is not promised per class, "
        f"nor for images from another scanner or hospital.", "",
        "## Out-of-scope inputs", "",
        f"Each input is checked for colour and size against the training images, and scored in the last member's "
        f"feature space: the cosine distance of its L2-normalised penultimate features to the {ood['k']}th nearest "
        f"of {ood['n_bank']} training images (deep nearest neighbours, Sun et al. 2022, arXiv:2204.06507; bank "
        f"`{ood['bank_file']}`). Over {ood['threshold']:.4f}, the {ood['quantile']:g} quantile of the "
        f"{ood['n_calibration']} validation images' distances, the input is flagged (`in_scope` false); it is "
        f"still predicted.", ""]
    card = out / "MODEL_CARD.md"
    text = card.read_text()
    head, tail = text.split("\n## Limitations\n", 1)
    from breastdx.tasks.breastmnist import BREASTMNIST

    own = "".join(f"- {line}\n" for line in BREASTMNIST.spec.card_limitations if not line.startswith("Research use"))
    limits = tail.split("\n## ", 1)[0]  # the generic prediction-set and scope sections: replaced by the measured ones
    card.write_text(head.rstrip("\n") + "\n\n" + "\n".join(sections) + "\n## Limitations\n" + own + limits.rstrip("\n")
                    + "\n")
    print(f"written: {out} (runs in {work})")


def _leak(model_dir: Path, data: Path) -> list[str]:
    """The card's section on the test images that have a frame of the same lesion in training."""
    from breastmnist_leak import leaking, subsets

    from breastdx.data.breastmnist import load_breastmnist
    from breastdx.evaluation.tables import ci_text
    from breastdx.inference.classifier import ClassificationPredictor

    bm = load_breastmnist(data)
    leak, n = leaking(bm, data, Path(__file__).resolve().parents[1] / "src/breastdx/zoo/busi-seg/split.json")
    test = bm.split("test")
    p = ClassificationPredictor.from_dir(model_dir, task="breastmnist", dtype="float32").predict_proba(list(test.images))
    names = {"all": "all", "clean": "no frame of the lesion in training", "leaking": "a frame of the lesion in training"}
    rows = [f"| {names[k]} | {r['n']} ({r['malignant']}) | {ci_text({'value': r['auroc'], 'ci95': r['auroc_ci95']})} | "
            f"{ci_text({'value': r['accuracy'], 'ci95': r['accuracy_ci95']})} |"
            for k, r in subsets(test.labels, p, leak).items()]
    print("test split by leak:\n" + "\n".join(rows))
    return ["## Near-duplicates across the split", "",
            f"BreastMNIST's split is random. Each image is the central square of a BUSI image, and BUSI holds several "
            f"frames of many lesions: {n['leaking']} of the {n['test']} test images ({n['leaking_malignant']} "
            f"malignant) have another frame of the same lesion among the training and validation images "
            f"(`benchmarks/breastmnist_leak.py`; BUSI's near-duplicate groups of the busi-seg split). The figures "
            f"without them:", "",
            "| test images | n (malignant) | AUROC | accuracy (argmax) |", "|---|---|---|---|", *rows, ""]


def _compare(ensemble: Path, baseline: str, data: Path) -> str:
    """Print the ensemble against ``baseline`` and return it as a sentence for the card."""
    from breastmnist_cv_seeds import _metrics

    from breastdx.data.breastmnist import load_breastmnist
    from breastdx.evaluation.metrics import auroc
    from breastdx.evaluation.paired import paired_auroc_test
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.zoo import resolve_model

    bm = load_breastmnist(data)
    splits = {s: bm.split(s) for s in ("val", "test")}
    probs = {}
    for name, folder in (("ensemble", ensemble), ("baseline", resolve_model(baseline, "breastmnist"))):
        model = ClassificationPredictor.from_dir(folder, task="breastmnist", dtype="float32")
        probs[name] = {s: model.predict_proba(list(v.images)) for s, v in splits.items()}
    y = {s: v.labels.astype(int) for s, v in splits.items()}
    val = {}
    for name, p in probs.items():
        m = _metrics(y["val"], p["val"])
        val[name] = (m["auroc"], m["balanced_accuracy"], m["val_score"])
        print(f"{name:<9} validation AUROC {m['auroc']:.3f}, balanced accuracy (argmax) {m['balanced_accuracy']:.3f}, "
              f"val_score {m['val_score']:.3f}; test AUROC {float(auroc(y['test'], p['test'][:, 1])):.3f}")
    d = paired_auroc_test(y["test"], probs["ensemble"]["test"][:, 1], probs["baseline"]["test"][:, 1], n_boot=2000,
                          seed=0)
    print(f"test AUROC, ensemble minus {baseline}: {d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}], "
          f"p = {d['p_value']:.3f}")
    e, b = val["ensemble"], val["baseline"]
    chosen = "chooses the ensemble" if e[2] > b[2] else f"does not choose it over `{baseline}`"
    return (f"Against `{baseline}` on validation: AUROC {e[0]:.3f} against {b[0]:.3f}, balanced accuracy (argmax) "
            f"{e[1]:.3f} against {b[1]:.3f}, so the training monitor val_score ((AUROC + balanced accuracy) / 2) "
            f"{e[2]:.3f} against {b[2]:.3f}: validation {chosen}. Test AUROC, read after that, paired over the "
            f"same images: {d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}], p = "
            f"{d['p_value']:.3f}.")


if __name__ == "__main__":
    main()
