"""MoNuSeg breast nuclei: instance segmentation of H&E tiles, then the Street et al. nucleus features of each tile.

``breastdx train monuseg`` trains a MONAI U-Net with three outputs (background, nucleus interior, nucleus boundary;
:mod:`breastdx.data.nucleus_patches`; Dice + focal loss) on random patches of the 6 breast training tiles of
MoNuSeg 2018 (:mod:`breastdx.data.monuseg`), with stain (HED), brightness / contrast, flip and 90° augmentation. The
bottom ``val_rows`` rows of every training tile are held out: they pick the epoch (foreground Dice) and the watershed
thresholds (AJI). The 2 breast test tiles give the test scores: foreground Dice, AJI (Kumar et al. 2017) and panoptic
quality (Kirillov et al. 2019; a match is a pair of nuclei with IoU > 0.5), per tile and as a mean over the two tiles
(:mod:`breastdx.evaluation.instances`). ``predict`` writes, per tile, the instance mask, an overlay of the outlines,
the per-nucleus features and a row of the per-tile 30 cytology columns (:mod:`breastdx.morphometry`).

The held-out rows share their tile's slide and stain, so a recipe (stain normalisation, augmentation) is chosen by
``--cv-folds 3`` instead: each TCGA tissue source site's training tiles held out whole in turn and scored by the model
trained on the others (:mod:`breastdx.pipeline.nuclei_crossval`; the test tiles are not read).

The cytology classifier (``wdbc``) was trained on fine-needle aspirates, not tissue sections: its decision is never
applied to these features (:data:`CYTOLOGY_NOTE`).

Targets (issue 17): Dice >= 0.80 and AJI >= 0.60 on the 2 breast test tiles. For reference, on the 14 MoNuSeg test
tiles of all organs: CDNet 0.832 / 0.633, HoVer-Net 0.826 / 0.618, U-Net 0.818 / 0.591.

References:
    Kumar, N. et al. (2017). IEEE Trans Med Imaging 36(7):1550-1560. doi:10.1109/TMI.2017.2677499
    Kumar, N. et al. (2020). IEEE Trans Med Imaging 39(5):1380-1391. doi:10.1109/TMI.2019.2947628
    Kirillov, A. et al. (2019). Panoptic segmentation. CVPR. doi:10.1109/CVPR.2019.00963
    Lin, T.-Y. et al. (2017). Focal loss for dense object detection. ICCV. doi:10.1109/ICCV.2017.324
    Street, W. N., Wolberg, W. H. & Mangasarian, O. L. (1993). Proc. SPIE 1905:861-870. doi:10.1117/12.148698
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.config import (ConfigError, option, parse_json_object, parse_options, runtime_options, save_yaml, to_dict,
                             validate)
from breastdx.evaluation.nuclei_report import (CYTOLOGY_NOTE, TARGETS, benchmark_notes, evaluate_tiles, score_table,
                                               write_card, write_outputs)
from breastdx.pipeline.task import TASKS, RunResult, Task
from breastdx.training.options import LightningOptions

log = logging.getLogger(__name__)

TASK_NAME = "monuseg"
MODEL_KIND = "nucleus_instances"
"""``meta.json`` kind: read by :class:`breastdx.inference.nuclei.NucleusPredictor`, which
:func:`breastdx.inference.base.load_predictor` (and so the service) picks for such a folder."""
POSTPROCESSING_GRID = tuple((s, f, m) for s in (0.5, 0.6, 0.7, 0.8) for f in (0.4, 0.5, 0.6) for m in (8, 20, 40))
"""``(seed_threshold, foreground_threshold, min_seed)`` candidates compared by AJI on the held-out rows."""
DISTANCE_GRID = tuple((s, f, m, {"markers": "distance"}) for s in (0.3, 0.4, 0.5, 0.6, 0.7) for f in (0.4, 0.5, 0.6)
                      for m in (8, 20, 40))
"""Candidates with markers from the distance output (a model trained with ``--distance-weight``), compared on the
held-out rows beside :data:`POSTPROCESSING_GRID`."""


def postprocessing_grid(meta: dict[str, Any]) -> tuple[tuple, ...]:
    """The watershed candidates of a model: :data:`POSTPROCESSING_GRID`, and :data:`DISTANCE_GRID` when it has a
    distance output (``meta["extra_outputs"]``)."""
    return POSTPROCESSING_GRID + (DISTANCE_GRID if "distance" in meta.get("extra_outputs", ()) else ())


TTA_CHOICES = ("none", "flip", "d8")
"""Test-time augmentations compared on the held-out rows, cheapest first
(:data:`breastdx.inference.nuclei.TTA_TRANSFORMS`)."""
TTA_MARGIN = 0.002
"""Held-out AJI by which a costlier test-time augmentation must beat the best cheaper one to be chosen."""
@dataclass(frozen=True)
class MonusegConfig(LightningOptions):
    """Options of ``breastdx train monuseg``, besides the :class:`~breastdx.training.options.LightningOptions`.
    The defaults are those of the shipped model.

    Attributes:
        seed: Seed of weights, patches and augmentation.
        arch_args: Arguments of MONAI's U-Net that differ from this task's (JSON object).
        patch_size: Side of the training patches, pixels.
        patches_per_epoch: Random patches per epoch.
        epochs: Epochs.
        batch_size: Patches per step.
        lr: Peak learning rate (AdamW, warm-up then cosine decay).
        weight_decay: AdamW weight decay.
        warmup_fraction: Fraction of the steps spent warming up.
        ema_decay: Per-step decay of the moving average of the weights (0: none).
        precise_bn_batches: Recent training batches over which the batch-norm statistics of the averaged weights
            are recomputed before each validation (0: the averaged statistics; see
            :mod:`breastdx.training.segmentation`).
        patience: Epochs without a better validation Dice before stopping (0: never).
        val_rows: Bottom rows of each training tile held out for validation (a multiple of 16).
        boundary_width: Width of the boundary class inside each nucleus, pixels.
        focal_gamma: 0: Dice + cross-entropy loss; > 0: Dice + softmax focal loss of this gamma (Lin et al. 2017),
            which weighs faint, hard pixels more (:class:`breastdx.training.segmentation.OptimConfig`); 2, chosen by
            leave-site-out cross-validation (out-of-fold AJI 0.612 against 0.589 with cross-entropy, 6 of 6 tiles).
        distance_weight: 0: none; > 0: a fourth output, each nucleus's distance to its outline scaled to 1
            (:func:`breastdx.data.nucleus_patches.nucleus_distance`), trained by binary cross-entropy at this weight
            beside the class loss; the held-out rows then choose between markers from ``P(interior)`` and from the
            distance (:data:`DISTANCE_GRID`).
        all_rows: Train on the held-out rows too; they still choose the epoch, the augmentation and the watershed,
            but having been seen, they choose optimistically (judge it with ``--cv-folds``).
        augment: Stain, brightness / contrast, flip and rotation augmentation.
        hed_sigma: Half-range of the HED stain factor (0.2 is Tellez et al.'s "HED-strong").
        hed_bias: Half-range of the HED optical-density shift.
        blur_sigma: Largest sigma, pixels, of the Gaussian blur given to half the patches (0: none).
        scale: Half-range of the zoom factor of the patches (0: none).
        pale_nuclei: Largest fading of the nuclei's haematoxylin in half the patches (0: none;
            :class:`breastdx.data.nucleus_patches.PatchAugment`).
        stain_normalisation: ``none``, or ``macenko``: every tile, in training and prediction, normalised to the
            first training tile (Macenko et al. 2009); the model folder keeps the fitted stain matrix and maximal
            concentrations in ``meta.json``, not the tile.
        holdout_tiles: Training tiles (names, comma-separated) kept out of training whole and scored in place of
            the test tiles, which are then not read: one fold of a leave-tiles-out cross-validation.
        recipe_choice: JSON files written by ``benchmarks/monuseg_cv_compare.py --json`` (comma-separated): the
            cross-validation comparisons that chose this recipe, kept in ``meta.json`` and stated in the model card.
        cv_folds: ``K >= 2``: leave-tiles-out cross-validation of this recipe: the training tiles cut into ``K``
            folds of whole tiles, one run per fold (:mod:`breastdx.pipeline.nuclei_crossval`); the test tiles are
            not read.
        cv_workers: Folds of ``--cv-folds`` trained at once, each in its own process with ``--threads`` threads
            (1: one after the other, in this process); the runs and scores are the same either way.
        crop: Use only the top-left ``crop`` x ``crop`` pixels of every tile (0: whole tiles), for smoke tests.
        max_tiles: Training tiles used (0: all), for smoke tests.
        roi_size: Sliding-window side at inference, pixels (a multiple of 16).
        overlap: Sliding-window overlap at inference.
        microns_per_pixel: Resolution of the tiles (MoNuSeg 40x: 0.25), the model's; the test tiles' morphometry
            is measured at the resolution each annotation states (0.2456-0.2485 on the breast tiles), at this one
            where it states none.
        tta: Test-time augmentation of the saved model: ``none``, ``flip`` (4 symmetries), ``d8`` (all 8), or
            ``choose``: the one of best held-out AJI, a costlier one only when it gains more than
            :data:`TTA_MARGIN` over the best cheaper one (chosen together with the watershed thresholds;
            :func:`breastdx.training.nuclei.choose_inference`).
    """

    seed: int = 0
    arch_args: str = ""
    patch_size: int = option(128, ge=32, multiple_of=16)
    patches_per_epoch: int = option(400, ge=1)
    epochs: int = option(100, ge=1)
    batch_size: int = option(8, ge=1)
    lr: float = option(2e-3, gt=0)
    weight_decay: float = option(1e-4, ge=0)
    warmup_fraction: float = option(0.03, ge=0, lt=1)
    ema_decay: float = option(0.995, ge=0, lt=1)
    precise_bn_batches: int = option(0, ge=0)
    patience: int = option(0, ge=0)
    val_rows: int = option(256, ge=16, multiple_of=16)
    boundary_width: int = option(2, ge=1)
    focal_gamma: float = option(2.0, ge=0)
    distance_weight: float = option(0.0, ge=0)
    all_rows: bool = False
    augment: bool = True
    hed_sigma: float = option(0.1, ge=0, lt=1)
    hed_bias: float = option(0.05, ge=0)
    blur_sigma: float = option(0.0, ge=0)
    scale: float = option(0.0, ge=0, lt=0.5)
    pale_nuclei: float = option(0.0, ge=0, le=1)
    stain_normalisation: str = option("macenko", choices=("none", "macenko"))
    holdout_tiles: str = ""
    recipe_choice: str = ""
    cv_folds: int = option(0, ge=0)
    cv_workers: int = option(1, ge=1)
    crop: int = option(0, ge=0)
    max_tiles: int = option(0, ge=0)
    roi_size: int = option(544, ge=32, multiple_of=16)
    overlap: float = option(0.125, ge=0, lt=1)
    microns_per_pixel: float = option(0.25, gt=0)
    tta: str = option("choose", choices=("choose", *TTA_CHOICES))


UNET_ARGS = {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 1, "norm": "batch"}


@dataclass(frozen=True)
class MonusegEvaluateOptions:
    """Options of ``breastdx evaluate monuseg``.

    Attributes:
        split: ``test`` (the 2 test tiles) or ``train`` (the 6 training tiles, whole).
    """

    split: str = option("test", choices=("train", "test"))


@dataclass(frozen=True)
class MonusegPredictOptions:
    """Options of ``breastdx predict monuseg``.

    Attributes:
        microns_per_pixel: Resolution of the tiles, µm per pixel, at most 10 (0: unknown, pixels only; -1, the
            default: a DICOM tile's pixel spacing, else the model's). One more than 25% from the model's is flagged
            out of scope, as a file's is.
        roi_size: Sliding-window side, pixels (0: the model's).
        overlap: Sliding-window overlap (negative: the model's).
        overlays: Write an overlay PNG of the outlines per tile.
        tta: Test-time augmentation: ``none``, ``flip`` or ``d8`` (empty: the model's; ``none`` is 8 times
            faster in the network than ``d8``).
        threads: Torch threads (set by the command line; 0: PyTorch's default).
    """

    microns_per_pixel: float = option(-1.0, ge=-1, le=10)  # 10 µm: MAX_FILE_MICRONS_PER_PIXEL, not a microscope's
    roi_size: int = option(0, ge=0, multiple_of=16)
    overlap: float = option(-1.0, lt=1)
    overlays: bool = True
    tta: str = option("", choices=("", *TTA_CHOICES))
    threads: int = option(0, ge=0)


@dataclass(frozen=True)
class MonusegCalibrateOptions:
    """Options of ``breastdx calibrate monuseg``.

    Attributes:
        tta: ``choose`` (as training: the test-time augmentation of best held-out AJI) or one of
            :data:`TTA_CHOICES`.
        threads: Torch threads (set by the command line; 0: PyTorch's default).
    """

    tta: str = option("choose", choices=("choose", *TTA_CHOICES))
    threads: int = option(0, ge=0)


def _tta_modes(tta: str) -> tuple[str, ...]:
    """The test-time augmentations a ``--tta`` value compares on the held-out rows (``choose``: all, cheapest first)."""
    return TTA_CHOICES if tta == "choose" else (tta,)


def _train_and_test_tiles(cases: list[Any], config: MonusegConfig) -> tuple[list[Any], list[Any], str]:
    """The training tiles, the scored tiles and the words for the latter: the test tiles, or with ``holdout_tiles``
    the named training tiles (the test tiles then unread).

    Raises:
        ConfigError: If ``holdout_tiles`` names a tile that is not a training tile, or leaves none to train on.
    """
    train = [c for c in cases if c.part == "train"]
    held = [n.strip() for n in config.holdout_tiles.split(",") if n.strip()]
    if not held:
        test = [c for c in cases if c.part == "test"]
        return train[:config.max_tiles or None], test, (f"the {len(test)} MoNuSeg 2018 breast test tiles "
                                                        f"({', '.join(c.name for c in test)})")
    names = [c.name for c in train]
    unknown = [n for n in held if n not in names]
    if unknown:
        raise ConfigError(f"--holdout-tiles names {', '.join(unknown)}, not training tiles of MoNuSeg; the training "
                          f"tiles are {', '.join(names)}.")
    rest = [c for c in train if c.name not in held][:config.max_tiles or None]
    if not rest:
        raise ConfigError(f"--holdout-tiles holds out every training tile ({', '.join(held)}); none is left to "
                          f"train on.")
    test = [c for c in train if c.name in held]
    return rest, test, (f"the {len(test)} held-out MoNuSeg 2018 breast training tiles "
                        f"({', '.join(c.name for c in test)}): whole tiles kept out of training (leave-tiles-out "
                        f"cross-validation); the test tiles were not read")


def validation_start(split: dict[str, Any]) -> int:
    """First held-out row of the training tiles, from a model's ``split.json`` (``validation_rows``; model folders
    written before ``--all-rows`` have only ``training_rows``, which then end there)."""
    return int(split.get("validation_rows", split["training_rows"][1:])[0])


def _crop(a: np.ndarray, crop: int) -> np.ndarray:
    return a[:crop, :crop] if crop else a


@TASKS.register(TASK_NAME)
class MonusegTask(Task):
    """Nucleus instance segmentation and morphometry on MoNuSeg breast tiles."""

    name = TASK_NAME
    title = "MoNuSeg breast nuclei: instance segmentation and morphometry"
    config_cls = MonusegConfig

    def options_cls(self, verb: str) -> type | None:
        """The declared options of ``verb``."""
        return {"train": MonusegConfig, "evaluate": MonusegEvaluateOptions,
                "predict": MonusegPredictOptions, "calibrate": MonusegCalibrateOptions}.get(verb)

    # ------------------------------------------------------------------ train
    def train(self, config: MonusegConfig, data_root: Path, run_dir: Path) -> RunResult:
        from breastdx.data.monuseg import (case_microns_per_pixel, find_monuseg_root, load_case, monuseg_checksum,
                                           scan_monuseg)
        from breastdx.data.nucleus_patches import CLASS_NAMES, NucleusCrops, NucleusPatches, PatchAugment
        from breastdx.data.nucleus_patches import nucleus_distance, nucleus_targets
        from breastdx.inference.nuclei import NucleusPredictor, Windows
        from breastdx.models.networks import build_network
        from breastdx.pipeline.nuclei_crossval import cross_validate_monuseg, read_recipe_choice
        from breastdx.runs import new_model_dir, seed_everything, write_json, write_versions
        from breastdx.training.nuclei import NucleusModule, choose_inference
        from breastdx.training.segmentation import OptimConfig
        from breastdx.training.trainer import FitSettings, fit, make_loaders

        validate(config, self.name)
        recipe_choice = read_recipe_choice(config.recipe_choice)
        if config.cv_folds:
            return cross_validate_monuseg(self, config, data_root, run_dir)
        arch_args = {**UNET_ARGS, **parse_json_object(config.arch_args, "arch-args")}
        try:  # before any work: an unknown argument, or a value of the wrong kind (MONAI's checks)
            build_network("unet", 3, len(CLASS_NAMES) + 1, **arch_args)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"Option --arch-args: {e}") from None
        seed_everything(config.seed)
        root = find_monuseg_root(data_root)
        cases = scan_monuseg(root)
        checksum = monuseg_checksum(cases)
        train_cases, test_cases, split_text = _train_and_test_tiles(cases, config)
        save_yaml({"task": self.name, **to_dict(config), "data_root": str(data_root), "data_folder": str(root),
                   "data_checksum": checksum}, run_dir / "config.yaml")
        write_versions(run_dir)
        tiles = [tuple(_crop(a, config.crop) for a in load_case(c)) for c in train_cases]
        images = [t[0] for t in tiles]
        instances = [t[1] for t in tiles]
        height, width = images[0].shape[:2]
        stop = height - config.val_rows
        if stop < config.patch_size:
            raise ConfigError(f"--val-rows {config.val_rows} leaves {stop} rows of {height} for {config.patch_size} "
                              f"px patches; lower --val-rows or --patch-size.")
        train_stop = height if config.all_rows else stop
        split = {"train": [c.name for c in train_cases], "test": [c.name for c in test_cases],
                 **({"test_is_held_out_training_tiles": True} if config.holdout_tiles else {}),
                 "validation": f"rows {stop}-{height} of every training tile ("
                               f"{'also trained on: --all-rows' if config.all_rows else 'held out from the patches'})",
                 "training_rows": [0, train_stop], "validation_rows": [stop, height], "data_checksum": checksum}
        write_json(split, run_dir / "split.json")
        targets = [nucleus_targets(lab, config.boundary_width) for lab in instances]
        distances = [nucleus_distance(lab) for lab in instances] if config.distance_weight > 0 else None
        normalizer, stain = None, {"method": "none"}
        if config.stain_normalisation == "macenko":
            from breastdx.data.stain import MacenkoNormalizer

            normalizer = MacenkoNormalizer().fit(images[0])
            # The fitted numbers, not the tile: a model folder holds no dataset image.
            stain = {"method": "macenko", "target_source": train_cases[0].name, **normalizer.reference(),
                     "reference": "Macenko et al. (2009), doi:10.1109/ISBI.2009.5193250"}
        net_images = [normalizer(im) for im in images] if normalizer is not None else images
        aug = PatchAugment(hed_sigma=config.hed_sigma, hed_bias=config.hed_bias, blur_sigma=config.blur_sigma,
                           scale=config.scale, pale_nuclei=config.pale_nuclei) if config.augment else None
        train_ds = NucleusPatches(net_images, targets, config.patch_size, config.patches_per_epoch,
                                  rows=(0, train_stop), augment=aug, seed=config.seed, distances=distances)
        crop_w = width // 16 * 16
        val_ds = NucleusCrops(net_images, targets, [(k, stop, 0, config.val_rows, crop_w) for k in range(len(images))],
                              distances=distances)
        settings = FitSettings.from_config(config, monitor="val_dice")
        train_loader, val_loader = make_loaders(train_ds, val_ds, settings)
        val_loader = type(val_loader)(val_ds, batch_size=1, shuffle=False)
        seed_everything(config.seed)
        network, resolved = build_network("unet", 3, len(CLASS_NAMES) + (distances is not None), **arch_args)
        module = NucleusModule(network, OptimConfig(lr=config.lr, weight_decay=config.weight_decay,
                                                    warmup_fraction=config.warmup_fraction,
                                                    ema_decay=config.ema_decay, focal_gamma=config.focal_gamma,
                                                    precise_bn_batches=config.precise_bn_batches),
                              distance_weight=config.distance_weight)
        result = fit(module, network, train_loader, val_loader, run_dir, settings, mode="max")
        if not result.is_global_zero:
            return RunResult(run_dir)
        training = {**result.info, "best_val_dice": result.best_score, "lr": config.lr,
                    "patch_size": config.patch_size, "patches_per_epoch": config.patches_per_epoch,
                    "augment": config.augment, "hed_sigma": config.hed_sigma, "hed_bias": config.hed_bias,
                    "blur_sigma": config.blur_sigma, "scale": config.scale, "focal_gamma": config.focal_gamma,
                    "distance_weight": config.distance_weight, "pale_nuclei": config.pale_nuclei}
        model_dir = new_model_dir(run_dir)
        meta = self._write_model(model_dir, network, resolved, config, checksum, split, training)
        meta = _rewrite_meta(model_dir, {**meta, "stain_normalisation": stain})
        from breastdx.data.checksum import image_hash
        from breastdx.models.saved import write_training_hashes

        write_training_hashes(model_dir, [image_hash(im) for im in images])
        windows = Windows(roi_size=min(config.roi_size, crop_w), overlap=config.overlap)
        predictor = NucleusPredictor(network, meta, windows=windows, normalizer=normalizer)
        tta, choice, grid, tta_rows = choose_inference(predictor, images, instances, stop, _tta_modes(config.tta),
                                                       postprocessing_grid(meta), TTA_MARGIN)
        meta["postprocessing"] = choice
        meta["inference"]["tta"] = tta
        predictor = NucleusPredictor(network, meta, windows=windows, normalizer=normalizer)
        evaluation = evaluate_tiles(predictor, [tuple(_crop(a, config.crop) for a in load_case(c))
                                                      for c in test_cases], [c.name for c in test_cases],
                                          [case_microns_per_pixel(c, config.microns_per_pixel) for c in test_cases])
        meta.update({"metrics": evaluation["summary"], "metrics_split": split_text,
                     "validation": {"postprocessing_grid": grid, "tta": tta_rows},
                     **({"recipe_choice": recipe_choice} if recipe_choice else {})})
        meta = _rewrite_meta(model_dir, meta)
        metrics = {"task": self.name, "split": split_text, "n": len(test_cases), "model": "model/",
                   "matching": "PQ: IoU > 0.5; AJI: each reference nucleus with its predicted nucleus of largest IoU",
                   "metrics": evaluation["summary"], "per_tile": evaluation["tiles"],
                   "postprocessing": choice, "tta": tta, "held_out_aji_per_tta": tta_rows, "training": training,
                   "benchmark": {**{f"{k}_target": v for k, v in TARGETS.items()},
                                 **{k: evaluation["summary"][k]["value"] for k in TARGETS}}}
        write_json(metrics, run_dir / "metrics.json")
        write_card(model_dir, meta, evaluation, grid)
        write_outputs(run_dir, predictor, evaluation, metrics, grid,
                            title="breastdx — MoNuSeg breast nuclei (training run)")
        notes = [f"U-Net trained {training['epochs_run']} epoch(s) in {training['train_seconds'] / 60:.1f} min "
                 f"(best epoch {training['best_epoch']}, validation Dice {result.best_score:.3f}); test-time "
                 f"augmentation {tta} and watershed {choice} chosen on the held-out rows.",
                 *benchmark_notes(evaluation), f"Run folder: {run_dir}"]
        return RunResult(run_dir, metrics, f"MoNuSeg breast {'held-out training' if config.holdout_tiles else 'test'} "
                         f"tiles (n = {len(test_cases)})", score_table(evaluation), notes)

    # ------------------------------------------------------------ reporting
    @staticmethod
    def _write_model(model_dir: Path, network: Any, arch_args: dict[str, Any], config: MonusegConfig,
                     checksum: str, split: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
        from breastdx.data.nucleus_patches import CLASS_NAMES
        from breastdx.inference.nuclei import InstancePostprocessing
        from breastdx.models.networks import count_parameters
        from breastdx.models.saved import WEIGHTS_FILE, save_weights, write_meta
        from breastdx.runs import write_json

        save_weights(network, model_dir / WEIGHTS_FILE)
        write_json(split, model_dir / "split.json")
        return write_meta(model_dir, {
            "task": TASK_NAME, "kind": MODEL_KIND, "architecture": "unet", "architecture_args": arch_args,
            "in_channels": 3,
            "n_parameters": count_parameters(network), "weights_file": WEIGHTS_FILE,
            "class_names": list(CLASS_NAMES), "positive_class": "interior",
            **({"extra_outputs": ["distance"]} if config.distance_weight > 0 else {}),
            "preprocessing": {"description": f"RGB uint8 / 255 -> float32 (3, H, W) in [0, 1]; stain normalisation: "
                                             f"{config.stain_normalisation}"},
            "inference": {"windows": {"roi_size": config.roi_size, "overlap": config.overlap, "batch": 1},
                          "blending": "gaussian", "padding": "reflect", "validated_dtypes": ["float32"]},
            "postprocessing": InstancePostprocessing().to_meta(),
            "microns_per_pixel": config.microns_per_pixel,
            "output": "instance labels: watershed of P(interior) seeds within 1 - P(background) > threshold"
                      + ("; or of distance-output seeds, as postprocessing.markers says" if config.distance_weight > 0
                         else ""),
            "morphometry": "Street, Wolberg & Mangasarian (1993) features; breastdx.morphometry",
            "cytology_note": CYTOLOGY_NOTE,
            "metrics": {}, "metrics_split": "", "seed": config.seed,
            "data": "MoNuSeg 2018 breast tiles (Kumar et al. 2017, 2020; CC BY-NC-SA 4.0)",
            "data_checksum": checksum, "split_file": "split.json", "training": training,
            "training_config": to_dict(config),
        })

    # --------------------------------------------------------------- evaluate
    def evaluate(self, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str]) -> RunResult:
        """Score a model folder on the test (or training) tiles: ``metrics.json``, ``per_tile.csv``,
        ``morphometry.csv``, overlays and ``report.html``."""
        from breastdx.data.monuseg import (case_microns_per_pixel, find_monuseg_root, load_case, monuseg_checksum,
                                           scan_monuseg)
        from breastdx.inference.nuclei import NucleusPredictor
        from breastdx.runs import write_json, write_versions

        o = parse_options(MonusegEvaluateOptions, options, f"evaluate {self.name}")
        predictor = NucleusPredictor.from_dir(model_dir, **runtime_options(options))
        cases = [c for c in scan_monuseg(find_monuseg_root(data_root)) if c.part == o.split]
        checksum = monuseg_checksum(cases)
        save_yaml({"task": self.name, "model": str(model_dir), "split": o.split, "data_root": str(data_root),
                   "data_checksum": checksum}, run_dir / "config.yaml")
        write_versions(run_dir)
        mpp = float(predictor.meta.get("microns_per_pixel") or 0.25)
        evaluation = evaluate_tiles(predictor, [load_case(c) for c in cases], [c.name for c in cases],
                                    [case_microns_per_pixel(c, mpp) for c in cases])
        split_text = f"the {len(cases)} MoNuSeg 2018 breast {o.split} tiles ({', '.join(c.name for c in cases)})"
        metrics = {"task": self.name, "split": split_text, "n": len(cases), "model": str(model_dir),
                   "matching": "PQ: IoU > 0.5; AJI: each reference nucleus with its predicted nucleus of largest IoU",
                   "metrics": evaluation["summary"], "per_tile": evaluation["tiles"],
                   "postprocessing": predictor.postprocessing.to_meta()}
        write_json(metrics, run_dir / "metrics.json")
        write_outputs(run_dir, predictor, evaluation, metrics, None,
                            title="breastdx — MoNuSeg breast nuclei (evaluation)")
        return RunResult(run_dir, metrics, f"MoNuSeg breast {o.split} tiles (n = {len(cases)})",
                         score_table(evaluation), [*benchmark_notes(evaluation), f"Run folder: {run_dir}"])

    # -------------------------------------------------------------- calibrate
    def calibrate(self, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str]) -> RunResult:
        """``breastdx calibrate monuseg``: choose, for a model folder, the test-time augmentation and the watershed
        thresholds on the held-out rows of its training tiles, as training does
        (:func:`breastdx.training.nuclei.choose_inference`), then
        score the test tiles once with them; ``meta.json`` (``inference.tta``, ``postprocessing``, ``metrics``,
        ``validation``) and ``MODEL_CARD.md`` are rewritten, the weights are not touched. The run folder holds
        ``calibration.json``, ``metrics.json`` and the resolved options.

        Raises:
            ConfigError: If the model's split names tiles the data do not hold, or its data checksum differs.
        """
        import json

        from breastdx.data.monuseg import (case_microns_per_pixel, find_monuseg_root, load_case, monuseg_checksum,
                                           scan_monuseg)
        from breastdx.inference.nuclei import NucleusPredictor
        from breastdx.runs import write_json, write_versions
        from breastdx.training.nuclei import choose_inference

        o = parse_options(MonusegCalibrateOptions, options, f"calibrate {self.name}")
        predictor = NucleusPredictor.from_dir(model_dir, **runtime_options(options))
        meta = predictor.meta
        split = json.loads((Path(model_dir) / meta.get("split_file", "split.json")).read_text(encoding="utf-8"))
        cases = {c.name: c for c in scan_monuseg(find_monuseg_root(data_root))}
        missing = [n for n in split["train"] + split["test"] if n not in cases]
        if missing:
            raise ConfigError(f"calibrate monuseg: the model's split names tiles not in the data: {missing}")
        train_cases = [cases[n] for n in split["train"]]
        test_cases = [cases[n] for n in split["test"]]
        crop = int(meta.get("training_config", {}).get("crop", 0))
        expected = split.get("data_checksum", meta.get("data_checksum"))
        if monuseg_checksum(list(cases.values())) != expected:
            raise ConfigError(f"calibrate monuseg: the MoNuSeg tiles under {data_root} are not those {model_dir} was "
                              f"trained on (data checksum {expected}); its held-out rows cannot be rebuilt.")
        tiles = [tuple(_crop(a, crop) for a in load_case(c)) for c in train_cases]
        stop = validation_start(split)
        tta, choice, grid, tta_rows = choose_inference(predictor, [t[0] for t in tiles], [t[1] for t in tiles], stop,
                                                       _tta_modes(o.tta), postprocessing_grid(meta), TTA_MARGIN)
        meta["postprocessing"] = choice
        meta["inference"]["tta"] = tta
        meta["validation"] = {**meta.get("validation", {}), "postprocessing_grid": grid, "tta": tta_rows}
        predictor = NucleusPredictor(predictor.runner or predictor.network, meta, normalizer=predictor.normalizer)
        mpp = float(meta.get("microns_per_pixel") or 0.25)
        evaluation = evaluate_tiles(predictor, [tuple(_crop(a, crop) for a in load_case(c)) for c in test_cases],
                                    [c.name for c in test_cases],
                                    [case_microns_per_pixel(c, mpp) for c in test_cases])
        meta["metrics"] = evaluation["summary"]
        meta = _rewrite_meta(model_dir, meta)
        write_card(model_dir, meta, evaluation, grid)
        record = {"tta": tta, "postprocessing": choice, "held_out_aji_per_tta": tta_rows,
                  "rule": f"best held-out AJI; a costlier augmentation must gain more than {TTA_MARGIN}"}
        write_json(record, run_dir / "calibration.json")
        save_yaml({"task": self.name, "model": str(model_dir), **to_dict(o), "data_root": str(data_root)},
                  run_dir / "config.yaml")
        write_versions(run_dir)
        metrics = {"task": self.name, "split": meta.get("metrics_split", ""), "n": len(test_cases),
                   "model": str(model_dir), "metrics": evaluation["summary"], "per_tile": evaluation["tiles"],
                   "calibration": record}
        write_json(metrics, run_dir / "metrics.json")
        return RunResult(run_dir, metrics, f"MoNuSeg: test-time augmentation {tta} and watershed {choice} chosen on "
                         f"the held-out rows; test tiles (n = {len(test_cases)})", score_table(evaluation),
                         [f"Held-out AJI per augmentation: {tta_rows}.", *benchmark_notes(evaluation),
                          f"Rewrote {Path(model_dir) / 'meta.json'} and MODEL_CARD.md."])

    # ---------------------------------------------------------------- predict
    def predict(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        """Segment and measure tiles (files and folders): per tile ``masks/<tile>.png``, ``overlays/<tile>.png``,
        ``nuclei/<tile>.csv``; ``tile_features.csv`` and ``predictions.csv``
        (:func:`breastdx.inference.nuclei_writer.write_nucleus_predictions`)."""
        import dataclasses

        from breastdx.inference.nuclei import NucleusPredictor
        from breastdx.inference.nuclei_writer import write_nucleus_predictions
        from breastdx.inference.scope import scope_cell, warn_out_of_scope

        o = parse_options(MonusegPredictOptions, options, f"predict {self.name}")
        if -1 < o.microns_per_pixel < 0:  # -1 is the default's mark; another negative value is no resolution
            raise ConfigError(f"Option --microns-per-pixel of predict {self.name} expects a resolution in µm per "
                              f"pixel (0.25 at 40x), 0 for pixels only or -1 for the file's or the model's; got "
                              f"{o.microns_per_pixel:g}.")
        predictor = NucleusPredictor.from_dir(model_dir, tta=o.tta or None, **runtime_options(options))
        w = predictor.windows
        predictor.windows = dataclasses.replace(w, roi_size=o.roi_size or w.roi_size,
                                                overlap=o.overlap if o.overlap >= 0 else w.overlap)
        mpp = o.microns_per_pixel if o.microns_per_pixel >= 0 else float(predictor.meta.get("microns_per_pixel", 0))
        rows, failures = write_nucleus_predictions(predictor, inputs, run_dir, microns_per_pixel=mpp or None,
                                                   resolution_from_file=o.microns_per_pixel < 0, overlays=o.overlays)
        table = [["tile", "size", "nuclei", "in summary", "s", "in scope"]] + [
            [Path(r["source"]).name, f"{r['width']}x{r['height']}", r["n_nuclei"], r["n_in_summary"], r["seconds"],
             scope_cell(r)] for r in rows[:50]]
        used = {r["microns_per_pixel"] for r in rows}
        unit = (f"µm at {mpp} µm/px and px" if used <= {mpp} and mpp else "px (resolution unknown)" if used <= {""}
                else "µm at each tile's resolution, predictions.csv's microns_per_pixel, and px")
        notes = [f"{len(rows)} tile(s) in {sum(r['seconds'] for r in rows):.1f} s end to end; wrote predictions.csv, "
                 f"tile_features.csv (30 cytology columns, {unit}), masks/, nuclei/" + (", overlays/" if o.overlays
                                                                                    else ""), CYTOLOGY_NOTE]
        out_of_scope = warn_out_of_scope(rows, "input tile", "predictions.csv")
        if out_of_scope:
            notes.insert(0, f"{len(out_of_scope)} tile(s) are not like the H&E tiles this model was trained on, "
                            f"e.g. {Path(out_of_scope[0]['source']).name}: {out_of_scope[0]['scope_note']} (in_scope "
                            f"and scope_note in predictions.csv).")
        n_seen = sum(r["seen_in_training"] == "yes" for r in rows)
        if n_seen:
            log.warning("%d input tile(s) are training tiles of this model (seen_in_training in predictions.csv)",
                        n_seen)
            notes.insert(0, f"{n_seen} tile(s) are training tiles of this model: their figures are not those of a "
                            f"new tile (seen_in_training in predictions.csv).")
        return RunResult(run_dir, {}, "MoNuSeg nuclei and morphometry", table, notes, failures)


def _rewrite_meta(model_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    from breastdx.models.saved import write_meta

    return write_meta(model_dir, {k: v for k, v in meta.items() if k != "schema_version"})
