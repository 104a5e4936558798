"""Synthetic IDC patches: train the class-conditional GAN on the idc training patients, measure it, sample from it.

* :func:`read_idc_patches` reads the three parts of the idc patient split (the shipped idc model's ``split.json`` by
  default, so the generator never sees a validation or test patient of the classifier).
* :func:`train_idc_gan` trains :mod:`breastdx.training.gan` on the training part and writes a generator folder
  (``model.safetensors``, ``meta.json``, ``MODEL_CARD.md``, ``split.json``, ``training_hashes.json``), with the
  quality figures of :func:`measure_quality` in ``meta.json`` and the card, and ``report.html`` beside it.
* :func:`synthesize` writes ``N`` PNG patches of one class: ``breastdx synthesize idc --n N --label 0|1 --out DIR``.
  The same seed gives the same patches, byte for byte.

Quality is measured in the feature space of the project's own idc classifier (:func:`breastdx.evaluation.generative
.classifier_features`), not Inception's: Inception weights cannot be fetched here, and a 50 x 50 H&E patch is far
from ImageNet anyway. KID and precision/recall so measured are **not comparable** with published Inception figures.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

GENERATOR_TASK = "idc-synthesis"
"""``meta.json`` ``task`` of an IDC generator folder (not ``idc``: the idc classifier stays the task's model)."""
SHIPPED_GENERATOR = "idc-gan"
"""Name of the shipped IDC generator (``src/breastdx/zoo/idc-gan``)."""
CLASS_NAMES = ("normal", "tumour")
"""Class index 0 = no IDC, 1 = IDC (the idc task's order)."""


def read_idc_patches(data_root: str | Path, split_file: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The idc patches of each part of a patient split, read once, padded to 50 x 50 as the idc task reads them.

    Args:
        data_root: The data root (holds ``idc/``).
        split_file: A ``split.json`` of the idc task; None: the shipped idc model's.

    Returns:
        ``{"train" | "val" | "test": {"images": uint8 (n, 50, 50, 3), "labels": int64 (n,), "groups": (n,) patient
        ids, "ids": patch ids}}``, plus ``"_checksum"`` (the data checksum) and ``"_split"`` (the split file used).

    Raises:
        DataError: If IDC is missing, or the split does not fit the data.
    """
    import tempfile
    from types import SimpleNamespace

    from breastdx.data.image_sets import patch_reader
    from breastdx.zoo import shipped_models

    split = Path(split_file) if split_file else shipped_models()["idc"] / "split.json"
    with tempfile.TemporaryDirectory() as tmp:  # the idc task's reader: padded to 50 x 50, the split checked
        data = patch_reader("idc", about="")(SimpleNamespace(), Path(data_root), split, Path(tmp) / "split.json")
    out: dict[str, Any] = {"_checksum": data.checksum, "_split": str(split)}
    for name, part in data.parts.items():
        images = np.stack([part.read(i)[0] for i in range(len(part))]).astype(np.uint8)
        out[name] = {"images": images, "labels": np.asarray(part.labels, np.int64),
                     "groups": np.asarray(part.groups), "ids": list(part.ids)}
    return out


def train_idc_gan(data_root: str | Path, out_dir: str | Path, settings: Any, split_file: str | Path | None = None,
                  snapshot_every: int = 1000) -> Path:
    """Train the IDC generator on the training patients of a split and write its folder (without quality figures:
    :func:`finish_generator_folder` adds them).

    Every ``snapshot_every`` steps the EMA generator is saved to ``out_dir/model`` and a grid of samples to
    ``out_dir/samples_<step>.png``, so that a run cut short still leaves a usable model.

    Args:
        data_root: The data root.
        out_dir: The run folder (created); the generator folder is ``out_dir/model``.
        settings: :class:`breastdx.training.gan.GanSettings`.
        split_file: The idc split (None: the shipped idc model's).
        snapshot_every: Steps between snapshots (a multiple of ``settings.log_every``).

    Returns:
        The generator folder.
    """
    import shutil

    from breastdx.data.checksum import image_hash
    from breastdx.models.gan import generate, save_generator
    from breastdx.models.saved import write_training_hashes
    from breastdx.runs import seed_everything, write_json
    from breastdx.training.gan import train_gan

    out_dir = Path(out_dir)
    model_dir = out_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(settings.seed)
    start = time.perf_counter()
    parts = read_idc_patches(data_root, split_file)
    train = parts["train"]
    log.info("idc training part: %d patches (%d IDC) of %d patients, read in %.1f s", len(train["labels"]),
             int(train["labels"].sum()), len(set(train["groups"])), time.perf_counter() - start)
    base = {"task": GENERATOR_TASK, "class_names": list(CLASS_NAMES), "positive_class": "tumour",
            "data_checksum": parts["_checksum"], "split_file": "split.json", "seed": settings.seed,
            "output": "uint8 RGB 50 x 50 patches of the class asked for (0 normal, 1 IDC)"}

    def snapshot(step: int, g: Any, row: dict[str, float]) -> None:
        if step % snapshot_every:
            return
        save_generator(model_dir, g, {**base, "training": {"steps_run": step, "snapshot": True}})
        from breastdx.visualize.png import png_bytes

        grid = np.concatenate([_grid(generate(g, 32, c, seed=1), 4, 8) for c in (0, 1)], axis=0)
        (out_dir / f"samples_{step:06d}.png").write_bytes(png_bytes(grid))
        g.train(False)

    g_ema, info = train_gan(train["images"], train["labels"], settings, progress=snapshot)
    write_json(info, out_dir / "training.json")
    save_generator(model_dir, g_ema, {**base, "training": {k: v for k, v in info.items() if k != "history"}})
    shutil.copyfile(parts["_split"], model_dir / "split.json")
    write_training_hashes(model_dir, [image_hash(im) for im in train["images"]])
    return model_dir


def _grid(images: np.ndarray, rows: int, cols: int, gap: int = 2) -> np.ndarray:
    """``rows x cols`` uint8 patches ``(n, S, S, 3)`` tiled with white gaps (missing cells white)."""
    s = images.shape[1]
    out = np.full((rows * (s + gap) - gap, cols * (s + gap) - gap, 3), 255, np.uint8)
    for i, im in enumerate(images[:rows * cols]):
        r, c = divmod(i, cols)
        out[r * (s + gap):r * (s + gap) + s, c * (s + gap):c * (s + gap) + s] = im
    return out


def with_synthetic(read: Any) -> Any:
    """Wrap an idc spec's ``read`` so that ``--synthetic-idc N`` adds ``N`` generated IDC patches to the training part.

    The patches come from the generator folder ``--synthetic-model`` (a folder, or a shipped generator's name, default
    ``idc-gan``) with seed ``--synthetic-seed``, labelled ``tumour``, with ids ``synthetic/<model>/<seed>/<i>`` and
    the patient id ``synthetic`` (one group: they belong to no real patient). Validation and test are untouched, and
    ``split.json`` stays the split of the real patches. A generator trained on patients of this split's validation or
    test part is refused (its patches would carry them into training: the shipped ``idc-gan`` trained on the shipped
    idc split's training part, so another ``--split-seed`` leaks); one without a readable split file is used with a
    warning (:func:`breastdx.pipeline.leak_checks.check_source_split`). With ``N = 0`` (the default) ``read`` is
    returned unchanged in effect.

    Args:
        read: ``(config, data_root, reuse, out) -> SplitData``.

    Returns:
        The wrapped reader, same signature.

    Raises:
        ConfigError: If the generator folder cannot be used (named), or trained on a validation or test patient.
    """
    import dataclasses

    from breastdx.config import ConfigError
    from breastdx.data.image_sets import ImageSet

    def wrapped(config: Any, data_root: Path, reuse: Path | None, out: Path) -> Any:
        data = read(config, data_root, reuse, out)
        n = int(getattr(config, "synthetic_idc", 0))
        if not n:
            return data
        from breastdx.models.gan import generate, load_generator
        from breastdx.models.saved import ModelFolderError
        from breastdx.pipeline.leak_checks import check_source_split

        name = getattr(config, "synthetic_model", "") or SHIPPED_GENERATOR
        try:
            folder = resolve_generator(name)
            generator, meta = load_generator(folder)
        except (ModelFolderError, FileNotFoundError) as e:
            raise ConfigError(f"Option --synthetic-model: {e}") from None
        check_source_split(folder, data.split, "--synthetic-model", train_only=True)
        seed = int(getattr(config, "synthetic_seed", 0))
        positive = list(data.class_names).index("tumour")
        images = generate(generator, n, positive, seed=seed)
        train = data.parts["train"]
        k = len(train)
        ids = train.ids + tuple(f"synthetic/{name}/{seed}/{i}" for i in range(n))
        labels = np.concatenate([train.labels, np.full(n, positive, np.int64)])
        groups = None if train.groups is None else train.groups + ("synthetic",) * n

        def read_item(i: int) -> tuple[np.ndarray, None]:
            return train.read(i) if i < k else (images[i - k], None)

        parts = {**data.parts, "train": ImageSet(ids, labels, read_item, groups)}
        about = data.about + (f"\n- Training part: {n} synthetic IDC patches added, from the generator "
                              f"{name} (seed {seed}; {meta.get('training', {}).get('steps_run', '?')} steps).")
        return dataclasses.replace(data, parts=parts, about=about)

    return wrapped


def resolve_generator(name_or_dir: str | Path | None) -> Path:
    """The generator folder of ``--model``: a folder, a shipped model's name, or (None) the shipped ``idc-gan``.

    Raises:
        FileNotFoundError: If it is neither; the message lists the shipped models.
    """
    from breastdx.zoo import resolve_model

    return resolve_model(name_or_dir or SHIPPED_GENERATOR, GENERATOR_TASK)


SYNTHESIS_TASKS = ("idc",)
"""Tasks ``breastdx synthesize`` has a generator for."""


MAX_SEED = 2**64 - 1
"""Largest ``--seed``: torch's generator takes a 64-bit seed (and maps a negative one onto a positive one, so that two
seeds would give the same patches: seeds are 0 to this)."""

MAX_PATCHES = 100_000
"""Most patches of one ``synthesize`` call: its files are numbered with five digits (and they are generated in
memory, 7.5 KB each, before they are written)."""


def synthesize(task: str, n: int, label: int, out_dir: str | Path, seed: int = 0,
               model: str | Path | None = None) -> dict[str, Any]:
    """Write ``n`` generated patches of class ``label`` as PNG files (``breastdx synthesize``).

    Files are ``<out>/<class>_s<seed>_<i>.png`` (``i`` from 0, five digits), 50 x 50 RGB, and ``synthesis.json``
    records the model, its checksum, seed, class and the research-use statement. The same ``(model, n, label,
    seed)`` gives the same files byte for byte, and the first ``m`` files of ``n`` are those of ``m``.

    Args:
        task: ``"idc"`` (the only task with a generator).
        n: Number of patches, 1 to :data:`MAX_PATCHES`.
        label: Class index: 0 (normal, no IDC) or 1 (IDC).
        out_dir: Output folder; created, and refused when it exists and is not empty.
        seed: Seed of the latent vectors, 0 to :data:`MAX_SEED`.
        model: A generator folder or a shipped generator's name; None: ``idc-gan``.

    Returns:
        ``{"files": [Path, ...], "model": folder, "label": class name, "seed", "n", "seconds"}``.

    Raises:
        ValueError: For an unknown task, ``n`` outside ``[1, MAX_PATCHES]``, ``seed`` outside ``[0, MAX_SEED]`` or a
            label that is not a class index.
        FileNotFoundError: If the model is neither a folder nor a shipped model.
        ModelFolderError: If the folder is not a generator.
        RunFolderError: If the output folder exists and is not empty, or cannot be written.
    """
    from breastdx import RESEARCH_USE_ONLY
    from breastdx.data.checksum import sha256_file
    from breastdx.models.gan import generate, load_generator
    from breastdx.runs import make_run_dir, utc_now_iso, write_json
    from breastdx.visualize.png import png_bytes

    if task not in SYNTHESIS_TASKS:
        raise ValueError(f"breastdx synthesize has a generator for {', '.join(SYNTHESIS_TASKS)}; got task {task!r}.")
    if not 1 <= int(n) <= MAX_PATCHES:
        raise ValueError(f"Option --n must be from 1 to {MAX_PATCHES:,} (file names have five digits; run again with "
                         f"another --seed for more). Got {n} instead.")
    if not 0 <= int(seed) <= MAX_SEED:  # else torch's "Overflow when unpacking long long", once --out was made
        raise ValueError(f"Option --seed must be from 0 to {MAX_SEED} (a 64-bit seed). Got {seed} instead.")
    folder = resolve_generator(model)
    generator, meta = load_generator(folder)
    names = list(meta.get("class_names", CLASS_NAMES))
    if not 0 <= int(label) < len(names):
        raise ValueError(f"Option --label must be a class index, 0 ({names[0]}) or 1 ({names[1]}). Got {label} instead.")
    start = time.perf_counter()
    out = make_run_dir(f"synthesize-{task}", out_dir, kind="synthesize")
    images = generate(generator, int(n), int(label), seed=int(seed))
    files = []
    for i, image in enumerate(images):
        path = out / f"{names[int(label)]}_s{int(seed)}_{i:05d}.png"
        path.write_bytes(png_bytes(image))
        files.append(path)
    write_json({"task": task, "model": str(folder), "model_sha256": sha256_file(folder / meta["weights_file"]),
                "label": int(label), "class": names[int(label)], "n": int(n), "seed": int(seed),
                "size": list(images.shape[1:]), "created": utc_now_iso(),
                "note": "Generated patches, not tissue of any patient: for research on data augmentation only.",
                "intended_use": RESEARCH_USE_ONLY}, out / "synthesis.json")
    return {"files": files, "model": folder, "label": names[int(label)], "seed": int(seed), "n": int(n),
            "seconds": time.perf_counter() - start, "out": out}


def _summary(d: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(d)), "p05": float(np.percentile(d, 5)), "min": float(d.min()),
            "share_below_8": float(np.mean(d < 8.0)), "n": int(d.size)}


def measure_quality(model_dir: str | Path, parts: dict[str, Any], classifier_dir: str | Path,
                    seed: int = 12345, candidates: int = 64) -> dict[str, Any]:
    """Memorisation, fidelity and diversity of a generator folder against the idc split, per class.

    For each class, as many synthetic patches are drawn (seed ``seed``) as the test part holds real ones, so that
    both sides of every comparison have the same size:

    * memorisation: :func:`~breastdx.evaluation.generative.nearest_patch_distance` of each synthetic patch to the
      training patches (both classes, 8 symmetries, exact among the ``candidates`` Euclidean-nearest), against the
      same distance of each held-out real (test) patch of the class, and of the same held-out patches blurred
      (Gaussian, sigma 1 px): smooth images lie nearer any patch in pixel distance without copying one, so a
      smooth generator is judged against smooth real patches too.
    * KID over 100 subsets of half the set (so that their spread means something).
    * KID and precision / recall (k = 3) of the synthetic against the held-out real patches, in the penultimate
      features of the classifier ``classifier_dir`` (not Inception; not comparable with published figures), and as
      a yardstick the same figures for an equal number of real training patches against the held-out ones.

    Args:
        model_dir: The generator folder.
        parts: :func:`read_idc_patches` output.
        classifier_dir: The idc classifier folder whose features are used.
        seed: Seed of the synthetic patches.
        candidates: See :func:`~breastdx.evaluation.generative.nearest_patch_distance`.

    Returns:
        ``{"feature_space", "per_class": {class name: {"n", "memorisation": {"synthetic", "held_out_real"},
        "kid": {"synthetic", "real_train"}, "precision_recall": {"synthetic", "real_train"}}}}``; distances are
        mean absolute differences on the 0..255 scale.
    """
    from scipy.ndimage import gaussian_filter

    from breastdx.evaluation.generative import classifier_features, kid, nearest_patch_distance, precision_recall
    from breastdx.models.gan import generate, load_generator

    generator, meta = load_generator(model_dir)
    train, test = parts["train"], parts["test"]
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {
        "feature_space": f"penultimate layer (input of the last linear layer) of the idc classifier "
                         f"{Path(classifier_dir).name} ({len(classifier_features(classifier_dir, test['images'][:2])[0])}"
                         f"-d), not Inception-v3: figures are not comparable with published KID / precision / recall",
        "held_out": "test part of the idc patient split (patients the generator never saw)",
        "per_class": {}}
    for c, name in enumerate(meta.get("class_names", CLASS_NAMES)):
        real = test["images"][test["labels"] == c]
        n = len(real)
        synth = generate(generator, n, c, seed=seed + c)
        pool = np.flatnonzero(train["labels"] == c)
        train_c = train["images"][rng.choice(pool, size=min(n, pool.size), replace=False)]
        blurred = np.stack([gaussian_filter(im, sigma=(1, 1, 0)) for im in real])
        d_syn = nearest_patch_distance(synth, train["images"], candidates=candidates)["distance"]
        d_real = nearest_patch_distance(real, train["images"], candidates=candidates)["distance"]
        d_blur = nearest_patch_distance(blurred, train["images"], candidates=candidates)["distance"]
        f_real, f_syn, f_train = (classifier_features(classifier_dir, x) for x in (real, synth, train_c))
        size = max(2, n // 2)  # subsets of half the set, so that their spread means something
        out["per_class"][name] = {
            "n": n,
            "memorisation": {"synthetic": _summary(d_syn), "held_out_real": _summary(d_real),
                             "held_out_real_blurred": _summary(d_blur)},
            "kid": {"synthetic": kid(f_real, f_syn, subset_size=size, seed=seed),
                    "real_train": kid(f_real, f_train, subset_size=size, seed=seed)},
            "precision_recall": {"synthetic": precision_recall(f_real, f_syn),
                                 "real_train": precision_recall(f_real, f_train)}}
    return out


def near_copy_check(images: np.ndarray, references: np.ndarray) -> dict[str, Any]:
    """The issue's target: each patch's exact nearest mean absolute difference to any reference patch, over the 8
    symmetries, and how many patches are distinct.

    Returns:
        ``{"n", "n_distinct" (distinct pixel arrays), "min", "median", "n_below_8", "distance": list}``.
    """
    from breastdx.evaluation.generative import nearest_patch_distance

    d = nearest_patch_distance(images, references)["distance"]
    distinct = len({im.tobytes() for im in images})
    return {"n": int(len(images)), "n_distinct": distinct, "min": float(d.min()), "median": float(np.median(d)),
            "n_below_8": int(np.sum(d < 8.0)), "distance": [round(float(x), 3) for x in d]}


def compare_training(run_models: dict[str, str | Path], test: dict[str, Any], baseline: str, n_boot: int = 2000,
                     seed: int = 0, pairs: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Classifiers trained differently, scored on the same test patches, each against ``baseline`` with paired
    bootstrap intervals over patients.

    Balanced accuracy and IDC recall (sensitivity) are taken at two operating points: argmax (the most probable
    class, what the training itself decides) and the model's threshold on P(tumour) fitted on validation. For each
    model other than the baseline, the differences ``model - baseline`` get a 95% percentile interval from
    resampling the test patients, each with all their patches, the same resample for both models
    (:func:`breastdx.evaluation.ci.patient_bootstrap`); AUROC differences come from
    :func:`breastdx.evaluation.paired.paired_auroc_test` over patients.

    Args:
        run_models: Name to classifier folder (the same test split for all).
        test: The test part of :func:`read_idc_patches`.
        baseline: The name every other model is compared with.
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling.
        pairs: Further ``(a, b)`` comparisons, ``a - b``, reported under ``"pairs"`` as ``"a - b"``.

    Returns:
        ``{"models": {name: {metric: value}}, "differences": {name: {metric: {"value", "ci95", ...}}}, "pairs",
        "n_patches", "n_patients", "n_boot"}``; metric names ``balanced_accuracy_argmax``, ``recall_argmax``,
        ``balanced_accuracy_op``, ``recall_op``, ``auroc``.
    """
    from breastdx.evaluation.ci import patient_bootstrap
    from breastdx.evaluation.metrics import auroc
    from breastdx.evaluation.paired import paired_auroc_test
    from breastdx.inference.classifier import ClassificationPredictor

    y = test["labels"] == 1
    groups = np.asarray(test["groups"])
    preds: dict[str, dict[str, np.ndarray]] = {}
    for name, folder in run_models.items():
        predictor = ClassificationPredictor.from_dir(folder, task="idc", dtype="float32", backend="torch")
        p = predictor.predict_proba(list(test["images"]))[:, predictor.class_names.index("tumour")]
        preds[name] = {"p": p, "argmax": p >= 0.5, "op": p >= float(predictor.meta.threshold)}

    def rates(pred: np.ndarray, idx: np.ndarray) -> tuple[float, float]:
        yy, pp = y[idx], pred[idx]
        sens = float(np.mean(pp[yy])) if yy.any() else float("nan")
        spec = float(np.mean(~pp[~yy])) if (~yy).any() else float("nan")
        return 0.5 * (sens + spec), sens

    def metric(name: str, key: str) -> Any:
        point, which = key.rsplit("_", 1)
        k = 0 if point == "balanced_accuracy" else 1
        return lambda idx: rates(preds[name][which], idx)[k]

    keys = ("balanced_accuracy_argmax", "recall_argmax", "balanced_accuracy_op", "recall_op")
    everything = np.arange(y.size)
    models = {n: {**{k: metric(n, k)(everything) for k in keys}, "auroc": float(auroc(y, preds[n]["p"]))}
              for n in preds}
    def difference(a: str, b: str) -> dict[str, Any]:
        d = {k: patient_bootstrap(lambda idx, k=k: metric(a, k)(idx) - metric(b, k)(idx), groups, n_boot, seed)
             for k in keys}
        test_auc = paired_auroc_test(y.astype(int), preds[a]["p"], preds[b]["p"], n_boot=n_boot, seed=seed,
                                     names=(a, b), groups=groups)
        d["auroc"] = {"value": test_auc["difference"], "ci95": test_auc["ci95"], "p_value": test_auc["p_value"]}
        return d

    differences = {name: difference(name, baseline) for name in preds if name != baseline}
    return {"models": models, "differences": differences, "pairs": {f"{a} - {b}": difference(a, b) for a, b in pairs},
            "baseline": baseline, "n_patches": int(y.size),
            "n_idc": int(y.sum()), "n_patients": int(np.unique(groups).size), "n_boot": int(n_boot),
            "method": "paired percentile bootstrap over test patients (each with all their patches), the same "
                      "resamples for both models; AUROC by breastdx.evaluation.paired.paired_auroc_test over patients"}


def write_generator_card(model_dir: str | Path, figures: dict[str, Any], command: str, machine: str) -> Path:
    """Write ``MODEL_CARD.md`` of a generator folder from its ``meta.json`` and the figures of
    ``benchmarks/idc_synthetic.py`` (``figures.json``: ``target``, ``quality``, optionally ``comparison``), and
    store the quality figures in ``meta.json`` under ``quality``.

    Returns:
        The card's path.
    """
    import json

    from breastdx import RESEARCH_USE_ONLY
    from breastdx.models.saved import CARD_FILE, META_FILE
    from breastdx.runs import write_json

    model_dir = Path(model_dir)
    meta = json.loads((model_dir / META_FILE).read_text(encoding="utf-8"))
    meta["quality"] = {k: figures[k] for k in ("target", "quality") if k in figures}
    write_json(meta, model_dir / META_FILE)
    tr = meta.get("training", {})
    st = tr.get("settings", {})
    q = figures["quality"]
    lines = ["# Model card: idc-gan, a class-conditional generator of 50 x 50 H&E patches", "",
             f"> **{RESEARCH_USE_ONLY}** The patches it writes are not tissue of any patient.", "",
             "## Model details",
             f"- Conditional DCGAN (Radford et al. 2016, arXiv:1511.06434): generator with class embedding and "
             f"class-conditional batch norm, resize-convolutions 6 -> 12 -> 24 -> 50 px, widths {st.get('g_widths')}; "
             f"projection discriminator (Miyato & Koyama 2018, arXiv:1802.05637) with spectral normalisation "
             f"(Miyato et al. 2018, arXiv:1802.05957), widths {st.get('d_widths')}; hinge loss; Adam "
             f"(G {st.get('lr_g')}, D {st.get('lr_d')}, betas 0 / 0.9); DiffAugment translation + cutout (Zhao et al. "
             f"2020, arXiv:2006.10738); real patches class-balanced and turned by the 8 symmetries of the square; "
             f"exponential moving average of the generator (decay {st.get('ema_decay')}), the weights shipped.",
             f"- {tr.get('steps_run')} steps of batch {st.get('batch_size')} in {tr.get('train_seconds', 0) / 60:.1f} "
             f"min on {tr.get('torch_threads')} CPU thread ({machine}), seed {meta.get('seed')}.",
             f"- Classes (index order): {', '.join(meta['class_names'])}; `--label 1` = IDC.",
             f"- Reproduce: `{command}`", "",
             "## Data",
             f"- The training part of the idc model's patient split (`split.json`, the same file): "
             f"{tr.get('n_train')} patches ({tr.get('n_train_per_class')} per class) of the idc training patients "
             f"only; no validation or test patient. `training_hashes.json` lists them by hash.",
             f"- Data checksum (SHA-256): `{meta.get('data_checksum')}`", "",
             "## Evaluation (held out: the idc test patients)",
             f"Feature space: {q['feature_space']}.", "",
             "| class | n | nearest training patch, MAD 0..255: synthetic median (5th pct, min) | held-out real "
             "median (5th pct, min) | held-out real blurred (sigma 1 px) | KID synthetic (real train) | precision "
             "synthetic (real train) | recall synthetic (real train) |", "|---|---|---|---|---|---|---|---|"]
    for name, c in q["per_class"].items():
        ms, mr = c["memorisation"]["synthetic"], c["memorisation"]["held_out_real"]
        mb = c["memorisation"].get("held_out_real_blurred", {"median": float("nan"), "p05": float("nan"),
                                                             "min": float("nan")})
        ks, kr = c["kid"]["synthetic"], c["kid"]["real_train"]
        ps, pr = c["precision_recall"]["synthetic"], c["precision_recall"]["real_train"]
        lines.append(f"| {name} | {c['n']} | {ms['median']:.1f} ({ms['p05']:.1f}, {ms['min']:.1f}) | "
                     f"{mr['median']:.1f} ({mr['p05']:.1f}, {mr['min']:.1f}) | {mb['median']:.1f} ({mb['p05']:.1f}, "
                     f"{mb['min']:.1f}) | {ks['value']:.3f} ± {ks['std']:.3f} "
                     f"({kr['value']:.3f} ± {kr['std']:.3f}) | {ps['precision']:.3f} ({pr['precision']:.3f}) | "
                     f"{ps['recall']:.3f} ({pr['recall']:.3f}) |")
    t = figures["target"]
    lines += ["", "- Memorisation: no synthetic patch is within 8 of a training patch. Synthetic patches lie nearer the "
                  "training patches than new real ones do because they are smooth (little fine detail): blurring the "
                  "held-out patches brings them nearer too, and the nearest training patches are plain stroma, not "
                  "copies (`docs/idc-synthetic/nearest.png`).",
              "- Fidelity and diversity: high precision with low recall, KID well above the real-vs-real yardstick: "
              "the patches fall inside the real feature distribution but cover only part of it (too uniform).",
              f"- `breastdx synthesize idc --n 64 --label 1` (seed 0): {t['n_distinct']} of {t['n']} patches "
                  f"distinct; exact nearest real patch (all 5,537, 8 symmetries) at mean absolute difference "
                  f"{t['min']:.1f} at least, median {t['median']:.1f}; {t['n_below_8']} below 8 (the near-copy bound).",
              "", "## Limitations",
              "- Small GAN, short CPU training: the patches are recognisably synthetic at full size; KID and precision "
              "/ recall here are in the idc classifier's feature space and are not comparable with published "
              "Inception-based figures.",
              "- Whether its patches help the idc classifier was measured: see `docs/experiments/histopathology.md` "
              "and `docs/idc-synthetic/README.md`; the default training does not use them.",
              "- Not for creating data presented as real; research on augmentation only.", ""]
    path = model_dir / CARD_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
