"""``breastdx calibrate TASK`` of every image-classification spec: fit, on the validation split, the records that
a training run writes into a classifier's ``meta.json`` (temperature and threshold, prediction sets, the
out-of-distribution record), for a folder made without them (an older model, or an ensemble from
:func:`breastdx.pipeline.ensemble.write_ensemble`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.config import option, parse_options
from breastdx.inference.base import SPLIT_FILE_ADVICE, overlap_notes, split_advice
from breastdx.pipeline.task import RunResult
from breastdx.pipeline.verbs import _predictor, _save_split_config, _split_data, check_training_overlap

CALIBRATE_ADVICE = "Fit on cases it has not seen: the val part of its own split file."


@dataclass(frozen=True)
class CalibrateOptions:
    """Options of ``breastdx calibrate`` (besides the task's data options).

    Attributes:
        split_file: The training run's ``split.json`` (empty: the model folder's).
        batch_size: Images per network call.
        threads: Torch CPU threads (0: PyTorch's default); set by the command line.
        fit: What to fit, comma-separated: ``temperature`` (the temperature and the operating threshold, on
            validation, as training fits them; a new ensemble needs it), ``conformal`` (prediction sets, on
            validation, after the temperature) and ``ood`` (the feature-space out-of-distribution record: bank of
            training features, threshold on validation).
        target_sensitivity: With ``temperature``: the threshold reaches this sensitivity on validation (0: Youden's
            J); -1: the model's own rule (its ``ensemble`` or ``training_config`` record), else 0.
    """

    split_file: str = ""
    batch_size: int = option(64, ge=1)
    threads: int = option(0, ge=0)
    fit: tuple[str, ...] = option(("conformal", "ood"), choices=("temperature", "conformal", "ood"), each=True)
    target_sensitivity: float = option(-1.0, ge=-1, le=1)


def calibrate(task: Any, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str]) -> RunResult:
    """``breastdx calibrate TASK``: fit, for a folder trained before they existed, the records that a training run
    writes into a classifier's ``meta.json``, and write them there; the rest of ``meta.json`` is kept.

    * ``temperature`` (:func:`breastdx.evaluation.classification.fit_calibration`): the temperature that minimises
      the validation NLL and the operating threshold on the scaled P(positive) (a model folder written by
      :func:`breastdx.pipeline.ensemble.write_ensemble` has neither yet); fitted first, so that ``conformal`` uses it;
    * ``conformal`` (:func:`breastdx.evaluation.conformal.fit_conformal`): prediction-set quantiles on the
      validation split;
    * ``ood`` (:func:`breastdx.inference.ood.fit_ood`): the bank of the training images' penultimate features
      (``ood_features.safetensors``) and the distance threshold on the validation split.

    ``meta.json`` records the calibration (``calibrated``: what was fitted, when, on which split, the threshold and
    temperature before) and ``MODEL_CARD.md`` says it (:func:`breastdx.models.saved.note_calibration`: the new
    threshold, and that the card's test figures were measured at the one before when it moved).

    The split is the folder's ``split.json``. The run folder holds ``conformal.json`` / ``ood.json`` (the records),
    ``config.yaml`` (the resolved options, the split file and the data read) and ``versions.json``.

    Raises:
        ConfigError: For an unknown option or data that do not match the model.
        FileNotFoundError: Without a split file.
    """
    import json

    from breastdx.runs import write_json, write_versions

    data_names = {n.replace("_", "-") for n in task.spec.data_options}
    opts = parse_options(CalibrateOptions, {k: v for k, v in options.items() if k.replace("_", "-") not in data_names},
                         f"calibrate {task.name}")
    predictor = _predictor(task, model_dir, options, opts.batch_size, "")
    data, split_path = _split_data(task, predictor, model_dir, data_root, run_dir, options, opts.split_file)
    part = data.parts["val"]
    _save_split_config(run_dir, task, model_dir, opts, split_path, data_root, data)
    val_images = [part.read(i)[0] for i in range(len(part))]
    meta_path = Path(model_dir) / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    before = {"threshold_before": meta.get("threshold"), "temperature_before": meta.get("temperature")}
    rows: list[list[Any]] = [["fitted", "values"]]  # the table's header (RunResult.table), then one row per record
    advice = split_advice(model_dir, split_path, "val")  # fitted on training images, the sets cover too little
    overlap, _ = check_training_overlap(predictor, val_images, CALIBRATE_ADVICE if advice == SPLIT_FILE_ADVICE
                                        else advice)
    notes = overlap_notes(overlap)
    if overlap:
        write_json(overlap["training_overlap"], run_dir / "training_overlap.json")
    val_logits = predictor.predict_logits(val_images) if {"temperature", "conformal"} & set(opts.fit) else None
    if "temperature" in opts.fit:
        from breastdx.evaluation.classification import fit_calibration
        from breastdx.evaluation.tables import threshold_rule

        target = opts.target_sensitivity
        if target < 0:
            target = float(meta.get("ensemble", {}).get("target_sensitivity",
                                                        meta.get("training_config", {}).get("target_sensitivity", 0)))
        positive = str(meta.get("positive_class", predictor.class_names[-1]))
        cal = fit_calibration(part.labels, val_logits, predictor.class_names, positive, target)
        meta.update(temperature=cal["temperature"], threshold=cal["threshold"],
                    threshold_rule=threshold_rule(target, positive))
        predictor.temperature, predictor.threshold = cal["temperature"], cal["threshold"]
        write_json(cal, run_dir / "temperature.json")
        rows.append(["temperature", f"{cal['temperature']:.4f}", f"threshold {cal['threshold']:.4f}",
                     f"on P({positive}), target sensitivity {target:g}"])
    if "conformal" in opts.fit:
        from breastdx.evaluation.conformal import fit_conformal

        prob = predictor.proba_from_logits(val_logits)  # with the temperature just fitted, if it was
        record = fit_conformal(part.labels, prob, split=f"validation ({data.describe('val')})")
        meta["conformal"] = record
        write_json(record, run_dir / "conformal.json")
        q = record["quantiles"]
        rows += [["conformal quantile", *q[record["method"]]]]
        rows += [[m, *["every class" if v is None else f"{v:.4f}" for v in t.values()]] for m, t in q.items()]
        notes.append(f"conformal: {record['method']} at {record['level']:g} by default.")
    if "ood" in opts.fit:
        from breastdx.inference.ood import fit_ood, save_bank
        from breastdx.models.penultimate import penultimate_features

        train = data.parts["train"]

        def features(images: Sequence[np.ndarray]) -> np.ndarray:
            return penultimate_features(predictor.network, (
                predictor._to_input([predictor.prepare(im) for im in images[s:s + opts.batch_size]])
                for s in range(0, len(images), opts.batch_size)))

        train_features = features([train.read(i)[0] for i in range(len(train))])
        record, bank = fit_ood(train_features, features(val_images), seed=int(meta.get("seed", 0)))
        save_bank(bank, Path(model_dir) / record["bank_file"])
        meta["ood"] = record
        write_json(record, run_dir / "ood.json")
        rows.append(["ood", f"k = {record['k']}", f"threshold {record['threshold']:.4f}",
                     f"bank of {record['n_bank']} training images"])
        notes.append(f"ood: {Path(model_dir) / record['bank_file']}.")
    from breastdx.models.saved import note_calibration
    from breastdx.runs import utc_now_iso

    meta["calibrated"] = {"fitted": list(opts.fit), "when": utc_now_iso(),
                          "split": f"the {data.describe('val')}", **before}
    write_json(meta, meta_path)
    if note_calibration(Path(model_dir), meta, meta["calibrated"]):
        notes.append(f"Model card: {Path(model_dir) / 'MODEL_CARD.md'} (threshold and its section on calibration).")
    write_versions(run_dir)
    return RunResult(run_dir, {k: meta[k] for k in opts.fit},
                     f"{task.title}: {' and '.join(opts.fit)} fitted ({len(part)} validation cases)", rows,
                     [f"Written into {meta_path}.", *notes, f"Split file: {split_path}"])
