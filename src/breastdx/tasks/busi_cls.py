"""BUSI classification: normal / benign / malignant breast-ultrasound images, with Grad-CAM explanations.

``breastdx train busi-cls`` trains every architecture of ``--archs`` (MONAI DenseNet121, ResNet-18/50,
EfficientNet-B0, and the multi-task U-Net of :mod:`breastdx.models.multitask`, which also learns the lesion
masks) on the grouped, leak-free BUSI split shared with ``busi-seg`` (:func:`breastdx.data.splits.busi_split`;
``--split-file`` reuses busi-seg's ``split.json``), with class weights or a balanced sampler against the
class imbalance and ultrasound augmentation. Each model's best epoch is picked on validation, then its
temperature (calibration) and its operating threshold on P(malignant); the best model on validation is
saved. Every model is evaluated on the test split with 95% bootstrap intervals (accuracy, balanced
accuracy, per-class sensitivity and specificity, macro AUROC, malignant-vs-rest figures, calibration
before and after temperature scaling) and its Grad-CAM maps are checked against the lesion masks of the
test images (share of the map's mass inside the lesion, pointing game).

``predict`` writes class probabilities, the label at the operating point and a Grad-CAM overlay per image;
``explain`` writes Grad-CAM and Grad-CAM++ overlays for the predicted class (or every class).

Benchmarks: published ResNet / EfficientNet results with ImageNet weights on random (leaky) BUSI splits
reach accuracy 0.85-0.90; the target here is accuracy >= 0.88 and macro AUROC >= 0.95 on the grouped test
split without ImageNet weights.

References:
    Al-Dhabyani, W. et al. (2020). Dataset of breast ultrasound images. Data in Brief 28:104863.
    doi:10.1016/j.dib.2019.104863
    Selvaraju, R. R. et al. (2017). Grad-CAM. ICCV, doi:10.1109/ICCV.2017.74
"""

from __future__ import annotations

import csv
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from breastdx.config import ConfigError, check_options, parse_bool, runtime_options, save_yaml, to_dict
from breastdx.tasks.base import TASKS, RunResult, Task
from breastdx.tasks.breastmnist import (calibration_rows, check_common_options, ci_text, comparison_rows,
                                        fit_settings, initialiser, plain_evaluation, predict_with_model)

log = logging.getLogger(__name__)

TASK_NAME = "busi-cls"
SPLIT_FILE = "split.json"
POSITIVE = "malignant"
LESION_CLASSES = ("benign", "malignant")
TARGET_ACCURACY = 0.88
TARGET_MACRO_AUROC = 0.95
SUMMARY = ("accuracy", "balanced_accuracy", "macro_auroc", "auroc", "sensitivity", "specificity", "ppv", "npv",
           "f1", "brier", "ece", "sensitivity_normal", "sensitivity_benign", "sensitivity_malignant",
           "specificity_normal", "specificity_benign", "specificity_malignant")


@dataclass(frozen=True)
class BusiClsConfig:
    """Options of ``breastdx train busi-cls`` (each is also a command-line option, ``--name value``).

    Attributes:
        seed: Seed of weights, data order, augmentation and bootstrap.
        archs: Architectures to compare (``unet_multitask``, ``resnet18``, ``resnet50``, ``densenet121``,
            ``efficientnet_b0``).
        arch_args: Per-architecture arguments as JSON, e.g. ``{"unet_multitask": {"head_levels": 1}}``.
        image_size: Side of the square network input (images resized, aspect not kept; gray, 1 channel).
        epochs: Epochs per architecture.
        batch_size: Images per training step.
        lr: Peak learning rate (AdamW, warm-up then cosine decay).
        weight_decay: AdamW weight decay.
        warmup_fraction: Fraction of steps spent warming up.
        label_smoothing: Label smoothing of the cross-entropy.
        patience: Epochs without a better validation score before stopping (0: never).
        imbalance: ``weighted_loss`` (inverse class frequency), ``sampler`` (balanced draws) or ``none``.
        augment: Augment training images (flips, small affine, gamma, gain, noise, blur).
        seg_weight: Weight of the lesion-mask loss of the multi-task U-Net (0: class loss only).
        tta: Test-time augmentation: ``none`` or ``hflip``.
        monitor: Validation metric that picks the best epoch.
        target_sensitivity: The operating threshold on P(malignant) reaches this sensitivity on validation
            (0: Youden's J).
        split_file: A split file to reuse (busi-seg's ``split.json``); empty to make the grouped split.
        split_seed: Seed of a new split.
        init_weights: A safetensors state dict to initialise every architecture from (matching keys).
        pretrained: Initialise from published weights (none exist in safetensors for these 2-D networks:
            give ``pretrained_url``).
        pretrained_url: Address of the weights for ``pretrained`` (``file://`` works offline).
        init_busi_seg: Initialise the multi-task U-Net from a busi-seg model: ``shipped`` or a model folder
            (empty: no). Its training split must not hold this run's validation or test cases.
        busi_seg_encoder_only: Load only the busi-seg encoder (else the decoder too).
        gradcam_method: ``gradcam`` or ``gradcampp`` for the saved model's overlays.
        localisation: Check the Grad-CAM maps against the test lesion masks.
        precision: ``"auto"``, ``"32"`` or ``"bf16-mixed"`` (bf16-mixed falls back to 32, with a warning, where
            bfloat16 is not native).
        accelerator: Lightning accelerator.
        devices: Lightning devices.
        strategy: Lightning strategy.
        num_nodes: Machines.
        num_workers: Data-loader processes.
        threads: Torch CPU threads (0: PyTorch's default).
        max_train_batches: Batches per epoch (0: all), for smoke tests.
        max_cases: Cases per split, evenly spaced (0: all), for smoke tests.
        n_bootstrap: Bootstrap resamples.
        deterministic: Deterministic algorithms where PyTorch has them.
        progress_bar: Show the progress bar.
    """

    seed: int = 0
    archs: tuple[str, ...] = ("unet_multitask", "resnet18")
    arch_args: str = ""
    image_size: int = 128
    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.0
    patience: int = 0
    imbalance: str = "weighted_loss"
    augment: bool = True
    seg_weight: float = 1.0
    tta: str = "none"
    monitor: str = "val_score"
    target_sensitivity: float = 0.9
    split_file: str = ""
    split_seed: int = 0
    init_weights: str = ""
    pretrained: bool = False
    pretrained_url: str = ""
    init_busi_seg: str = ""
    busi_seg_encoder_only: bool = True
    gradcam_method: str = "gradcam"
    localisation: bool = True
    precision: str = "32"
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    num_workers: int = 0
    threads: int = 0
    max_train_batches: int = 0
    max_cases: int = 0
    n_bootstrap: int = 2000
    deterministic: bool = True
    progress_bar: bool = True


def _subsample(names: Sequence[str], k: int) -> list[str]:
    if k <= 0 or k >= len(names):
        return list(names)
    idx = np.unique(np.linspace(0, len(names) - 1, k).round().astype(int))
    return [names[i] for i in idx]


def _class_text(cases: Sequence[Any]) -> str:
    from breastdx.data.busi import BUSI_CLASSES

    return ", ".join(f"{sum(c.label == k for c in cases)} {k}" for k in BUSI_CLASSES)


def localisation_of(predictor: Any, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                    labels: Sequence[int], method: str, n_boot: int, seed: int) -> dict[str, Any]:
    """Grad-CAM localisation of the true class on lesion images (see
    :func:`breastdx.explain.gradcam.localisation_summary`); also returns the maps under ``"cams"``."""
    from breastdx.explain.gradcam import localisation_summary

    _, _, cams = predictor.explain(list(images), method=method, class_idx=np.asarray(labels, dtype=np.int64))
    summary = localisation_summary(cams, masks, n_boot=n_boot, seed=seed)
    return {**summary, "method": method, "explained_class": "true class", "cams": cams}


@TASKS.register(TASK_NAME)
class BusiClsTask(Task):
    """Normal / benign / malignant classification of BUSI breast-ultrasound images, with Grad-CAM."""

    name = TASK_NAME
    title = "BUSI ultrasound classification (normal / benign / malignant) with Grad-CAM"
    config_cls = BusiClsConfig

    # ------------------------------------------------------------------ train
    def train(self, config: BusiClsConfig, data_root: Path, run_dir: Path) -> RunResult:
        import torch

        from breastdx.data.busi import BUSI_CLASSES, busi_checksum, find_busi_root, load_case, scan_busi
        from breastdx.data.classification import ClassificationDataset
        from breastdx.data.splits import busi_split
        from breastdx.data.transforms import Preprocessing, ultrasound_augmentation
        from breastdx.explain.gradcam import CAM_METHODS
        from breastdx.inference.classifier import ClassificationPredictor
        from breastdx.runs import seed_everything, write_json, write_versions
        from breastdx.training.classification import ClassifierOptim, run_architecture

        arch_args = check_common_options(config, 1, len(BUSI_CLASSES))
        if config.gradcam_method not in CAM_METHODS:
            raise ConfigError(f"Option --gradcam-method expects one of {', '.join(CAM_METHODS)}, got "
                              f"{config.gradcam_method!r}.")
        if config.init_busi_seg and "unet_multitask" not in config.archs:
            raise ConfigError("Option --init-busi-seg initialises the multi-task U-Net only; add unet_multitask to "
                              "--archs.")
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        root = find_busi_root(data_root)
        cases = scan_busi(root)
        checksum = busi_checksum(cases)
        save_yaml({"task": self.name, **to_dict(config), "data_root": str(data_root), "data_folder": str(root),
                   "data_checksum": checksum}, run_dir / "config.yaml")
        write_versions(run_dir)
        split_path = run_dir / SPLIT_FILE
        if config.split_file:
            split = busi_split(data_root, Path(config.split_file), seed=config.split_seed)
            split.to_json(split_path)
        else:
            split = busi_split(data_root, split_path, seed=config.split_seed)
        by_name = {c.name: c for c in cases}
        names = {s: _subsample(split.split(s), config.max_cases) for s in ("train", "val", "test")}
        train_cases, val_cases, test_cases = ([by_name[n] for n in names[s]] for s in ("train", "val", "test"))

        prep = Preprocessing(image_size=config.image_size, mode="gray")
        aug = ultrasound_augmentation(config.image_size, seed=config.seed) if config.augment else None
        log.info("caching %d training, %d validation and %d test images at %d px", len(train_cases),
                 len(val_cases), len(test_cases), config.image_size)
        train_ds = ClassificationDataset.from_busi(train_cases, prep, with_masks=True, transform=aug)
        val_ds = ClassificationDataset.from_busi(val_cases, prep, with_masks=False)
        test_ds = ClassificationDataset.from_busi(test_cases, prep, with_masks=False)
        optim = ClassifierOptim(lr=config.lr, weight_decay=config.weight_decay,
                                warmup_fraction=config.warmup_fraction, label_smoothing=config.label_smoothing,
                                seg_weight=config.seg_weight)
        settings = fit_settings(config)
        # Full-size test images and masks, for the Grad-CAM localisation check.
        lesion_test = [c for c in test_cases if c.label in LESION_CLASSES]
        full = [load_case(c, mode="gray") for c in lesion_test] if config.localisation else []

        runs, models, localisation = {}, {}, {}
        for arch in config.archs:
            try:
                runs[arch] = run_architecture(
                    arch, arch_args[arch], prep.channels, train_ds, val_ds, test_ds, run_dir / "archs" / arch,
                    settings, optim, tta=config.tta, target_sensitivity=config.target_sensitivity, positive=POSITIVE,
                    n_boot=config.n_bootstrap, init=self._initialiser(config, arch, split))
            except ValueError as e:  # init-weights errors, Lightning settings it refuses
                raise ConfigError(f"{arch}: {e}") from None
            if not runs[arch].fit.is_global_zero:
                return RunResult(run_dir)
            models[arch] = run_dir / "archs" / arch / "model"
            self._write_model(models[arch], runs[arch], config, prep, checksum, split, test_cases)
            if full:
                predictor = ClassificationPredictor.from_dir(models[arch], task=self.name)
                localisation[arch] = {}
                methods = [config.gradcam_method] + [m for m in CAM_METHODS if m != config.gradcam_method]
                for method in methods:
                    localisation[arch][method] = localisation_of(
                        predictor, [im for im, _ in full], [m for _, m in full],
                        [c.label_index for c in lesion_test], method, config.n_bootstrap, config.seed)
        best = max(runs, key=lambda a: (runs[a].val_score, -list(runs).index(a)))
        r = runs[best]
        model_dir = run_dir / "model"
        shutil.copytree(models[best], model_dir)
        split_text = (f"test split of {SPLIT_FILE} (grouped by near-duplicates; n = {len(test_cases)}: "
                      f"{_class_text(test_cases)})")
        m = r.test["metrics"]
        loc_plain = {a: {meth: {k: v for k, v in d.items() if k != "cams"} for meth, d in per.items()}
                     for a, per in localisation.items()}
        metrics = {
            "task": self.name, "split": split_text, "n": len(test_cases), "model": best,
            "threshold": r.calibration["threshold"], "temperature": r.calibration["temperature"],
            "metrics": m,
            "operating_point": {"threshold": r.calibration["threshold"],
                                "rule": self._threshold_rule(config.target_sensitivity),
                                "label_rule": "malignant when P(malignant) >= threshold, else the more probable of "
                                              "normal and benign"},
            "calibration": r.test["calibration"],
            "confusion_matrix": {"class_names": list(BUSI_CLASSES), "argmax": r.test["confusion_matrix"],
                                 "operating_point": r.test["confusion_matrix_operating_point"]},
            "localisation": loc_plain.get(best, {}),
            "validation_metrics": r.validation["metrics"],
            "models": {a: {"val_score": x.val_score, "calibration_fit": x.calibration, "test": plain_evaluation(x.test),
                           "validation_metrics": x.validation["metrics"], "localisation": loc_plain.get(a, {}),
                           "training": x.fit.info, "n_parameters": x.n_parameters, "init": x.init}
                       for a, x in runs.items()},
            "benchmark": {"accuracy_target": TARGET_ACCURACY, "macro_auroc_target": TARGET_MACRO_AUROC,
                          "accuracy": m["accuracy"]["value"], "macro_auroc": m["macro_auroc"]["value"],
                          "imagenet_weights": bool(config.pretrained or config.init_weights)},
        }
        write_json(metrics, run_dir / "metrics.json")
        self._write_report(run_dir, config, split, train_cases, val_cases, test_cases, runs, best, metrics,
                           localisation, lesion_test, full)
        table = [["metric", *[("*" if a == best else "") + a for a in runs]]]
        table += [[k, *[ci_text(runs[a].test["metrics"][k]) for a in runs]] for k in SUMMARY]
        if localisation:
            meth = config.gradcam_method
            table.append([f"CAM mass in lesion ({meth})",
                          *[ci_text(localisation[a][meth]["cam_mass_in_mask"]) for a in runs]])
            table.append([f"pointing game ({meth})", *[ci_text(localisation[a][meth]["pointing_game"]) for a in runs]])
        notes = [f"Best on validation: {best}; test accuracy {m['accuracy']['value']:.3f}, macro AUROC "
                 f"{m['macro_auroc']['value']:.3f} (targets >= {TARGET_ACCURACY} and >= {TARGET_MACRO_AUROC}, no "
                 f"ImageNet weights).",
                 "Training: " + ", ".join(f"{a} {x.fit.train_seconds / 60:.1f} min" for a, x in runs.items()) + ".",
                 f"Run folder: {run_dir}"]
        return RunResult(run_dir, metrics, f"BUSI classification, test split (n = {len(test_cases)}): value [95% CI]",
                         table, notes)

    @staticmethod
    def _initialiser(config: BusiClsConfig, arch: str, split: Any):
        base = initialiser(config, arch)
        if not (config.init_busi_seg and arch == "unet_multitask"):
            return base

        def init(network: Any):
            from breastdx.models.init_weights import init_from_busi_seg

            if base is not None:
                base(network)
            return init_from_busi_seg(network, config.init_busi_seg, encoder_only=config.busi_seg_encoder_only,
                                      target_split=split)

        return init

    @staticmethod
    def _threshold_rule(target: float) -> str:
        if target == 0:
            return "Youden's J on the validation split (temperature-scaled P(malignant))"
        return (f"highest threshold with sensitivity >= {target} on the validation split (temperature-scaled "
                f"P(malignant))")

    def _write_model(self, model_dir: Path, r: Any, config: BusiClsConfig, prep: Any, checksum: str, split: Any,
                     test_cases: Sequence[Any]) -> dict[str, Any]:
        from breastdx.data.busi import BUSI_CLASSES
        from breastdx.explain.gradcam import target_layer
        from breastdx.inference.classifier import save_classifier
        from breastdx.models.saved import write_model_card

        split_text = f"test split of {SPLIT_FILE} (grouped; n = {len(test_cases)}: {_class_text(test_cases)})"
        meta = save_classifier(model_dir, r.network, {
            "task": self.name, "architecture": r.arch, "architecture_args": r.arch_args, "in_channels": prep.channels,
            "n_parameters": r.n_parameters, "class_names": list(BUSI_CLASSES), "positive_class": POSITIVE,
            "preprocessing": prep.to_meta(),
            "temperature": r.calibration["temperature"], "threshold": r.calibration["threshold"],
            "threshold_rule": self._threshold_rule(config.target_sensitivity),
            "label_rule": "malignant when P(malignant) >= threshold, else the more probable of normal and benign",
            "inference": {"tta": config.tta},
            "gradcam": {"method": config.gradcam_method, "layer": target_layer(r.network, r.arch)},
            "output": "P(normal), P(benign), P(malignant) = softmax(logits / temperature); Grad-CAM map of the label",
            "metrics": r.test["metrics"], "metrics_split": split_text, "calibration": r.test["calibration"],
            "seed": config.seed, "data": "BUSI (Al-Dhabyani et al. 2020, doi:10.1016/j.dib.2019.104863)",
            "data_checksum": checksum, "split_file": SPLIT_FILE, "split_seed": split.seed,
            "training": r.fit.info, "training_config": to_dict(config), "init": r.init,
        })
        shutil.copyfile(split.path, model_dir / SPLIT_FILE)
        tr = r.fit.info
        write_model_card(
            model_dir, meta, title="BUSI ultrasound classification (normal / benign / malignant)",
            summary=(f"MONAI-based {r.arch} ({r.n_parameters:,} parameters), input {prep.image_size}x{prep.image_size} "
                     f"gray, 3 classes, {tr['imbalance']} against class imbalance"
                     + (f", lesion-mask loss weight {tr['seg_weight']}" if tr.get("seg_weight") else "")
                     + f", AdamW, {r.fit.epochs_run} epochs ({r.fit.train_seconds / 60:.1f} min, best epoch "
                     f"{r.fit.best_epoch} by {config.monitor} on validation), random initial weights"
                     + (f" then {r.init['source']}" if r.init else "") + f". Temperature "
                     f"{r.calibration['temperature']:.3f} and threshold {r.calibration['threshold']:.3f} on "
                     f"P(malignant), both fitted on validation. Grad-CAM target layer `{meta['gradcam']['layer']}`."),
            data=(f"- BUSI, Breast Ultrasound Images (Al-Dhabyani et al. 2020, Data in Brief 28:104863, "
                  f"doi:10.1016/j.dib.2019.104863): 780 images of 600 women, Baheya Hospital, Cairo, 2018 (CC BY 4.0).\n"
                  f"- Split: `{SPLIT_FILE}` (seed {split.seed}, ratios {list(split.ratios)}), the grouped split of "
                  f"busi-seg: near-duplicate frames never cross train / val / test; {len(split.excluded)} cases excluded "
                  f"(contradictory labels). Train {len(split.train)}, val {len(split.val)}, test {len(split.test)}.\n"
                  f"- Preprocessing: {meta['preprocessing']['description']}."),
            evaluation=(f"Test split ({_class_text(test_cases)}); 95% bias-corrected bootstrap CIs over images. "
                        f"`accuracy`, `balanced_accuracy`, `macro_auroc` and per-class figures are 3-class (argmax); "
                        f"`sensitivity` ... `f1` are malignant vs rest at the operating threshold; `auroc`, `brier`, "
                        f"`ece` are malignant vs rest from P(malignant) after temperature scaling."),
            limitations=[
                "One public dataset from one hospital and one period; no external validation.",
                "Burned-in calipers, text and marks are present in many BUSI images; the model may use them (check the "
                "Grad-CAM maps).",
                "Images are resized to a square without keeping the aspect ratio.",
                "Grad-CAM maps are coarse (the target layer is 1/16 of the input size) and show evidence for a class, "
                "not a lesion outline.",
                "Research use only; not for diagnosis.",
            ])
        return meta

    # ----------------------------------------------------------------- report
    def _write_report(self, run_dir: Path, config: BusiClsConfig, split: Any, train_cases: Sequence[Any],
                      val_cases: Sequence[Any], test_cases: Sequence[Any], runs: dict[str, Any], best: str,
                      metrics: dict[str, Any], localisation: dict[str, Any], lesion_test: Sequence[Any],
                      full: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        from breastdx.data.busi import BUSI_CLASSES
        from breastdx.evaluation.classification import plot_training_curves, write_figures
        from breastdx.evaluation.report import HtmlReport
        from breastdx.training.trainer import read_training_log

        r = runs[best]
        rep = HtmlReport("breastdx — BUSI ultrasound classification (training run)")
        rep.paragraph(f"Grouped split {SPLIT_FILE} (seed {split.seed}; near-duplicate frames never cross splits; "
                      f"{len(split.excluded)} contradictory cases excluded): train {len(train_cases)} "
                      f"({_class_text(train_cases)}), val {len(val_cases)} ({_class_text(val_cases)}), test "
                      f"{len(test_cases)} ({_class_text(test_cases)}). Input {config.image_size}x{config.image_size} "
                      f"gray; class imbalance: {config.imbalance}; augmentation: {'on' if config.augment else 'off'}; "
                      f"test-time augmentation: {config.tta}; multi-task mask-loss weight {config.seg_weight}. Random "
                      f"initial weights (no ImageNet weights)"
                      + (f", busi-seg initialisation: {config.init_busi_seg}" if config.init_busi_seg else "")
                      + ". Each model's best epoch, the best model, the temperature and the operating threshold on "
                      f"P(malignant) are chosen on the validation split. Intervals: 95% bias-corrected bootstrap over "
                      f"test images ({config.n_bootstrap} resamples).")
        rep.heading("Model comparison (test split)")
        header, rows = comparison_rows(runs, best)
        if localisation:
            meth = config.gradcam_method
            header = [*header, f"CAM mass in lesion ({meth})", f"pointing game ({meth})"]
            rows = [[*row, ci_text(localisation[a][meth]["cam_mass_in_mask"]),
                     ci_text(localisation[a][meth]["pointing_game"])] for row, a in zip(rows, runs)]
        rep.table(header, rows, highlight_row=list(runs).index(best))
        m = metrics["metrics"]
        rep.paragraph(f"Targets: accuracy >= {TARGET_ACCURACY} and macro AUROC >= {TARGET_MACRO_AUROC} on the grouped "
                      f"test split without ImageNet weights (published ResNet / EfficientNet results with ImageNet "
                      f"weights on random, leaky splits: 0.85-0.90). Reached by {best}: accuracy "
                      f"{ci_text(m['accuracy'])}, macro AUROC {ci_text(m['macro_auroc'])}.")
        rep.heading(f"Best model ({best}): every metric")
        rep.metrics_table(m)
        rep.heading("Per class (one vs rest, argmax predictions)")
        rep.table(["class", "sensitivity", "specificity", "AUROC"],
                  [[c, ci_text(m[f"sensitivity_{c}"]), ci_text(m[f"specificity_{c}"]), ci_text(m[f"auroc_{c}"])]
                   for c in BUSI_CLASSES])
        rep.heading("Calibration on the test split: before and after temperature scaling (fitted on validation)")
        rep.table(["metric", "before (T = 1)", "after"], calibration_rows(r.test["calibration"]))
        rep.heading("Figures")
        for png, caption in write_figures(run_dir, _labels_of(test_cases), {a: x.test for a, x in runs.items()},
                                          best, BUSI_CLASSES, POSITIVE, "test"):
            rep.figure(png, caption)
        if localisation:
            pred = {c.name: int(r.test["pred_operating_point"][i]) for i, c in enumerate(test_cases)}
            self._report_localisation(rep, run_dir, localisation, best, lesion_test, full, pred)
        logs = {a: read_training_log(run_dir / "archs" / a) for a in runs}
        if any(v.get("epoch") for v in logs.values()):
            rep.heading("Training")
            rep.paragraph("; ".join(f"{a}: {x.fit.epochs_run} epochs in {x.fit.train_seconds / 60:.1f} min, best epoch "
                                    f"{x.fit.best_epoch} ({x.fit.info.get('torch_threads')} threads)"
                                    for a, x in runs.items()) + ".")
            rep.figure(plot_training_curves(logs, run_dir / "training_curves.png", "BUSI classification training"),
                       "Training loss and validation score per epoch")
        rep.write(run_dir / "report.html")

    def _report_localisation(self, rep: Any, run_dir: Path, localisation: dict[str, Any], best: str,
                             lesion_test: Sequence[Any], full: Sequence[tuple[np.ndarray, np.ndarray]],
                             pred: dict[str, int]) -> None:
        from breastdx.explain.gradcam import write_cam_png

        rep.heading("Explanations: do the Grad-CAM maps point at the lesion?")
        any_arch = next(iter(localisation.values()))
        first = next(iter(any_arch.values()))
        rep.paragraph(f"On the {first['n_images']} test images with a lesion (benign or malignant), maps of the true "
                      f"class at the original image size. 'Mass in lesion': share of the map's sum inside the lesion "
                      f"mask (a uniform map scores the lesion's area fraction, "
                      f"{ci_text(first['mask_area_fraction'])}). 'Pointing game': the map's maximum lies within "
                      f"{first['tolerance_px']:.0f} px of the lesion (Zhang et al. 2018, doi:10.1007/s11263-017-1059-x); "
                      f"always pointing at the image centre scores {ci_text(first['pointing_game_center'])}.")
        rows = []
        for arch, per in localisation.items():
            for method, d in per.items():
                rows.append([arch + (" (best)" if arch == best else ""), method, ci_text(d["cam_mass_in_mask"]),
                             ci_text(d["pointing_game"]), str(d["n_empty_maps"])])
        rep.table(["model", "method", "mass in lesion", "pointing game hit rate", "all-zero maps"], rows)
        from breastdx.data.busi import BUSI_CLASSES

        cams = localisation[best][next(iter(localisation[best]))]["cams"]

        shown = 0
        for cls in LESION_CLASSES:
            idx = [i for i, c in enumerate(lesion_test) if c.label == cls]
            for i in idx[:2]:
                image, mask = full[i]
                png = run_dir / f"gradcam_{cls}_{shown}.png"
                write_cam_png(image, cams[i], png, contour_mask=mask)
                rep.figure(png, f"{lesion_test[i].name}: predicted {BUSI_CLASSES[pred[lesion_test[i].name]]}; "
                                f"Grad-CAM of {cls} (green: reference lesion)")
                shown += 1

    # --------------------------------------------------------------- evaluate
    def evaluate(self, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str]) -> RunResult:
        from breastdx.data.busi import BUSI_CLASSES, find_busi_root, load_case, scan_busi
        from breastdx.data.splits import busi_split
        from breastdx.evaluation.classification import evaluate_logits, write_figures
        from breastdx.evaluation.report import HtmlReport
        from breastdx.inference.classifier import ClassificationPredictor
        from breastdx.runs import write_json, write_versions

        check_options(options, {"split-file", "split", "seed", "n-bootstrap", "batch-size", "tta", "localisation"},
                      "evaluate busi-cls")
        opts = {k.replace("_", "-"): v for k, v in options.items()}
        which = opts.get("split", "test")
        if which not in ("train", "val", "test"):
            raise ConfigError(f"Option --split expects train, val or test, got {which!r}.")
        try:
            seed, n_boot, batch = int(opts.get("seed", 0)), int(opts.get("n-bootstrap", 2000)), int(opts.get("batch-size", 32))
        except ValueError as e:
            raise ConfigError(f"Options --seed, --n-bootstrap and --batch-size expect integers ({e}).") from None
        do_loc = parse_bool(opts.get("localisation", True), "localisation")
        predictor = ClassificationPredictor.from_dir(model_dir, task=self.name, batch_size=batch,
                                                     tta=opts.get("tta") or None, **runtime_options(opts))
        split_path = Path(opts["split-file"]) if "split-file" in opts else Path(model_dir) / SPLIT_FILE
        if not split_path.is_file():
            raise FileNotFoundError(f"{split_path}: no split file; pass --split-file (the split.json of the "
                                    f"training run).")
        split = busi_split(data_root, split_path)
        split.to_json(run_dir / SPLIT_FILE)
        by_name = {c.name: c for c in scan_busi(find_busi_root(data_root))}
        cases = [by_name[n] for n in split.split(which)]
        save_yaml({"task": self.name, "model": str(model_dir), "split_file": str(split_path), "split": which,
                   "seed": seed, "n_bootstrap": n_boot, "tta": predictor.tta, "data_root": str(data_root),
                   "data_checksum": split.data_checksum}, run_dir / "config.yaml")
        write_versions(run_dir)
        loaded = [load_case(c, mode=predictor.preprocessing.mode) for c in cases]
        labels = np.array([c.label_index for c in cases], dtype=np.int64)
        logits = predictor.predict_logits([im for im, _ in loaded])
        ev = evaluate_logits(labels, logits, BUSI_CLASSES, temperature=predictor.temperature,
                             threshold=float(predictor.threshold), positive=POSITIVE, n_boot=n_boot, seed=seed)
        split_text = f"{which} split of {split_path.name} (n = {len(cases)}: {_class_text(cases)})"
        metrics: dict[str, Any] = {
            "task": self.name, "split": split_text, "n": len(cases), "model": str(model_dir),
            "threshold": predictor.threshold, "temperature": predictor.temperature, "metrics": ev["metrics"],
            "calibration": ev["calibration"],
            "confusion_matrix": {"class_names": list(BUSI_CLASSES), "argmax": ev["confusion_matrix"],
                                 "operating_point": ev["confusion_matrix_operating_point"]}}
        lesion = [i for i, c in enumerate(cases) if c.label in LESION_CLASSES]
        if do_loc and lesion:
            loc = localisation_of(predictor, [loaded[i][0] for i in lesion], [loaded[i][1] for i in lesion],
                                  labels[lesion], predictor.gradcam_method, n_boot, seed)
            metrics["localisation"] = {predictor.gradcam_method: {k: v for k, v in loc.items() if k != "cams"}}
        write_json(metrics, run_dir / "metrics.json")
        rep = HtmlReport("breastdx — BUSI classification (evaluation)")
        rep.paragraph(f"Model {model_dir} ({predictor.meta['architecture']}); {split_text}; temperature "
                      f"{predictor.temperature:.3f}, operating threshold {float(predictor.threshold):.3f} on "
                      f"P(malignant); TTA {predictor.tta}.")
        rep.metrics_table(ev["metrics"])
        rep.heading("Calibration before and after temperature scaling")
        rep.table(["metric", "before (T = 1)", "after"], calibration_rows(ev["calibration"]))
        if "localisation" in metrics:
            d = metrics["localisation"][predictor.gradcam_method]
            rep.heading("Grad-CAM localisation on images with a lesion (true class)")
            rep.table(["method", "mass in lesion", "pointing game", "uniform-map baseline", "centre baseline"],
                      [[predictor.gradcam_method, ci_text(d["cam_mass_in_mask"]), ci_text(d["pointing_game"]),
                        ci_text(d["mask_area_fraction"]), ci_text(d["pointing_game_center"])]])
        for png, caption in write_figures(run_dir, labels, {predictor.meta["architecture"]: ev},
                                          predictor.meta["architecture"], BUSI_CLASSES, POSITIVE, which):
            rep.figure(png, caption)
        rep.write(run_dir / "report.html")
        rows = [[k, ci_text(ev["metrics"][k])] for k in SUMMARY]
        if "localisation" in metrics:
            d = metrics["localisation"][predictor.gradcam_method]
            rows += [["CAM mass in lesion", ci_text(d["cam_mass_in_mask"])], ["pointing game", ci_text(d["pointing_game"])]]
        return RunResult(run_dir, metrics, f"BUSI classification, {which} split (n = {len(cases)}): value [95% CI]",
                         [["metric", "value [95% CI]"], *rows], [f"Split: {split_text}", f"Run folder: {run_dir}"])

    # ---------------------------------------------------------------- predict
    def predict(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        return predict_with_model(self.name, "BUSI classification", model_dir, inputs, run_dir, options,
                                  gradcam_default=True)

    # ---------------------------------------------------------------- explain
    def explain(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        """Grad-CAM (and Grad-CAM++) overlays per image, for the predicted class or for every class.

        Writes ``explanations/<image>_<method>_<class>.png`` and ``explanations.csv`` (one row per overlay:
        source, probabilities, label, method, explained class, overlay, and, when a BUSI mask lies beside the
        image (``<image>_mask.png``), the map's mass inside the lesion and the pointing-game hit, with the
        lesion contour drawn in green). Files that cannot be read are listed in ``failures``.

        Options: ``--method gradcam,gradcampp`` (default both), ``--classes predicted|all``, ``--batch-size``,
        ``--workers``, ``--threads``, ``--tta``.

        Raises:
            ConfigError: For an unknown option or value.
        """
        import torch

        from breastdx.data.images import list_images, read_mask
        from breastdx.explain.gradcam import CAM_METHODS, cam_mass_in_mask, pointing_game_hit, write_cam_png
        from breastdx.inference.classifier import ClassificationPredictor

        check_options(options, {"method", "classes", "batch-size", "workers", "threads", "tta"}, "explain busi-cls")
        opts = {k.replace("_", "-"): v for k, v in options.items()}
        methods = [m.strip() for m in str(opts.get("method", ",".join(CAM_METHODS))).split(",") if m.strip()]
        bad = [m for m in methods if m not in CAM_METHODS]
        if bad or not methods:
            raise ConfigError(f"Option --method expects one or more of {', '.join(CAM_METHODS)} (comma-separated), "
                              f"got {opts.get('method')!r}.")
        which = opts.get("classes", "predicted")
        if which not in ("predicted", "all"):
            raise ConfigError(f"Option --classes expects predicted or all, got {which!r}.")
        try:
            batch, workers, threads = int(opts.get("batch-size", 16)), int(opts.get("workers", 2)), int(opts.get("threads", 0))
        except ValueError as e:
            raise ConfigError(f"Options --batch-size, --workers and --threads expect integers ({e}).") from None
        if threads > 0:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        predictor = ClassificationPredictor.from_dir(model_dir, task=self.name, batch_size=batch,
                                                     tta=opts.get("tta") or None, **runtime_options(opts))
        out_dir = run_dir / "explanations"
        out_dir.mkdir()
        rows: list[dict[str, Any]] = []
        failures: list[tuple[str, str]] = []
        records = []
        for path, rec, out, err in predictor.predict_files(list_images(inputs), workers=workers, gradcam=False):
            if err is not None:
                failures.append((str(path), err))
            else:
                records.append((path, rec, out))
        classes = predictor.class_names
        used: dict[str, int] = {}
        for path, rec, out in records:
            stem = path.stem
            used[stem] = used.get(stem, 0) + 1
            if used[stem] > 1:
                stem = f"{stem}_{used[stem]}"
            mask = None
            mask_file = path.with_name(f"{path.stem}_mask{path.suffix}")
            if mask_file.is_file():
                try:
                    mask = read_mask(mask_file, expected_shape=rec.shape)
                except ValueError as e:
                    log.warning("%s: mask not used (%s)", mask_file, e)
            targets = [out.label_index] if which == "predicted" else list(range(len(classes)))
            for method in methods:
                for k in targets:
                    _, _, cams = predictor.explain([rec.array], method=method, class_idx=k)
                    png = out_dir / f"{stem}_{method}_{classes[k]}.png"
                    write_cam_png(rec.array, cams[0], png, contour_mask=mask if mask is not None and mask.any() else None)
                    row = {"source": str(path), **{f"p_{c}": round(float(p), 6) for c, p in zip(classes, out.prob)},
                           "label": out.label, "method": method, "explained_class": classes[k],
                           "overlay": str(png.relative_to(run_dir)), "cam_mass_in_mask": "", "pointing_game_hit": ""}
                    if mask is not None and mask.any():
                        row["cam_mass_in_mask"] = round(cam_mass_in_mask(cams[0], mask), 4)
                        row["pointing_game_hit"] = int(pointing_game_hit(cams[0], mask))
                    rows.append(row)
        fields = ["source", *[f"p_{c}" for c in classes], "label", "method", "explained_class", "overlay",
                  "cam_mass_in_mask", "pointing_game_hit"]
        with open(run_dir / "explanations.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        seconds = time.perf_counter() - start
        table = [["image", "label", "method", "class explained", "overlay"]] + [
            [Path(r["source"]).name, r["label"], r["method"], r["explained_class"], r["overlay"]] for r in rows[:50]]
        notes = [f"{len(records)} image(s), {len(rows)} overlay(s) in {seconds:.1f} s (model "
                 f"{predictor.meta['architecture']}, layer {predictor.explainer(methods[0]).layer}); wrote "
                 f"{run_dir / 'explanations.csv'} and explanations/"]
        return RunResult(run_dir, {}, "BUSI classification: Grad-CAM explanations", table, notes, failures)


def _labels_of(cases: Sequence[Any]) -> np.ndarray:
    """Class indices of BUSI cases, ``int64`` ``(n,)``."""
    return np.array([c.label_index for c in cases], dtype=np.int64)
