"""The saved model folder: weights, ``meta.json`` and ``MODEL_CARD.md``, which together describe a model.

A folder holds ``model.safetensors`` (networks) or ``model.skops`` (scikit-learn), ``meta.json`` and
``MODEL_CARD.md``. ``meta.json`` carries the schema version, task, architecture and its arguments,
class names in index order, preprocessing, decision threshold, metrics with the split they came from,
seed, data checksum, package versions, creation time and the research-use statement. Nothing is ever
unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from breastdx import RESEARCH_USE_ONLY
from breastdx.runs import FAILED_RUN_FILE, package_versions, utc_now_iso, write_json

META_SCHEMA_VERSION = 1
META_FILE = "meta.json"
CARD_FILE = "MODEL_CARD.md"
REQUIRED_META_KEYS = ("schema_version", "task", "architecture", "class_names", "weights_file")
WEIGHTS_FILE = "model.safetensors"
"""File name of a network's weights in a model folder."""
TRAINING_HASHES_FILE = "training_hashes.json"
"""The :func:`breastdx.data.checksum.image_hash` of every training image, so that ``predict`` can flag an input the
model was trained on (its figures on such an image are not those of a new case). Hashes, not images: no pixel and
no name of a training image is kept."""


def write_training_hashes(model_dir: Path, hashes: list[str], phashes: list[int] | None = None,
                          source_crop: str | None = None) -> Path:
    """Write :data:`TRAINING_HASHES_FILE` into ``model_dir`` (sorted, unique).

    Args:
        model_dir: The model folder.
        hashes: :func:`breastdx.data.checksum.image_hash` of each training image.
        phashes: Optionally, :func:`breastdx.data.duplicates.model_view_hash` of each training image (64-bit ints),
            kept under ``perceptual`` with the near-duplicate threshold, so that ``predict`` flags near-duplicates of
            a training image too (ultrasound, where near-duplicates were calibrated on BUSI).
        source_crop: The crop those were taken through (``preprocessing.source_crop``), or None.
    """
    from breastdx.data.duplicates import FLAG_HASH_THRESHOLD

    record: dict[str, Any] = {"hash": "first 32 hex digits of SHA-256 over the decoded uint8 image's dtype, shape and "
                                      "bytes (breastdx.data.checksum.image_hash), as read before any resizing",
                              "n_images": len(hashes), "hashes": sorted(set(hashes))}
    if phashes is not None:
        record["perceptual"] = {
            "hash": "64-bit DCT perceptual hash (imagehash.phash) of the part of each training image the model reads "
                    "(breastdx.data.duplicates.model_view_hash), 16 hex digits",
            "threshold": FLAG_HASH_THRESHOLD, "source_crop": source_crop,
            "hashes": sorted({f"{int(h):016x}" for h in phashes})}
    return write_json(record, Path(model_dir) / TRAINING_HASHES_FILE)


def read_training_hashes(model_dir: Path | None) -> frozenset[str]:
    """The training-image hashes of a model folder; empty when it has none (older models) or no folder is given.

    Raises:
        ModelFolderError: If the file exists but is not the JSON this module writes; the message names it.
    """
    return read_training_index(model_dir)[0]


def read_near_duplicate_index(model_dir: Path | None) -> Any:
    """The :class:`breastdx.data.duplicates.NearDuplicateIndex` of a model folder's training images, or None when
    its :data:`TRAINING_HASHES_FILE` keeps no perceptual hashes (or there is no folder).

    Raises:
        ModelFolderError: If the file exists but its ``perceptual`` record is not what this module writes.
    """
    return read_training_index(model_dir)[1]


def read_training_index(model_dir: Path | None) -> tuple[frozenset[str], Any]:
    """Both of :func:`read_training_hashes` and :func:`read_near_duplicate_index`, from one reading of the file.

    Raises:
        ModelFolderError: As those two.
    """
    record = _training_record(model_dir)
    if record is None:
        return frozenset(), None
    path = Path(model_dir or "") / TRAINING_HASHES_FILE
    try:
        hashes = frozenset(str(h) for h in record["hashes"])
    except (KeyError, TypeError) as e:
        raise ModelFolderError(f"{path}: not a training-hashes file ({type(e).__name__}: {e}).") from None
    if "perceptual" not in record:
        return hashes, None
    from breastdx.data.duplicates import NearDuplicateIndex

    p = record["perceptual"]
    try:
        index = NearDuplicateIndex(np.array([int(h, 16) for h in p["hashes"]], dtype=np.uint64), int(p["threshold"]),
                                   p.get("source_crop"))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFolderError(f"{path}: not a perceptual-hash record ({type(e).__name__}: {e}).") from None
    return hashes, index


def _training_record(model_dir: Path | None) -> dict[str, Any] | None:
    if model_dir is None or not (Path(model_dir) / TRAINING_HASHES_FILE).is_file():
        return None
    path = Path(model_dir) / TRAINING_HASHES_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ModelFolderError(f"{path}: not a training-hashes file ({type(e).__name__}: {e}).") from None
    if not isinstance(record, dict):
        raise ModelFolderError(f"{path}: not a training-hashes file (a JSON object was expected).")
    return record


def save_weights(network: Any, path: Path) -> Path:
    """Write a network's state dict as safetensors (tensors made contiguous and unshared), readable by all.

    Args:
        network: The network.
        path: The ``.safetensors`` file.

    Returns:
        ``path``.
    """
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in network.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
    os.chmod(path, 0o644)  # readable by everyone, like any other package file
    return path


def load_weights(network: Any, path: Path) -> Any:
    """Load a safetensors state dict into ``network`` (strict: every key must match).

    Returns:
        ``network``, with the weights.

    Raises:
        ModelFolderError: If the file is unreadable or its tensors do not fit the network; the message
            names the file and the first mismatched keys.
    """
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises SafetensorError / OSError on a bad file
        raise ModelFolderError(f"{path}: cannot read the weights ({type(e).__name__}: {e}).") from None
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[:4]
        raise ModelFolderError(f"{path}: the weights do not fit the network described in meta.json: "
                               f"{' '.join(first)}") from None
    return network


class ModelFolderError(ValueError):
    """A model folder that is missing files or whose ``meta.json`` does not match what the task expects."""


def write_meta(model_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Complete ``meta`` with the schema version, versions, creation time and the research-use statement,
    and write it to ``model_dir/meta.json``.

    Returns:
        The completed metadata.
    """
    full = {"schema_version": META_SCHEMA_VERSION, **meta}
    full.setdefault("created", utc_now_iso())
    full.setdefault("versions", package_versions())
    full["intended_use"] = RESEARCH_USE_ONLY
    write_json(full, model_dir / META_FILE)
    return full


def read_meta(model_dir: str | Path, task: str | None = None) -> dict[str, Any]:
    """Read and check ``meta.json`` of a model folder.

    Args:
        model_dir: The folder.
        task: When given, the task the model must belong to.

    Returns:
        The metadata.

    Raises:
        ModelFolderError: If the folder, ``meta.json`` or the weights file is missing, a required key is
            absent, the schema version is newer than this breastdx reads, or the task differs.
    """
    meta_path, meta = load_meta_json(model_dir)
    missing = [k for k in REQUIRED_META_KEYS if k not in meta]
    if missing:
        raise ModelFolderError(f"{meta_path}: missing key(s) {', '.join(missing)}.")
    if int(meta["schema_version"]) > META_SCHEMA_VERSION:
        raise ModelFolderError(f"{meta_path}: schema version {meta['schema_version']} is newer than this "
                               f"breastdx reads ({META_SCHEMA_VERSION}); upgrade breastdx.")
    check_model_folder(model_dir, meta["task"], meta["weights_file"], task)
    return meta


def load_meta_json(model_dir: str | Path) -> tuple[Path, Any]:
    """``(path, parsed content)`` of a model folder's ``meta.json``, unchecked (the one place that reads the file).

    Raises:
        ModelFolderError: If the folder has no ``meta.json`` or it is not valid JSON.
    """
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        stopped = Path(model_dir) / FAILED_RUN_FILE
        if stopped.is_file():  # a training run's folder whose run stopped before writing its model
            import yaml

            reason = (stopped.read_text(encoding="utf-8", errors="replace").splitlines() or ["?"])[0]
            config = Path(model_dir) / "config.yaml"
            task = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("task") if config.is_file() else None
            raise ModelFolderError(f"{model_dir}: a training run that stopped before writing its model ({reason}); "
                                   f"'breastdx train {task or 'TASK'} --resume {model_dir}' finishes it.")
        raise ModelFolderError(f"{model_dir}: not a model folder (no {META_FILE}).")
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFolderError(f"{path}: not valid JSON ({e}).") from None


def check_inside(model_dir: str | Path, name: str, key: str) -> None:
    """Check that ``name``, given by ``meta.json``'s ``key``, names a file inside ``model_dir``.

    Raises:
        ModelFolderError: If ``name`` is absolute, has a ``..`` part, or resolves (through links) outside the
            folder; the message names ``meta.json``, the key and the value.
    """
    from pathlib import PurePosixPath, PureWindowsPath

    parts = PurePosixPath(name).parts + PureWindowsPath(name).parts
    inside = Path(model_dir).resolve()
    target = (Path(model_dir) / name).resolve()
    if (not name or PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or ".." in parts
            or not target.is_relative_to(inside)):
        raise ModelFolderError(f"{Path(model_dir) / META_FILE}: field {key!r} must name a file inside the model "
                               f"folder (no '..', no absolute path, no link out of it). Got {name!r} instead.")


def check_model_folder(model_dir: str | Path, model_task: str, weights_file: str, task: str | None = None) -> None:
    """Check that a model folder belongs to ``task`` (when given) and holds the weights file its meta names.

    The weights file must lie inside the folder: a name with ``..``, an absolute path, or a link that leads
    out of the folder is refused, so that a ``meta.json`` cannot make breastdx read any other file.

    Raises:
        ModelFolderError: Naming the folder, the task found, the missing file, or a weights file outside the
            folder.
    """
    if task is not None and model_task != task:
        raise ModelFolderError(f"{model_dir}: a model for task {model_task!r}, not {task!r}.")
    check_inside(model_dir, weights_file, "weights_file")
    if not (Path(model_dir) / weights_file).is_file():
        raise ModelFolderError(f"{model_dir}: weights file {weights_file!r} named in {META_FILE} is missing.")


def ordinal(k: int) -> str:
    """``k`` as an English ordinal: ``1st``, ``2nd``, ``3rd``, ``4th`` ... ``11th``, ``12th``, ``13th``, ``21st``
    (the out-of-scope check's neighbour rank, in the model card and in each flagged input's note)."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and value == value else "n/a"


def metrics_table(metrics: dict[str, dict[str, Any]], label: Callable[[str], str] | None = None) -> str:
    """A Markdown table of ``{name: {"value", "ci95"}}``; the interval reads ``none`` where there is none (too few
    cases or tiles to resample, or a class absent). ``label(name)`` names a row (a classifier's metric with its
    operating point, :func:`breastdx.evaluation.tables.metric_label`), else the name is shown as it is."""
    lines = ["| metric | value | 95% CI |", "|---|---|---|"]
    for name, m in metrics.items():
        low, high = (m.get("ci95") or [None, None])
        interval = "none" if _fmt(low) == _fmt(high) == "n/a" else f"{_fmt(low)} – {_fmt(high)}"
        lines.append(f"| {label(name) if label else name} | {_fmt(m.get('value'))} | {interval} |")
    return "\n".join(lines)


def _operating_point_section(meta: dict[str, Any], note: str) -> list[str]:
    """``note`` and the figures that move with the threshold (those with an operating point in
    :data:`breastdx.evaluation.tables.OPERATING_POINTS`) at the operating point, where ``meta.json`` holds them
    (``operating_point_metrics``, wdbc: the same evaluation at the operating threshold instead of 0.5), else
    nothing."""
    from breastdx.evaluation.tables import OPERATING_POINTS

    at_op = meta.get("operating_point_metrics") or {}
    rows = {k: at_op[k] for k, point in OPERATING_POINTS.items() if point is not None and k in at_op}
    return [note, "", metrics_table(rows), ""] if rows and note else []


def write_model_card(model_dir: Path, meta: dict[str, Any], *, title: str, summary: str, data: str,
                     evaluation: str, limitations: list[str], operating_point: str = "",
                     label: Callable[[str], str] | None = None) -> None:
    """Write ``MODEL_CARD.md``: model details, intended use, data, evaluation, limitations.

    ``operating_point``: where ``meta`` holds ``operating_point_metrics`` (an evaluation whose ``metrics`` are at
    0.5), the sentence that introduces those figures at the operating point; they follow it as a second table.
    ``label``: names the rows of the metrics table (as :func:`metrics_table`).

    References:
        Mitchell, M. et al. (2019). Model cards for model reporting. FAT* '19. doi:10.1145/3287560.3287596
    """
    metrics = meta.get("metrics", {})
    lines = [
        f"# Model card: {title}",
        "",
        f"> **{RESEARCH_USE_ONLY}**",
        "",
        "## Model details",
        f"- Task: `{meta['task']}`; architecture: `{meta['architecture']}`",
        f"- Classes (index order): {', '.join(meta['class_names'])}; positive class: "
        f"{meta.get('positive_class', meta['class_names'][-1])}",
        f"- Decision threshold: {meta.get('threshold', 'n/a')}",
        f"- Seed: {meta.get('seed')}; created {meta.get('created')}; breastdx {meta.get('versions', {}).get('breastdx')}",
        f"- {summary}",
        "",
        "## Intended use",
        "- Research on machine-learning methods for breast-cancer diagnosis; benchmarking and teaching.",
        "- Not for clinical use: not a medical device, not validated prospectively, not for diagnosis or treatment.",
        "",
        "## Data",
        data,
        f"- Data checksum (SHA-256): `{meta.get('data_checksum')}`",
        "",
        "## Evaluation",
        evaluation,
        "",
        metrics_table(metrics, label) if metrics else "(no metrics)",
        "",
        *_operating_point_section(meta, operating_point),
        "## Limitations",
        *[f"- {item}" for item in limitations],
        "",
        *_record_sections(meta),
    ]
    (model_dir / CARD_FILE).write_text("\n".join(lines), encoding="utf-8")


CALIBRATION_SECTION = "## Calibrated after training"
"""The model card's section that ``breastdx calibrate`` writes (:func:`note_calibration`)."""


def note_calibration(model_dir: Path, meta: dict[str, Any], record: dict[str, Any]) -> bool:
    """Bring ``MODEL_CARD.md`` in line with a ``meta.json`` that ``breastdx calibrate`` changed: its "Decision
    threshold" line gets ``meta["threshold"]``, and its :data:`CALIBRATION_SECTION` (replaced if there is one, else
    added at the end) says what was fitted, when and on which split, and, when the threshold moved, that the
    evaluation figures above it were measured at the threshold before.

    Args:
        model_dir: The model folder.
        meta: Its ``meta.json`` content after calibration.
        record: ``{"fitted": [names], "when": ISO time, "split": text, "threshold_before": float | None,
            "temperature_before": float | None}``.

    Returns:
        False when the folder has no card (nothing written), else True.
    """
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        return False
    lines = path.read_text(encoding="utf-8").split("\n")
    if CALIBRATION_SECTION in lines:  # a calibration before: its section goes, up to the next section
        start = lines.index(CALIBRATION_SECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines = lines[:start] + lines[end:]
    lines = [f"- Decision threshold: {meta.get('threshold')}" if line.startswith("- Decision threshold:") else line
             for line in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    before, now = record.get("threshold_before"), meta.get("threshold")
    section = ["", CALIBRATION_SECTION,
               f"- {record['when']}: `breastdx calibrate --fit {','.join(record['fitted'])}` on {record['split']}."]
    if "temperature" in record["fitted"]:
        t_before = record.get("temperature_before")
        section.append(f"- Temperature {_fmt(meta.get('temperature'))} (before: {_fmt(t_before)}); decision threshold "
                       f"{_fmt(now)} (before: {_fmt(before)}); {meta.get('threshold_rule', '')}".rstrip("; "))
        if meta.get("metrics") and before != now:
            section.append("- The evaluation figures above were measured before this calibration: sensitivity, "
                           "specificity, PPV, NPV and F1 at the threshold before. `breastdx evaluate` measures them at "
                           "the new one.")
    if "conformal" in record["fitted"] and isinstance(meta.get("conformal"), dict):
        section.append(f"- Prediction sets: {meta['conformal'].get('method')} at level "
                       f"{meta['conformal'].get('level')}, fitted after the temperature.")
    if "ood" in record["fitted"] and isinstance(meta.get("ood"), dict):
        section.append(f"- Out-of-distribution record: distance to the {ordinal(int(meta['ood']['k']))} nearest of "
                       f"{meta['ood'].get('n_bank')} training images, threshold {_fmt(meta['ood'].get('threshold'))}.")
    path.write_text("\n".join(lines + section) + "\n", encoding="utf-8")
    return True


def _record_sections(meta: dict[str, Any]) -> list[str]:
    """The card's sections on a classifier's prediction sets and out-of-scope check, from ``meta.json``'s
    ``conformal`` and ``ood`` records (none for a model without them)."""
    lines = []
    conformal = meta.get("conformal")
    if conformal:
        lines += ["## Prediction sets (conformal)",
                  f"`predict` and the service give a `prediction_set`: split conformal prediction "
                  f"({conformal['method']}), calibrated on {conformal['n_calibration']} validation cases; at the "
                  f"{conformal['level']:.0%} level the set holds the true class at least that often on cases like "
                  f"them (not per class, not under a change of scanner, stain or hospital). A set of more than one "
                  f"class means the case needs a specialist.", ""]
    ood = meta.get("ood")
    if ood:
        lines += ["## Out-of-scope inputs",
                  f"Each input is checked for colour and size, and scored in this model's feature space: the cosine "
                  f"distance of its L2-normalised penultimate features to the {ordinal(int(ood['k']))} nearest of "
                  f"{ood['n_bank']} training images (deep nearest neighbours, Sun et al. 2022, arXiv:2204.06507; "
                  f"`{ood['bank_file']}`). Over {ood['threshold']:.4f}, the {ood['quantile']:.0%} quantile of the "
                  f"{ood['n_calibration']} validation images' distances, the input is flagged (`in_scope` false) "
                  f"and still predicted. `benchmarks/ood_scope.py` measures what it flags on other datasets.", ""]
    return lines
