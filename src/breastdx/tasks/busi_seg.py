"""BUSI lesion segmentation: a lesion mask for each breast-ultrasound image.

``breastdx train busi-seg`` trains a MONAI network (U-Net by default) on the grouped, leak-free BUSI split
(:func:`breastdx.data.splits.busi_split`; near-duplicate frames never cross splits), keeps the epoch with
the best validation Dice, chooses the postprocessing on the validation images, and evaluates the saved
model on the test images at their original size: Dice, IoU and HD95 per image and as means with 95%
bootstrap CIs, over benign + malignant images and per class, and on normal images (no lesion) the share
with a false-positive area. ``evaluate`` repeats the test evaluation for a saved model (``--external DIR``: on a
labelled folder from elsewhere, :mod:`breastdx.evaluation.external_segmentation`); ``predict`` writes,
per image, the mask PNG at the original size, an overlay PNG and a row of ``predictions.csv``.

Benchmarks: public U-Net results on random (leaky) 70/30 BUSI splits reach Dice ≈ 0.77, TransUNet ≈ 0.80;
the target here is test Dice >= 0.80 on the grouped split.

References:
    Al-Dhabyani, W. et al. (2020). Dataset of breast ultrasound images. Data in Brief 28:104863.
    doi:10.1016/j.dib.2019.104863
    Ronneberger, Fischer & Brox (2015). U-Net. MICCAI, doi:10.1007/978-3-319-24574-4_28.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from breastdx.config import (ConfigError, option, parse_json_object, parse_options, runtime_options, save_yaml, to_dict,
                             validate)
from breastdx.data.splits import DEFAULT_SPLIT_METHOD, SPLIT_METHODS
from breastdx.data.transforms import INTENSITIES
from breastdx.data.image_sets import SPLIT_FILE
from breastdx.evaluation.lesion_report import REPORT_METRICS, TARGET_DICE, write_lesion_report
from breastdx.evaluation.segmentation import SCORE_TERMS
from breastdx.evaluation.tables import ci_text
from breastdx.pipeline.task import TASKS, EvaluateOptions, RunResult, Task, evenly_spaced
from breastdx.training.options import LightningOptions

log = logging.getLogger(__name__)

TASK_NAME = "busi-seg"
CLASS_NAMES = ("background", "lesion")
POSTPROCESSING_GRID = ((False, 0.0), (True, 0.0), (False, 0.001), (True, 0.001), (False, 0.002), (True, 0.002))
"""``(keep_largest, min_area_fraction)`` candidates compared on the validation images. The largest minimum area
(0.2% of the image) stays below half the area of the smallest BUSI training lesions (1st percentile: 0.46% of the
image), so that cleaning never removes a lesion of a typical size."""


@dataclass(frozen=True)
class BusiSegConfig(LightningOptions):
    """Options of ``breastdx train busi-seg`` (each is also a command-line option, ``--name value``), besides the
    :class:`~breastdx.training.options.LightningOptions`.

    Attributes:
        seed: Seed of weights, data order, augmentation and bootstrap.
        arch: A segmentation network of the registry (``breastdx.models.networks``: ``unet``, ``attention_unet``,
            ``segresnet``, ``basic_unetplusplus``, ``deeplabv3plus``, ``fcn``, and any registered there).
        arch_args: Network arguments that differ from the defaults, as a JSON object
            (e.g. ``{"channels": [16, 32, 64, 128, 256], "num_res_units": 1}``); empty for the defaults.
        image_size: Side of the square network input in pixels (images are resized, aspect not kept).
        epochs: Largest number of epochs.
        batch_size: Images per training step (per device).
        lr: Peak learning rate (AdamW, warm-up then cosine decay).
        ema_decay: Per-step decay of the moving average of the weights used for validation and the saved
            model (0: no averaging, the raw weights of the best epoch).
        weight_decay: AdamW weight decay.
        focal_gamma: 0: Dice + cross-entropy loss; > 0: Dice + the softmax focal loss of this gamma in place of the
            cross-entropy (Lin et al. 2017, doi:10.1109/ICCV.2017.324), as monuseg trains.
        precise_bn_batches: Recent training batches over which the batch-norm statistics of the validated (and
            saved) weights are recomputed before each validation (0: not recomputed); no effect on networks
            without batch norm, such as the U-Net (:mod:`breastdx.training.segmentation`).
        warmup_fraction: Fraction of the steps spent warming up.
        patience: Epochs without a better validation Dice before stopping (0: never stop early).
        split_file: A split file to reuse; empty to make the grouped split (written to the run folder).
        split_seed: Seed of a new split (kept apart from ``seed`` so that tasks share one split).
        split_method: How a new split places BUSI's near-duplicate groups (the frames of one lesion):
            ``proportional`` (val and test get groups in proportion) or ``absolute`` (the rule before 2026-12-06,
            which puts every group into training and leaves val and test single images; it reproduces the splits
            made then, the shipped models' included); also the rule of each cross-validation fold's validation draw.
        max_cases: Cases per split, evenly spaced (0 for all): for smoke tests.
        augment: Augment training images (flips, small affine, gamma, gain, noise, blur).
        cv_folds: ``K >= 2``: grouped, stratified ``K``-fold cross-validation of this recipe on the split's train +
            val cases, its test cases left out (:mod:`breastdx.pipeline.seg_crossval`); 0: one training run.
        cv_workers: Folds of ``--cv-folds`` trained at once, each in its own process with ``--threads`` threads
            (:mod:`breastdx.pipeline.fold_runner`; 1: one after the other, in this process); the runs and scores
            are the same either way.
        scanner_augment: Add the augmentations aimed at other scanners: crops hiding text and calipers, smooth
            depth / lateral gain field, lower resolution, Rician speckle noise
            (:class:`breastdx.data.transforms.AugmentationConfig`, ``scanner``).
        include_normal: Train on normal (lesion-free) images too.
        intensity: ``divide_255`` (the default), ``equalize_hist`` or ``clahe``: equalise each resized image's
            histogram before the network, in training and prediction alike
            (:func:`breastdx.data.transforms.equalize_intensity`).
        tta: Test-time augmentation of the saved model: ``none`` or ``hflip``.
        inference_dtype: ``float32`` or ``bfloat16``: the dtype validation and test run in, recorded in the
            model folder as validated. Prediction uses bfloat16 only where it is validated and native.
        n_bootstrap: Bootstrap resamples for the confidence intervals.
    """

    seed: int = 0
    arch: str = "unet"
    arch_args: str = ""
    image_size: int = option(256, ge=16, multiple_of=16)
    epochs: int = option(100, ge=1)
    batch_size: int = option(8, ge=1)
    lr: float = option(1e-3, gt=0)
    ema_decay: float = option(0.995, ge=0, lt=1)
    weight_decay: float = option(1e-4, ge=0)
    focal_gamma: float = option(0.0, ge=0)
    precise_bn_batches: int = option(32, ge=0)
    warmup_fraction: float = option(0.03, ge=0, lt=1)
    patience: int = option(30, ge=0)
    split_file: str = ""
    split_seed: int = option(0, ge=0, le=2**32 - 1)  # NumPy seeds are 32-bit
    split_method: str = option(DEFAULT_SPLIT_METHOD, choices=SPLIT_METHODS)
    max_cases: int = option(0, ge=0)
    augment: bool = True
    scanner_augment: bool = False
    cv_folds: int = option(0, ge=0)
    cv_workers: int = option(1, ge=1)
    include_normal: bool = True
    intensity: str = option("divide_255", choices=INTENSITIES)
    tta: str = option("none", choices=("none", "hflip"))
    inference_dtype: str = option("float32", choices=("float32", "bfloat16"))
    n_bootstrap: int = option(2000, ge=1)


@dataclass(frozen=True)
class SegEvaluateOptions(EvaluateOptions):
    """Options of ``breastdx evaluate busi-seg``: those of a split, and a folder from elsewhere to score instead.

    Attributes:
        external: A labelled folder from elsewhere to score instead of a split: a ``labels.csv`` (columns ``image``,
            ``label``, optional ``mask``, ``pixel_size_mm``) or BUSI class sub-folders with ``*_mask*`` files
            (:mod:`breastdx.evaluation.external_segmentation`); writes ``cases.csv`` too.
        presence_model: A classifier with a ``normal`` class (a shipped name such as ``busi-cls``, or a model
            folder) whose P(normal) at or over ``presence_threshold`` empties the mask
            (:mod:`breastdx.inference.presence`); empty: the segmenter alone.
        presence_threshold: That threshold, in (0, 1].
        tta: Test-time augmentation (``none``, ``hflip``: the mean with the left-right mirror's probability;
            empty: the model's).
    """

    external: str = ""
    presence_model: str = ""
    presence_threshold: float = option(0.3, gt=0.0, le=1.0)
    tta: str = option("", choices=("", "none", "hflip"))


@dataclass(frozen=True)
class PredictOptions:
    """Options of ``breastdx predict busi-seg``.

    Attributes:
        batch_size: Images per network call.
        workers: Reader and writer threads.
        threads: Threads of the network (0: PyTorch's default, every core); set by the command line.
        tta: Test-time augmentation (``none``, ``hflip``; empty: the model's).
        overlays: Write an overlay PNG per image into ``overlays/``.
        presence_model: A classifier with a ``normal`` class (a shipped name such as ``busi-cls``, or a model
            folder) whose P(normal) at or over ``presence_threshold`` empties the mask; adds the column ``p_normal``.
        presence_threshold: That threshold, in (0, 1].
    """

    batch_size: int = option(16, ge=1)
    workers: int = option(2, ge=1)
    threads: int = option(0, ge=0)
    tta: str = option("", choices=("", "none", "hflip"))
    overlays: bool = True
    presence_model: str = ""
    presence_threshold: float = option(0.3, gt=0.0, le=1.0)


@TASKS.register(TASK_NAME)
class BusiSegTask(Task):
    """Lesion segmentation on BUSI breast-ultrasound images."""

    name = TASK_NAME
    title = "BUSI ultrasound lesion segmentation"
    config_cls = BusiSegConfig

    def options_cls(self, verb: str) -> type | None:
        """The declared options of ``verb``."""
        return {"train": BusiSegConfig, "evaluate": SegEvaluateOptions, "predict": PredictOptions}.get(verb)

    # ------------------------------------------------------------------ train
    def train(self, config: BusiSegConfig, data_root: Path, run_dir: Path) -> RunResult:
        import dataclasses

        from breastdx.data.busi import busi_checksum, find_busi_root, scan_busi
        from breastdx.data.datasets import SegmentationDataset
        from breastdx.data.splits import busi_split
        from breastdx.data.image_sets import ultrasound_augmentation
        from breastdx.data.transforms import Preprocessing
        from breastdx.models.networks import NETWORKS, build_network, check_input_size
        from breastdx.models.saved import write_training_hashes
        from breastdx.runs import new_model_dir, seed_everything, write_json, write_versions
        from breastdx.runtime import bf16_native, cpu_model
        from breastdx.training.segmentation import OptimConfig, SegmentationModule
        from breastdx.training.trainer import FitSettings, fit, make_loaders

        # Check every option before any work.
        validate(config, self.name)
        entry = NETWORKS.get(config.arch)  # an unknown name: "did you mean ...?"
        if entry.kind != "segmentation" or not entry.trainable:
            trainable = [n for n in NETWORKS.names()
                         if NETWORKS.get(n).kind == "segmentation" and NETWORKS.get(n).trainable]
            what = "a classification network" if entry.kind != "segmentation" else "an ensemble of trained models"
            raise ConfigError(f"The 'arch' option of busi-seg must be a segmentation network to train: "
                              f"{', '.join(trainable)}. Got {config.arch!r} ({what}) instead.")
        arch_args = parse_json_object(config.arch_args, "arch-args")
        try:
            build_network(config.arch, 1, len(CLASS_NAMES), **arch_args)
        except (TypeError, ValueError) as e:  # an unknown argument, or a value of the wrong kind (MONAI's checks)
            raise ConfigError(f"Option --arch-args: {e}") from None
        try:  # a U-Net's bottleneck of 1 x 1 pixel failed in training as an "unexpected error"
            check_input_size(config.arch, config.image_size, config.image_size, **arch_args)
        except ValueError as e:
            raise ConfigError(f"Option --image-size: {e}") from None
        if config.cv_folds:  # each fold trains by this method: the options are checked before any work
            from breastdx.pipeline.seg_crossval import cross_validate_busi_seg

            return cross_validate_busi_seg(self, config, data_root, run_dir)

        if config.inference_dtype == "bfloat16" and not bf16_native("cpu"):
            # Validating in emulated bfloat16 would crawl; the model folder then validates float32 only.
            log.warning("--inference-dtype bfloat16: %s has no native bfloat16, so validation and test run in "
                        "float32 and the model folder validates float32 only", cpu_model() or "this CPU")
            config = dataclasses.replace(config, inference_dtype="float32")
        seed_everything(config.seed)
        root = find_busi_root(data_root)
        cases = scan_busi(root)
        checksum = busi_checksum(cases)
        split_path = run_dir / SPLIT_FILE
        if config.split_file:
            split = busi_split(data_root, Path(config.split_file), seed=config.split_seed, reuse_only=True)
            split.to_json(split_path)
        else:
            split = busi_split(data_root, split_path, seed=config.split_seed, method=config.split_method,
                               reuse_only=split_path.is_file())  # a resumed run's own split, as it was made
        # after the split is checked: a resume given other data keeps the config.yaml it needs to go on
        save_yaml({"task": self.name, **to_dict(config), "data_root": str(data_root), "data_folder": str(root),
                   "data_checksum": checksum}, run_dir / "config.yaml")
        write_versions(run_dir)
        by_name = {c.name: c for c in cases}
        names = {s: [split.split(s)[i] for i in evenly_spaced(len(split.split(s)), config.max_cases)]
                 for s in ("train", "val", "test")}
        train_cases = [by_name[n] for n in names["train"]
                       if config.include_normal or by_name[n].label != "normal"]
        val_cases = [by_name[n] for n in names["val"]]
        test_cases = [by_name[n] for n in names["test"]]

        prep = Preprocessing(image_size=config.image_size, mode="gray", intensity=config.intensity)
        log.info("caching %d training and %d validation images", len(train_cases), len(val_cases))
        aug = ultrasound_augmentation(config) if config.augment else None
        train_hashes: list[str] = []  # kept in the model folder, so that predict flags a training image
        train_phashes: list[int] = []  # and a near-duplicate of one (another frame, a re-saved or re-cropped copy)
        train_ds = SegmentationDataset.from_busi(train_cases, prep, transform=aug, hashes=train_hashes,
                                                 phashes=train_phashes)
        val_ds = SegmentationDataset.from_busi(val_cases, prep)
        settings = FitSettings.from_config(config, monitor="val_dice")
        train_loader, val_loader = make_loaders(train_ds, val_ds, settings)

        seed_everything(config.seed)  # the same initial weights whatever happened before
        network, resolved_args = build_network(config.arch, prep.channels, len(CLASS_NAMES), **arch_args)
        module = SegmentationModule(network, OptimConfig(lr=config.lr, weight_decay=config.weight_decay,
                                                         warmup_fraction=config.warmup_fraction,
                                                         ema_decay=config.ema_decay,
                                                         focal_gamma=config.focal_gamma,
                                                         precise_bn_batches=config.precise_bn_batches))
        result = fit(module, network, train_loader, val_loader, run_dir, settings, mode="max")
        if not result.is_global_zero:  # under DDP, one process writes the model and the report
            return RunResult(run_dir)
        train_seconds, best_epoch = result.train_seconds, result.best_epoch
        training = {**result.info, "best_val_dice_network_size": result.best_score, "lr": config.lr,
                    "weight_decay": config.weight_decay, "ema_decay": config.ema_decay,
                    "focal_gamma": config.focal_gamma, "augment": config.augment,
                    "scanner_augment": config.scanner_augment, "include_normal": config.include_normal}
        model_dir = new_model_dir(run_dir)
        meta = self._write_model(model_dir, network, config, resolved_args, prep, checksum, split, training)
        write_training_hashes(model_dir, train_hashes, train_phashes)

        # Postprocessing chosen on the validation images at their original size.
        from breastdx.inference.predictor import SegmentationPredictor

        # Validation and test run in the dtype the model folder will say was validated.
        predictor = SegmentationPredictor.from_dir(model_dir, task=self.name, dtype=config.inference_dtype)
        choice, val_table = self._choose_postprocessing(predictor, val_cases, config)
        meta["postprocessing"] = choice["postprocessing"]
        meta["validation_metrics"] = choice["metrics"]
        meta = self._rewrite_meta(model_dir, meta)

        predictor = SegmentationPredictor.from_dir(model_dir, task=self.name, dtype=config.inference_dtype)
        evaluation = self._evaluate_cases(predictor, test_cases, config.n_bootstrap, config.seed, groups=split.groups)
        split_text = (f"test split of {SPLIT_FILE} (grouped by near-duplicates; n = {len(test_cases)}: "
                      f"{self._class_text(test_cases)})")
        metrics = {"task": self.name, "split": split_text, "n": len(test_cases), "model": "model/",
                   "threshold": meta["threshold"], "postprocessing": meta["postprocessing"],
                   "metrics": evaluation["metrics"], **self._group_record(evaluation),
                   "validation_metrics": choice["metrics"], "training": training,
                   "benchmark": {"dice_target": TARGET_DICE, "dice": evaluation["metrics"]["dice"]["value"]}}
        write_json(metrics, run_dir / "metrics.json")
        from breastdx.evaluation.segmentation import write_per_image_csv

        write_per_image_csv(evaluation["scores"], run_dir / "test_per_image.csv")
        meta["metrics"] = evaluation["metrics"]
        meta["metrics_split"] = split_text
        meta = self._rewrite_meta(model_dir, meta)
        self._write_card(model_dir, meta, split, test_cases, metrics.get("metrics_by_group"))

        write_lesion_report(run_dir, predictor, evaluation, metrics, training, val_table, config.n_bootstrap,
                            title="breastdx — BUSI lesion segmentation (training run)")
        rows = [[k, ci_text(evaluation["metrics"][k])] for k in REPORT_METRICS if k in evaluation["metrics"]]
        dice = evaluation["metrics"]["dice"]["value"]
        notes = [
            f"{config.arch} trained {training['epochs_run']} epoch(s) in {train_seconds / 60:.1f} min "
            f"(best epoch {best_epoch}); postprocessing chosen on validation: {meta['postprocessing']}.",
            f"Benchmark: test Dice {dice:.3f} over benign + malignant images (target >= {TARGET_DICE}).",
            SCORE_TERMS,
            f"Run folder: {run_dir}",
        ]
        return RunResult(run_dir, metrics, f"BUSI segmentation, test split (n = {len(test_cases)}): value [95% CI]",
                         [["metric", "value [95% CI]"], *rows], notes)

    @staticmethod
    def _class_text(cases: Sequence[Any]) -> str:
        from breastdx.data.busi import BUSI_CLASSES

        return ", ".join(f"{sum(c.label == k for c in cases)} {k}" for k in BUSI_CLASSES)

    def _write_model(self, model_dir: Path, network: Any, config: BusiSegConfig, arch_args: dict[str, Any],
                     prep: Any, checksum: str, split: Any, training: dict[str, Any]) -> dict[str, Any]:
        from breastdx.inference.predictor import WEIGHTS_FILE, Postprocessing, save_weights
        from breastdx.models.networks import count_parameters
        from breastdx.models.saved import write_meta

        save_weights(network, model_dir / WEIGHTS_FILE)
        shutil.copyfile(split.path, model_dir / SPLIT_FILE)
        return write_meta(model_dir, {
            "task": self.name,
            "architecture": config.arch,
            "architecture_args": arch_args,
            "in_channels": prep.channels,
            "n_parameters": count_parameters(network),
            "weights_file": WEIGHTS_FILE,
            "class_names": list(CLASS_NAMES),
            "positive_class": "lesion",
            "preprocessing": prep.to_meta(),
            "threshold": 0.5,
            "postprocessing": Postprocessing().to_meta(),
            # What was validated, not what to force: the dtype used is chosen per machine (breastdx.runtime).
            "inference": {"validated_dtypes": sorted({"float32", config.inference_dtype}), "tta": config.tta},
            "output": "per-pixel lesion probability (softmax over background, lesion), resized bilinearly to the "
                      "original image size, then thresholded and cleaned by 'postprocessing'",
            "metrics": {},
            "metrics_split": "",
            "seed": config.seed,
            "data": "BUSI (Al-Dhabyani et al. 2020, doi:10.1016/j.dib.2019.104863)",
            "data_checksum": checksum,
            "split_file": SPLIT_FILE,
            "split_seed": split.seed,
            "split_method": split.method,
            "training": training,
            "training_config": to_dict(config),
        })

    @staticmethod
    def _rewrite_meta(model_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
        from breastdx.models.saved import write_meta

        return write_meta(model_dir, {k: v for k, v in meta.items() if k != "schema_version"})

    # ------------------------------------------------------------ evaluation
    @staticmethod
    def _predict_cases(predictor: Any, cases: Sequence[Any], keep_prob: bool, seen: list[str] | None = None):
        """Predict BUSI cases at their original size; return outputs and reference masks. ``seen``, when given,
        gets each image's :func:`breastdx.inference.base.seen_in_training`."""
        from breastdx.data.busi import load_case
        from breastdx.inference.base import seen_in_training

        outputs, targets = [], []
        bs = predictor.batch_size
        for start in range(0, len(cases), bs):
            loaded = [load_case(c, mode=predictor.preprocessing.mode) for c in cases[start:start + bs]]
            outputs.extend(predictor.predict([im for im, _ in loaded], keep_prob=keep_prob))
            targets.extend(m for _, m in loaded)
            if seen is not None:
                seen.extend(seen_in_training(predictor, im) or "no" for im, _ in loaded)
        return outputs, targets

    def _choose_postprocessing(self, predictor: Any, val_cases: Sequence[Any], config: BusiSegConfig):
        """Compare :data:`POSTPROCESSING_GRID` on the validation images by mean Dice over all images.

        Lesion-free images score 1 when the prediction is empty and 0 otherwise (Dice's convention), so the
        choice weighs lesion outlines and false alarms on normal images together.
        """
        from breastdx.evaluation.segmentation import case_scores, summarize_segmentation
        from breastdx.inference.predictor import Postprocessing

        outputs, targets = self._predict_cases(predictor, val_cases, keep_prob=True)
        labels = [c.label for c in val_cases]
        rows, best = [], None
        for keep_largest, min_frac in POSTPROCESSING_GRID:
            post = Postprocessing(threshold=predictor.postprocessing.threshold, keep_largest=keep_largest,
                                  min_area_fraction=min_frac)
            scores = [case_scores(post.apply(o.prob)[0], t) for o, t in zip(outputs, targets)]
            overall = float(np.mean([s["dice"] for s in scores])) if scores else float("nan")
            summary = summarize_segmentation(scores, labels, n_boot=config.n_bootstrap, seed=config.seed)
            rows.append([f"keep_largest={keep_largest}, min_area_fraction={min_frac}", overall,
                         summary["dice"]["value"], summary.get("normal_fp_share", {}).get("value")])
            if best is None or overall > best["score"] + 1e-9:
                best = {"score": overall, "postprocessing": post.to_meta(), "metrics": summary}
        return best or {"score": float("nan"), "postprocessing": Postprocessing().to_meta(), "metrics": {}}, rows

    def _evaluate_cases(self, predictor: Any, cases: Sequence[Any], n_boot: int, seed: int,
                        seen: list[str] | None = None, groups: Sequence[Sequence[str]] = ()) -> dict[str, Any]:
        """Scores and summary of ``cases``; with ``metrics_by_group`` (intervals from resampling the near-duplicate
        ``groups``, :func:`breastdx.pipeline.seg_crossval.group_intervals`) when two images of one group are among
        them: resampling images would treat the frames of one lesion as independent."""
        from breastdx.evaluation.segmentation import case_scores, summarize_segmentation
        from breastdx.pipeline.seg_crossval import group_intervals

        outputs, targets = self._predict_cases(predictor, cases, keep_prob=False, seen=seen)
        scores = [case_scores(o.mask, t) for o, t in zip(outputs, targets)]
        for s, c, o in zip(scores, cases, outputs):
            s.update({"case": c.name, "label": c.label, "max_prob": o.max_prob, "n_components": o.n_components,
                      **({} if o.p_normal is None else {"p_normal": o.p_normal})})
        labels = [c.label for c in cases]
        out = {"scores": scores, "cases": list(cases), "labels": labels,
               "metrics": summarize_segmentation(scores, labels, n_boot=n_boot, seed=seed)}
        names = {c.name for c in cases}
        if any(len(names.intersection(g)) > 1 for g in groups):
            out["metrics_by_group"] = group_intervals(scores, [list(g) for g in groups], n_boot=n_boot, seed=seed)
        return out

    @staticmethod
    def _group_record(evaluation: dict[str, Any]) -> dict[str, Any]:
        """``metrics_by_group`` and its note for metrics.json, when the evaluated images hold near-duplicate groups."""
        if "metrics_by_group" not in evaluation:
            return {}
        n = next(iter(evaluation["metrics_by_group"].values()))["n_groups"]
        return {"metrics_by_group": evaluation["metrics_by_group"],
                "metrics_by_group_note": f"95% intervals from resampling lesions, the frames of a near-duplicate "
                                         f"group together ({n} units among the lesion images): the intervals to "
                                         f"quote, since 'metrics' resamples images as if the frames of one lesion "
                                         f"were independent"}

    def _write_card(self, model_dir: Path, meta: dict[str, Any], split: Any, test_cases: Sequence[Any],
                    by_group: dict[str, Any] | None = None) -> None:
        from breastdx.data.busi import data_card_line
        from breastdx.models.saved import write_model_card
        from breastdx.training.trainer import resumed_note

        tr = meta["training"]
        args = ", ".join(f"{k}={v}" for k, v in meta["architecture_args"].items())
        post = meta["postprocessing"]
        write_model_card(
            model_dir, meta, title="BUSI ultrasound lesion segmentation",
            summary=(f"{meta['architecture']} ({args}; {meta['n_parameters']:,} parameters), input "
                     f"{meta['preprocessing']['image_size']}x{meta['preprocessing']['image_size']} gray, 2 classes "
                     f"(background, lesion), Dice + cross-entropy loss, AdamW, {tr['epochs_run']} epochs"
                     f"{resumed_note(tr)} "
                     f"({tr['train_seconds'] / 60:.0f} min, best epoch {tr['best_epoch']}, precision "
                     f"{tr['precision']}). Output: lesion mask at the original image size (threshold "
                     f"{meta['threshold']}, keep_largest={post['keep_largest']}, "
                     f"min_area_fraction={post['min_area_fraction']}, chosen on validation)."),
            data=(data_card_line(split.n_cases(), "; normal / benign / malignant with expert lesion masks") + "\n"
                  f"- Split: `{SPLIT_FILE}` (seed {split.seed}, ratios {list(split.ratios)}, method "
                  f"{split.method}): near-duplicate "
                  f"frames grouped so that no group crosses train / val / test; {split.excluded_text()}. "
                  f"Train {len(split.train)}, val "
                  f"{len(split.val)}, test {len(split.test)} cases.\n"
                  f"- Preprocessing: {meta['preprocessing']['description']}."
                  + (f"\n- A smoke run (--max-cases {smoke}): at most {smoke} evenly spaced cases of each split were "
                     f"trained on, validated on and tested ({len(test_cases)} test cases), not all."
                     if (smoke := meta.get("training_config", {}).get("max_cases")) else "")),
            evaluation=(f"Test images ({self._class_text(test_cases)}), per class as well, with 95% "
                        f"percentile-bootstrap CIs over images. {SCORE_TERMS}"
                        + (f" The test images hold several frames of some lesions: resampling lesions instead "
                           f"(the frames of one together; {by_group['dice']['n_groups']} units), Dice "
                           f"{ci_text(by_group['dice'])}, the interval to quote." if by_group and "dice" in by_group
                           else "")
                        + (f" Validation images (used to pick the epoch and the postprocessing): Dice "
                           f"{ci_text(meta['validation_metrics']['dice'])}."
                           if meta.get("validation_metrics", {}).get("dice") else "")),
            limitations=[
                "One public dataset from one hospital and one period; no external validation. Performance on "
                "other scanners, settings and populations is unknown.",
                "Trained on images with at most a few lesions; multi-lesion images are rare (18 in BUSI).",
                "Images are resized to a square without keeping the aspect ratio; very thin structures may be lost.",
                "Burned-in calipers and text are present in many BUSI images; the model may have learned to use them.",
                "Pixel spacing is not known for BUSI PNGs: areas and HD95 are in pixels (mm only for DICOM input "
                "with PixelSpacing).",
                "Research use only; not for diagnosis.",
            ])

    # --------------------------------------------------------------- evaluate
    def evaluate(self, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str]) -> RunResult:
        from breastdx.data.busi import find_busi_root, scan_busi
        from breastdx.data.splits import busi_split
        from breastdx.inference.base import logged_overlap, overlap_notes, overlap_summary, split_advice
        from breastdx.inference.predictor import SegmentationPredictor
        from breastdx.runs import write_json, write_versions

        o = parse_options(SegEvaluateOptions, options, f"evaluate {self.name}")
        which, seed, n_boot, batch = o.split, o.seed, o.n_bootstrap, o.batch_size
        predictor = SegmentationPredictor.from_dir(model_dir, task=self.name, batch_size=batch, tta=o.tta or None,
                                                   **runtime_options(options))
        presence = self._presence(predictor, o, options)
        if o.external:
            from breastdx.evaluation.external_segmentation import evaluate_external_segmentation

            return evaluate_external_segmentation(self, predictor, model_dir, run_dir, o)
        split_path = Path(o.split_file) if o.split_file else Path(model_dir) / SPLIT_FILE
        if not split_path.is_file():
            raise FileNotFoundError(f"{split_path}: no split file; pass --split-file (the split.json of the "
                                    f"training run).")
        split = busi_split(data_root, split_path, reuse_only=True)
        split.to_json(run_dir / SPLIT_FILE)
        by_name = {c.name: c for c in scan_busi(find_busi_root(data_root))}
        cases = [by_name[n] for n in split.split(which)]
        save_yaml({"task": self.name, "model": str(model_dir), **to_dict(o), "split_file": str(split_path),
                   "tta": predictor.tta, "data_root": str(data_root),  # every option as resolved: tta as used
                   "data_checksum": split.data_checksum}, run_dir / "config.yaml")
        write_versions(run_dir)
        seen: list[str] | None = [] if getattr(predictor, "training_hashes", None) else None
        evaluation = self._evaluate_cases(predictor, cases, n_boot, seed, seen, groups=split.groups)
        split_text = f"{which} split of {split_path.name} (n = {len(cases)}: {self._class_text(cases)})"
        metrics = {"task": self.name, "split": split_text, "n": len(cases), "model": str(model_dir),
                   "threshold": predictor.postprocessing.threshold, "tta": predictor.tta,
                   "postprocessing": predictor.postprocessing.to_meta(), **presence, "metrics": evaluation["metrics"],
                   **self._group_record(evaluation)}
        if seen is not None:
            metrics["training_overlap"] = logged_overlap(overlap_summary(seen, split_advice(model_dir, split_path,
                                                                                             which)))
        write_json(metrics, run_dir / "metrics.json")
        from breastdx.evaluation.segmentation import write_per_image_csv

        write_per_image_csv(evaluation["scores"], run_dir / f"{which}_per_image.csv")
        write_lesion_report(run_dir, predictor, evaluation, metrics, None, None, n_boot,
                            title="breastdx — BUSI lesion segmentation (evaluation)")
        rows = [[k, ci_text(evaluation["metrics"][k])] for k in REPORT_METRICS if k in evaluation["metrics"]]
        return RunResult(run_dir, metrics, f"BUSI segmentation, {which} split (n = {len(cases)}): value [95% CI]",
                         [["metric", "value [95% CI]"], *rows],
                         [f"Split: {split_text}", SCORE_TERMS, *overlap_notes(metrics), f"Run folder: {run_dir}"])

    # ---------------------------------------------------------------- predict
    def predict(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        """Segment images; write ``masks/``, ``overlays/`` and ``predictions.csv``.

        Options: :class:`PredictOptions`, and the command's ``--dtype`` and ``--backend``.
        """
        from breastdx.inference.predictor import SegmentationPredictor
        from breastdx.inference.scope import scope_cell
        from breastdx.inference.writers import write_segmentation_predictions

        o = parse_options(PredictOptions, options, f"predict {self.name}")
        predictor = SegmentationPredictor.from_dir(model_dir, task=self.name, batch_size=o.batch_size,
                                                   tta=o.tta or None, **runtime_options(options))
        presence = self._presence(predictor, o, options)
        rows, failures, seconds = write_segmentation_predictions(predictor, inputs, run_dir, overlays=o.overlays,
                                                                 workers=o.workers)
        out_csv = run_dir / "predictions.csv"
        table = [["image", "lesion", "area (px)", "area (mm²)", "longest (mm)", "max P(lesion)", "in scope"]] + [
            [Path(r["source"]).name, "yes" if r["lesion_found"] else "no", r["lesion_area_px"],
             r["lesion_area_mm2"] or "n/a", r["lesion_max_diameter_mm"] or "n/a", f"{r['max_prob']:.3f}",
             scope_cell(r)] for r in rows[:50]]
        notes = [f"{len(rows)} image(s) segmented in {seconds:.1f} s ({len(rows) / max(seconds, 1e-9):.1f} images/s, "
                 f"model {predictor.meta['architecture']}); wrote {out_csv}, masks/"
                 + (", overlays/" if o.overlays else "")]
        if len(rows) > 50:
            notes.insert(0, f"(first 50 of {len(rows)} shown)")
        if presence:
            gated = sum(1 for r in rows if r.get("p_normal", 0) >= o.presence_threshold)
            notes.append(f"Presence gate: {presence['presence']['model']} called {gated} image(s) normal "
                         f"(P(normal) >= {o.presence_threshold}); their masks are empty (column p_normal).")
        return RunResult(run_dir, {}, "BUSI lesion segmentation", table, notes, failures)

    @staticmethod
    def _presence(predictor: Any, o: Any, options: dict[str, str]) -> dict[str, Any]:
        """Attach the presence gate that ``--presence-model`` asks for; its record for ``metrics.json`` (empty
        without one)."""
        if not o.presence_model:
            return {}
        from breastdx.inference.presence import load_gate

        predictor.presence = load_gate(o.presence_model, o.presence_threshold, batch_size=predictor.batch_size,
                                       image_mode=predictor.preprocessing.mode, **runtime_options(options))
        return {"presence": {"model": o.presence_model, "threshold": o.presence_threshold,
                             "rule": f"mask emptied where P(normal) of {o.presence_model} >= {o.presence_threshold}"}}
