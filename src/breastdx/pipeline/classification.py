"""The one image-classification pipeline: a dataset is a :class:`ClassificationSpec`, read by one task.

``breastdx train NAME`` (pcam, idc, breakhis, breastmnist, busi-cls, and any spec added the same way):

1. the spec's reader loads the data and makes (or reuses) the split, written to ``split.json``;
2. images are read once, (stain-normalised,) resized and cached at network size;
3. every architecture of ``--archs`` is trained by one fit (:func:`breastdx.training.classification.run_architecture`,
   Lightning), its best epoch picked on the validation split, its temperature and operating threshold on
   P(positive) fitted there, and it is evaluated on the test split with 95% bootstrap intervals;
4. the best architecture on validation (mean of macro AUROC and balanced accuracy) is saved in ``model/``
   (safetensors + ``meta.json`` + ``MODEL_CARD.md`` + the split file); the others stay in ``archs/<name>/model``;
5. ``metrics.json`` and ``report.html`` compare the architectures (paired bootstrap AUROC test against the best,
   with DeLong's test as a cross-check), against the spec's published benchmark, with Grad-CAM figures.

``evaluate``, ``predict`` and ``explain`` work the same way for every spec. A real difference between
datasets is a named hook of the spec (its reader, stain normalisation, Grad-CAM localisation against masks,
initialisation from another model), never a subclass. ``CONTRIBUTING.md`` has the recipe for a new dataset.

References:
    Guo, C. et al. (2017). On calibration of modern neural networks. ICML, arXiv:1706.04599 (temperature)
    Selvaraju, R. R. et al. (2017). Grad-CAM. ICCV, doi:10.1109/ICCV.2017.74
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


from breastdx.config import ConfigError, option, run_config_record, save_yaml, to_dict, validate
from breastdx.data.image_sets import SPLIT_FILE, ImageSet, Normalisation, SplitData, cache_images
from breastdx.evaluation.classification import positive_columns
from breastdx.evaluation.tables import ci_text, label_rule, plain_evaluation, threshold_rule
from breastdx.pipeline.task import RunResult, Task, evenly_spaced
from breastdx.training.options import LightningOptions

log = logging.getLogger(__name__)

SUMMARY = ("accuracy", "balanced_accuracy", "auroc", "sensitivity", "specificity", "ppv", "npv", "f1", "brier", "ece")
"""The metrics of the command-line tables (a spec may list more, such as per-class figures)."""


@dataclass(frozen=True)
class ImageClassificationConfig(LightningOptions):
    """Options of ``breastdx train`` for every image-classification spec (``--name value``), besides the
    :class:`~breastdx.training.options.LightningOptions`.

    Attributes:
        seed: Seed of weights, data order, augmentation and bootstrap.
        archs: Architectures to compare on the same split (``breastdx.models.networks`` registry names).
        arch_args: Per-architecture arguments as JSON, e.g. ``{"compact_cnn": {"widths": [32, 64, 128]}}``.
        image_size: Side of the square network input (images resized, aspect not kept).
        epochs: Epochs per architecture.
        batch_size: Images per training step.
        lr: Peak learning rate (AdamW, warm-up then cosine decay).
        weight_decay: AdamW weight decay.
        warmup_fraction: Fraction of steps spent warming up.
        label_smoothing: Label smoothing of the cross-entropy.
        ema_decay: Decay per step of a moving average of the weights that validation and the model use (0: off).
        mixup_alpha: Mixup of training images and their labels (and lesion masks), weight ~ Beta(alpha, alpha)
            (Zhang et al. 2018, arXiv:1710.09412; 0: off).
        patience: Epochs without a better validation score before stopping (0: never).
        imbalance: ``weighted_loss`` (inverse class frequency), ``sampler`` (balanced draws) or ``none``.
        augment: Augment training images (the spec's augmentation).
        tta: Test-time augmentation: ``none`` or ``hflip``.
        monitor: Validation metric that picks the best epoch.
        target_sensitivity: The operating threshold on P(positive) reaches this sensitivity on validation
            (0: Youden's J).
        init: Initial weights for every architecture: a safetensors state dict, or a model folder (its
            ``model.safetensors``), loaded into the layers whose names and shapes match (never unpickled); the run's
            ``metrics.json`` and model card say what was loaded and what was not (e.g. a PCam model into idc).
        init_compare: With ``init``, also train each architecture from random weights on the same split: ``<arch>``
            (random) beside ``<arch>+init``, with the paired test of the report between them.
        pretrained: Initialise from published weights (see :mod:`breastdx.models.init_weights`).
        pretrained_url: Address of the weights for ``pretrained`` (``file://`` works offline).
        gradcam_method: ``gradcam`` or ``gradcampp`` for the saved model's overlays.
        gradcam_examples: Test images per class shown with Grad-CAM overlays in the report.
        max_cases: Images per split, evenly spaced (0: all), for smoke tests.
        n_bootstrap: Bootstrap resamples.
    """

    seed: int = 0
    archs: tuple[str, ...] = ("compact_cnn", "resnet18")
    arch_args: str = ""
    image_size: int = option(64, ge=16, multiple_of=16)
    epochs: int = option(10, ge=1)
    batch_size: int = option(64, ge=1)
    lr: float = option(2e-3, gt=0)
    weight_decay: float = option(1e-4, ge=0)
    warmup_fraction: float = option(0.05, ge=0, lt=1)
    label_smoothing: float = option(0.0, ge=0, lt=1)
    ema_decay: float = option(0.0, ge=0, lt=1)
    mixup_alpha: float = option(0.0, ge=0, le=10)
    patience: int = option(0, ge=0)
    imbalance: str = option("weighted_loss", choices=("weighted_loss", "sampler", "none"))
    augment: bool = True
    tta: str = option("none", choices=("none", "hflip"))
    monitor: str = option("val_score", choices=("val_score", "val_macro_auroc", "val_balanced_accuracy", "val_nll"))
    target_sensitivity: float = option(0.9, ge=0, le=1)
    init: str = ""
    init_compare: bool = False
    pretrained: bool = False
    pretrained_url: str = ""
    gradcam_method: str = option("gradcam", choices=("gradcam", "gradcampp"))
    gradcam_examples: int = option(4, ge=0)
    precision: str = option("auto", choices=("auto", "32", "bf16-mixed"))
    max_cases: int = option(0, ge=0)
    n_bootstrap: int = option(2000, ge=1)


@dataclass(frozen=True)
class Benchmark:
    """Published figures and this project's targets for a spec's test split.

    Attributes:
        targets: Metric name to the target value (``{"auroc": 0.95, "accuracy": 0.88}``).
        published: Method to ``{metric: value}`` from the literature.
        note: What the published figures were trained on, and why the comparison is or is not fair.
    """

    targets: dict[str, float]
    published: dict[str, dict[str, float]]
    note: str


@dataclass(frozen=True)
class ClassificationSpec:
    """One image-classification dataset, as data (see the module docstring and ``CONTRIBUTING.md``).

    Attributes:
        name: Task name (``breastdx train NAME``).
        title: One line for the command line, reports and cards.
        config_cls: The options: :class:`ImageClassificationConfig` or a subclass with other defaults and
            dataset options.
        read: ``(config, data_root, split file to reuse or None, split file to write) -> SplitData``.
        positive: The positive class (malignant, tumour, idc).
        mode: ``"gray"`` or ``"rgb"``.
        item: What one input is called in messages ("image", "patch").
        augmentation: ``config -> transform`` of training items (dict with ``"image"`` / ``"mask"``), or None.
        normalisation: ``(config, train part) -> Normalisation`` (stain normalisation), or None.
        source_size: Resize every image to this side first (BreastMNIST's 28), or None.
        source_crop: ``"central_square"``: cut every image's central square before that (as MedMNIST did), or None.
        train_masks: Keep training masks (multi-task networks learn them): a bool, or ``config -> bool``.
        near_duplicates: Keep each training image's perceptual hash too, so that ``predict`` flags near-duplicates
            of a training image (ultrasound: the pHash threshold was calibrated on BUSI's frames), not only copies.
        summary: Metrics of the command-line table.
        card_limitations: Model-card limitations (the "research use only" line included).
        benchmark: Published figures and targets, or None.
        label_region: Fraction of the side, centred, that the label refers to (PCam: 32 / 96), or None.
        localisation: ``(predictor, ImageSet, method, n_boot, seed) -> dict`` scoring Grad-CAM maps against lesion
            masks, or None.
        initialiser: ``(config, arch, SplitData) -> init(network) | None``, an initialisation besides
            ``--init-weights`` / ``--pretrained`` (busi-cls from a busi-seg model), or None.
        check: ``config -> None``, raising :class:`~breastdx.config.ConfigError` for what the declared constraints
            cannot say (options that exclude each other), or None.
        data_options: Config fields that choose the data and are read again by ``evaluate`` (from the model's
            training config, or the evaluate option of the same name).
        predict_gradcam: Whether ``predict`` writes Grad-CAM overlays unless told otherwise.
        explain_zoom: Default enlargement of ``explain`` overlays (small patches are hard to see).
        pad_to: ``(H, W)`` the reader pads smaller images to, with white on the bottom and right (IDC's edge
            patches); the model folder records it so that prediction pads the same way. None: no padding.
        group_unit: What ``ImageSet.groups`` names: ``"patient"`` (per-patient shares, intervals over patients) or
            ``"lesion"`` (busi-cls: intervals over lesions where two test frames share one; see
            :func:`breastdx.pipeline.report.unit_metrics`).
    """

    name: str
    title: str
    config_cls: type
    read: Callable[[Any, Path, Path | None, Path], SplitData]
    positive: str
    mode: str = "rgb"
    item: str = "image"
    augmentation: Callable[[Any], Any] | None = None
    normalisation: Callable[[Any, ImageSet], Normalisation] | None = None
    source_size: int | None = None
    source_crop: str | None = None
    train_masks: bool | Callable[[Any], bool] = False
    near_duplicates: bool = False
    summary: tuple[str, ...] = SUMMARY
    card_limitations: tuple[str, ...] = ("Trained and tested on one public dataset; no external validation.",
                                         "Research use only; not for diagnosis.")
    benchmark: Benchmark | None = None
    label_region: float | None = None
    localisation: Callable[..., dict[str, Any]] | None = None
    initialiser: Callable[[Any, str, SplitData], Any] | None = None
    check: Callable[[Any], None] | None = None
    data_options: tuple[str, ...] = ()
    predict_gradcam: bool = False
    explain_zoom: int = 1
    pad_to: tuple[int, int] | None = None
    group_unit: str = "patient"

    @property
    def items(self) -> str:
        """The plural of :attr:`item` ("images", "patches")."""
        return self.item + ("es" if self.item.endswith(("ch", "sh", "s", "x")) else "s")


def entries(config: Any) -> list[tuple[str, str, bool]]:
    """``(name, architecture, from the given initial weights)`` of each model a run trains, in order: one per
    architecture, or with ``--init-compare`` two (``<arch>`` from random weights, then ``<arch>+init``)."""
    if getattr(config, "init_compare", False):
        return [e for a in config.archs for e in ((a, a, False), (f"{a}+init", a, True))]
    return [(a, a, True) for a in config.archs]


class ImageClassificationTask(Task):
    """The train / evaluate / predict / explain verbs of every :class:`ClassificationSpec`."""

    def __init__(self, spec: ClassificationSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.title = spec.title
        self.config_cls = spec.config_cls

    # ---------------------------------------------------------------------------------------- options
    def check_config(self, config: Any) -> dict[str, dict[str, Any]]:
        """Check every option before any work; return the parsed per-architecture arguments.

        Raises:
            ConfigError: Naming the option, what was expected and what was given.
        """
        from breastdx.training.classification import check_architectures, parse_arch_args

        validate(config, self.name)
        if config.pretrained and config.init:
            raise ConfigError(f"The 'pretrained' and 'init' options of {self.name} exclude each other; choose one.")
        if config.init_compare and not (config.init or config.pretrained):
            raise ConfigError(f"The 'init-compare' option of {self.name} compares training from --init (or "
                              f"--pretrained) weights with training from random weights; give --init PATH.")
        if len(set(config.archs)) != len(config.archs):
            raise ConfigError(f"The 'archs' option of {self.name} lists an architecture twice: "
                              f"{', '.join(config.archs)}.")
        if self.spec.check is not None:
            self.spec.check(config)
        try:
            arch_args = parse_arch_args(config.arch_args, config.archs)
            check_architectures(config.archs, arch_args, 1 if self.spec.mode == "gray" else 3, 2, config.image_size)
        except (KeyError, ValueError) as e:  # the registry's unknown name; a wrong argument or layer
            raise ConfigError(f"{self.name}: {e}") from None
        return arch_args

    def _initialiser(self, config: Any, arch: str, data: SplitData, given: bool = True):
        from breastdx.models.init_weights import init_from_file, init_pretrained

        def checked(load: Callable[[Any], Any], what: str):
            def init(network: Any):
                try:
                    return load(network)
                except (OSError, ValueError) as e:  # the file or address is unusable: the user's option
                    raise ConfigError(f"Option --{what}: {e}") from None
            return init

        base = None
        if config.init and given:
            base = checked(lambda net: init_from_file(net, config.init), "init")
        elif config.pretrained and given:
            base = checked(lambda net: init_pretrained(net, arch, url=config.pretrained_url or None), "pretrained")
        extra = self.spec.initialiser(config, arch, data) if self.spec.initialiser else None
        if extra is None:
            return base

        def both(network: Any):
            if base is not None:
                base(network)
            return extra(network)

        return both

    # ------------------------------------------------------------------------------------------ train
    def train(self, config: Any, data_root: Path, run_dir: Path) -> RunResult:
        from breastdx.data.transforms import Preprocessing
        from breastdx.runs import new_model_dir, seed_everything, write_json, write_versions
        from breastdx.models.saved import write_training_hashes
        from breastdx.training.classification import ClassifierOptim, FitSettings, run_architecture

        spec = self.spec
        arch_args = self.check_config(config)
        if getattr(config, "cv_folds", 0):
            from breastdx.pipeline.crossval import cross_validate

            if config.cv_folds < 2 or config.split_file:
                raise ConfigError(f"The 'cv-folds' option of {self.name} must be at least 2, without a split file; "
                                  f"got {config.cv_folds}" + (f" and {config.split_file}." if config.split_file else "."))
            return cross_validate(self, config, data_root, run_dir)
        seed_everything(config.seed)
        start = time.perf_counter()
        reuse = getattr(config, "split_file", "")
        data = spec.read(config, data_root, Path(reuse) if reuse else None, run_dir / SPLIT_FILE)
        if config.init:  # a model folder trained on this run's validation or test cases would carry them in
            from breastdx.pipeline.leak_checks import check_source_split
            check_source_split(config.init, data.split, "--init")
        save_yaml(run_config_record(self.name, config, data_root, **data.record,
                                    data_checksum=data.checksum), run_dir / "config.yaml")
        write_versions(run_dir)
        parts = {s: p.subset(evenly_spaced(len(p), config.max_cases)) if config.max_cases else p
                 for s, p in data.parts.items()}
        data = dataclasses.replace(data, parts=parts)
        self._check_classes(data, run_dir / SPLIT_FILE)
        norm = spec.normalisation(config, parts["train"]) if spec.normalisation else None
        prep = Preprocessing(image_size=config.image_size, mode=spec.mode,
                             intensity=getattr(config, "intensity", "divide_255"))
        aug = spec.augmentation(config) if config.augment and spec.augmentation else None
        log.info("reading %s: %s", self.name, ", ".join(f"{len(p)} {s}" for s, p in parts.items()))
        train_hashes: list[str] = []  # kept in each model folder, so that predict flags a training image
        train_phashes: list[int] | None = [] if spec.near_duplicates else None  # and a near-duplicate of one
        masks = spec.train_masks(config) if callable(spec.train_masks) else spec.train_masks
        cached = {s: cache_images(p, prep, data.class_names, normalise=norm.apply if norm else None,
                                  masks=masks and s == "train", transform=aug if s == "train" else None,
                                  source_size=spec.source_size, source_crop=spec.source_crop,
                                  hashes=train_hashes if s == "train" else None,
                                  phashes=train_phashes if s == "train" else None)
                  for s, p in parts.items()}
        read_seconds = time.perf_counter() - start
        optim = ClassifierOptim(lr=config.lr, weight_decay=config.weight_decay, warmup_fraction=config.warmup_fraction,
                                label_smoothing=config.label_smoothing, seg_weight=getattr(config, "seg_weight", 0.0),
                                ema_decay=config.ema_decay, mixup_alpha=config.mixup_alpha)
        settings = FitSettings.from_config(config)
        runs: dict[str, Any] = {}
        models: dict[str, Path] = {}
        metas: dict[str, dict[str, Any]] = {}
        localisation: dict[str, Any] = {}
        for name, arch, given in entries(config):
            runs[name] = run_architecture(arch, arch_args[arch], prep.channels, cached["train"], cached["val"],
                                          cached["test"], run_dir / "archs" / name, settings, optim, tta=config.tta,
                                          target_sensitivity=config.target_sensitivity, positive=spec.positive,
                                          n_boot=config.n_bootstrap, init=self._initialiser(config, arch, data, given))
            if not runs[name].fit.is_global_zero:  # another rank of a distributed run: it trains every
                continue  # architecture beside rank 0 (which would wait for it at the next one) and writes nothing
            models[name] = run_dir / "archs" / name / "model"
            metas[name] = self._write_model(models[name], runs[name], config, prep, data, norm, run_dir / SPLIT_FILE)
            write_training_hashes(models[name], train_hashes, train_phashes, spec.source_crop)
            if spec.localisation is not None and getattr(config, "localisation", True):
                localisation[name] = self._localise(models[name], parts["test"], config)
        if not models:  # not rank 0: rank 0 writes
            return RunResult(run_dir)
        best = max(runs, key=lambda a: (runs[a].val_score, -list(runs).index(a)))
        model_dir = new_model_dir(run_dir, make=False)
        shutil.copytree(models[best], model_dir)
        metrics = self._train_metrics(config, data, runs, best, cached["test"], localisation, model_dir,
                                      metas[best]["preprocessing"])
        metrics["timing"] = {"read_and_cache_seconds": round(read_seconds, 1),
                             "train_seconds": {a: round(x.fit.train_seconds, 1) for a, x in runs.items()},
                             "total_seconds": round(time.perf_counter() - start, 1)}
        write_json({k: v for k, v in metrics.items() if not k.startswith("_")}, run_dir / "metrics.json")
        from breastdx.pipeline.report import train_report

        train_report(self, run_dir, config, data, runs, best, metrics, localisation)
        return self._train_result(run_dir, runs, best, metrics, localisation, config)

    def _check_classes(self, data: SplitData, split_path: Path) -> None:
        """Every split needs positive and other items, and training every class; with classes in groups
        (subtypes) a subtype may be missing from validation or test: it is logged, and the class figures cover the
        subtypes present."""
        from breastdx.data.errors import DataError

        names = data.class_names
        pos = positive_columns(names, self.spec.positive)
        grouped = len(pos) > 1
        problems = []
        for s, p in data.parts.items():
            counts = p.counts(names)
            missing = [c for c, v in counts.items() if v == 0]
            n_pos = sum(counts[names[k]] for k in pos)
            if s == "train" or not grouped:
                if missing:
                    problems.append(f"{s} split has no {', '.join(missing)} {self.spec.item} ({counts})")
            elif n_pos == 0 or n_pos == len(p):
                problems.append(f"{s} split lacks {self.spec.positive} or other {self.spec.items} ({counts})")
            elif missing:
                log.warning("%s split has no %s %s: class figures there cover the other classes", s,
                            ", ".join(missing), self.spec.item)
        if problems:
            raise DataError(f"{split_path}: every split needs {self.spec.items} of every class to train, calibrate "
                            f"and evaluate; give another split (--split-file, or --split-seed / --split-ratios where "
                            f"{self.name} has them), or more data.", problems)

    def _localise(self, model_dir: Path, test: ImageSet, config: Any) -> dict[str, Any]:
        from breastdx.inference.classifier import ClassificationPredictor

        predictor = ClassificationPredictor.from_dir(model_dir, task=self.name)
        methods = [config.gradcam_method] + [m for m in ("gradcam", "gradcampp") if m != config.gradcam_method]
        return {m: self.spec.localisation(predictor, test, m, config.n_bootstrap, config.seed) for m in methods}

    def _train_metrics(self, config: Any, data: SplitData, runs: dict[str, Any], best: str, test_ds: Any,
                       localisation: dict[str, Any], model_dir: Path, preprocessing: dict[str, Any]) -> dict[str, Any]:
        from breastdx.evaluation.conformal import conformal_evaluation
        from breastdx.pipeline.report import (deduplicated_test, gradcam_examples, paired_tests, resampled_units,
                                              unit_metrics)

        spec = self.spec
        r = runs[best]
        m = r.test["metrics"]
        loc_plain = {a: {meth: {k: v for k, v in d.items() if k not in ("cams", "indices")} for meth, d in per.items()}
                     for a, per in localisation.items()}
        pos = positive_columns(data.class_names, spec.positive)
        comparisons = paired_tests(runs, best, test_ds.labels, pos, config,
                                   resampled_units(spec, data.parts["test"]), spec.group_unit)
        cams = gradcam_examples(self, model_dir, data.parts["test"], data.class_names, config)
        metrics: dict[str, Any] = {
            "task": self.name, "split": data.describe("test"), "n": len(test_ds), "model": best,
            "positive_class": spec.positive, "threshold": r.calibration["threshold"],
            "temperature": r.calibration["temperature"], "metrics": m,
            "operating_point": {"threshold": r.calibration["threshold"],
                                "rule": threshold_rule(config.target_sensitivity, spec.positive),
                                "label_rule": label_rule(data.class_names, spec.positive)},
            "calibration": r.test["calibration"],
            "confusion_matrix": {"class_names": list(data.class_names), "argmax": r.test["confusion_matrix"],
                                 "operating_point": r.test["confusion_matrix_operating_point"]},
            "validation_metrics": r.validation["metrics"],
            "comparison": [{k: v for k, v in c.items() if k != "resamples"} for c in comparisons],
            "models": {a: {"val_score": x.val_score, "calibration_fit": x.calibration, "test": plain_evaluation(x.test),
                           "validation_metrics": x.validation["metrics"], "training": x.fit.info,
                           "n_parameters": x.n_parameters, "architecture_args": x.arch_args, "init": x.init,
                           **({"localisation": loc_plain[a]} if a in loc_plain else {})} for a, x in runs.items()},
            "deduplicated_test": deduplicated_test(test_ds, runs, config, spec.positive),
            "gradcam": {k: v for k, v in cams.items() if k not in ("figure", "items")},
            "data_checksum": data.checksum,
            "preprocessing": preprocessing,
            "_comparisons": comparisons, "_cams": cams,
        }
        metrics.update(unit_metrics(spec, data.parts["test"], r.test["prob"], r.calibration["threshold"], pos,
                                    config.n_bootstrap, config.seed))
        if r.calibration.get("conformal"):
            metrics["conformal"] = conformal_evaluation(test_ds.labels, r.test["prob"], r.calibration["conformal"],
                                                        data.class_names, n_boot=config.n_bootstrap, seed=config.seed)
        if localisation:
            metrics["localisation"] = loc_plain[best]
        if spec.benchmark is not None:
            b = spec.benchmark
            reached = all(m[k]["value"] >= t for k, t in b.targets.items())
            metrics["benchmark"] = {**{f"{k}_target": t for k, t in b.targets.items()},
                                    **{k: m[k]["value"] for k in b.targets}, "reached": bool(reached),
                                    "published": b.published, "note": b.note,
                                    "imagenet_weights": bool(config.pretrained), "init": config.init or None}
        return metrics

    def _train_result(self, run_dir: Path, runs: dict[str, Any], best: str, metrics: dict[str, Any],
                      localisation: dict[str, Any], config: Any) -> RunResult:
        from breastdx.evaluation.tables import metric_label

        m = metrics["metrics"]
        table = [["metric", *[("*" if a == best else "") + a for a in runs]]]
        table += [[metric_label(k), *[ci_text(runs[a].test["metrics"].get(k)) for a in runs]] for k in self.spec.summary]
        if localisation:
            meth = config.gradcam_method
            table.append([f"CAM mass in lesion ({meth})",
                          *[ci_text(localisation[a][meth]["cam_mass_in_mask"]) for a in runs]])
            table.append([f"pointing game ({meth})", *[ci_text(localisation[a][meth]["pointing_game"]) for a in runs]])
        table.append(["training (min)", *[f"{x.fit.train_seconds / 60:.1f}" for x in runs.values()]])
        notes = [f"Best on validation: {best}; test AUROC ({self.spec.positive}) {ci_text(m['auroc'])}, accuracy @ "
                 f"argmax {ci_text(m['accuracy'])}."]
        if (over := metrics.get(f"metrics_over_{self.spec.group_unit}s")) and self.spec.group_unit != "patient":
            notes.append(f"Over the {over['auroc'][f'n_{self.spec.group_unit}s']} test {self.spec.group_unit}s (frames "
                         f"of one together, the interval to quote): AUROC {ci_text(over['auroc'])}.")
        for c in metrics["comparison"]:
            notes.append(f"Paired bootstrap, AUROC({c['model_a']}) - AUROC({c['model_b']}) = {c['difference']:+.4f} "
                         f"[{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}], p = {c['p_value']:.3g} (DeLong p = "
                         f"{c['delong']['p_value']:.3g}).")
        if "benchmark" in metrics:
            b = metrics["benchmark"]
            targets = " and ".join(f"{k} >= {t}" for k, t in self.spec.benchmark.targets.items())
            notes.append(f"Targets {targets}: {'reached' if b['reached'] else 'not reached'}.")
        notes.append(f"Run folder: {run_dir}")
        return RunResult(run_dir, {k: v for k, v in metrics.items() if not k.startswith("_")},
                         f"{self.title}: {metrics['split']}, value [95% CI]", table, notes)

    def _write_model(self, model_dir: Path, r: Any, config: Any, prep: Any, data: SplitData,
                     norm: Normalisation | None, split_path: Path) -> dict[str, Any]:
        from breastdx.evaluation.tables import metric_label
        from breastdx.inference.classifier import save_classifier
        from breastdx.models.networks import gradcam_layer
        from breastdx.models.saved import write_model_card
        from breastdx.pipeline.report import unit_card_text
        from breastdx.training.trainer import resumed_note

        spec = self.spec
        classes = list(data.class_names)
        model_dir.mkdir(parents=True, exist_ok=True)
        preprocessing = prep.to_meta()
        if spec.pad_to:
            preprocessing["pad_to"] = list(spec.pad_to)
            preprocessing["description"] = (f"smaller images padded with white (bottom, right) to {spec.pad_to[0]}x"
                                            f"{spec.pad_to[1]}; " + preprocessing["description"])
        if spec.source_size:
            preprocessing["source_size"] = spec.source_size
            preprocessing["description"] = f"resize to {spec.source_size}x{spec.source_size} first; " + \
                preprocessing["description"]
        if spec.source_crop:
            preprocessing["source_crop"] = spec.source_crop
            preprocessing["description"] = f"cut the {spec.source_crop.replace('_', ' ')}; " + preprocessing["description"]
        extra: dict[str, Any] = {}
        if norm is not None:
            extra["stain_normalisation"] = norm.meta
            if norm.description:
                preprocessing["description"] = f"{norm.description}, then " + preprocessing["description"]
        test_text = data.describe("test")
        meta = save_classifier(model_dir, r.network, {
            "task": self.name, "architecture": r.arch, "architecture_args": r.arch_args, "in_channels": prep.channels,
            "n_parameters": r.n_parameters, "class_names": classes, "positive_class": spec.positive,
            "preprocessing": preprocessing, **extra,
            "temperature": r.calibration["temperature"], "threshold": r.calibration["threshold"],
            "conformal": r.calibration.get("conformal"), "ood": r.calibration.get("ood"),
            "threshold_rule": threshold_rule(config.target_sensitivity, spec.positive),
            "label_rule": label_rule(classes, spec.positive),
            "inference": {"tta": config.tta},
            "gradcam": {"method": config.gradcam_method, "layer": gradcam_layer(r.arch, **r.arch_args)},
            "output": f"{', '.join(f'P({c})' for c in classes)} = softmax(logits / temperature)",
            "metrics": r.test["metrics"], "metrics_split": test_text, "calibration": r.test["calibration"],
            "seed": config.seed, "data": self.title, "data_checksum": data.checksum, "split_file": SPLIT_FILE,
            "training": r.fit.info, "training_config": to_dict(config), "init": r.init,
        })
        shutil.copyfile(split_path, model_dir / SPLIT_FILE)
        if r.ood_bank is not None:
            from breastdx.inference.ood import OOD_FILE, save_bank

            save_bank(r.ood_bank, model_dir / OOD_FILE)
        m = r.test["metrics"]
        init = f"initial weights ({r.init.get('source', 'given')})" if r.init else "random initial weights"
        lesions = (spec, data.parts["test"], r.test["prob"], r.calibration["threshold"],
                   positive_columns(classes, spec.positive), config.n_bootstrap, config.seed)
        write_model_card(
            model_dir, meta, title=self.title,
            summary=(f"{r.arch} ({r.n_parameters:,} parameters), input {prep.image_size}x{prep.image_size} "
                     f"{spec.mode}, {len(classes)} classes, {config.imbalance} against class imbalance, AdamW, "
                     f"{init}, {r.fit.epochs_run} epochs{resumed_note(r.fit.info)} "
                     f"({r.fit.train_seconds / 60:.1f} min on "
                     f"{r.fit.info.get('torch_threads')} CPU thread(s), best epoch {r.fit.best_epoch} by "
                     f"{config.monitor} on validation); augmentation {'on' if config.augment else 'off'}"
                     f"{f', mixup alpha {config.mixup_alpha:g}' if config.mixup_alpha else ''}. Temperature "
                     f"{r.calibration['temperature']:.3f} and threshold {r.calibration['threshold']:.3f} on "
                     f"P({spec.positive}), both fitted on validation. Grad-CAM layer `{meta['gradcam']['layer']}`."),
            data=data.about + f"\n- Preprocessing: {preprocessing['description']}." + (
                f"\n- A smoke run (--max-cases {config.max_cases}): trained on {r.fit.info.get('n_train')} and validated "
                f"on {r.fit.info.get('n_val')} of these images, not all." if config.max_cases else ""),
            evaluation=(f"{test_text}; 95% bootstrap intervals over {spec.items} ({config.n_bootstrap} resamples). "
                        f"AUROC ({spec.positive}) {ci_text(m['auroc'])}, accuracy {ci_text(m['accuracy'])}, balanced "
                        f"accuracy {ci_text(m['balanced_accuracy'])}.{unit_card_text(*lesions)} Accuracy and "
                        f"balanced accuracy are at argmax "
                        f"(the most probable class); sensitivity, specificity, PPV, NPV and F1 at the operating "
                        f"threshold chosen on validation."),
            limitations=list(spec.card_limitations), label=metric_label)
        return meta

    # --------------------------------------------------------------------------------- model verbs
    def options_cls(self, verb: str) -> type | None:
        """The declared options of ``verb`` (see :mod:`breastdx.pipeline.verbs`)."""
        from breastdx.pipeline import verbs as image_verbs
        from breastdx.pipeline.calibrate import CalibrateOptions

        from breastdx.pipeline.task import with_data_options

        reads = {"evaluate": image_verbs.EvaluateOptions, "calibrate": CalibrateOptions}  # + the data options
        if verb in reads:
            return with_data_options(reads[verb], self.config_cls, self.spec.data_options)
        return {"train": self.config_cls, "predict": image_verbs.PredictOptions,
                "explain": image_verbs.ExplainOptions}.get(verb)

    def evaluate(self, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str]) -> RunResult:
        """Metrics of a saved model on a part of its split (default the test split); see
        :class:`breastdx.pipeline.verbs.EvaluateOptions`.

        Raises:
            ConfigError: For an unknown option or value, or a model without an operating threshold (calibrate it).
            DataError: If the data changed since the split was made, or are missing.
            FileNotFoundError: If there is no split file.
        """
        from breastdx.pipeline.verbs import evaluate

        return evaluate(self, model_dir, data_root, run_dir, options)

    def predict(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        """``predictions.csv``: ``p_<class>`` and the label at the operating point (and Grad-CAM overlays); see
        :class:`breastdx.pipeline.verbs.PredictOptions`. Bad files are listed in the result's failures."""
        from breastdx.pipeline.verbs import predict

        return predict(self, model_dir, inputs, run_dir, options)

    def explain(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        """Grad-CAM / Grad-CAM++ overlays per image and ``explanations.csv``; see
        :class:`breastdx.pipeline.verbs.ExplainOptions`. Bad files are listed in the result's failures."""
        from breastdx.pipeline.verbs import explain

        return explain(self, model_dir, inputs, run_dir, options)


def register(spec: ClassificationSpec) -> ImageClassificationTask:
    """Add a spec to the task registry (``breastdx train|evaluate|predict|explain spec.name``)."""
    from breastdx.pipeline.task import TASKS

    task = ImageClassificationTask(spec)
    TASKS.register(spec.name)(task)
    return task
