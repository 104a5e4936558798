"""BreastMNIST: malignant vs normal-or-benign on MedMNIST v2's 28 x 28 BUSI images, official split.

``breastdx train breastmnist`` trains the architectures of ``--archs`` on the official training split,
picks each one's best epoch and then the best architecture on the official validation split, fits the
temperature and the operating threshold there, and reports on the official test split every metric with a
95% bootstrap interval, against the MedMNIST v2 table (:data:`MEDMNIST_V2_TABLE`). The 28 x 28 images are
upsampled (bilinear) to ``--image-size`` (64 by default) for the network; a saved model resizes any image
to 28 x 28 first, as MedMNIST made them, then to the network size.

MedMNIST's labels are 0 = malignant, 1 = normal or benign; breastdx converts them to 1 = malignant
(:mod:`breastdx.data.breastmnist`). AUROC does not depend on the encoding; accuracy is the argmax accuracy,
as in the MedMNIST table. BreastMNIST's split is random: BUSI's near-duplicate frames cross it, so these
figures are optimistic compared with the grouped split of ``busi-cls``.

References:
    Yang, J. et al. (2023). MedMNIST v2. Scientific Data 10:41. doi:10.1038/s41597-022-01721-8
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastdx.config import ConfigError, check_options, parse_bool, runtime_options, save_yaml, to_dict
from breastdx.tasks.base import TASKS, RunResult, Task

log = logging.getLogger(__name__)

TASK_NAME = "breastmnist"
SPLIT_FILE = "split.json"
POSITIVE = "malignant"
TARGET_AUROC = 0.93
TARGET_ACCURACY = 0.88

MEDMNIST_V2_TABLE = {
    "ResNet-18 (28)": (0.901, 0.863),
    "ResNet-18 (224)": (0.891, 0.833),
    "ResNet-50 (28)": (0.857, 0.812),
    "ResNet-50 (224)": (0.866, 0.842),
    "auto-sklearn": (0.836, 0.803),
    "AutoKeras": (0.871, 0.831),
    "Google AutoML Vision": (0.919, 0.861),
}
"""BreastMNIST test (AUROC, accuracy) of the MedMNIST v2 paper's baselines (Yang et al. 2023, Table 3)."""

SUMMARY = ("accuracy", "balanced_accuracy", "auroc", "sensitivity", "specificity", "ppv", "npv", "f1", "brier", "ece")


@dataclass(frozen=True)
class BreastMNISTConfig:
    """Options of ``breastdx train breastmnist`` (each is also a command-line option, ``--name value``).

    Attributes:
        seed: Seed of weights, data order, augmentation and bootstrap.
        archs: Architectures to compare (registry names).
        arch_args: Per-architecture arguments as JSON, e.g. ``{"resnet18": {}}``; empty for defaults.
        image_size: Network input side; the 28 x 28 images are upsampled to it (bilinear).
        epochs: Epochs per architecture.
        batch_size: Images per training step.
        lr: Peak learning rate (AdamW, warm-up then cosine decay).
        weight_decay: AdamW weight decay.
        warmup_fraction: Fraction of steps spent warming up.
        label_smoothing: Label smoothing of the cross-entropy.
        patience: Epochs without a better validation score before stopping (0: never).
        imbalance: ``weighted_loss``, ``sampler`` or ``none``.
        augment: Augment training images (flips, small affine, gamma, gain, noise, blur).
        tta: Test-time augmentation: ``none`` or ``hflip``.
        monitor: Validation metric that picks the best epoch (``val_score``, ``val_macro_auroc``,
            ``val_balanced_accuracy``, ``val_nll``).
        target_sensitivity: The operating threshold reaches this sensitivity on validation (0: Youden's J).
        data_file: A ``breastmnist.npz`` to read instead of ``<data root>/breastmnist/breastmnist.npz``.
        init_weights: A safetensors state dict to initialise every architecture from (matching keys).
        pretrained: Initialise from published weights (see :mod:`breastdx.models.init_weights`).
        pretrained_url: Address of the weights for ``pretrained`` (``file://`` works offline).
        precision: ``"auto"``, ``"32"`` or ``"bf16-mixed"`` (bf16-mixed falls back to 32, with a warning, where
            bfloat16 is not native).
        accelerator: Lightning accelerator.
        devices: Lightning devices.
        strategy: Lightning strategy.
        num_nodes: Machines.
        num_workers: Data-loader processes.
        threads: Torch CPU threads (0: PyTorch's default).
        max_train_batches: Batches per epoch (0: all), for smoke tests.
        n_bootstrap: Bootstrap resamples.
        deterministic: Deterministic algorithms where PyTorch has them.
        progress_bar: Show the progress bar.
    """

    seed: int = 0
    archs: tuple[str, ...] = ("resnet18",)
    arch_args: str = ""
    image_size: int = 64
    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.0
    patience: int = 0
    imbalance: str = "weighted_loss"
    augment: bool = True
    tta: str = "none"
    monitor: str = "val_score"
    target_sensitivity: float = 0.9
    data_file: str = ""
    init_weights: str = ""
    pretrained: bool = False
    pretrained_url: str = ""
    precision: str = "32"
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    num_workers: int = 0
    threads: int = 0
    max_train_batches: int = 0
    n_bootstrap: int = 2000
    deterministic: bool = True
    progress_bar: bool = True


def ci_text(m: dict[str, Any] | None, digits: int = 3) -> str:
    """``value [low, high]`` of a metric, or ``n/a``."""
    if not m or m.get("value") is None or m["value"] != m["value"]:
        return "n/a"
    lo, hi = m["ci95"]
    return f"{m['value']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def check_common_options(config: Any, in_channels: int, n_classes: int) -> dict[str, dict[str, Any]]:
    """Check the options the classification tasks share; return the parsed per-architecture arguments.

    Raises:
        ConfigError: Naming the option, what was expected and what was given.
    """
    from breastdx.data.classification import IMBALANCE_MODES
    from breastdx.registry import UnknownNameError
    from breastdx.training.classification import MONITORS, TTA_MODES, check_architectures, parse_arch_args

    if config.tta not in TTA_MODES:
        raise ConfigError(f"Option --tta expects one of {', '.join(TTA_MODES)}, got {config.tta!r}.")
    if config.imbalance not in IMBALANCE_MODES:
        raise ConfigError(f"Option --imbalance expects one of {', '.join(IMBALANCE_MODES)}, got {config.imbalance!r}.")
    if config.monitor not in MONITORS:
        raise ConfigError(f"Option --monitor expects one of {', '.join(MONITORS)}, got {config.monitor!r}.")
    if not 0.0 <= config.target_sensitivity <= 1.0:
        raise ConfigError(f"Option --target-sensitivity must be in [0, 1] (0 for Youden's J), got "
                          f"{config.target_sensitivity}.")
    if config.image_size < 16 or config.image_size % 16:
        raise ConfigError(f"Option --image-size must be a multiple of 16 and at least 16, got {config.image_size}.")
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError(f"Options --epochs and --batch-size must be at least 1, got {config.epochs} and "
                          f"{config.batch_size}.")
    if config.pretrained and config.init_weights:
        raise ConfigError("Options --pretrained and --init-weights exclude each other; choose one.")
    if len(set(config.archs)) != len(config.archs):
        raise ConfigError(f"Option --archs lists an architecture twice: {', '.join(config.archs)}.")
    try:
        arch_args = parse_arch_args(config.arch_args, config.archs)
        check_architectures(config.archs, arch_args, in_channels, n_classes)
    except UnknownNameError as e:
        raise ConfigError(f"Option --archs: {e}") from None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return arch_args


def fit_settings(config: Any):
    """:class:`breastdx.training.classification.FitSettings` from a task config."""
    from breastdx.training.classification import FitSettings

    return FitSettings(epochs=config.epochs, batch_size=config.batch_size, imbalance=config.imbalance,
                       monitor=config.monitor, patience=config.patience, seed=config.seed,
                       num_workers=config.num_workers, precision=config.precision, accelerator=config.accelerator,
                       devices=config.devices, strategy=config.strategy, num_nodes=config.num_nodes,
                       deterministic=config.deterministic, progress_bar=config.progress_bar,
                       max_train_batches=config.max_train_batches)


def initialiser(config: Any, arch: str):
    """``init(network) -> InitReport | None`` for ``--init-weights`` / ``--pretrained``, or None."""
    if config.init_weights:
        from breastdx.models.init_weights import init_from_file

        return lambda net: init_from_file(net, config.init_weights)
    if config.pretrained:
        from breastdx.models.init_weights import init_pretrained

        return lambda net: init_pretrained(net, arch, url=config.pretrained_url or None)
    return None


def comparison_rows(runs: dict[str, Any], best: str) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the architecture comparison (test metrics with CIs, validation score, costs)."""
    header = ["model", "val score", "accuracy", "balanced acc.", "macro AUROC", "AUROC (malignant)",
              "sensitivity @ op", "specificity @ op", "ECE before → after T", "parameters", "training (min)",
              "best epoch"]
    rows = []
    for name, r in runs.items():
        m = r.test["metrics"]
        cal = r.test["calibration"]
        rows.append([name + (" (best)" if name == best else ""), f"{r.val_score:.3f}", ci_text(m["accuracy"]),
                     ci_text(m["balanced_accuracy"]), ci_text(m["macro_auroc"]), ci_text(m["auroc"]),
                     ci_text(m["sensitivity"]), ci_text(m["specificity"]),
                     f"{cal['before']['ece']['value']:.3f} → {cal['after']['ece']['value']:.3f}",
                     f"{r.n_parameters:,}", f"{r.fit.train_seconds / 60:.1f}", str(r.fit.best_epoch)])
    return header, rows


def calibration_rows(calibration: dict[str, Any]) -> list[list[Any]]:
    """Rows ``[metric, before, after]`` of a calibration summary."""
    rows = [["temperature", "1", f"{calibration['temperature']:.3f}"]]
    for k in ("nll", "brier", "ece", "brier_multiclass", "ece_top_label"):
        b, a = calibration["before"][k], calibration["after"][k]
        if isinstance(b, dict):
            rows.append([k, ci_text(b), ci_text(a)])
        else:
            rows.append([k, "n/a" if b is None else f"{b:.4f}", "n/a" if a is None else f"{a:.4f}"])
    return rows


def plain_evaluation(ev: dict[str, Any]) -> dict[str, Any]:
    """An :func:`~breastdx.evaluation.classification.evaluate_logits` result without its arrays (for JSON)."""
    return {k: v for k, v in ev.items() if k not in ("prob", "prob_uncalibrated", "pred", "pred_operating_point")}


@TASKS.register(TASK_NAME)
class BreastMNISTTask(Task):
    """Malignant vs normal-or-benign on BreastMNIST (MedMNIST v2), official split."""

    name = TASK_NAME
    title = "BreastMNIST (MedMNIST v2) ultrasound benchmark, 28 x 28"
    config_cls = BreastMNISTConfig

    # ------------------------------------------------------------------ train
    def train(self, config: BreastMNISTConfig, data_root: Path, run_dir: Path) -> RunResult:
        import torch

        from breastdx.data.breastmnist import CLASS_NAMES, load_breastmnist, read_breastmnist
        from breastdx.data.classification import ClassificationDataset
        from breastdx.data.transforms import Preprocessing, ultrasound_augmentation
        from breastdx.runs import seed_everything, write_json, write_versions
        from breastdx.training.classification import ClassifierOptim, run_architecture

        arch_args = check_common_options(config, 1, len(CLASS_NAMES))
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        data = read_breastmnist(config.data_file) if config.data_file else load_breastmnist(data_root)
        save_yaml({"task": self.name, **to_dict(config), "data_root": str(data_root), "data_file": str(data.path),
                   "data_checksum": data.sha256, "data_md5": data.md5, "data_official": data.official},
                  run_dir / "config.yaml")
        write_versions(run_dir)
        split_info = self._split_info(data)
        write_json(split_info, run_dir / SPLIT_FILE)

        prep = Preprocessing(image_size=config.image_size, mode="gray")
        aug = ultrasound_augmentation(config.image_size, seed=config.seed) if config.augment else None
        datasets = {s: ClassificationDataset.from_arrays(list(data.split(s).images), data.split(s).labels, prep,
                                                         CLASS_NAMES, names=[f"{s}_{i}" for i in range(data.split(s).n)],
                                                         source_size=data.train.images.shape[1])
                    for s in ("train", "val", "test")}
        train_ds = datasets["train"].with_transform(aug)
        optim = ClassifierOptim(lr=config.lr, weight_decay=config.weight_decay,
                                warmup_fraction=config.warmup_fraction, label_smoothing=config.label_smoothing,
                                seg_weight=0.0)
        settings = fit_settings(config)
        runs = {}
        for arch in config.archs:
            try:
                runs[arch] = run_architecture(
                    arch, arch_args[arch], prep.channels, train_ds, datasets["val"], datasets["test"],
                    run_dir / "archs" / arch, settings, optim, tta=config.tta,
                    target_sensitivity=config.target_sensitivity, positive=POSITIVE, n_boot=config.n_bootstrap,
                    init=initialiser(config, arch))
            except ValueError as e:  # init-weights errors, Lightning settings it refuses
                raise ConfigError(f"{arch}: {e}") from None
            if not runs[arch].fit.is_global_zero:
                return RunResult(run_dir)
        best = max(runs, key=lambda a: (runs[a].val_score, -list(runs).index(a)))
        r = runs[best]
        source_size = int(data.train.images.shape[1])
        meta = self._write_model(run_dir / "model", r, config, prep, source_size, data, split_info)
        test_n = data.test.n
        split_text = f"official MedMNIST v2 test split (n = {test_n}: {int(data.test.labels.sum())} malignant)"
        m = r.test["metrics"]
        benchmark = {"auroc_target": TARGET_AUROC, "accuracy_target": TARGET_ACCURACY,
                     "auroc": m["auroc"]["value"], "accuracy": m["accuracy"]["value"],
                     "medmnist_v2": {k: {"auroc": a, "accuracy": c} for k, (a, c) in MEDMNIST_V2_TABLE.items()},
                     "beats_every_medmnist_entry": bool(
                         m["auroc"]["value"] > max(a for a, _ in MEDMNIST_V2_TABLE.values())
                         and m["accuracy"]["value"] > max(c for _, c in MEDMNIST_V2_TABLE.values()))}
        metrics = {
            "task": self.name, "split": split_text, "n": test_n, "model": best,
            "threshold": r.calibration["threshold"], "temperature": r.calibration["temperature"],
            "metrics": m,
            "operating_point": {"threshold": r.calibration["threshold"],
                                "rule": self._threshold_rule(config.target_sensitivity)},
            "calibration": r.test["calibration"],
            "confusion_matrix": {"class_names": list(CLASS_NAMES), "argmax": r.test["confusion_matrix"],
                                 "operating_point": r.test["confusion_matrix_operating_point"]},
            "validation_metrics": r.validation["metrics"],
            "models": {a: {"val_score": x.val_score, "calibration_fit": x.calibration, "test": plain_evaluation(x.test),
                           "validation_metrics": x.validation["metrics"], "training": x.fit.info,
                           "n_parameters": x.n_parameters, "init": x.init} for a, x in runs.items()},
            "benchmark": benchmark,
            "preprocessing": meta["preprocessing"],
        }
        write_json(metrics, run_dir / "metrics.json")
        self._write_report(run_dir, config, data, runs, best, metrics)
        header, rows = comparison_rows(runs, best)
        table = [["metric", *[("*" if a == best else "") + a for a in runs]]]
        table += [[k, *[ci_text(runs[a].test["metrics"][k]) for a in runs]] for k in SUMMARY]
        notes = [f"Best on validation: {best}; test AUROC {m['auroc']['value']:.3f}, accuracy "
                 f"{m['accuracy']['value']:.3f} (targets >= {TARGET_AUROC} and >= {TARGET_ACCURACY}; MedMNIST v2 "
                 f"ResNet-18 (28): 0.901 / 0.863, Google AutoML Vision: 0.919 / 0.861).",
                 "Training: " + ", ".join(f"{a} {x.fit.train_seconds / 60:.1f} min" for a, x in runs.items()) + ".",
                 f"Run folder: {run_dir}"]
        return RunResult(run_dir, metrics, f"BreastMNIST official test split (n = {test_n}): value [95% CI]",
                         table, notes)

    @staticmethod
    def _threshold_rule(target: float) -> str:
        if target == 0:
            return "Youden's J on the validation split (temperature-scaled P(malignant))"
        return f"highest threshold with sensitivity >= {target} on the validation split (temperature-scaled P(malignant))"

    @staticmethod
    def _split_info(data: Any) -> dict[str, Any]:
        return {"dataset": "breastmnist", "kind": "official MedMNIST v2 split (stored in the .npz file)",
                "data_file": str(data.path), "data_checksum": data.sha256, "md5": data.md5,
                "official_file": data.official, "summary": data.summary(),
                "label_encoding": "breastdx: 1 = malignant, 0 = normal or benign (MedMNIST stores 0 = malignant)"}

    def _write_model(self, model_dir: Path, r: Any, config: BreastMNISTConfig, prep: Any, source_size: int,
                     data: Any, split_info: dict[str, Any]) -> dict[str, Any]:
        from breastdx.data.breastmnist import CLASS_NAMES
        from breastdx.explain.gradcam import target_layer
        from breastdx.inference.classifier import save_classifier
        from breastdx.models.saved import write_model_card
        from breastdx.runs import write_json

        split_text = f"official MedMNIST v2 test split (n = {data.test.n})"
        meta = save_classifier(model_dir, r.network, {
            "task": self.name, "architecture": r.arch, "architecture_args": r.arch_args, "in_channels": prep.channels,
            "n_parameters": r.n_parameters, "class_names": list(CLASS_NAMES), "positive_class": POSITIVE,
            "preprocessing": {**prep.to_meta(), "source_size": source_size,
                              "description": f"resize to {source_size}x{source_size} (as MedMNIST), then to "
                                             f"{prep.image_size}x{prep.image_size} (bilinear); uint8 / 255; 1 channel"},
            "temperature": r.calibration["temperature"], "threshold": r.calibration["threshold"],
            "threshold_rule": self._threshold_rule(config.target_sensitivity),
            "label_rule": "malignant when P(malignant) >= threshold, else normal_or_benign",
            "inference": {"tta": config.tta},
            "gradcam": {"method": "gradcam", "layer": target_layer(r.network, r.arch)},
            "output": "P(normal_or_benign), P(malignant) = softmax(logits / temperature)",
            "metrics": r.test["metrics"], "metrics_split": split_text,
            "calibration": r.test["calibration"],
            "seed": config.seed, "data": "BreastMNIST (MedMNIST v2, Yang et al. 2023, doi:10.1038/s41597-022-01721-8)",
            "data_checksum": data.sha256, "data_md5": data.md5, "split_file": SPLIT_FILE,
            "training": r.fit.info, "training_config": to_dict(config), "init": r.init,
        })
        write_json(split_info, model_dir / SPLIT_FILE)
        m = r.test["metrics"]
        write_model_card(
            model_dir, meta, title="BreastMNIST malignant vs normal-or-benign",
            summary=(f"MONAI {r.arch} ({r.n_parameters:,} parameters), input {prep.image_size}x{prep.image_size} gray "
                     f"(BreastMNIST's 28x28 upsampled), weighted cross-entropy, AdamW, {r.fit.epochs_run} epochs "
                     f"({r.fit.train_seconds / 60:.1f} min, best epoch {r.fit.best_epoch} by validation). "
                     f"Temperature {r.calibration['temperature']:.3f} and threshold {r.calibration['threshold']:.3f} "
                     f"fitted on the validation split."),
            data=(f"- BreastMNIST (MedMNIST v2; Yang et al. 2023, Scientific Data 10:41, doi:10.1038/s41597-022-01721-8), "
                  f"made from BUSI (Al-Dhabyani et al. 2020, doi:10.1016/j.dib.2019.104863), CC BY 4.0: train "
                  f"{data.train.n}, val {data.val.n}, test {data.test.n} images of 28x28.\n"
                  f"- MedMNIST labels 0 = malignant, 1 = normal or benign; breastdx uses 1 = malignant.\n"
                  f"- File MD5 {data.md5} ({'the official file' if data.official else 'a re-saved copy with the same arrays, not the official bytes'})."),
            evaluation=(f"Official test split; 95% bias-corrected bootstrap CIs over images. Test AUROC "
                        f"{m['auroc']['value']:.3f}, accuracy (argmax) {m['accuracy']['value']:.3f}; MedMNIST v2 "
                        f"table: ResNet-18 (28) 0.901 / 0.863, Google AutoML Vision 0.919 / 0.861. Sensitivity, "
                        f"specificity, PPV, NPV and F1 are at the operating threshold chosen on validation."),
            limitations=[
                "BreastMNIST's split is random: near-duplicate BUSI frames of one lesion can be in train and test, so "
                "the figures are optimistic (see busi-cls for a grouped split).",
                "28x28 images keep little texture; the model is a benchmark, not a diagnostic tool.",
                "One public dataset from one hospital (Cairo, 2018); no external validation.",
                "Research use only; not for diagnosis.",
            ])
        return meta

    def _write_report(self, run_dir: Path, config: BreastMNISTConfig, data: Any, runs: dict[str, Any], best: str,
                      metrics: dict[str, Any]) -> None:
        from breastdx.data.breastmnist import CLASS_NAMES
        from breastdx.evaluation.classification import plot_training_curves, write_figures
        from breastdx.evaluation.report import HtmlReport
        from breastdx.training.trainer import read_training_log

        r = runs[best]
        rep = HtmlReport("breastdx — BreastMNIST (MedMNIST v2) benchmark")
        rep.paragraph(f"BreastMNIST {data.path.name} (MD5 {data.md5}{', official' if data.official else ', re-saved copy'}), "
                      f"official split: train {data.train.n}, val {data.val.n}, test {data.test.n}; labels converted to "
                      f"1 = malignant (MedMNIST stores 0 = malignant). Images 28x28 upsampled to "
                      f"{config.image_size}x{config.image_size}; class imbalance: {config.imbalance}; augmentation: "
                      f"{'on' if config.augment else 'off'}; test-time augmentation: {config.tta}. The best epoch of each "
                      f"model and the best model are chosen on the validation split (score = mean of macro AUROC and "
                      f"balanced accuracy); temperature and operating threshold are fitted there. Intervals: 95% "
                      f"bias-corrected bootstrap over test images ({config.n_bootstrap} resamples).")
        rep.heading("Model comparison (official test split)")
        header, rows = comparison_rows(runs, best)
        rep.table(header, rows, highlight_row=list(runs).index(best))
        rep.heading("Benchmark: MedMNIST v2 table")
        m = metrics["metrics"]
        bench = [[k, f"{a:.3f}", f"{c:.3f}"] for k, (a, c) in MEDMNIST_V2_TABLE.items()]
        bench.append([f"breastdx {best} (this run)", ci_text(m["auroc"]), ci_text(m["accuracy"])])
        rep.table(["method", "AUROC", "accuracy"], bench, highlight_row=len(bench) - 1)
        rep.paragraph(f"Targets: AUROC >= {TARGET_AUROC} and accuracy >= {TARGET_ACCURACY}. Reached: AUROC "
                      f"{m['auroc']['value']:.3f}, accuracy {m['accuracy']['value']:.3f}.")
        rep.heading(f"Best model ({best}): every metric")
        rep.metrics_table(m)
        rep.heading("Calibration on the test split: before and after temperature scaling (fitted on validation)")
        rep.table(["metric", "before (T = 1)", "after"], calibration_rows(r.test["calibration"]))
        rep.heading("Figures")
        for png, caption in write_figures(run_dir, data.test.labels, {a: x.test for a, x in runs.items()}, best,
                                          CLASS_NAMES, POSITIVE, "test"):
            rep.figure(png, caption)
        logs = {a: read_training_log(run_dir / "archs" / a) for a in runs}
        if any(v.get("epoch") for v in logs.values()):
            rep.figure(plot_training_curves(logs, run_dir / "training_curves.png", "BreastMNIST training"),
                       "Training loss and validation score per epoch")
        rep.write(run_dir / "report.html")

    # --------------------------------------------------------------- evaluate
    def evaluate(self, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str]) -> RunResult:
        from breastdx.data.breastmnist import CLASS_NAMES, load_breastmnist, read_breastmnist
        from breastdx.evaluation.classification import evaluate_logits, write_figures
        from breastdx.evaluation.report import HtmlReport
        from breastdx.inference.classifier import ClassificationPredictor
        from breastdx.runs import write_json, write_versions

        check_options(options, {"split", "data-file", "seed", "n-bootstrap", "tta", "batch-size"},
                      "evaluate breastmnist")
        opts = {k.replace("_", "-"): v for k, v in options.items()}
        which = opts.get("split", "test")
        if which not in ("train", "val", "test"):
            raise ConfigError(f"Option --split expects train, val or test, got {which!r}.")
        try:
            seed, n_boot, batch = int(opts.get("seed", 0)), int(opts.get("n-bootstrap", 2000)), int(opts.get("batch-size", 64))
        except ValueError as e:
            raise ConfigError(f"Options --seed, --n-bootstrap and --batch-size expect integers ({e}).") from None
        predictor = ClassificationPredictor.from_dir(model_dir, task=self.name, batch_size=batch,
                                                     tta=opts.get("tta") or None, **runtime_options(opts))
        data = read_breastmnist(opts["data-file"]) if opts.get("data-file") else load_breastmnist(data_root)
        split = data.split(which)
        save_yaml({"task": self.name, "model": str(model_dir), "split": which, "seed": seed, "n_bootstrap": n_boot,
                   "tta": predictor.tta, "data_file": str(data.path), "data_checksum": data.sha256},
                  run_dir / "config.yaml")
        write_versions(run_dir)
        write_json(self._split_info(data), run_dir / SPLIT_FILE)
        logits = predictor.predict_logits(list(split.images))
        ev = evaluate_logits(split.labels, logits, CLASS_NAMES, temperature=predictor.temperature,
                             threshold=float(predictor.threshold), positive=POSITIVE, n_boot=n_boot, seed=seed)
        split_text = f"official {which} split of {data.path.name} (n = {split.n}: {int(split.labels.sum())} malignant)"
        metrics = {"task": self.name, "split": split_text, "n": split.n, "model": str(model_dir),
                   "threshold": predictor.threshold, "temperature": predictor.temperature, "metrics": ev["metrics"],
                   "calibration": ev["calibration"],
                   "confusion_matrix": {"class_names": list(CLASS_NAMES), "argmax": ev["confusion_matrix"],
                                        "operating_point": ev["confusion_matrix_operating_point"]}}
        write_json(metrics, run_dir / "metrics.json")
        rep = HtmlReport("breastdx — BreastMNIST evaluation")
        rep.paragraph(f"Model {model_dir} ({predictor.meta['architecture']}); {split_text}; temperature "
                      f"{predictor.temperature:.3f}, operating threshold {float(predictor.threshold):.3f}; TTA {predictor.tta}.")
        rep.metrics_table(ev["metrics"])
        rep.table(["metric", "before (T = 1)", "after"], calibration_rows(ev["calibration"]))
        for png, caption in write_figures(run_dir, split.labels, {predictor.meta["architecture"]: ev},
                                          predictor.meta["architecture"], CLASS_NAMES, POSITIVE, which):
            rep.figure(png, caption)
        rep.write(run_dir / "report.html")
        rows = [[k, ci_text(ev["metrics"][k])] for k in SUMMARY]
        return RunResult(run_dir, metrics, f"BreastMNIST {which} split (n = {split.n}): value [95% CI]",
                         [["metric", "value [95% CI]"], *rows], [f"Split: {split_text}", f"Run folder: {run_dir}"])

    # ---------------------------------------------------------------- predict
    def predict(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        return predict_with_model(self.name, "BreastMNIST predictions", model_dir, inputs, run_dir, options,
                                  gradcam_default=False)


def predict_with_model(task: str, title: str, model_dir: Path, inputs: list[Path], run_dir: Path,
                       options: dict[str, str], gradcam_default: bool) -> RunResult:
    """The ``predict`` verb of the classification tasks: ``predictions.csv`` (and Grad-CAM overlays).

    Options: ``--batch-size``, ``--workers``, ``--threads``, ``--tta none|hflip``, ``--gradcam true|false``,
    ``--method gradcam|gradcampp``.

    Raises:
        ConfigError: For an unknown option or a value of the wrong type.
    """
    import torch

    from breastdx.explain.gradcam import CAM_METHODS
    from breastdx.inference.classifier import ClassificationPredictor, write_predictions

    check_options(options, {"batch-size", "workers", "threads", "tta", "gradcam", "method"}, f"predict {task}")
    opts = {k.replace("_", "-"): v for k, v in options.items()}
    try:
        batch, workers, threads = int(opts.get("batch-size", 32)), int(opts.get("workers", 2)), int(opts.get("threads", 0))
    except ValueError as e:
        raise ConfigError(f"Options --batch-size, --workers and --threads expect integers ({e}).") from None
    gradcam = parse_bool(opts.get("gradcam", gradcam_default), "gradcam")
    method = opts.get("method") or None
    if method is not None and method not in CAM_METHODS:
        raise ConfigError(f"Option --method expects one of {', '.join(CAM_METHODS)}, got {method!r}.")
    if threads > 0:
        torch.set_num_threads(threads)
    predictor = ClassificationPredictor.from_dir(model_dir, task=task, batch_size=batch, tta=opts.get("tta") or None,
                                                 gradcam_method=method, **runtime_options(opts))
    rows, failures, seconds = write_predictions(predictor, inputs, run_dir, gradcam=gradcam, workers=workers)
    classes = predictor.class_names
    table = [["image", *[f"P({c})" for c in classes], "label"]] + [
        [Path(r["source"]).name, *[f"{r[f'p_{c}']:.3f}" for c in classes], r["label"]] for r in rows[:50]]
    notes = [f"{len(rows)} image(s) in {seconds:.1f} s ({len(rows) / max(seconds, 1e-9):.1f} images/s, model "
             f"{predictor.meta['architecture']}, Grad-CAM {'on' if gradcam else 'off'}); label: "
             f"{predictor.meta.get('label_rule', 'most probable class')} (threshold "
             f"{'none' if predictor.threshold is None else f'{predictor.threshold:.3f}'}). "
             f"Wrote {run_dir / 'predictions.csv'}" + (", gradcam/" if gradcam else "")]
    if len(rows) > 50:
        notes.insert(0, f"(first 50 of {len(rows)} shown)")
    return RunResult(run_dir, {}, title, table, notes, failures)
