"""What a training run of the image-classification pipeline measures besides the metrics, and its report.

* :func:`paired_tests`: the best model against each other one on the same test images (paired, class-stratified
  bootstrap of the AUROC difference; DeLong's test as a cross-check);
* :func:`deduplicated_test`: the test metrics again with pixel-identical test images kept once (PCam has some);
* :func:`gradcam_examples`: Grad-CAM overlays of a few test images per class, and where the label refers to a
  region of the image (PCam's centre 32 x 32), the share of each map inside it;
* :func:`train_report`: ``report.html`` of the run.

References:
    Efron, B. & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall.
    DeLong, E. R. et al. (1988). Comparing the areas under two or more correlated ROC curves. Biometrics 44:837,
    doi:10.2307/2531595
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from breastdx.evaluation.conformal import report_conformal
from breastdx.evaluation.tables import (OPERATING_POINT_TEXT, calibration_rows, ci_text, comparison_rows,
                                        metric_label)
from breastdx.pipeline.task import evenly_spaced


def exact_duplicate_groups(images: np.ndarray) -> list[list[int]]:
    """Groups (two or more members) of pixel-identical images.

    Args:
        images: ``uint8`` ``(N, H, W[, C])``.

    Returns:
        Index lists in first-occurrence order.
    """
    seen: dict[bytes, list[int]] = {}
    for i in range(images.shape[0]):
        seen.setdefault(hashlib.sha1(np.ascontiguousarray(images[i]).tobytes()).digest(), []).append(i)
    return [g for g in seen.values() if len(g) > 1]


def paired_tests(runs: dict[str, Any], best: str, y: np.ndarray, positive: Sequence[int], config: Any,
                 groups: Any = None, unit: str = "patient") -> list[dict[str, Any]]:
    """Paired bootstrap AUROC tests (positive vs rest; ``positive`` the class indices of the positive class, see
    :func:`breastdx.evaluation.classification.positive_columns`) of the best model against each other one, on the
    test set; over the test units (cluster bootstrap over ``unit``: patients, or busi-cls's lesions) when ``groups``
    gives a unit id per item (:func:`resampled_units`)."""
    from breastdx.evaluation.classification import positive_probability
    from breastdx.evaluation.paired import paired_auroc_test

    yb = np.isin(np.asarray(y), positive).astype(int)
    if len(runs) < 2 or yb.all() or not yb.any():
        return []
    return [paired_auroc_test(yb, positive_probability(runs[best].test["prob"], positive),
                              positive_probability(runs[other].test["prob"], positive),
                              n_boot=config.n_bootstrap, seed=config.seed, names=(best, other), return_resamples=True,
                              groups=groups, unit=unit)
            for other in runs if other != best]


def deduplicated_test(test_ds: Any, runs: dict[str, Any], config: Any, positive: str) -> dict[str, Any]:
    """Test metrics after keeping one image of each group of pixel-identical test images (at network size)."""
    from breastdx.evaluation.classification import classification_metrics

    groups = exact_duplicate_groups(test_ds.images)
    if not groups:
        return {"duplicate_groups": 0, "removed": 0}
    drop = {i for g in groups for i in g[1:]}
    keep = np.array([i for i in range(len(test_ds)) if i not in drop])
    out: dict[str, Any] = {"duplicate_groups": len(groups), "removed": len(drop), "n": int(keep.size),
                           "note": "pixel-identical test images (at network size) kept once", "models": {}}
    for arch, r in runs.items():
        mm = classification_metrics(test_ds.labels[keep], r.test["prob"][keep], list(test_ds.class_names), positive,
                                    r.calibration["threshold"], n_boot=config.n_bootstrap, seed=config.seed)
        out["models"][arch] = {k: mm[k] for k in ("auroc", "accuracy", "balanced_accuracy")}
    return out


def patient_intervals(test: Any, prob: np.ndarray, threshold: float, positive: Sequence[int], n_boot: int,
                      seed: int) -> dict[str, Any] | None:
    """The binary test figures (positive vs rest) with 95% intervals from resampling the test patients (each with all
    their images, :func:`breastdx.evaluation.ci.patient_bootstrap`), for data with patient ids; None without them.

    Images of one patient are not independent, so these intervals are wider, and more honest, than those of
    ``metrics`` (which resample images).

    Returns:
        ``{"auroc", "sensitivity", "specificity", "f1", "balanced_accuracy": {"value", "ci95", "n_patients",
        "n_resamples"}}``, at the operating ``threshold`` on P(positive).
    """
    from breastdx.evaluation.ci import patient_bootstrap
    from breastdx.evaluation.classification import positive_probability
    from breastdx.evaluation.metrics import auroc

    if test.groups is None:
        return None
    y = np.isin(np.asarray(test.labels), positive)
    p = positive_probability(prob, positive)
    pred = p >= threshold
    groups = np.asarray(test.groups)

    def rate(idx: np.ndarray, truth: bool) -> float:
        m = y[idx] == truth
        return float(np.mean(pred[idx][m] == truth)) if m.any() else float("nan")

    def f1(idx: np.ndarray) -> float:
        tp = float(np.sum(pred[idx] & y[idx]))
        den = float(np.sum(pred[idx]) + np.sum(y[idx]))
        return 2 * tp / den if den else float("nan")

    stats = {"auroc": lambda idx: float(auroc(y[idx], p[idx])) if 0 < y[idx].sum() < idx.size else float("nan"),
             "sensitivity": lambda idx: rate(idx, True), "specificity": lambda idx: rate(idx, False), "f1": f1,
             "balanced_accuracy": lambda idx: 0.5 * (rate(idx, True) + rate(idx, False))}
    return {k: patient_bootstrap(f, groups, n_boot, seed) for k, f in stats.items()}


def resampled_units(spec: Any, test: Any) -> tuple[str, ...] | None:
    """The unit id per item of ``test`` that intervals and paired tests resample, or None to resample items.

    ``ImageSet.groups`` names a ``spec.group_unit`` per item: a patient (idc, breakhis: always used) or a lesion
    (busi-cls: the frames of one near-duplicate group, used only when two of them are among ``test``; a split made
    by ``--split-method absolute`` leaves val and test single frames, and nothing changes there).
    """
    if test.groups is None:
        return None
    if spec.group_unit == "patient" or len(set(test.groups)) < len(test.groups):
        return tuple(test.groups)
    return None


def unit_metrics(spec: Any, test: Any, prob: np.ndarray, threshold: float, positive: Sequence[int], n_boot: int,
                 seed: int, which: str = "test") -> dict[str, Any]:
    """The ``metrics.json`` entries over the units of :func:`resampled_units` (none without them).

    Patients: ``per_patient`` (each test patient's predicted against true share) and ``metrics_over_patients``.
    Other units (busi-cls's lesions): ``metrics_over_<unit>s`` only, each figure's ``n_<unit>s`` counting them;
    a share of positive frames per lesion says nothing, so there is no per-unit table. ``which`` names the split
    in the notes.
    """
    groups = resampled_units(spec, test)
    if groups is None:
        return {}
    over = patient_intervals(test, prob, threshold, positive, n_boot, seed)
    unit, what = spec.group_unit, f"{spec.positive} vs rest at the operating threshold; 95% intervals from resampling"
    if unit == "patient":
        patients = per_patient(test, prob, threshold, positive)
        return {"per_patient": patients, "metrics_over_patients": {
            **over, "note": f"{what} the {patients['n_patients']} {which} patients with all their {spec.items}"}}
    sizes = Counter(groups).values()
    over = {k: {(f"n_{unit}s" if f == "n_patients" else f): x for f, x in v.items()} for k, v in over.items()}
    return {f"metrics_over_{unit}s": {**over, "note": (
        f"{what} the {len(sizes)} {unit}s of the {len(groups)} {which} {spec.items} ({sum(k > 1 for k in sizes)} "
        f"imaged more than once), the near-duplicate frames of one {unit} together: the intervals to quote, as "
        f"frames of one {unit} are not independent")}}


def unit_card_text(spec: Any, test: Any, prob: np.ndarray, threshold: float, positive: Sequence[int], n_boot: int,
                   seed: int) -> str:
    """The model card's sentence quoting the AUROC interval over lesions (units other than patients, as busi-seg's
    card quotes its Dice over lesions), or "" where :func:`unit_metrics` has none."""
    unit = spec.group_unit
    if unit == "patient" or resampled_units(spec, test) is None:
        return ""
    over = unit_metrics(spec, test, prob, threshold, positive, n_boot, seed)[f"metrics_over_{unit}s"]
    return (f" The test {spec.items} hold several frames of some {unit}s: resampling {unit}s instead (the frames of "
            f"one together; {over['auroc'][f'n_{unit}s']} units), AUROC ({spec.positive}) {ci_text(over['auroc'])}, "
            f"the interval to quote.")


def unit_table(rep: Any, over: dict[str, Any], unit: str, whose: str = "The best model's") -> None:
    """``whose`` figures with their intervals over units (patients, lesions), in ``rep``."""
    rep.paragraph(f"{whose} figures with 95% intervals over {unit}s ({over['note']}):")
    rep.table(["metric", f"value [95% CI over {unit}s]"], [[k, ci_text(v)] for k, v in over.items() if isinstance(v, dict)])


def per_patient(test: Any, prob: np.ndarray, threshold: float, positive: Sequence[int]) -> dict[str, Any] | None:
    """Each test patient's predicted against true share of positive items (at the operating threshold), for data
    with patient ids; None without them.

    Returns:
        ``{"n_patients", "mae", "pearson_r", "rows": [{"patient", "n", "true_share", "predicted_share",
        "mean_p_positive"}]}``: the mean absolute difference of the shares and their Pearson correlation (NaN with
        fewer than 3 patients or a constant share).
    """
    if test.groups is None:
        return None
    from breastdx.evaluation.classification import positive_probability

    groups = np.asarray(test.groups)
    p_positive = positive_probability(prob, positive)
    pred = p_positive >= threshold
    truth = np.isin(np.asarray(test.labels), positive)
    rows = []
    for g in sorted(set(groups.tolist()), key=lambda v: (len(v), v)):
        m = groups == g
        rows.append({"patient": g, "n": int(m.sum()), "true_share": float(truth[m].mean()),
                     "predicted_share": float(pred[m].mean()), "mean_p_positive": float(p_positive[m].mean())})
    t = np.array([r["true_share"] for r in rows])
    q = np.array([r["predicted_share"] for r in rows])
    r = float(np.corrcoef(t, q)[0, 1]) if len(rows) >= 3 and t.std() > 0 and q.std() > 0 else float("nan")
    return {"n_patients": len(rows), "mae": float(np.abs(t - q).mean()), "pearson_r": r, "rows": rows}


def plot_per_patient(result: dict[str, Any], positive: str, path: Path) -> Path:
    """Scatter of each test patient's predicted against true share of ``positive`` items, with the diagonal."""
    import matplotlib.pyplot as plt

    from breastdx.evaluation.plots import DPI

    t = [r["true_share"] for r in result["rows"]]
    q = [r["predicted_share"] for r in result["rows"]]
    n = [r["n"] for r in result["rows"]]
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8)
    ax.scatter(t, q, s=[8 + 2 * k for k in n], alpha=0.6)
    ax.set_xlabel(f"true share of {positive} items")
    ax.set_ylabel("predicted share (operating threshold)")
    ax.set_title(f"{result['n_patients']} test patients: MAE {result['mae']:.3f}, r {result['pearson_r']:.2f}",
                 fontsize=9)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def region_mask(shape: tuple[int, int], fraction: float) -> np.ndarray:
    """bool ``(H, W)``: the centred square covering ``fraction`` of each side."""
    h, w = shape
    mask = np.zeros((h, w), dtype=bool)
    rh, rw = int(round(h * fraction)), int(round(w * fraction))
    top, left = (h - rh) // 2, (w - rw) // 2
    mask[top:top + rh, left:left + rw] = True
    return mask


def gradcam_examples(task: Any, model_dir: Path, test: Any, class_names: Sequence[str], config: Any) -> dict[str, Any]:
    """Grad-CAM of the reported label on ``--gradcam-examples`` test images per class (for a figure), and with a
    label region, the share of the positive-class map inside it on up to 500 positive test images."""
    from breastdx.evaluation.ci import mean_ci
    from breastdx.evaluation.classification import positive_columns, positive_probability
    from breastdx.explain.gradcam import cam_mass_in_mask
    from breastdx.inference.classifier import ClassificationPredictor

    region = task.spec.label_region
    if config.gradcam_examples == 0 and region is None:
        return {}
    predictor = ClassificationPredictor.from_dir(model_dir, task=task.name, batch_size=64)
    labels = test.labels
    pos = positive_columns(class_names, task.spec.positive)
    out: dict[str, Any] = {"method": predictor.gradcam_method, "layer": predictor.explainer().layer}
    shown: list[int] = []
    for k in range(len(class_names)):
        idx = np.flatnonzero(labels == k)
        shown += idx[evenly_spaced(idx.size, config.gradcam_examples)].tolist() if config.gradcam_examples else []
    if shown:
        images = [test.read(i)[0] for i in shown]
        prob, lab, maps = predictor.explain(images)
        out["items"] = [{"id": test.ids[i], "label": int(labels[i]), "p_positive": float(positive_probability(prob[j], pos)),
                         "predicted": int(lab[j]), "image": images[j], "cam": maps[j]} for j, i in enumerate(shown)]
    if region is not None and len(pos) == 1:  # the map of one positive class
        idx = np.flatnonzero(labels == pos[0])
        idx = idx[evenly_spaced(idx.size, 500)]
        if idx.size:
            images = [test.read(int(i))[0] for i in idx]
            _, _, maps = predictor.explain(images, class_idx=pos[0])
            mask = region_mask(images[0].shape[:2], region)
            out["mass_in_label_region"] = {
                **mean_ci([cam_mass_in_mask(c, mask) for c in maps], config.n_bootstrap, config.seed),
                "uniform_map": float(mask.mean()),
                "note": f"share of the {task.spec.positive}-class map inside the centre {region:.3g} x {region:.3g} of "
                        f"the image, on up to 500 {task.spec.positive} test images"}
    return out


def plot_cams(items: list[dict[str, Any]], class_names: Sequence[str], positive: str, region: float | None,
              path: Path) -> Path:
    """A grid: each example image above its Grad-CAM overlay, with the label region boxed when there is one."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from breastdx.evaluation.plots import DPI
    from breastdx.visualize import heatmap_overlay

    cols = min(len(items), 8)
    rows = (len(items) + cols - 1) // cols
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.7 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for j, it in enumerate(items):
        rr, cc = 2 * (j // cols), j % cols
        image = it["image"]
        axes[rr, cc].imshow(image, cmap="gray" if image.ndim == 2 else None)
        axes[rr + 1, cc].imshow(heatmap_overlay(image, it["cam"]))
        axes[rr, cc].set_title(f"true {class_names[it['label']]}\nP({positive}) {it['p_positive']:.2f}", fontsize=7)
        if region:
            ys, xs = np.nonzero(region_mask(image.shape[:2], region))
            for ax in (axes[rr, cc], axes[rr + 1, cc]):
                ax.add_patch(Rectangle((xs.min() - 0.5, ys.min() - 0.5), xs.max() - xs.min() + 1,
                                       ys.max() - ys.min() + 1, fill=False, ec="lime", lw=0.8))
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _localisation_section(rep: Any, run_dir: Path, localisation: dict[str, Any], best: str, test: Any,
                          class_names: Sequence[str], pred: np.ndarray) -> None:
    from breastdx.visualize import write_cam_png

    rep.heading("Explanations: do the Grad-CAM maps point at the lesion?")
    first = next(iter(next(iter(localisation.values())).values()))
    rep.paragraph(f"On the {first['n_images']} test images with a lesion, maps of the true class at the original "
                  f"image size. 'Mass in lesion': share of the map's sum inside the lesion mask (a uniform map scores "
                  f"the lesion's area fraction, {ci_text(first['mask_area_fraction'])}). 'Pointing game': the map's "
                  f"maximum lies within {first['tolerance_px']:.0f} px of the lesion (Zhang et al. 2018, "
                  f"doi:10.1007/s11263-017-1059-x); always pointing at the image centre scores "
                  f"{ci_text(first['pointing_game_center'])}.")
    rows = [[arch + (" (best)" if arch == best else ""), method, ci_text(d["cam_mass_in_mask"]),
             ci_text(d["pointing_game"]), str(d["n_empty_maps"])]
            for arch, per in localisation.items() for method, d in per.items()]
    rep.table(["model", "method", "mass in lesion", "pointing game hit rate", "all-zero maps"], rows)
    d = next(iter(localisation[best].values()))
    shown = [j for k in sorted(set(test.labels[d["indices"]].tolist()))
             for j in [j for j, i in enumerate(d["indices"]) if test.labels[i] == k][:2]]
    for j in shown:
        i = d["indices"][j]
        image, mask = test.read(i)
        png = run_dir / f"gradcam_{class_names[test.labels[i]].replace('/', '_')}_{j}.png"
        write_cam_png(image, d["cams"][j], png, contour_mask=mask,
                      legend=[f"Grad-CAM of {class_names[test.labels[i]]}", str(test.ids[i])])
        rep.figure(png, f"{test.ids[i]}: predicted {class_names[pred[i]]}; Grad-CAM of {class_names[test.labels[i]]} "
                        f"(green: reference lesion)")


def train_report(task: Any, run_dir: Path, config: Any, data: Any, runs: dict[str, Any], best: str,
                 metrics: dict[str, Any], localisation: dict[str, Any]) -> None:
    """Write ``report.html`` of a training run (comparison, paired tests, benchmark, metrics, calibration, figures,
    Grad-CAM, training curves)."""
    from breastdx.evaluation.classification import plot_training_curves, write_figures
    from breastdx.evaluation.paired import plot_auroc_difference
    from breastdx.evaluation.report import HtmlReport
    from breastdx.training.trainer import read_training_log

    spec = task.spec
    positive, class_names = spec.positive, list(data.class_names)
    r = runs[best]
    rep = HtmlReport(f"breastdx — {task.title}")
    sizes = "; ".join(f"{s} {len(p)} ({', '.join(f'{v} {c}' for c, v in p.counts(class_names).items())})"
                      for s, p in data.parts.items())
    rep.paragraph(f"{data.about.replace(chr(10) + '- ', ' ').lstrip('- ')} Split: {data.kind}: {sizes}. Input "
                  f"{config.image_size}x{config.image_size} {spec.mode}; class imbalance: {config.imbalance}; "
                  f"augmentation: {'on' if config.augment else 'off'}; test-time augmentation: {config.tta}. Every "
                  f"model is trained on the same training split; each one's best epoch and the best model are chosen "
                  f"on the validation split (score = mean of macro AUROC and balanced accuracy), where the temperature "
                  f"and the operating threshold on P({positive}) are fitted too. Intervals: 95% bootstrap over test "
                  f"{spec.items} ({config.n_bootstrap} resamples). " + OPERATING_POINT_TEXT.format(positive=positive))
    rep.heading("Model comparison (test split)")
    header, rows = comparison_rows(runs, best)
    if localisation:
        meth = config.gradcam_method
        header = [*header, f"CAM mass in lesion ({meth})", f"pointing game ({meth})"]
        rows = [[*row, ci_text(localisation[a][meth]["cam_mass_in_mask"]),
                 ci_text(localisation[a][meth]["pointing_game"])] for row, a in zip(rows, runs)]
    rep.table(header, rows, highlight_row=list(runs).index(best))
    for c in metrics["_comparisons"]:
        rep.heading(f"Paired test of the AUROC difference: {c['model_a']} vs {c['model_b']}")
        d = c["delong"]
        rep.paragraph(f"On the same {c['n']} test {spec.items} ({c['n_positive']} {positive}): AUROC {c['auroc_a']:.4f} "
                      f"({c['model_a']}) vs {c['auroc_b']:.4f} ({c['model_b']}); difference {c['difference']:+.4f}, "
                      f"95% CI [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}], two-sided p = {c['p_value']:.3g} ("
                      f"{c['method'].split(';')[0]}, {c['n_boot']} resamples; Efron & Tibshirani 1993). DeLong's "
                      f"test (doi:10.2307/2531595): z = {d['z']:.2f}, p = {d['p_value']:.3g}, 95% CI "
                      f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}].")
        png = run_dir / f"auroc_difference_{c['model_a']}_vs_{c['model_b']}.png"
        rep.figure(plot_auroc_difference(c, png), "Bootstrap distribution of the paired AUROC difference, with its "
                                                  "95% interval and zero")
    if "benchmark" in metrics:
        b, keys = metrics["benchmark"], list(spec.benchmark.targets)
        bench = [[k, *[f"{v[m]:.3f}" if m in v else "n/a" for m in keys]] for k, v in b["published"].items()]
        bench += [[f"breastdx {a} (this run)", *[ci_text(x.test["metrics"][m]) for m in keys]] for a, x in runs.items()]
        rep.heading("Benchmark")
        rep.table(["method", *[metric_label(m) for m in keys]], bench,
                  highlight_row=len(b["published"]) + list(runs).index(best))
        targets = " and ".join(f"{k} >= {b[k + '_target']}" for k in keys)
        rep.paragraph(f"Targets: {targets}; "
                      f"{'reached' if b['reached'] else 'not reached'} by {best}. {b['note']}")
    dedup = metrics["deduplicated_test"]
    if dedup.get("removed"):
        rep.heading("Test split without duplicates")
        rep.paragraph(f"{dedup['duplicate_groups']} groups of pixel-identical test {spec.items}; keeping one of each "
                      f"removes {dedup['removed']} (n = {dedup['n']}).")
        rep.table(["model", "AUROC", "accuracy @ argmax", "balanced acc. @ argmax"],
                  [[a, ci_text(v["auroc"]), ci_text(v["accuracy"]), ci_text(v["balanced_accuracy"])]
                   for a, v in dedup["models"].items()])
    m = r.test["metrics"]
    rep.heading(f"Best model ({best}): every metric ({positive} = positive)")
    rep.metrics_table(m, metric_label)
    if len(class_names) > 2:
        rep.heading("Per class (one vs rest, argmax predictions)")
        rep.table(["class", "sensitivity", "specificity", "AUROC"],
                  [[c, ci_text(m[f"sensitivity_{c}"]), ci_text(m[f"specificity_{c}"]), ci_text(m[f"auroc_{c}"])]
                   for c in class_names])
    rep.heading("Calibration on the test split: before and after temperature scaling (fitted on validation)")
    rep.table(["metric", "before (T = 1)", "after"], calibration_rows(r.test["calibration"]))
    if metrics.get("conformal"):
        report_conformal(rep, metrics["conformal"], "test")
    rep.heading("Figures")
    for png, caption in write_figures(run_dir, data.parts["test"].labels, {a: x.test for a, x in runs.items()}, best,
                                      class_names, positive, "test"):
        rep.figure(png, caption)
    cams = metrics["_cams"]
    if cams.get("items"):
        rep.heading(f"Grad-CAM ({cams['method']}, layer {cams['layer']}) on test {spec.items}, best model")
        png = plot_cams(cams["items"], class_names, positive, spec.label_region, run_dir / "gradcam_examples.png")
        rep.figure(png, "Grad-CAM of the reported label" + ("; the box is the region the label refers to"
                                                             if spec.label_region else ""))
    if metrics.get("per_patient"):
        pp = metrics["per_patient"]
        rep.heading(f"Per patient: predicted vs true share of {positive} {spec.items} ({pp['n_patients']} test patients)")
        rep.paragraph(f"Each test patient's share of {spec.items} labelled {positive}, against the share the best model "
                      f"predicts at the operating threshold: mean absolute difference {pp['mae']:.3f}, Pearson r "
                      f"{pp['pearson_r']:.2f}. Point size: the patient's number of {spec.items}.")
        rep.figure(plot_per_patient(pp, positive, run_dir / "per_patient.png"), "Per-patient shares (diagonal: equal)")
        if metrics.get("metrics_over_patients"):
            unit_table(rep, metrics["metrics_over_patients"], "patient")
        rep.table(["patient", spec.items, "true share", "predicted share", f"mean P({positive})"],
                  [[r["patient"], r["n"], f"{r['true_share']:.2f}", f"{r['predicted_share']:.2f}",
                    f"{r['mean_p_positive']:.2f}"] for r in pp["rows"]])
    unit = spec.group_unit
    if unit != "patient" and metrics.get(f"metrics_over_{unit}s"):
        rep.heading(f"Intervals over {unit}s (test split)")
        unit_table(rep, metrics[f"metrics_over_{unit}s"], unit)
    if "mass_in_label_region" in cams:
        mr = cams["mass_in_label_region"]
        rep.paragraph(f"Share of the {positive}-class Grad-CAM map inside the labelled region: {ci_text(mr)} (a "
                      f"uniform map scores {mr['uniform_map']:.3f}; n = {mr['n']} {positive} test {spec.items}).")
    if localisation:
        _localisation_section(rep, run_dir, localisation, best, data.parts["test"], class_names,
                              r.test["pred_operating_point"])
    rep.heading("Training")
    rep.paragraph(f"Reading and caching the images: {metrics['timing']['read_and_cache_seconds']:.0f} s. " + "; ".join(
        f"{a}: {x.fit.epochs_run} epoch(s) in {x.fit.train_seconds / 60:.1f} min, best epoch {x.fit.best_epoch} "
        f"({x.fit.info.get('torch_threads')} threads, precision {x.fit.info.get('precision')})"
        for a, x in runs.items()) + ".")
    logs = {a: read_training_log(run_dir / "archs" / a) for a in runs}
    if any(v.get("epoch") for v in logs.values()):
        rep.figure(plot_training_curves(logs, run_dir / "training_curves.png", f"{task.name} training"),
                   "Training loss and validation score per epoch")
    rep.write(run_dir / "report.html")
