"""Write a model folder that averages several trained segmentation models (``seg_ensemble``) or classifiers
(``cls_ensemble``).

:func:`write_ensemble` turns member model folders (the ``folds/f<k>/model`` of a cross-validation, see
:mod:`breastdx.pipeline.seg_crossval`) into one model folder that every verb loads like any other: ``predict``,
``evaluate``, the service. Its network is :class:`breastdx.models.ensemble.MeanProbabilityEnsemble` (the mean of the
members' softmax probabilities), its weights the members' under ``members.<i>.``, and its ``meta.json`` the
members' common preprocessing and inference settings, with an ``ensemble`` record naming each member.

The members must agree on what makes their probabilities comparable: task, classes, input channels and
preprocessing (size, grey or colour, intensity scaling). The postprocessing is taken from the members: the
threshold and smallest component that most of them chose on their own validation parts (ties: the first member's),
since the ensemble has no validation images of its own (each member trained on the others' validation cases).

Classifiers (several seeds of one recipe on one split, as ``benchmarks/breastmnist_seed_ensemble.py`` compares them)
must also share their split file; each member's fitted temperature enters the network (its logits are scaled before
the mean), and the ensemble's own temperature, operating threshold, prediction sets and out-of-distribution record
are fitted afterwards on that split's validation images: ``breastdx calibrate TASK --model DIR --fit
temperature,conformal,ood``. Until then the folder holds temperature 1 and no threshold (labels at argmax).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from breastdx.models.saved import ModelFolderError

AGREE_KEYS = ("task", "class_names", "in_channels", "preprocessing")
"""``meta.json`` fields every member must share."""


def _majority(values: Sequence[Any]) -> Any:
    counts = Counter(repr(v) for v in values)
    best = max(counts.values())
    return next(v for v in values if counts[repr(v)] == best)  # ties: the first member's


def _is_classifier(meta: dict[str, Any]) -> bool:
    return "postprocessing" not in meta and "temperature" in meta and "architecture_args" in meta


def _classifier_meta(metas: Sequence[dict[str, Any]], sources: Sequence[str]) -> dict[str, Any]:
    """``ensemble_meta`` of classifiers (see the module docstring)."""
    from breastdx.models.networks import gradcam_layer

    first = metas[0]
    for src, meta in zip(sources, metas):
        if not _is_classifier(meta):
            raise ModelFolderError(f"{src}: not a classifier model folder like {sources[0]} (no temperature or "
                                   f"architecture_args in meta.json, or a segmentation model).")
        for key in ("positive_class", "stain_normalisation"):
            if meta.get(key) != first.get(key):
                raise ModelFolderError(f"{src}: its {key} ({meta.get(key)!r}) differs from {sources[0]}'s "
                                       f"({first.get(key)!r}); classifier ensemble members must share it.")
    members = [{"architecture": m["architecture"], "architecture_args": m["architecture_args"]} for m in metas]
    temperatures = [float(m.get("temperature", 1.0)) for m in metas]
    keep = ("task", "class_names", "positive_class", "in_channels", "preprocessing", "stain_normalisation", "data",
            "data_checksum", "data_md5", "label_rule", "seed")
    targets = [float(m.get("training_config", {}).get("target_sensitivity", 0.0)) for m in metas]
    classes = list(first["class_names"])
    return {
        **{k: first[k] for k in keep if k in first},  # seed: the first member's (resampling seeds of later fits)
        "architecture": "cls_ensemble",
        "architecture_args": {"members": members, "temperatures": temperatures},
        "n_parameters": int(sum(int(m.get("n_parameters", 0)) for m in metas)),
        "weights_file": "model.safetensors",
        "temperature": 1.0, "threshold": None, "conformal": None, "ood": None,
        "threshold_rule": "none yet: labels at argmax until 'breastdx calibrate --fit temperature' fits it",
        "inference": {"tta": _majority([m.get("inference", {}).get("tta", "none") for m in metas])},
        "gradcam": {"method": _majority([m.get("gradcam", {}).get("method", "gradcam") for m in metas]),
                    "layer": gradcam_layer("cls_ensemble", members=members)},
        "output": f"{', '.join(f'P({c})' for c in classes)} = softmax(logits / temperature), where the logits are "
                  f"the log of the mean of the members' probabilities, each member's softmax(logits / its own "
                  f"temperature)",
        "metrics": {},
        "metrics_split": "",
        "ensemble": {
            "combination": "mean of the members' temperature-scaled softmax probabilities (Lakshminarayanan et al. "
                           "2017, arXiv:1612.01474)",
            "target_sensitivity": float(_majority(targets)),
            "members": [{"source": str(src), "architecture": m["architecture"], "seed": m.get("seed"),
                         "temperature": t, "best_epoch": m.get("training", {}).get("best_epoch"),
                         "validation_score": m.get("training", {}).get("best_monitor_value")}
                        for src, m, t in zip(sources, metas, temperatures)],
        },
    }


def ensemble_meta(metas: Sequence[dict[str, Any]], sources: Sequence[str]) -> dict[str, Any]:
    """The ``meta.json`` content of the mean-probability ensemble of ``metas`` (without the write-time fields).

    Args:
        metas: The members' ``meta.json`` content: all segmentation models, or all classifiers (then
            ``cls_ensemble``, temperature 1 and no threshold until ``calibrate``; see the module docstring).
        sources: A name per member for the ``ensemble`` record (its folder, as the user gave it).

    Returns:
        The ensemble's metadata: the members' shared fields, ``architecture`` ``seg_ensemble``, majority
        postprocessing, the dtypes every member validated, ``metrics`` empty (a member's test figures are not the
        ensemble's) and ``ensemble``: per member its source, architecture, validation metrics and split file.

    Raises:
        ModelFolderError: If there are fewer than 2 members, a member is itself an ensemble or not a
            segmentation model, or the members disagree on a field of :data:`AGREE_KEYS` (the message names the
            field and both members).
    """
    if len(metas) < 2:
        raise ModelFolderError(f"An ensemble needs at least 2 member models, got {len(metas)}.")
    first = metas[0]
    for src, meta in zip(sources, metas):
        if meta.get("architecture") in ("seg_ensemble", "cls_ensemble"):
            raise ModelFolderError(f"{src}: already an ensemble; give its members instead.")
        for key in AGREE_KEYS:
            if meta.get(key) != first.get(key):
                raise ModelFolderError(f"{src}: its {key} ({meta.get(key)!r}) differs from {sources[0]}'s "
                                       f"({first.get(key)!r}); ensemble members must share "
                                       f"{', '.join(AGREE_KEYS)}.")
    if _is_classifier(first):
        return _classifier_meta(metas, sources)
    for src, meta in zip(sources, metas):
        if "postprocessing" not in meta or "architecture_args" not in meta:
            raise ModelFolderError(f"{src}: not a segmentation model folder like {sources[0]} (no postprocessing "
                                   f"or architecture_args in meta.json).")
    dtypes = set(first.get("inference", {}).get("validated_dtypes", ["float32"]))
    for meta in metas[1:]:
        dtypes &= set(meta.get("inference", {}).get("validated_dtypes", ["float32"]))
    posts = [{"threshold": m.get("threshold", 0.5), **m["postprocessing"]} for m in metas]
    threshold = float(_majority([p["threshold"] for p in posts]))
    post = {"threshold": threshold,
            "keep_largest": bool(_majority([p.get("keep_largest", False) for p in posts])),
            "min_area_fraction": float(_majority([p.get("min_area_fraction", 0.0) for p in posts]))}
    members = [{"architecture": m["architecture"], "architecture_args": m["architecture_args"]} for m in metas]
    keep = ("task", "class_names", "positive_class", "in_channels", "preprocessing", "data", "data_checksum",
            "seed", "split_seed")
    return {
        **{k: first[k] for k in keep if k in first},
        "architecture": "seg_ensemble",
        "architecture_args": {"members": members},
        "n_parameters": int(sum(int(m.get("n_parameters", 0)) for m in metas)),
        "weights_file": "model.safetensors",
        "threshold": threshold,
        "postprocessing": post,
        "inference": {"validated_dtypes": sorted(dtypes | {"float32"}),
                      "tta": _majority([m.get("inference", {}).get("tta", "none") for m in metas])},
        "output": "per-pixel lesion probability: the mean of the members' softmax probabilities, resized bilinearly "
                  "to the original image size, then thresholded and cleaned by 'postprocessing' (the members' "
                  "majority choice)",
        "metrics": {},
        "metrics_split": "",
        "ensemble": {
            "combination": "mean of the members' softmax probabilities (Isensee et al. 2021, nnU-Net, "
                           "doi:10.1038/s41592-020-01008-z)",
            "postprocessing_rule": "the value most members chose on their own validation part (ties: the first "
                                   "member's)",
            "members": [{"source": str(src), "architecture": m["architecture"],
                         "validation_metrics": {k: v for k, v in m.get("validation_metrics", {}).items()
                                                if k in ("dice", "iou", "normal_fp_share")},
                         "postprocessing": p}
                        for src, m, p in zip(sources, metas, posts)],
        },
    }


def write_ensemble(member_dirs: Sequence[str | Path], out_dir: str | Path, *, split_file: str | Path | None = None,
                   title: str = "mean-probability ensemble", notes: str = "",
                   weights_dtype: str = "float32") -> dict[str, Any]:
    """Write the model folder of the mean-probability ensemble of ``member_dirs`` into ``out_dir``.

    Writes ``model.safetensors`` (the members' weights under ``members.<i>.``), ``meta.json``
    (:func:`ensemble_meta`), ``MODEL_CARD.md``, ``split.json`` when ``split_file`` is given (classifiers: else the
    members' common split file), and ``training_hashes.json`` with the union of the members' (so that ``predict``
    flags an image any member trained on; their perceptual hashes too when every member keeps them alike).

    Args:
        member_dirs: Two or more segmentation model folders, or two or more classifier model folders.
        out_dir: The new folder; it must not exist or be empty (nothing is overwritten).
        split_file: The split the ensemble is evaluated on (for a cross-validation: its base split, whose test
            cases no member saw), copied as ``split.json``.
        title: The model card's title.
        notes: Extra Markdown for the model card's evaluation section (how the ensemble was chosen).
        weights_dtype: ``float32``, or ``float16`` to store the floating-point weights at half the size (they are
            computed in the network's dtype after loading; ``meta.json`` records the choice).

    Returns:
        The written metadata.

    Raises:
        ModelFolderError: If a member folder is invalid, the members disagree (see :func:`ensemble_meta`; classifiers
            also on their split file), or ``out_dir`` exists and is not empty.
        ValueError: For another ``weights_dtype``.
    """
    import torch
    from safetensors.torch import load_file, save_file

    from breastdx.models.saved import read_meta, read_training_index, write_meta, write_training_hashes

    if weights_dtype not in ("float32", "float16"):
        raise ValueError(f"weights_dtype must be 'float32' or 'float16', got {weights_dtype!r}.")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelFolderError(f"{out}: exists and is not an empty folder; an ensemble is written to a new one.")
    dirs = [Path(d) for d in member_dirs]
    metas = [read_meta(d) for d in dirs]
    meta = ensemble_meta(metas, [str(d) for d in dirs])
    classifier = meta["architecture"] == "cls_ensemble"
    if classifier and split_file is None:
        split_file = _common_split(dirs, metas)
    state: dict[str, Any] = {}
    for i, (d, m) in enumerate(zip(dirs, metas)):
        for key, tensor in load_file(str(d / m["weights_file"])).items():
            if weights_dtype == "float16" and tensor.is_floating_point():
                tensor = tensor.to(torch.float16)
            state[f"members.{i}.{key}"] = tensor.contiguous()
    if weights_dtype != "float32":
        meta["weights_dtype"] = weights_dtype
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / meta["weights_file"]), metadata={"format": "pt"})
    os.chmod(out / meta["weights_file"], 0o644)  # readable by all, like save_weights' files
    if split_file is not None:
        shutil.copyfile(split_file, out / "split.json")
        meta["split_file"] = "split.json"
    read = [read_training_index(d) for d in dirs]
    hashes = set().union(*(h for h, _ in read))
    indexes = [i for _, i in read]
    near = (all(i is not None for i in indexes) and len({(i.threshold, i.source_crop) for i in indexes}) == 1)
    if hashes:
        write_training_hashes(out, sorted(hashes), sorted({int(h) for i in indexes for h in i.hashes}) if near else None,
                              indexes[0].source_crop if near else None)
    about = _data_lines(dirs[0])  # the source of the data (paper, DOI, licence, split sizes), as members state it
    if about:
        meta["data_about"] = about
    full = write_meta(out, meta)
    write_ensemble_card(out, title, notes)
    return full


def write_ensemble_card(model_dir: str | Path, title: str, notes: str = "") -> None:
    """(Re)write ``MODEL_CARD.md`` of an ensemble folder from its ``meta.json`` as it is now (after ``calibrate``
    fitted a classifier ensemble's threshold, or its test figures were added to ``metrics``).

    Args:
        model_dir: A folder written by :func:`write_ensemble`.
        title: The card's title.
        notes: Extra Markdown for the evaluation section.

    Raises:
        ModelFolderError: If the folder's ``meta.json`` is not an ensemble's.
    """
    from breastdx.models.saved import TRAINING_HASHES_FILE, read_meta, read_near_duplicate_index

    out = Path(model_dir)
    full = read_meta(out)
    if full.get("architecture") not in ("seg_ensemble", "cls_ensemble"):
        raise ModelFolderError(f"{out}: not an ensemble model folder (architecture {full.get('architecture')!r}).")
    near = read_near_duplicate_index(out)
    hashes_line = (f"\n- `{TRAINING_HASHES_FILE}`: the union of the members' training images, by hash"
                   + (f" and by perceptual hash (`predict` flags copies and near-duplicates within {near.threshold} "
                      f"bits)." if near is not None else ".") if (out / TRAINING_HASHES_FILE).is_file() else "")
    card = _classifier_card if full["architecture"] == "cls_ensemble" else _segmentation_card
    card(out, full, title, notes, hashes_line)


_OWN_DATA_LINES = ("- Preprocessing", "- Data checksum", "- `training_hashes.json`")
"""Lines of a member card's Data section that are the member's own (the ensemble writes its own)."""


def _data_lines(member_dir: Path) -> list[str]:
    """The Data section of a member's ``MODEL_CARD.md``, as its bullet lines (where the data come from: paper, DOI,
    licence, split sizes), without :data:`_OWN_DATA_LINES`; empty without a card or a Data section."""
    card = member_dir / "MODEL_CARD.md"
    if not card.is_file():
        return []
    lines, inside = [], False
    for line in card.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Data"
            continue
        if inside and line.startswith("- ") and not line.startswith(_OWN_DATA_LINES):
            lines.append(line)
    return lines


def _common_split(dirs: Sequence[Path], metas: Sequence[dict[str, Any]]) -> Path | None:
    """The split file every classifier member shares (None when none has one)."""
    files = [d / m["split_file"] if m.get("split_file") else None for d, m in zip(dirs, metas)]
    if all(f is None for f in files):
        return None
    for d, f in zip(dirs, files):
        if f is not None and not f.is_file():
            raise ModelFolderError(f"{d}: its meta.json names the split file {f.name}, which is not in the folder; "
                                   f"copy it back from the member's run folder.")
    texts = [f.read_bytes() if f is not None else None for f in files]
    for d, t in zip(dirs, texts):
        if t != texts[0]:
            raise ModelFolderError(f"{d}: its split file differs from {dirs[0]}'s; the members of a classifier "
                                   f"ensemble must share one split, whose validation part calibrates the ensemble.")
    return files[0]


def _segmentation_card(out: Path, full: dict[str, Any], title: str, notes: str, hashes_line: str) -> None:
    from breastdx.evaluation.tables import ci_text

    rows = "\n".join(f"| {i} | `{m['source']}` | {m['architecture']} | "
                     f"{ci_text(m['validation_metrics'].get('dice'))} | {m['postprocessing']} |"
                     for i, m in enumerate(full["ensemble"]["members"]))
    _card(out, full, title, "segmentation models",
          f"Postprocessing: {full['postprocessing']} ({full['ensemble']['postprocessing_rule']}).",
          "each member's training and validation cases are in its own split file", hashes_line,
          "| member | folder | network | validation Dice | postprocessing |\n|---|---|---|---|---|\n" + rows
          + "\n\nEach member's validation Dice is on its own validation part. The ensemble has no validation figure "
            "of its own: every member trained on the others' validation cases." + (f"\n\n{notes}" if notes else ""),
          [])


def _classifier_card(out: Path, full: dict[str, Any], title: str, notes: str, hashes_line: str) -> None:
    rows = "\n".join(f"| {i} | `{m['source']}` | {m['architecture']} | {m['seed']} | {m['best_epoch']} | "
                     f"{m['validation_score'] if m['validation_score'] is None else round(m['validation_score'], 4)}"
                     f" | {m['temperature']:.4f} |" for i, m in enumerate(full["ensemble"]["members"]))
    stored = f" Weights stored in {full['weights_dtype']}." if full.get("weights_dtype") else ""
    _card(out, full, title, "classifiers",
          f"Each member's logits are divided by its own temperature before the mean. Grad-CAM: the mean of the "
          f"members' maps.{stored}",
          "every member trained on the same split (`split.json`)", hashes_line,
          "| member | folder | network | seed | best epoch | validation score | temperature |\n"
          "|---|---|---|---|---|---|---|\n" + rows + (f"\n\n{notes}" if notes else ""),
          ["The out-of-distribution score reads the last member's features."])


def _card(out: Path, full: dict[str, Any], title: str, kind: str, how: str, data: str, hashes_line: str,
          evaluation: str, limitations: list[str]) -> None:
    """The model card of an ensemble of ``kind`` (its members' table in ``evaluation``)."""
    from breastdx.models.saved import write_model_card

    n = len(full["ensemble"]["members"])
    pre = full["preprocessing"]
    write_model_card(
        out, full, title=title,
        summary=(f"Mean-probability ensemble of {n} {kind} ({full['n_parameters']:,} parameters in all), input "
                 f"{pre.get('image_size')}x{pre.get('image_size')}; each image runs through every member, so "
                 f"inference costs {n} times one member's. {how}"),
        data=("".join(f"{line}\n" for line in full.get("data_about", []))
              + f"- {full.get('data', 'see the members')}; {data}.{hashes_line}\n- Preprocessing: "
              f"{pre.get('description', pre)}."),
        evaluation=evaluation,
        limitations=["As those of its members (see their model cards).",
                     f"{n} times the inference time and memory of one member.", *limitations,
                     "Research use only; not for diagnosis."])
