"""Shipped models: one folder per task below this package (weights, ``meta.json``, ``MODEL_CARD.md``).

``breastdx models`` lists them; ``--model`` accepts a shipped model's name or a model folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ZOO_DIR = Path(__file__).resolve().parent


def shipped_models() -> dict[str, Path]:
    """Name to folder of every shipped model (a folder of this package that holds ``meta.json``).

    Folders named after their task come first, then the others (named second models of a task, such as a
    ``busi-seg-ensemble``), each group in name order: the first model of a task is its default
    (:func:`resolve_model`, and the one the service serves), whatever names sort before it.
    """
    found = {p.parent.name: p.parent for p in sorted(ZOO_DIR.glob("*/meta.json"))}

    def named_after_its_task(name: str) -> bool:
        try:
            return json.loads((found[name] / "meta.json").read_text(encoding="utf-8")).get("task") == name
        except (OSError, ValueError):
            return False

    return {n: found[n] for n in sorted(found, key=lambda n: (not named_after_its_task(n), n))}


def shipped_meta() -> dict[str, dict[str, Any]]:
    """Name to ``meta.json`` content of every shipped model."""
    return {name: json.loads((path / "meta.json").read_text(encoding="utf-8"))
            for name, path in shipped_models().items()}


def model_folder(path: str | Path) -> Path:
    """``path``, or ``path/model`` when ``path`` is a training run's folder (``breastdx train --out RUN`` writes
    the model to ``RUN/model``): a folder without ``meta.json`` whose ``model/`` has one."""
    path = Path(path)
    return path / "model" if not (path / "meta.json").exists() and (path / "model" / "meta.json").is_file() else path


def names_shipped_model(name_or_dir: str | Path | None) -> bool:
    """Whether ``--model`` means a shipped model (None, a shipped model's name that is not a folder path, or the
    path of a shipped model's folder, as ``breastdx models NAME`` prints it): the folder inside the installed
    package, which commands that write into a model folder must leave as it is."""
    if name_or_dir is None:
        return True
    if not Path(name_or_dir).is_dir():
        return str(name_or_dir) in shipped_models()
    here = Path(name_or_dir).resolve()
    return any(here == p.resolve() for p in shipped_models().values())


def resolve_model(name_or_dir: str | Path | None, task: str) -> Path:
    """The model folder for ``--model``: a folder path (a training run's folder stands for its ``model/``), a shipped
    model's name, or (None) the task's shipped model.

    Raises:
        FileNotFoundError: If the name is neither a folder nor a shipped model; the message lists the shipped ones.
    """
    models = shipped_models()
    if name_or_dir is None:
        matching = [p for n, p in models.items()
                    if json.loads((p / "meta.json").read_text(encoding="utf-8"))["task"] == task]
        if not matching:
            raise FileNotFoundError(f"No shipped model for task {task!r}; train one (breastdx train {task}) "
                                    f"and pass --model RUN_DIR/model.")
        return matching[0]
    path = Path(name_or_dir)
    if path.is_dir():
        return model_folder(path)
    if str(name_or_dir) in models:
        return models[str(name_or_dir)]
    raise FileNotFoundError(f"--model {name_or_dir}: neither a folder nor a shipped model.{_did_you_mean(name_or_dir, models)}"
                            f" Shipped models: {', '.join(models) or '(none)'}.")


def _did_you_mean(name: str | Path, models: dict[str, Path]) -> str:
    """`` Did you mean 'busi-seg'?`` for the name of ``models`` (the shipped ones) closest to ``name``, or nothing."""
    import difflib

    close = difflib.get_close_matches(str(name), list(models), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


MODELS_TABLE_TITLE = ("Shipped models (research use only; figures on the split in brackets, with 95% intervals; auroc: "
                      "the positive class (malignant, tumour) against the rest; @ argmax: the most probable class, "
                      "@ op: the operating threshold chosen on validation, or by inner cross-validation (wdbc))")
MODELS_TABLE_COLUMNS = ("name", "task", "architecture", "metrics (split)")


def models_table_rows() -> list[list[str]]:
    """``breastdx models``: per shipped model its name, task, architecture and headline figures with their split
    (:func:`breastdx.evaluation.tables.headline_metrics`), rows of :data:`MODELS_TABLE_COLUMNS`."""
    from breastdx.evaluation.tables import OPERATING_POINTS, ci_text, headline_metrics, metric_label

    rows = []
    for name, meta in shipped_meta().items():
        # a model whose 'metrics' are at 0.5 keeps its operating threshold's apart (wdbc's cross-validation)
        at_op = meta.get("operating_point_metrics") or {}
        figures = {k: at_op[k] if OPERATING_POINTS.get(k) == "op" and k in at_op else v
                   for k, v in (meta.get("metrics") or {}).items()}
        shown = ", ".join(f"{metric_label(k)} {ci_text(figures[k])}" for k in headline_metrics(meta))
        split = meta.get("metrics_split", "")
        rows.append([name, meta["task"], meta["architecture"],
                     f"{shown} ({split})" if shown else "no test figures (see its model card)"])
    return rows


def model_card(name_or_dir: str | Path) -> tuple[Path, str]:
    """``breastdx models NAME``: a model folder (a shipped model's name, a model folder or a training run's folder)
    and the Markdown of its ``MODEL_CARD.md``.

    Raises:
        FileNotFoundError: If the name is neither a folder nor a shipped model (the shipped ones listed, and the
            closest), or the folder has no model card.
        ValueError: If the card is not UTF-8 text.
    """
    from breastdx.models.saved import CARD_FILE

    models = shipped_models()
    folder = model_folder(name_or_dir) if Path(name_or_dir).is_dir() else models.get(str(name_or_dir))
    if folder is None:
        raise FileNotFoundError(f"{name_or_dir}: neither a model folder nor a shipped model."
                                + _did_you_mean(name_or_dir, models) + f" Shipped models: {', '.join(models) or '(none)'}.")
    card = folder / CARD_FILE
    if not card.is_file():
        raise FileNotFoundError(f"{folder}: no {CARD_FILE}; a model folder written by breastdx train has one.")
    try:
        return folder, card.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{card}: not UTF-8 text (byte {e.start}: {e.reason}); a model card is Markdown in "
                         f"UTF-8, as breastdx train writes it.") from None
