"""``evaluate``, ``predict`` and ``explain`` of every image-classification spec, with their options declared once.

Each verb's options are a frozen dataclass below: its fields are the ``--name value`` options, their
constraints are checked by :func:`breastdx.config.parse_options`, and ``breastdx predict TASK --help`` lists
them from the same declaration. ``--threads`` is applied by the command line, not here. ``evaluate --external DIR``
scores a labelled folder from elsewhere instead of a split (:func:`evaluate_external`).
"""

from __future__ import annotations

import csv
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.config import ConfigError, option, parse_options, runtime_options, save_yaml, with_overrides
from breastdx.data.image_sets import SPLIT_FILE
from breastdx.evaluation.tables import OPERATING_POINT_TEXT, calibration_rows, ci_text, metric_label, summary_rows
from breastdx.inference.base import EXTERNAL_ADVICE, logged_overlap, overlap_notes, split_advice, training_overlap
from breastdx.inference.csv_safety import safe_row, safe_rows
from breastdx.pipeline.task import EvaluateOptions as SplitEvaluateOptions
from breastdx.pipeline.task import RunResult, evenly_spaced

CAM_CHOICES = ("gradcam", "gradcampp")
TTA_CHOICES = ("", "none", "hflip")
CASES_FILE = "cases.csv"
"""The per-case table of an external evaluation (:func:`evaluate_external`)."""
NORMAL_LABEL = "normal"
"""An external folder's label of images without a lesion, left out of its ``lesions_only`` figures."""


@dataclass(frozen=True)
class PredictOptions:
    """Options of ``breastdx predict`` for image classifiers.

    Attributes:
        batch_size: Images per network call.
        workers: Reader and writer threads.
        threads: Torch CPU threads (0: PyTorch's default); set by the command line.
        tta: Test-time augmentation (``none``, ``hflip``; empty: the model's).
        gradcam: Write a Grad-CAM overlay per image into ``gradcam/`` (empty: the task's default).
        method: ``gradcam`` or ``gradcampp`` (empty: the model's).
        conformal_level: Coverage level of the ``prediction_set`` column (0: the model folder's, 0.9); one of
            the levels the folder stores (0.8, 0.85, 0.9, 0.95, 0.99).
        lesion_aware: Fuse the model with the lesion-crop classifier kept in its ``lesion_crop/`` folder (busi-cls:
            the lesion that busi-seg finds, classified beside the whole image; see
            :class:`breastdx.inference.lesion_crop.LesionFusion`).
    """

    batch_size: int = option(64, ge=1)
    workers: int = option(2, ge=1)
    threads: int = option(0, ge=0)
    tta: str = option("", choices=TTA_CHOICES)
    gradcam: bool | None = None
    method: str = option("", choices=("", *CAM_CHOICES))
    conformal_level: float = option(0.0, ge=0.0, le=0.99)
    lesion_aware: bool = False


@dataclass(frozen=True)
class ExplainOptions:
    """Options of ``breastdx explain`` for image classifiers.

    Attributes:
        method: Methods, comma-separated (``gradcam``, ``gradcampp``).
        classes: Explain the ``predicted`` label or ``all`` classes.
        batch_size: Images per network call.
        workers: Reader threads.
        threads: Torch CPU threads (0: PyTorch's default); set by the command line.
        tta: Test-time augmentation of the probabilities (empty: the model's).
        zoom: Enlarge each overlay this many times, nearest-neighbour (0: the task's default, 3 for patches).
    """

    method: tuple[str, ...] = option(CAM_CHOICES, choices=CAM_CHOICES, each=True)
    classes: str = option("predicted", choices=("predicted", "all"))
    batch_size: int = option(32, ge=1)
    workers: int = option(2, ge=1)
    threads: int = option(0, ge=0)
    tta: str = option("", choices=TTA_CHOICES)
    zoom: int = option(0, ge=0, le=16)


@dataclass(frozen=True)
class EvaluateOptions(SplitEvaluateOptions):
    """Options of ``breastdx evaluate`` for image classifiers: those of every task
    (:class:`breastdx.pipeline.task.EvaluateOptions`), the task's data options (such as ``--data-file``), and:

    Attributes:
        batch_size: Images per network call.
        tta: Test-time augmentation (empty: the model's).
        max_cases: Images, evenly spaced, as in training (0: all).
        localisation: Score the Grad-CAM maps against lesion masks (tasks with masks).
        external: Score a labelled folder from elsewhere instead of a split: a ``labels.csv`` (columns ``image``,
            ``label``, optional ``mask``; paths relative to it) or class sub-folders as in BUSI
            (:mod:`breastdx.data.external`); writes ``cases.csv`` too.
        label_map: With ``external``: ``label=class`` entries, comma-separated, mapping the folder's labels to the
            model's classes (e.g. ``normal=normal_or_benign,benign=normal_or_benign``); nothing else is mapped.
        conformal_level: Coverage level of the prediction sets scored (0: the model folder's, 0.9).
    """

    batch_size: int = option(64, ge=1)
    tta: str = option("", choices=TTA_CHOICES)
    max_cases: int = option(0, ge=0)
    localisation: bool = True
    external: str = ""
    label_map: tuple[str, ...] = ()
    conformal_level: float = option(0.0, ge=0.0, le=0.99)


def _predictor(task: Any, model_dir: Path, options: dict[str, str], batch_size: int, tta: str, method: str = "",
               conformal_level: float = 0.0):
    from breastdx.inference.classifier import ClassificationPredictor

    return ClassificationPredictor.from_dir(model_dir, task=task.name, batch_size=batch_size, tta=tta or None,
                                            gradcam_method=method or None, conformal_level=conformal_level or None,
                                            **runtime_options(options))


def _refuse_lesion_crop(predictor: Any, model_dir: Path, verb: str) -> None:
    """``predict`` and ``explain`` draw on whole images; a model trained on lesion crops cannot be used there."""
    from breastdx.inference.lesion_crop import crop_setting

    setting = crop_setting(predictor.meta)
    if setting is not None:
        raise ConfigError(f"{model_dir}: this model classifies lesion crops found by the busi-seg model "
                          f"{setting[0]!r} (trained with --lesion-crop); '{verb}' takes whole images and draws "
                          f"on them. Score it with 'evaluate' (its split, or --external, both cropped the same way) "
                          f"or benchmarks/busi_lesion_aware.py; 'predict --lesion-aware true' with the whole-image "
                          f"model fuses the two.")


def _use_lesion_model(whole: Any, model_dir: Path, options: dict[str, str], opts: Any) -> None:
    """``predict --lesion-aware``: fuse ``whole`` with the lesion-crop model of ``model_dir/lesion_crop``
    (:class:`breastdx.inference.lesion_crop.LesionFusion`, weight and threshold from its ``meta.json``).

    Raises:
        ConfigError: If the folder has no such model, or prediction sets are asked for.
    """
    from breastdx.inference.lesion_crop import LESION_MODEL_FOLDER, LesionFusion

    folder = model_dir / LESION_MODEL_FOLDER
    if not (folder / "meta.json").is_file():
        raise ConfigError(f"--lesion-aware: {model_dir} holds no lesion-crop model ({folder}/meta.json); the shipped "
                          f"busi-cls has one.")
    if opts.conformal_level:
        raise ConfigError("Prediction sets are calibrated for one model, not for a lesion-aware fusion of two; leave "
                          "out --conformal-level.")
    try:
        whole.use_fusion(LesionFusion.for_whole_model(whole, model_dir, batch_size=opts.batch_size,
                                                      **runtime_options(options)))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _split_data(task: Any, predictor: Any, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str],
                split_file: str) -> tuple[Any, Path]:
    """The model's data with the split it was trained on (its ``split.json`` or ``split_file``), read with the
    data options it was trained with (overridable by the task's data options in ``options``)."""
    spec = task.spec
    data_names = {n.replace("_", "-") for n in spec.data_options}
    trained = predictor.meta.get("training_config", {})
    data_opts = {k: trained[k] for k in spec.data_options if k in trained}
    data_opts.update({k.replace("-", "_"): v for k, v in options.items() if k.replace("_", "-") in data_names})
    config = with_overrides(spec.config_cls(), data_opts)
    split_path = Path(split_file) if split_file else Path(model_dir) / SPLIT_FILE
    if not split_path.is_file():
        raise FileNotFoundError(f"{split_path}: no split file; pass --split-file (the split.json of the training run).")
    data = spec.read(config, data_root, split_path, run_dir / SPLIT_FILE)
    if tuple(data.class_names) != tuple(predictor.class_names):
        raise ConfigError(f"{model_dir}: the model's classes ({', '.join(predictor.class_names)}) are not the data's "
                          f"({', '.join(data.class_names)}); pass the data options the model was trained with "
                          f"({', '.join('--' + n for n in sorted(data_names)) or 'none'}).")
    return data, split_path


def _save_split_config(run_dir: Path, task: Any, model_dir: Path, opts: Any, split_path: Path, data_root: Path,
                       data: Any, **resolved: Any) -> None:
    """``config.yaml`` of a verb that read the model's split (:func:`_split_data`): the options, the values
    resolved from the model folder (``resolved``), the split file read and the data read."""
    from breastdx.config import to_dict

    save_yaml({"task": task.name, "model": str(model_dir), **to_dict(opts), **resolved, "split_file": str(split_path),
               "data_root": str(data_root), **data.record, "data_checksum": data.checksum}, run_dir / "config.yaml")


def evaluate(task: Any, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str]) -> RunResult:
    """See :meth:`breastdx.pipeline.classification.ImageClassificationTask.evaluate`; with ``--external``,
    :func:`evaluate_external`."""
    from breastdx.runs import write_versions

    spec = task.spec
    data_names = {n.replace("_", "-") for n in spec.data_options}
    given = {k: v for k, v in options.items() if k.replace("_", "-") not in data_names}
    opts = parse_options(EvaluateOptions, given, f"evaluate {task.name}")
    predictor = _predictor(task, model_dir, options, opts.batch_size, opts.tta, conformal_level=opts.conformal_level)
    if predictor.threshold is None:  # the figures at the operating point need one (they failed with a TypeError)
        raise ConfigError(f"{model_dir}: no operating threshold in its meta.json (a classifier ensemble before "
                          f"calibration); fit it on the validation split first: breastdx calibrate {task.name} "
                          f"--model {model_dir} --fit temperature,conformal,ood")
    if opts.external:
        return evaluate_external(task, predictor, model_dir, run_dir, opts, runtime_options(options))
    if opts.label_map:
        raise ConfigError(f"The 'label-map' option of evaluate {task.name} maps the labels of --external; "
                          f"pass --external too.")
    data, split_path = _split_data(task, predictor, model_dir, data_root, run_dir, options, opts.split_file)
    part = data.parts[opts.split]
    if opts.max_cases:
        part = part.subset(evenly_spaced(len(part), opts.max_cases))
        data = dataclasses.replace(data, parts={**data.parts, opts.split: part})
    _save_split_config(run_dir, task, model_dir, opts, split_path, data_root, data, tta=predictor.tta,
                       conformal_level=predictor.conformal_level)
    write_versions(run_dir)
    loaded = [part.read(i) for i in range(len(part))]
    overlap, _ = check_training_overlap(predictor, [im for im, _ in loaded],
                                        split_advice(model_dir, split_path, opts.split))
    logits = predictor.predict_logits([im for im, _ in loaded])
    localisation = None
    if spec.localisation is not None and opts.localisation:
        loc = spec.localisation(predictor, part, predictor.gradcam_method, opts.n_bootstrap, opts.seed)
        if loc["n_images"]:
            localisation = {k: v for k, v in loc.items() if k not in ("cams", "indices")}
    text = data.describe(opts.split)
    metrics, rows, _ = score(task, predictor, model_dir, run_dir, part.labels, logits, opts, text, opts.split,
                             {"data_checksum": data.checksum, **overlap}, localisation, part)
    notes = [f"Split: {text}", *overlap_notes(overlap), f"Run folder: {run_dir}"]
    return RunResult(run_dir, metrics, f"{task.title}, {opts.split} split (n = {len(part)}): value [95% CI]",
                     [["metric", "value [95% CI]"], *rows], notes)


def check_training_overlap(predictor: Any, images: list[np.ndarray],
                           advice: str) -> tuple[dict[str, Any], list[str] | None]:
    """``({"training_overlap": record}, per image)`` for ``metrics.json`` and the per-case table
    (:func:`breastdx.inference.base.training_overlap`, its note logged as a warning); ``({}, None)`` for a model
    folder without training hashes."""
    overlap = training_overlap(predictor, images, advice)
    if overlap is None:
        return {}, None
    return {"training_overlap": logged_overlap(overlap)}, overlap["per_image"]


def score(task: Any, predictor: Any, model_dir: Path, run_dir: Path, labels: np.ndarray, logits: np.ndarray,
          opts: EvaluateOptions, text: str, split: str, extra: dict[str, Any],
          localisation: dict[str, Any] | None = None,
          part: Any = None) -> tuple[dict[str, Any], list[list[str]], dict[str, Any]]:
    """Metrics with 95% CIs of logits against labels; writes ``metrics.json``, ``report.html`` and its figures.

    Args:
        task: The image-classification task.
        predictor: The :class:`breastdx.inference.classifier.ClassificationPredictor` that made ``logits``.
        model_dir: Its model folder (named in the outputs).
        run_dir: The output folder.
        labels: int64 class indices ``(n,)``.
        logits: ``(n, K)`` before temperature scaling.
        opts: The evaluate options (bootstrap, seed).
        text: The data in words (``metrics.json`` ``split``, the report).
        split: A short name of the data for the figure captions (``test``, ``external``).
        extra: More ``metrics.json`` fields.
        localisation: Grad-CAM localisation figures of the model's method, or None.
        part: The scored :class:`~breastdx.data.image_sets.ImageSet` of a split, or None: with patient ids (idc,
            breakhis) ``per_patient`` and ``metrics_over_patients`` are added, and where its groups are lesions
            (busi-cls) and two of its frames share one, ``metrics_over_lesions``
            (:func:`breastdx.pipeline.report.unit_metrics`).

    Returns:
        ``(metrics.json content, summary table rows, the evaluation of evaluate_logits)``.
    """
    from breastdx.evaluation.classification import evaluate_logits, write_figures
    from breastdx.evaluation.conformal import conformal_evaluation, report_conformal
    from breastdx.evaluation.report import HtmlReport
    from breastdx.runs import write_json

    classes = list(predictor.class_names)
    positive = predictor.positive
    ev = evaluate_logits(labels, logits, classes, temperature=predictor.temperature,
                         threshold=float(predictor.threshold), positive=positive, n_boot=opts.n_bootstrap, seed=opts.seed)
    metrics: dict[str, Any] = {
        "task": task.name, "split": text, "n": int(len(labels)), "model": str(model_dir), "positive_class": positive,
        "threshold": predictor.threshold, "temperature": predictor.temperature, "metrics": ev["metrics"],
        "calibration": ev["calibration"],
        "confusion_matrix": {"class_names": classes, "argmax": ev["confusion_matrix"],
                             "operating_point": ev["confusion_matrix_operating_point"]}, **extra}
    unit = task.spec.group_unit
    if part is not None:  # intervals over patients (idc, breakhis) or over lesions (busi-cls) where there are some
        from breastdx.evaluation.classification import positive_columns
        from breastdx.pipeline.report import unit_metrics

        metrics.update(unit_metrics(task.spec, part, ev["prob"], float(predictor.threshold),
                                    positive_columns(classes, positive), opts.n_bootstrap, opts.seed, split))
    over = metrics.get(f"metrics_over_{unit}s")
    if localisation is not None:
        metrics["localisation"] = {predictor.gradcam_method: localisation}
    if predictor.conformal:
        metrics["conformal"] = conformal_evaluation(labels, ev["prob"], predictor.conformal, classes,
                                                    level=predictor.conformal_level, n_boot=opts.n_bootstrap,
                                                    seed=opts.seed)
    write_json(metrics, run_dir / "metrics.json")
    arch = predictor.meta["architecture"]
    rep = HtmlReport(f"breastdx — {task.title} (evaluation)")
    rep.paragraph(f"Model {model_dir} ({arch}); {text}; temperature {predictor.temperature:.3f}, operating threshold "
                  f"{float(predictor.threshold):.3f} on P({positive}); TTA {predictor.tta}. "
                  + OPERATING_POINT_TEXT.format(positive=positive))
    for note in overlap_notes(extra):
        rep.paragraph(note)
    rep.metrics_table(ev["metrics"], metric_label)
    rep.heading("Calibration before and after temperature scaling")
    rep.table(["metric", "before (T = 1)", "after"], calibration_rows(ev["calibration"]))
    rows = summary_rows(ev["metrics"], task.spec.summary)
    if over:
        from breastdx.pipeline.report import unit_table

        rep.heading(f"Intervals over {unit}s")
        unit_table(rep, over, unit, "The model's")
        rows.append([f"AUROC ({positive}) over {unit}s", ci_text(over["auroc"])])
    if predictor.conformal:
        c = metrics["conformal"]
        report_conformal(rep, c, split)
        rows += [[f"coverage of the {c['level']:g} prediction sets", ci_text(c["conformal_coverage"])],
                 ["mean set size", ci_text(c["mean_set_size"])]]
    if localisation is not None:
        d = localisation
        rep.heading("Grad-CAM localisation on images with a lesion (true class)")
        rep.table(["method", "mass in lesion", "pointing game", "uniform-map baseline", "centre baseline"],
                  [[predictor.gradcam_method, ci_text(d["cam_mass_in_mask"]), ci_text(d["pointing_game"]),
                    ci_text(d["mask_area_fraction"]), ci_text(d["pointing_game_center"])]])
        rows += [["CAM mass in lesion", ci_text(d["cam_mass_in_mask"])], ["pointing game", ci_text(d["pointing_game"])]]
    for png, caption in write_figures(run_dir, labels, {arch: ev}, arch, classes, positive, split):
        rep.figure(png, caption)
    rep.write(run_dir / "report.html")
    return metrics, rows, ev


def evaluate_external(task: Any, predictor: Any, model_dir: Path, run_dir: Path,
                      opts: EvaluateOptions, runtime: dict[str, str] | None = None) -> RunResult:
    """``breastdx evaluate TASK --external DIR``: an image classifier scored on a labelled folder from elsewhere.

    The folder is read by :func:`breastdx.data.external.read_external` (a ``labels.csv`` or class sub-folders), its
    labels are checked against the model's classes (nothing is mapped unless ``--label-map`` declares it), every
    image is read at its own size (for a model trained with ``--lesion-crop``, cropped to the lesion that its
    segmenter finds) and predicted, and the metrics are those of a split's evaluation (:func:`score`):
    ``metrics.json`` (with ``n`` and the folder's description), ``report.html`` and its figures, and ``cases.csv``
    (one row per image: id, image file relative to the folder, label, ``p_<class>``, the label at the operating
    point and the most probable class). When the folder has both images labelled ``normal`` and others, its
    ``metrics.json`` adds ``lesions_only``: AUROC, sensitivity and specificity of the positive class with the normal
    images left out (benign vs malignant, the external figure of the literature). An image that cannot be read is
    listed in the result's failures and left out; the others are scored. No image is written.

    Args:
        task: The image-classification task.
        predictor: Its :class:`breastdx.inference.classifier.ClassificationPredictor`.
        model_dir: The model folder.
        run_dir: The output folder.
        opts: :class:`breastdx.pipeline.verbs.EvaluateOptions` with ``external`` set.
        runtime: ``--dtype`` and ``--backend`` (:func:`breastdx.config.runtime_options`), for the segmenter of a
            lesion-crop model as for the model itself.

    Returns:
        The result, with the unreadable images as failures.

    Raises:
        DataError: If the folder cannot be read, or a label is not a class of the model (each named, with its file
            and row), or no image can be read.
        ConfigError: If ``--split-file`` or ``--max-cases`` is given too (they choose a split, not a folder).
    """
    from breastdx.data.errors import DataError
    from breastdx.data.checksum import image_hash
    from breastdx.data.external import (check_external_options, failure_lines, identical_images, identical_note,
                                        label_indices, parse_label_map, read_external)
    from breastdx.data.images import ImageReadError, read_image
    from breastdx.evaluation.classification import classification_metrics
    from breastdx.runs import write_versions

    check_external_options(opts)
    data = read_external(opts.external)
    classes = list(predictor.class_names)
    labels = label_indices(data, classes, parse_label_map(opts.label_map))
    save_yaml({"task": task.name, "model": str(model_dir), **dataclasses.asdict(opts), "tta": predictor.tta,
               "conformal_level": predictor.conformal_level, "external_source": str(data.source),
               "external_layout": data.layout}, run_dir / "config.yaml")
    write_versions(run_dir)
    images, kept, failures = [], [], []
    for i, path in enumerate(data.images):
        try:
            images.append(read_image(path, mode=predictor.preprocessing.mode).array)
            kept.append(i)
        except (ImageReadError, OSError, ValueError) as e:
            failures.append((str(path), str(e)))
    if not kept:
        raise DataError(f"{data.source}: none of the {len(data)} images could be read.", failure_lines(failures))
    idx = np.asarray(kept, dtype=np.int64)
    copies = identical_images([data.ids[i] for i in kept], [image_hash(im) for im in images])
    from breastdx.inference.lesion_crop import LesionCropper

    overlap, seen = check_training_overlap(predictor, images, EXTERNAL_ADVICE)  # the images as read, as hashed
    cropper = LesionCropper.for_classifier(predictor.meta, **(runtime or {}))
    if cropper is not None:  # a model trained on lesion crops sees the same crops here
        images = cropper.crops(images)
    logits = predictor.predict_logits(images)
    text = data.describe() if not failures else (f"{data.describe()}; {len(failures)} unreadable image(s) left out, "
                                                 f"n = {len(kept)} scored")
    extra = {"external": {"source": str(data.source), "layout": data.layout, "label_counts": data.counts(),
                          "label_map": dict(parse_label_map(opts.label_map)),
                          "unreadable": [{"image": p, "reason": r} for p, r in failures],
                          "identical_images": copies},
             **overlap}
    lesion = np.asarray([data.labels[i] != NORMAL_LABEL for i in idx])
    notes = [f"Data: {text}", *overlap_notes(overlap), *filter(None, [identical_note(copies)])]
    # the benign-vs-malignant figure of the literature: lesions only, where they hold two classes (not idc's tumour)
    if lesion.any() and not lesion.all() and len(set(labels[idx][lesion].tolist())) > 1:
        sub = classification_metrics(labels[idx][lesion], predictor.proba_from_logits(logits)[lesion], classes,
                                     predictor.positive, float(predictor.threshold), n_boot=opts.n_bootstrap,
                                     seed=opts.seed)
        extra["lesions_only"] = {"n": int(lesion.sum()), "left_out_label": NORMAL_LABEL,
                                 **{k: sub[k] for k in ("auroc", "sensitivity", "specificity")}}
        notes.append(f"Lesions only ('{NORMAL_LABEL}' images left out, n = {int(lesion.sum())}): AUROC "
                     f"{predictor.positive} vs rest {ci_text(sub['auroc'])}")
    metrics, rows, ev = score(task, predictor, model_dir, run_dir, labels[idx], logits, opts, text, "external", extra)
    _write_cases(run_dir / CASES_FILE, data, idx, labels[idx], ev, classes, seen, given=bool(opts.label_map))
    notes += [f"Per-case table: {run_dir / CASES_FILE}", f"Run folder: {run_dir}"]
    return RunResult(run_dir, metrics, f"{task.title}, external folder (n = {len(kept)}): value [95% CI]",
                     [["metric", "value [95% CI]"], *rows], notes, failures)


def _write_cases(path: Path, data: Any, idx: np.ndarray, labels: np.ndarray, ev: dict[str, Any],
                 classes: list[str], seen: list[str] | None = None, given: bool = False) -> None:
    """One row per scored image; the image is named relative to the folder, never copied. ``seen``: per image,
    :func:`breastdx.inference.base.seen_in_training` (column ``seen_in_training``), or None. ``given``: a
    ``--label-map`` was applied, so ``label`` is the model's class and ``label_given`` the folder's own label."""
    root = data.source.parent if data.source.is_file() else data.source
    fields = ["id", "image", *(["label_given"] if given else []), "label", *[f"p_{c}" for c in classes],
              "label_predicted", "label_argmax"]
    fields += ["seen_in_training"] if seen is not None else []
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row, i in enumerate(idx):
            image = data.images[i]
            name = image.relative_to(root) if image.is_relative_to(root) else image
            writer.writerow(safe_row({"id": data.ids[i], "image": str(name),
                                      **({"label_given": data.labels[i]} if given else {}),
                                      "label": classes[int(labels[row])],
                             **{f"p_{c}": round(float(p), 6) for c, p in zip(classes, ev["prob"][row])},
                             "label_predicted": classes[int(ev["pred_operating_point"][row])],
                             "label_argmax": classes[int(ev["pred"][row])],
                             **({"seen_in_training": seen[row]} if seen is not None else {})}))


def predict(task: Any, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
    """See :meth:`breastdx.pipeline.classification.ImageClassificationTask.predict`."""
    from breastdx.inference.scope import scope_cell
    from breastdx.inference.writers import write_predictions

    opts = parse_options(PredictOptions, options, f"predict {task.name}")
    gradcam = task.spec.predict_gradcam if opts.gradcam is None else opts.gradcam
    predictor = _predictor(task, model_dir, options, opts.batch_size, opts.tta, opts.method, opts.conformal_level)
    _refuse_lesion_crop(predictor, model_dir, "predict")
    if opts.lesion_aware:
        _use_lesion_model(predictor, Path(model_dir), options, opts)
    rows, failures, seconds = write_predictions(predictor, inputs, run_dir, gradcam=gradcam, workers=opts.workers)
    classes = predictor.class_names
    table = [[task.spec.item, *[f"P({c})" for c in classes], "label", "in scope"]] + [
        [Path(r["source"]).name, *[f"{r[f'p_{c}']:.3f}" for c in classes], r["label"], scope_cell(r)]
        for r in rows[:50]]
    threshold = "none" if predictor.threshold is None else f"{predictor.threshold:.3f}"
    notes = [f"{len(rows)} {task.spec.item}(s) in {seconds:.1f} s ({len(rows) / max(seconds, 1e-9):.1f}/s, model "
             f"{predictor.meta['architecture']}, Grad-CAM {'on' if gradcam else 'off'}); label: "
             f"{predictor.meta.get('label_rule', 'most probable class')} (threshold {threshold}). Wrote "
             f"{run_dir / 'predictions.csv'}" + (", gradcam/" if gradcam else "")]
    if len(rows) > 50:
        notes.insert(0, f"(first 50 of {len(rows)} shown)")
    if predictor.fusion is not None:
        from breastdx.inference.lesion_crop import LESION_MODEL_FOLDER

        w = predictor.fusion.whole_weight
        notes.append(f"Lesion-aware: P = {w:g} x P(whole image) + {1 - w:g} x P(the lesion crop that busi-seg finds, "
                     f"classified by {model_dir.name}/{LESION_MODEL_FOLDER}); the Grad-CAM maps are the whole-image "
                     f"model's; no prediction sets.")
    return RunResult(run_dir, {}, f"{task.title}: predictions", table, notes, failures)


def explain(task: Any, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
    """See :meth:`breastdx.pipeline.classification.ImageClassificationTask.explain`.

    Writes ``explanations/<image>_<method>_<class>.png`` and ``explanations.csv`` (source, probabilities, label,
    method, explained class, overlay, and where a lesion mask lies beside the image, the map's mass inside the lesion
    and the pointing-game hit, with the lesion contour drawn in green; ``in_scope`` and ``scope_note`` as in
    ``predict``, :func:`breastdx.inference.scope.check_scope`: an out-of-scope image is still explained, its overlay's
    legend says so and a warning counts them).

    The masks of ``<stem>.<ext>`` are BUSI's names with any image suffix (:mod:`breastdx.pipeline.explain_masks`):
    ``<stem>_mask.<e>`` and ``<stem>_mask_<k>.<e>`` in its folder, ``<e>`` any of
    :data:`breastdx.data.image_files.IMAGE_SUFFIXES` (``scan.jpg`` finds ``scan_mask.png``; the image's own suffix
    first where a name has several); the lesion is their union. A mask that cannot be used (unreadable, another size)
    is listed among the failures and the image is explained without it; an image whose name is too long to add
    ``_mask`` to has no mask, it does not stop the batch.
    """
    from PIL import Image

    from breastdx.data.image_files import OutputStems, item_stem, list_images
    from breastdx.explain.gradcam import cam_mass_in_mask, pointing_game_hit
    from breastdx.data.transforms import central_square_box
    from breastdx.inference.scope import check_scope, warn_out_of_scope
    from breastdx.inference.writers import frame_cell
    from breastdx.pipeline.explain_masks import LesionMasks
    from breastdx.visualize import SEEN_SQUARE, heatmap_overlay, mark_box, mark_region, png_bytes, with_legend

    opts = parse_options(ExplainOptions, options, f"explain {task.name}")
    if not opts.method:
        raise ConfigError(f"The 'method' option of explain {task.name} must name one or more of "
                          f"{', '.join(CAM_CHOICES)}. Got '' instead.")
    zoom = opts.zoom or task.spec.explain_zoom
    start = time.perf_counter()
    predictor = _predictor(task, model_dir, options, opts.batch_size, opts.tta)
    _refuse_lesion_crop(predictor, model_dir, "explain")
    out_dir = run_dir / "explanations"
    out_dir.mkdir()
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    records = []
    for path, rec, out, err in predictor.predict_files(list_images(inputs), workers=opts.workers, gradcam=False):
        if err is not None:
            failures.append((str(path), err))
        else:
            records.append((path, rec, out))
    classes = predictor.class_names
    stems = OutputStems()  # two inputs of one name (from two folders) never share output files
    masks = LesionMasks()
    for path, rec, out in records:
        stem = stems.claim(item_stem(path))
        mask, problems = masks.read(path, rec.shape)
        failures += problems
        scope = check_scope(rec, predictor, out)
        targets = [out.label_index] if opts.classes == "predicted" else list(range(len(classes)))
        for method in opts.method:
            for k in targets:
                _, _, cams = predictor.explain([rec.array], method=method, class_idx=k)
                overlay = heatmap_overlay(rec.array, cams[0], contour_mask=mask)
                if zoom > 1:
                    overlay = np.asarray(Image.fromarray(overlay).resize((overlay.shape[1] * zoom,
                                                                          overlay.shape[0] * zoom), Image.NEAREST))
                region = task.spec.label_region
                if region:
                    overlay = mark_region(overlay, region)
                if predictor.source_crop:  # the square the model reads (zoom keeps its place)
                    top, left, side = (v * zoom for v in central_square_box(rec.array.shape))
                    overlay = mark_box(overlay, top, left, top + side, left + side)
                overlay = with_legend(overlay, [
                    f"{method} of {classes[k]} (P = {float(out.prob[k]):.3f}); label {out.label}", path.name,
                    *([f"cyan square: the centre region ({region:.0%} of the side) that defines the label"]
                      if region else []), *([f"cyan square: {SEEN_SQUARE}"] if predictor.source_crop else []),
                    *([] if scope.in_scope else ["OUT OF SCOPE: unlike this model's training images (scope_note)"])],
                    reference=mask is not None)
                png = out_dir / f"{stem}_{method}_{classes[k].replace('/', '_')}.png"  # a subtype's '/': no folder
                png.write_bytes(png_bytes(overlay))
                row = {"source": str(path), **{f"p_{c}": round(float(p), 6) for c, p in zip(classes, out.prob)},
                       "label": out.label, "label_argmax": out.argmax_label,
                       "threshold": "" if predictor.threshold is None else round(float(predictor.threshold), 6),
                       "method": method, "explained_class": classes[k],
                       "overlay": str(png.relative_to(run_dir)), "cam_mass_in_mask": "", "pointing_game_hit": "",
                       # a map of zeros (common for a class the model does not see) is said, not drawn as evidence
                       "empty_map": str(not np.any(cams[0] > 0)).lower(),
                       "in_scope": str(scope.in_scope).lower(), "scope_note": scope.note, "frame": frame_cell(rec)}
                if mask is not None and row["empty_map"] == "false":  # an empty map has no mass to place
                    row["cam_mass_in_mask"] = round(cam_mass_in_mask(cams[0], mask), 4)
                    row["pointing_game_hit"] = int(pointing_game_hit(cams[0], mask))
                rows.append(row)
    fields = ["source", *[f"p_{c}" for c in classes], "label", "label_argmax", "threshold", "method", "explained_class",
              "overlay", "cam_mass_in_mask", "pointing_game_hit", "empty_map", "in_scope", "scope_note", "frame"]
    warn_out_of_scope(list({r["source"]: r for r in rows}.values()), task.spec.item, "explanations.csv")
    with open(run_dir / "explanations.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(safe_rows(rows))
    seconds = time.perf_counter() - start
    table = [[task.spec.item, "label", "method", "class explained", "overlay"]] + [
        [Path(r["source"]).name, r["label"], r["method"], r["explained_class"], r["overlay"]] for r in rows[:50]]
    notes = [f"{len(records)} {task.spec.item}(s), {len(rows)} overlay(s) in {seconds:.1f} s (model "
             f"{predictor.meta['architecture']}, layer {predictor.explainer(opts.method[0]).layer}); wrote "
             f"{run_dir / 'explanations.csv'} and explanations/"]
    return RunResult(run_dir, {}, f"{task.title}: Grad-CAM explanations", table, notes, failures)
