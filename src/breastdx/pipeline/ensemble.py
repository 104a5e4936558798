"""Write a model folder that averages several trained segmentation models (``seg_ensemble``).

:func:`write_ensemble` turns member model folders (the ``folds/f<k>/model`` of a cross-validation, see
:mod:`breastdx.pipeline.seg_crossval`) into one model folder that every verb loads like any other: ``predict``,
``evaluate``, the service. Its network is :class:`breastdx.models.ensemble.MeanProbabilityEnsemble` (the mean of the
members' softmax probabilities), its weights the members' under ``members.<i>.``, and its ``meta.json`` the
members' common preprocessing and inference settings, with an ``ensemble`` record naming each member.

The members must agree on what makes their probabilities comparable: task, classes, input channels and
preprocessing (size, grey or colour, intensity scaling). The postprocessing is taken from the members: the
threshold and smallest component that most of them chose on their own validation parts (ties: the first member's),
since the ensemble has no validation images of its own (each member trained on the others' validation cases).
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


def ensemble_meta(metas: Sequence[dict[str, Any]], sources: Sequence[str]) -> dict[str, Any]:
    """The ``meta.json`` content of the mean-probability ensemble of ``metas`` (without the write-time fields).

    Args:
        metas: The members' ``meta.json`` content, each a segmentation model.
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
        if meta.get("architecture") == "seg_ensemble":
            raise ModelFolderError(f"{src}: already an ensemble; give its members instead.")
        if "postprocessing" not in meta or "architecture_args" not in meta:
            raise ModelFolderError(f"{src}: not a segmentation model folder (no postprocessing or "
                                   f"architecture_args in meta.json).")
        for key in AGREE_KEYS:
            if meta.get(key) != first.get(key):
                raise ModelFolderError(f"{src}: its {key} ({meta.get(key)!r}) differs from {sources[0]}'s "
                                       f"({first.get(key)!r}); ensemble members must share "
                                       f"{', '.join(AGREE_KEYS)}.")
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
                   title: str = "mean-probability ensemble of segmentation models", notes: str = "") -> dict[str, Any]:
    """Write the model folder of the mean-probability ensemble of ``member_dirs`` into ``out_dir``.

    Writes ``model.safetensors`` (the members' weights under ``members.<i>.``), ``meta.json``
    (:func:`ensemble_meta`), ``MODEL_CARD.md``, ``split.json`` when ``split_file`` is given, and
    ``training_hashes.json`` with the union of the members' (so that ``predict`` flags an image any member trained
    on).

    Args:
        member_dirs: Two or more segmentation model folders.
        out_dir: The new folder; it must not exist or be empty (nothing is overwritten).
        split_file: The split the ensemble is evaluated on (for a cross-validation: its base split, whose test
            cases no member saw), copied as ``split.json``.
        title: The model card's title.
        notes: Extra Markdown for the model card's evaluation section (how the ensemble was chosen).

    Returns:
        The written metadata.

    Raises:
        ModelFolderError: If a member folder is invalid, the members disagree (see :func:`ensemble_meta`), or
            ``out_dir`` exists and is not empty.
    """
    from safetensors.torch import load_file, save_file

    from breastdx.evaluation.tables import ci_text
    from breastdx.models.saved import (TRAINING_HASHES_FILE, read_meta, read_training_hashes, write_meta,
                                       write_model_card, write_training_hashes)

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelFolderError(f"{out}: exists and is not an empty folder; an ensemble is written to a new one.")
    dirs = [Path(d) for d in member_dirs]
    metas = [read_meta(d) for d in dirs]
    meta = ensemble_meta(metas, [str(d) for d in dirs])
    state: dict[str, Any] = {}
    for i, (d, m) in enumerate(zip(dirs, metas)):
        for key, tensor in load_file(str(d / m["weights_file"])).items():
            state[f"members.{i}.{key}"] = tensor.contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / meta["weights_file"]), metadata={"format": "pt"})
    os.chmod(out / meta["weights_file"], 0o644)  # readable by all, like save_weights' files
    if split_file is not None:
        shutil.copyfile(split_file, out / "split.json")
        meta["split_file"] = "split.json"
    hashes = set()
    for d in dirs:
        hashes |= read_training_hashes(d)
    if hashes:
        write_training_hashes(out, sorted(hashes))
    full = write_meta(out, meta)
    rows = "\n".join(f"| {i} | `{m['source']}` | {m['architecture']} | "
                     f"{ci_text(m['validation_metrics'].get('dice'))} | {m['postprocessing']} |"
                     for i, m in enumerate(meta["ensemble"]["members"]))
    pre = meta["preprocessing"]
    write_model_card(
        out, full, title=title,
        summary=(f"Mean-probability ensemble of {len(dirs)} segmentation models ({full['n_parameters']:,} parameters "
                 f"in all), input {pre.get('image_size')}x{pre.get('image_size')}; each image runs through every "
                 f"member, so inference costs {len(dirs)} times one member's. Postprocessing: "
                 f"{meta['postprocessing']} ({meta['ensemble']['postprocessing_rule']})."),
        data=(f"- {meta.get('data', 'see the members')}; each member's training and validation cases are in its own "
              f"split file.\n- Preprocessing: {pre.get('description', pre)}."
              + (f"\n- `{TRAINING_HASHES_FILE}`: the union of the members' training images, by hash." if hashes
                 else "")),
        evaluation=("| member | folder | network | validation Dice | postprocessing |\n|---|---|---|---|---|\n" + rows
                    + "\n\nEach member's validation Dice is on its own validation part. The ensemble has no "
                      "validation figure of its own: every member trained on the others' validation cases."
                    + (f"\n\n{notes}" if notes else "")),
        limitations=["As those of its members (see their model cards).",
                     f"{len(dirs)} times the inference time and memory of one member.",
                     "Research use only; not for diagnosis."])
    return full

