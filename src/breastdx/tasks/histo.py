"""Histopathology patch classification: PCam, IDC and BreakHis, two approaches compared side by side.

``breastdx train pcam`` (``idc``, ``breakhis``) trains every architecture of ``--archs`` on the same split:
by default a compact CNN from scratch (:mod:`breastdx.models.compact_cnn`) and a deeper network (MONAI
ResNet-18; DenseNet-121 and the others of :data:`breastdx.models.networks.NETWORKS` also work), with
``--init-weights`` (a safetensors state dict) for transfer learning. Patches are read once and cached at
network size (:func:`breastdx.data.patch_datasets.cache_patches`), optionally Macenko stain-normalised to
a training patch (``--stain-normalisation macenko``); training patches are turned by a random element of
the dihedral group and jittered in HED stain space (:class:`breastdx.data.patch_datasets.PatchAugmentation`).

Each model's best epoch is picked on the validation split, then its temperature and its operating
threshold on P(tumour); the best model on validation (mean of AUROC and balanced accuracy) is saved in
``model/``. On the test split, every model gets every metric of the common contract with a 95% bootstrap
interval (tumour = positive), and the two models' AUROCs are compared by a paired bootstrap test
(:func:`breastdx.evaluation.paired.paired_auroc_test`, with DeLong's test as a cross-check). The report
shows the ROC curves of both models, calibration, confusion matrices, the AUROC-difference distribution
and Grad-CAM overlays of test patches.

Splits: PCam keeps its official train / valid / test split (written to ``split.json`` with every patch id
and the data checksum); IDC and BreakHis are split by patient (:func:`breastdx.data.patch_split.patch_split`),
and ``--split-file`` reuses a split.

``predict`` writes ``predictions.csv`` (``p_normal``, ``p_tumour``, the label at the operating point);
``explain`` (:meth:`HistoTask.explain`) writes Grad-CAM / Grad-CAM++ overlays per patch.

Benchmark (PCam): Veeling et al. (2018) report test AUROC 0.963 and accuracy 0.898 for a rotation-equivariant
P4M-DenseNet trained on all 262,144 training patches; the target here is AUROC >= 0.95 and accuracy >= 0.88 on
the 3,000 test patches of the JPEG subset, trained on its 4,000 training patches alone.

References:
    Veeling, B. S., Linmans, J., Winkens, J., Cohen, T. & Welling, M. (2018). Rotation equivariant CNNs for
    digital pathology. MICCAI, doi:10.1007/978-3-030-00934-2_24
    Janowczyk, A. & Madabhushi, A. (2016). Deep learning for digital pathology image analysis. J Pathol
    Inform 7:29, doi:10.4103/2153-3539.186902 (IDC)
    Spanhol, F. A. et al. (2016). A dataset for breast cancer histopathological image classification. IEEE
    Trans Biomed Eng 63(7):1455-1462, doi:10.1109/TBME.2015.2496264 (BreakHis)
    Selvaraju, R. R. et al. (2017). Grad-CAM. ICCV, doi:10.1109/ICCV.2017.74
"""

from __future__ import annotations

import csv
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from breastdx.config import ConfigError, check_options, parse_bool, runtime_options, save_yaml, to_dict
from breastdx.data.stain import STAIN_METHODS, STAIN_TARGET_FILE
from breastdx.tasks.base import TASKS, RunResult, Task
from breastdx.tasks.breastmnist import ci_text

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"
PCAM_TARGET_AUROC = 0.95
PCAM_TARGET_ACCURACY = 0.88
VEELING_2018 = {"P4M-DenseNet (Veeling et al. 2018)": (0.963, 0.898), "DenseNet baseline (Veeling et al. 2018)":
                (0.947, 0.876)}
"""PCam test (AUROC, accuracy) reported by Veeling et al. (2018), trained on all 262,144 training patches."""
SUMMARY = ("auroc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "brier", "ece")
"""Metrics shown in the command-line tables."""
PREDICT_OPTIONS = {"batch-size", "workers", "threads", "tta", "gradcam", "method"}
EXPLAIN_OPTIONS = {"method", "classes", "batch-size", "workers", "threads", "tta", "zoom"}
EVALUATE_OPTIONS = {"split", "split-file", "seed", "n-bootstrap", "batch-size", "tta", "max-cases"}


@dataclass(frozen=True)
class HistoConfig:
    """Options of ``breastdx train pcam`` / ``idc`` / ``breakhis`` (each also a command-line option, ``--name value``).

    Attributes:
        seed: Seed of weights, data order, augmentation and bootstrap.
        archs: Architectures to compare on the same split (registry names): ``compact_cnn`` (from scratch,
            fast on a CPU), ``resnet18``, ``densenet121``, ``resnet50``, ``efficientnet_b0``.
        arch_args: Per-architecture arguments as JSON, e.g. ``{"compact_cnn": {"widths": [32, 64, 128]}}``.
        image_size: Side of the network input; patches are resized to it (bilinear, anti-aliased).
        epochs: Epochs per architecture.
        batch_size: Patches per training step.
        lr: Peak learning rate (AdamW, warm-up then cosine decay).
        weight_decay: AdamW weight decay.
        warmup_fraction: Fraction of steps spent warming up.
        label_smoothing: Label smoothing of the cross-entropy.
        patience: Epochs without a better validation score before stopping (0: never).
        imbalance: ``weighted_loss``, ``sampler`` or ``none``.
        augment: Augment training patches (random dihedral pose and HED stain jitter).
        hed_sigma: Half-range of the HED stain factors (0 with ``hed_bias`` 0: no stain jitter).
        hed_bias: Half-range of the HED optical-density shifts.
        stain_normalisation: ``none`` or ``macenko`` (every patch, in training and prediction, normalised to
            one reference patch).
        stain_target: Image file of the Macenko reference; empty: the first training patch that is at least
            half tissue.
        tta: Test-time augmentation: ``none`` or ``hflip``.
        monitor: Validation metric that picks the best epoch.
        target_sensitivity: The operating threshold on P(positive) reaches this sensitivity on validation
            (0: Youden's J).
        split_file: A split file to reuse (IDC, BreakHis; for PCam the official split is used when empty).
        split_seed: Seed of a new patient-level split.
        split_ratios: Fractions of train, val and test of a new patient-level split.
        magnification: BreakHis only: 40, 100, 200 or 400 (0: every magnification).
        init_weights: A safetensors state dict to initialise every architecture from (matching keys).
        pretrained: Initialise from published weights (see :mod:`breastdx.models.init_weights`).
        pretrained_url: Address of the weights for ``pretrained`` (``file://`` works offline).
        gradcam_method: ``gradcam`` or ``gradcampp`` for the saved model's overlays.
        gradcam_examples: Test patches per class shown with Grad-CAM overlays in the report.
        precision: ``"auto"`` (default: ``"bf16-mixed"`` where bfloat16 is native, AMX / AVX512-BF16 CPUs and
            recent GPUs, about twice as fast as ``"32"`` there with the same validation AUROC on PCam in our
            runs; ``"32"`` elsewhere, where bfloat16 is emulated and many times slower), ``"32"`` or
            ``"bf16-mixed"`` (falls back to 32 with a warning where bfloat16 is not native).
        accelerator: Lightning accelerator.
        devices: Lightning devices.
        strategy: Lightning strategy.
        num_nodes: Machines.
        num_workers: Data-loader processes.
        threads: Torch CPU threads (0: PyTorch's default).
        max_train_batches: Batches per epoch (0: all), for smoke tests.
        max_cases: Patches per split, evenly spaced (0: all), for smoke tests.
        n_bootstrap: Bootstrap resamples.
        deterministic: Deterministic algorithms where PyTorch has them.
        progress_bar: Show the progress bar.
    """

    seed: int = 0
    archs: tuple[str, ...] = ("compact_cnn", "resnet18")
    arch_args: str = ""
    image_size: int = 64
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.0
    patience: int = 0
    imbalance: str = "weighted_loss"
    augment: bool = True
    hed_sigma: float = 0.1
    hed_bias: float = 0.1
    stain_normalisation: str = "none"
    stain_target: str = ""
    tta: str = "none"
    monitor: str = "val_score"
    target_sensitivity: float = 0.0
    split_file: str = ""
    split_seed: int = 0
    split_ratios: tuple[float, ...] = (0.7, 0.1, 0.2)
    magnification: int = 0
    init_weights: str = ""
    pretrained: bool = False
    pretrained_url: str = ""
    gradcam_method: str = "gradcam"
    gradcam_examples: int = 4
    precision: str = "auto"
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


@dataclass(frozen=True)
class IdcConfig(HistoConfig):
    """Options of ``breastdx train idc``: as :class:`HistoConfig`; IDC patches are 50 x 50, trained at 48 x 48."""

    image_size: int = 48


@dataclass(frozen=True)
class BreakHisConfig(HistoConfig):
    """Options of ``breastdx train breakhis``: as :class:`HistoConfig`; 700 x 460 images resized to 128 x 128."""

    image_size: int = 128


# ------------------------------------------------------------------------------------------------- helpers
def _subsample(n: int, k: int) -> np.ndarray:
    if k <= 0 or k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def _int_option(opts: dict[str, str], name: str, default: int) -> int:
    try:
        return int(opts.get(name, default))
    except ValueError:
        raise ConfigError(f"Option --{name} expects an integer, got {opts.get(name)!r}.") from None


def exact_duplicate_groups(images: np.ndarray) -> list[list[int]]:
    """Groups (two or more members) of pixel-identical images.

    Args:
        images: ``uint8`` ``(N, H, W, C)``.

    Returns:
        Index lists in first-occurrence order.
    """
    import hashlib

    seen: dict[bytes, list[int]] = {}
    for i in range(images.shape[0]):
        seen.setdefault(hashlib.sha1(np.ascontiguousarray(images[i]).tobytes()).digest(), []).append(i)
    return [g for g in seen.values() if len(g) > 1]


# ---------------------------------------------------------------------------------------------------- task
class HistoTask(Task):
    """Binary classification of H&E patches; subclasses name the dataset (see the module docstring).

    Class attributes:
        dataset: Name in :data:`breastdx.data.patches.PATCH_DATASETS`.
        official_split: Whether the dataset has its own train / valid / test split (PCam).
        label_region: Fraction of the patch side, centred, that the label refers to (PCam: the centre
            32 x 32 of 96 x 96), drawn in Grad-CAM figures and used to measure the maps; None for none.
    """

    dataset: ClassVar[str]
    official_split: ClassVar[bool] = False
    label_region: ClassVar[float | None] = None

    # ----------------------------------------------------------------------------------------- data
    def load_source(self, config: HistoConfig, data_root: Path):
        """Every patch of the dataset (one :class:`~breastdx.data.patches.PatchSource`).

        Raises:
            DataError: If the data are missing or invalid (the reader names the files).
        """
        from breastdx.data.patches import load_patch_dataset

        return load_patch_dataset(self.dataset, data_root)

    def make_split(self, config: HistoConfig, source: Any, split_path: Path):
        """The split of this run, written to ``split_path``: reused, official, or new by patient.

        Raises:
            DataError: If a reused split does not fit the data.
        """
        from breastdx.data.patch_split import patch_split

        if config.split_file:
            split = patch_split(source, Path(config.split_file), seed=config.split_seed, ratios=config.split_ratios)
        else:
            split = patch_split(source, None, seed=config.split_seed, ratios=config.split_ratios)
        split.to_json(split_path)
        return split

    def split_text(self, split: Any, which: str, n: int, counts: dict[str, int]) -> str:
        """How a split is described in metrics.json and reports."""
        grouped = (split.summary or {}).get("grouped_by")
        kind = "official split" if self.official_split and not grouped else (
            "split by patient" if grouped else "stratified split (no patient ids: optimistic)")
        return (f"{which} split of {SPLIT_FILE} ({self.dataset}, {kind}; n = {n}: "
                f"{', '.join(f'{v} {k}' for k, v in counts.items())})")

    @staticmethod
    def _check_classes(views: dict[str, Any], split_path: Path) -> None:
        from breastdx.data.errors import DataError

        problems = []
        for name, view in views.items():
            counts = view.class_counts()
            missing = [c for c, v in counts.items() if v == 0]
            if missing:
                problems.append(f"{name} split has no {', '.join(missing)} patch ({counts})")
        if problems:
            raise DataError(f"{split_path}: every split needs patches of both classes to train, calibrate and "
                            f"evaluate; change --split-ratios or --split-seed, or give more data.", problems)

    # ---------------------------------------------------------------------------------------- train
    def train(self, config: HistoConfig, data_root: Path, run_dir: Path) -> RunResult:
        import torch

        from breastdx.data.patch_datasets import PatchAugmentation, cache_patches
        from breastdx.data.patch_split import apply_split
        from breastdx.data.transforms import Preprocessing
        from breastdx.explain.gradcam import CAM_METHODS
        from breastdx.runs import seed_everything, write_versions
        from breastdx.tasks.breastmnist import check_common_options, fit_settings, initialiser
        from breastdx.training.classification import ClassifierOptim, run_architecture

        arch_args = check_common_options(config, 3, 2)
        self._check_config(config, CAM_METHODS)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        start = time.perf_counter()
        source = self.load_source(config, data_root)
        checksum = source.checksum
        save_yaml({"task": self.name, **to_dict(config), "data_root": str(data_root), "dataset": self.dataset,
                   "data_checksum": checksum}, run_dir / "config.yaml")
        write_versions(run_dir)
        split_path = run_dir / SPLIT_FILE
        split = self.make_split(config, source, split_path)
        views = apply_split(source, split)
        views = {s: v.subset(_subsample(len(v), config.max_cases)) if config.max_cases else v
                 for s, v in views.items()}
        self._check_classes(views, split_path)
        class_names = tuple(source.class_names)
        positive = class_names[1]

        normalizer, target_image, target_id = self._stain_normalizer(config, views["train"])
        prep = Preprocessing(image_size=config.image_size, mode="rgb")
        aug = PatchAugmentation(dihedral=True, hed_sigma=config.hed_sigma, hed_bias=config.hed_bias,
                                seed=config.seed) if config.augment else None
        log.info("reading %s: %d training, %d validation and %d test patches", self.dataset, len(views["train"]),
                 len(views["val"]), len(views["test"]))
        train_ds = cache_patches(views["train"], prep, normalizer=normalizer, transform=aug)
        val_ds = cache_patches(views["val"], prep, normalizer=normalizer)
        test_ds = cache_patches(views["test"], prep, normalizer=normalizer)
        read_seconds = time.perf_counter() - start
        optim = ClassifierOptim(lr=config.lr, weight_decay=config.weight_decay,
                                warmup_fraction=config.warmup_fraction, label_smoothing=config.label_smoothing,
                                seg_weight=0.0)
        settings = fit_settings(config)
        runs: dict[str, Any] = {}
        for arch in config.archs:
            try:
                runs[arch] = run_architecture(
                    arch, arch_args[arch], prep.channels, train_ds, val_ds, test_ds, run_dir / "archs" / arch,
                    settings, optim, tta=config.tta, target_sensitivity=config.target_sensitivity, positive=positive,
                    n_boot=config.n_bootstrap, init=initialiser(config, arch))
            except ValueError as e:  # init-weights errors, Lightning settings it refuses
                raise ConfigError(f"{arch}: {e}") from None
            if not runs[arch].fit.is_global_zero:
                return RunResult(run_dir)
        best = max(runs, key=lambda a: (runs[a].val_score, -list(runs).index(a)))
        counts = views["test"].class_counts()
        test_text = self.split_text(split, "test", len(test_ds), counts)
        models = {}
        for arch, r in runs.items():
            models[arch] = run_dir / "archs" / arch / "model"
            self._write_model(models[arch], r, config, prep, split, checksum, test_text, target_image, target_id,
                              split_path, list(class_names))
        model_dir = run_dir / "model"
        shutil.copytree(models[best], model_dir)

        y_test = test_ds.labels
        comparisons = self._paired_tests(runs, best, y_test, config)
        dedup = self._deduplicated(test_ds, runs, config, positive)
        cams = self._gradcam_examples(model_dir, views["test"], config)
        r = runs[best]
        m = r.test["metrics"]
        metrics: dict[str, Any] = {
            "task": self.name, "split": test_text, "n": len(test_ds), "model": best,
            "positive_class": positive, "threshold": r.calibration["threshold"],
            "temperature": r.calibration["temperature"], "metrics": m,
            "operating_point": {"threshold": r.calibration["threshold"], "rule": self._threshold_rule(config),
                                "label_rule": f"{positive} when P({positive}) >= threshold, else {class_names[0]}"},
            "calibration": r.test["calibration"],
            "confusion_matrix": {"class_names": list(class_names), "argmax": r.test["confusion_matrix"],
                                 "operating_point": r.test["confusion_matrix_operating_point"]},
            "validation_metrics": r.validation["metrics"],
            "comparison": [{k: v for k, v in c.items() if k != "resamples"} for c in comparisons],
            "models": {a: self._model_summary(x) for a, x in runs.items()},
            "deduplicated_test": dedup,
            "gradcam": {k: v for k, v in cams.items() if k not in ("figure", "items")},
            "timing": {"read_and_cache_seconds": round(read_seconds, 1),
                       "train_seconds": {a: round(x.fit.train_seconds, 1) for a, x in runs.items()},
                       "total_seconds": round(time.perf_counter() - start, 1)},
            "data_checksum": checksum,
        }
        if self.name == "pcam":
            metrics["benchmark"] = self._benchmark(m, config)
        from breastdx.runs import write_json

        write_json(metrics, run_dir / "metrics.json")
        self._write_report(run_dir, config, split, views, runs, best, metrics, comparisons, cams, class_names)
        table = [["metric", *[("*" if a == best else "") + a for a in runs]]]
        table += [[k, *[ci_text(runs[a].test["metrics"][k]) for a in runs]] for k in SUMMARY]
        table.append(["training (min)", *[f"{x.fit.train_seconds / 60:.1f}" for x in runs.values()]])
        notes = [f"Best on validation: {best}; test AUROC {ci_text(m['auroc'])}, accuracy {ci_text(m['accuracy'])}."]
        for c in comparisons:
            notes.append(f"Paired bootstrap, AUROC({c['model_a']}) - AUROC({c['model_b']}) = {c['difference']:+.4f} "
                         f"[{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}], p = {c['p_value']:.3g} (DeLong p = "
                         f"{c['delong']['p_value']:.3g}).")
        if "benchmark" in metrics:
            b = metrics["benchmark"]
            notes.append(f"Targets AUROC >= {b['auroc_target']} and accuracy >= {b['accuracy_target']}: "
                         f"{'reached' if b['reached'] else 'not reached'} (Veeling et al. 2018, P4M-DenseNet on 262k "
                         f"patches: 0.963 / 0.898).")
        notes.append(f"Run folder: {run_dir}")
        return RunResult(run_dir, metrics, f"{self.title}: {test_text}, value [95% CI]", table, notes)

    def _check_config(self, config: HistoConfig, cam_methods: Sequence[str]) -> None:
        if config.stain_normalisation not in STAIN_METHODS:
            raise ConfigError(f"Option --stain-normalisation expects one of {', '.join(STAIN_METHODS)}, got "
                              f"{config.stain_normalisation!r}.")
        if config.gradcam_method not in cam_methods:
            raise ConfigError(f"Option --gradcam-method expects one of {', '.join(cam_methods)}, got "
                              f"{config.gradcam_method!r}.")
        if not 0.0 <= config.hed_sigma < 1.0 or config.hed_bias < 0:
            raise ConfigError(f"Options --hed-sigma must be in [0, 1) and --hed-bias >= 0, got {config.hed_sigma} and "
                              f"{config.hed_bias}.")
        if len(config.split_ratios) != 3 or min(config.split_ratios) < 0 or abs(sum(config.split_ratios) - 1) > 1e-6:
            raise ConfigError(f"Option --split-ratios expects three fractions summing to 1 (train,val,test), got "
                              f"{','.join(map(str, config.split_ratios))}.")
        if config.max_cases < 0 or config.gradcam_examples < 0:
            raise ConfigError(f"Options --max-cases and --gradcam-examples must be >= 0, got {config.max_cases} and "
                              f"{config.gradcam_examples}.")

    def _stain_normalizer(self, config: HistoConfig, train_view: Any):
        """``(normaliser or None, reference image or None, reference id)`` for ``--stain-normalisation``."""
        if config.stain_normalisation == "none":
            return None, None, None
        from breastdx.data.images import read_image
        from breastdx.data.patch_datasets import pick_stain_target
        from breastdx.data.stain import MacenkoNormalizer

        if config.stain_target:
            target = read_image(Path(config.stain_target), mode="rgb").array
            target_id = str(config.stain_target)
        else:
            idx = pick_stain_target(train_view)
            target, _ = train_view.get(idx)
            target_id = str(train_view.ids[idx])
        try:
            normalizer = MacenkoNormalizer().fit(target)
        except ValueError as e:
            raise ConfigError(f"Option --stain-target: {target_id}: {e}") from None
        log.info("Macenko stain normalisation to %s", target_id)
        return normalizer, target, target_id

    @staticmethod
    def _threshold_rule(config: HistoConfig) -> str:
        if config.target_sensitivity == 0:
            return "Youden's J on the validation split (temperature-scaled P(positive))"
        return (f"highest threshold with sensitivity >= {config.target_sensitivity} on the validation split "
                f"(temperature-scaled P(positive))")

    @staticmethod
    def _model_summary(x: Any) -> dict[str, Any]:
        from breastdx.tasks.breastmnist import plain_evaluation

        return {"val_score": x.val_score, "calibration_fit": x.calibration, "test": plain_evaluation(x.test),
                "validation_metrics": x.validation["metrics"], "training": x.fit.info, "n_parameters": x.n_parameters,
                "architecture_args": x.arch_args, "init": x.init}

    @staticmethod
    def _paired_tests(runs: dict[str, Any], best: str, y: np.ndarray, config: HistoConfig) -> list[dict[str, Any]]:
        """Paired bootstrap AUROC tests of the best model against each other one, on the test patches."""
        from breastdx.evaluation.paired import paired_auroc_test

        yb = (np.asarray(y) == 1).astype(int)
        if len(runs) < 2 or yb.all() or not yb.any():
            return []
        out = []
        for other in runs:
            if other == best:
                continue
            out.append(paired_auroc_test(yb, runs[best].test["prob"][:, 1], runs[other].test["prob"][:, 1],
                                         n_boot=config.n_bootstrap, seed=config.seed, names=(best, other),
                                         return_resamples=True))
        return out

    @staticmethod
    def _deduplicated(test_ds: Any, runs: dict[str, Any], config: HistoConfig, positive: str) -> dict[str, Any]:
        """Test metrics after keeping one patch of each group of pixel-identical test patches (PCam has some)."""
        from breastdx.evaluation.classification import classification_metrics

        groups = exact_duplicate_groups(test_ds.images)
        if not groups:
            return {"duplicate_groups": 0, "removed": 0}
        drop = {i for g in groups for i in g[1:]}
        keep = np.array([i for i in range(len(test_ds)) if i not in drop])
        out: dict[str, Any] = {"duplicate_groups": len(groups), "removed": len(drop), "n": int(keep.size),
                               "note": "pixel-identical test patches (at network size) kept once", "models": {}}
        for arch, r in runs.items():
            mm = classification_metrics(test_ds.labels[keep], r.test["prob"][keep], list(test_ds.class_names), positive,
                                        r.calibration["threshold"], n_boot=config.n_bootstrap, seed=config.seed)
            out["models"][arch] = {k: mm[k] for k in ("auroc", "accuracy", "balanced_accuracy")}
        return out

    def _gradcam_examples(self, model_dir: Path, test_view: Any, config: HistoConfig) -> dict[str, Any]:
        """Grad-CAM overlays of a few test patches per class (a figure), and for tasks with a label region,
        the share of each map inside it on tumour patches (up to 500, with a bootstrap interval)."""
        from breastdx.evaluation.ci import mean_ci
        from breastdx.explain.gradcam import cam_mass_in_mask
        from breastdx.inference.classifier import ClassificationPredictor

        if config.gradcam_examples == 0 and self.label_region is None:
            return {}
        predictor = ClassificationPredictor.from_dir(model_dir, task=self.name, batch_size=64)
        labels = test_view.labels
        out: dict[str, Any] = {"method": predictor.gradcam_method, "layer": predictor.explainer().layer}
        shown: list[int] = []
        for k in range(len(test_view.class_names)):
            idx = np.flatnonzero(labels == k)
            shown += idx[_subsample(idx.size, config.gradcam_examples)].tolist() if config.gradcam_examples else []
        if shown:
            images = [test_view.get(i)[0] for i in shown]
            prob, lab, maps = predictor.explain(images)
            out["items"] = [{"id": test_view.ids[i], "label": int(labels[i]), "p_positive": float(prob[j, 1]),
                             "predicted": int(lab[j]), "image": images[j], "cam": maps[j]}
                            for j, i in enumerate(shown)]
        if self.label_region is not None:
            pos = np.flatnonzero(labels == 1)
            pos = pos[_subsample(pos.size, 500)]
            if pos.size:
                images = [test_view.get(int(i))[0] for i in pos]
                _, _, maps = predictor.explain(images, class_idx=1)
                mask = self._region_mask(images[0].shape[:2])
                mass = [cam_mass_in_mask(c, mask) for c in maps]
                out["mass_in_label_region"] = {**mean_ci(mass, config.n_bootstrap, config.seed),
                                               "uniform_map": float(mask.mean()),
                                               "note": f"share of the tumour-class map inside the centre "
                                                       f"{self.label_region:.3g} x {self.label_region:.3g} of the "
                                                       f"patch, on up to 500 tumour test patches"}
        return out

    def _region_mask(self, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        f = float(self.label_region or 1.0)
        mask = np.zeros((h, w), dtype=bool)
        rh, rw = int(round(h * f)), int(round(w * f))
        top, left = (h - rh) // 2, (w - rw) // 2
        mask[top:top + rh, left:left + rw] = True
        return mask

    @staticmethod
    def _benchmark(m: dict[str, Any], config: HistoConfig) -> dict[str, Any]:
        auc, acc = m["auroc"]["value"], m["accuracy"]["value"]
        return {"auroc_target": PCAM_TARGET_AUROC, "accuracy_target": PCAM_TARGET_ACCURACY, "auroc": auc,
                "accuracy": acc, "reached": bool(auc >= PCAM_TARGET_AUROC and acc >= PCAM_TARGET_ACCURACY),
                "published": {k: {"auroc": a, "accuracy": c} for k, (a, c) in VEELING_2018.items()},
                "published_training_patches": 262144,
                "imagenet_weights": bool(config.pretrained or config.init_weights)}

    # ----------------------------------------------------------------------------------- model folder
    def _write_model(self, model_dir: Path, r: Any, config: HistoConfig, prep: Any, split: Any, checksum: str,
                     test_text: str, target_image: np.ndarray | None, target_id: str | None,
                     split_path: Path, class_names: list[str]) -> dict[str, Any]:
        from breastdx.explain.gradcam import target_layer
        from breastdx.inference.classifier import save_classifier
        from breastdx.models.saved import write_model_card

        positive = class_names[1]
        stain: dict[str, Any] = {"method": config.stain_normalisation}
        if target_image is not None:
            model_dir.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray(target_image).save(model_dir / STAIN_TARGET_FILE)
            stain.update({"target_file": STAIN_TARGET_FILE, "target_source": target_id,
                          "reference": "Macenko et al. (2009), doi:10.1109/ISBI.2009.5193250"})
        m = r.test["metrics"]
        meta = save_classifier(model_dir, r.network, {
            "task": self.name, "architecture": r.arch, "architecture_args": r.arch_args, "in_channels": 3,
            "n_parameters": r.n_parameters, "class_names": class_names, "positive_class": positive,
            "preprocessing": {**prep.to_meta(),
                              "description": (("Macenko stain normalisation to stain_target.png, then " if target_image
                                               is not None else "") + f"resize to {prep.image_size}x{prep.image_size} "
                                              f"(bilinear, anti-aliased); uint8 / 255; RGB")},
            "stain_normalisation": stain,
            "augmentation": ({"dihedral": True, "hed_sigma": config.hed_sigma, "hed_bias": config.hed_bias}
                             if config.augment else None),
            "temperature": r.calibration["temperature"], "threshold": r.calibration["threshold"],
            "threshold_rule": self._threshold_rule(config),
            "label_rule": f"{positive} when P({positive}) >= threshold, else {class_names[0]}",
            "inference": {"tta": config.tta},
            "gradcam": {"method": config.gradcam_method, "layer": target_layer(r.network, r.arch)},
            "output": f"P({class_names[0]}), P({positive}) = softmax(logits / temperature)",
            "metrics": m, "metrics_split": test_text, "calibration": r.test["calibration"],
            "seed": config.seed, "data": self.dataset, "data_checksum": checksum, "split_file": SPLIT_FILE,
            "training": r.fit.info, "training_config": to_dict(config), "init": r.init,
        })
        shutil.copyfile(split_path, model_dir / SPLIT_FILE)
        write_model_card(
            model_dir, meta, title=f"{self.title}",
            summary=(f"{r.arch} ({r.n_parameters:,} parameters), input {prep.image_size}x{prep.image_size} RGB, "
                     f"trained from {'initial weights (' + str(config.init_weights or config.pretrained_url) + ')' if r.init else 'scratch'} "
                     f"with weighted cross-entropy and AdamW for {r.fit.epochs_run} epochs "
                     f"({r.fit.train_seconds / 60:.1f} min on {r.fit.info.get('torch_threads')} CPU thread(s), best "
                     f"epoch {r.fit.best_epoch} by validation); augmentation: "
                     f"{'random dihedral pose and HED stain jitter (sigma ' + str(config.hed_sigma) + ', bias ' + str(config.hed_bias) + ')' if config.augment else 'none'}; "
                     f"stain normalisation: {config.stain_normalisation}. Temperature "
                     f"{r.calibration['temperature']:.3f} and threshold {r.calibration['threshold']:.3f} on "
                     f"P({positive}) fitted on the validation split."),
            data=self._card_data(split),
            evaluation=(f"{test_text}; 95% bootstrap intervals over patches ({config.n_bootstrap} resamples). "
                        f"Test AUROC {ci_text(m['auroc'])}, accuracy {ci_text(m['accuracy'])}, balanced accuracy "
                        f"{ci_text(m['balanced_accuracy'])}. Accuracy and balanced accuracy use the most probable class; "
                        f"sensitivity, specificity, PPV, NPV and F1 the operating threshold chosen on validation."),
            limitations=self._card_limitations())
        return meta

    def _card_data(self, split: Any) -> str:
        counts = (split.summary or {}).get("counts", {})
        text = "; ".join(f"{s}: " + ", ".join(f"{v} {c}" for c, v in cs.items()) for s, cs in counts.items())
        return f"- {self.dataset}: {text or 'see split.json'}."

    def _card_limitations(self) -> list[str]:
        return ["Patches only: no whole-slide inference, no slide- or patient-level aggregation.",
                "Trained and tested on one public dataset; no external validation.",
                "Research use only; not for diagnosis."]

    # ----------------------------------------------------------------------------------------- report
    def _write_report(self, run_dir: Path, config: HistoConfig, split: Any, views: dict[str, Any],
                      runs: dict[str, Any], best: str, metrics: dict[str, Any], comparisons: list[dict[str, Any]],
                      cams: dict[str, Any], class_names: Sequence[str]) -> None:
        from breastdx.evaluation.classification import plot_training_curves, write_figures
        from breastdx.evaluation.paired import plot_auroc_difference
        from breastdx.evaluation.report import HtmlReport
        from breastdx.tasks.breastmnist import calibration_rows
        from breastdx.training.trainer import read_training_log

        positive = class_names[1]
        r = runs[best]
        rep = HtmlReport(f"breastdx — {self.title}")
        sizes = ", ".join(f"{s} {len(v)} ({', '.join(f'{n} {c}' for c, n in v.class_counts().items())})"
                          for s, v in views.items())
        rep.paragraph(f"{self.dataset} (data checksum {metrics['data_checksum'][:16]}…), {sizes}. Split: "
                      f"{metrics['split']}. Patches resized to {config.image_size}x{config.image_size}; "
                      f"augmentation: {'random dihedral pose (8 rotations/mirrors) and HED stain jitter (sigma ' + str(config.hed_sigma) + ', bias ' + str(config.hed_bias) + ')' if config.augment else 'none'}; "
                      f"stain normalisation: {config.stain_normalisation}; class imbalance: {config.imbalance}; "
                      f"test-time augmentation: {config.tta}. Every model is trained on the same training split; each "
                      f"one's best epoch and the best model are chosen on the validation split (score = mean of AUROC "
                      f"and balanced accuracy), where the temperature and the operating threshold are fitted too. "
                      f"Intervals: 95% bootstrap over test patches ({config.n_bootstrap} resamples).")
        rep.heading("Model comparison (test split)")
        header = ["model", "val score", "AUROC", "accuracy", "balanced acc.", "sensitivity @ op", "specificity @ op",
                  "Brier", "ECE", "parameters", "training (min)", "best epoch"]
        rows = []
        for name, x in runs.items():
            mm = x.test["metrics"]
            rows.append([name + (" (best)" if name == best else ""), f"{x.val_score:.3f}", ci_text(mm["auroc"]),
                         ci_text(mm["accuracy"]), ci_text(mm["balanced_accuracy"]), ci_text(mm["sensitivity"]),
                         ci_text(mm["specificity"]), ci_text(mm["brier"]), ci_text(mm["ece"]), f"{x.n_parameters:,}",
                         f"{x.fit.train_seconds / 60:.1f}", str(x.fit.best_epoch)])
        rep.table(header, rows, highlight_row=list(runs).index(best))
        for c in comparisons:
            rep.heading(f"Paired test of the AUROC difference: {c['model_a']} vs {c['model_b']}")
            d = c["delong"]
            rep.paragraph(f"On the same {c['n']} test patches ({c['n_positive']} {positive}): AUROC "
                          f"{c['auroc_a']:.4f} ({c['model_a']}) vs {c['auroc_b']:.4f} ({c['model_b']}); difference "
                          f"{c['difference']:+.4f}, 95% CI [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}], two-sided p = "
                          f"{c['p_value']:.3g} (paired bootstrap over patches, stratified by class, {c['n_boot']} "
                          f"resamples; Efron & Tibshirani 1993). DeLong's test (DeLong et al. 1988, "
                          f"doi:10.2307/2531595): z = {d['z']:.2f}, p = {d['p_value']:.3g}, 95% CI "
                          f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}].")
            png = run_dir / f"auroc_difference_{c['model_a']}_vs_{c['model_b']}.png"
            rep.figure(plot_auroc_difference(c, png), "Bootstrap distribution of the paired AUROC difference, with "
                                                      "its 95% interval and zero")
        if "benchmark" in metrics:
            b = metrics["benchmark"]
            rep.heading("Benchmark: PCam (Veeling et al. 2018)")
            bench = [[k + " — 262,144 training patches", f"{a:.3f}", f"{c:.3f}"] for k, (a, c) in VEELING_2018.items()]
            bench += [[f"breastdx {a} (this run) — {len(views['train'])} training patches", ci_text(x.test["metrics"]["auroc"]),
                       ci_text(x.test["metrics"]["accuracy"])] for a, x in runs.items()]
            rep.table(["model", "AUROC", "accuracy"], bench, highlight_row=len(VEELING_2018) + list(runs).index(best))
            rep.paragraph(f"Targets: AUROC >= {b['auroc_target']} and accuracy >= {b['accuracy_target']} on the subset's "
                          f"test split; {'reached' if b['reached'] else 'not reached'} by the best model. Published "
                          f"figures are on the full PCam test split (32,768 patches); these are on the subset's first "
                          f"3,000, so the comparison is indicative.")
        dedup = metrics["deduplicated_test"]
        if dedup.get("removed"):
            rep.heading("Test split without duplicates")
            rep.paragraph(f"{dedup['duplicate_groups']} groups of pixel-identical test patches; keeping one of each "
                          f"removes {dedup['removed']} (n = {dedup['n']}).")
            rep.table(["model", "AUROC", "accuracy", "balanced acc."],
                      [[a, ci_text(v["auroc"]), ci_text(v["accuracy"]), ci_text(v["balanced_accuracy"])]
                       for a, v in dedup["models"].items()])
        rep.heading(f"Best model ({best}): every metric ({positive} = positive)")
        rep.metrics_table(r.test["metrics"])
        rep.heading("Calibration on the test split: before and after temperature scaling (fitted on validation)")
        rep.table(["metric", "before (T = 1)", "after"], calibration_rows(r.test["calibration"]))
        rep.heading("Figures")
        for png, caption in write_figures(run_dir, views["test"].labels, {a: x.test for a, x in runs.items()}, best,
                                          list(class_names), positive, "test"):
            rep.figure(png, caption)
        if cams.get("items"):
            rep.heading(f"Grad-CAM ({cams['method']}, layer {cams['layer']}) on test patches, best model")
            png = self._plot_cams(cams["items"], class_names, run_dir / "gradcam_examples.png")
            rep.figure(png, "Grad-CAM of the reported label on test patches" + (
                "; the box is the centre region the label refers to" if self.label_region else ""))
        if "mass_in_label_region" in cams:
            mr = cams["mass_in_label_region"]
            rep.paragraph(f"Share of the tumour-class Grad-CAM map inside the labelled centre region: {ci_text(mr)} "
                          f"(a uniform map scores {mr['uniform_map']:.3f}; n = {mr['n']} tumour test patches with a non-zero "
                          f"map).")
        logs = {a: read_training_log(run_dir / "archs" / a) for a in runs}
        rep.heading("Training")
        t = metrics["timing"]
        rep.paragraph(f"Reading and caching the patches: {t['read_and_cache_seconds']:.0f} s. " + "; ".join(
            f"{a}: {x.fit.epochs_run} epoch(s) in {x.fit.train_seconds / 60:.1f} min, best epoch {x.fit.best_epoch} "
            f"({x.fit.info.get('torch_threads')} threads, precision {x.fit.info.get('precision')})"
            for a, x in runs.items()) + ".")
        if any(v.get("epoch") for v in logs.values()):
            rep.figure(plot_training_curves(logs, run_dir / "training_curves.png", f"{self.dataset} training"),
                       "Training loss and validation score per epoch")
        rep.write(run_dir / "report.html")

    def _plot_cams(self, items: list[dict[str, Any]], class_names: Sequence[str], path: Path) -> Path:
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        from breastdx.evaluation.plots import DPI
        from breastdx.explain.gradcam import heatmap_overlay

        cols = min(len(items), 8)
        rows = (len(items) + cols - 1) // cols
        fig, axes = plt.subplots(2 * rows, cols, figsize=(1.7 * cols, 3.6 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for j, it in enumerate(items):
            rr, cc = 2 * (j // cols), j % cols
            image = it["image"]
            axes[rr, cc].imshow(image)
            axes[rr + 1, cc].imshow(heatmap_overlay(image, it["cam"]))
            axes[rr, cc].set_title(f"true {class_names[it['label']]}\nP({class_names[1]}) {it['p_positive']:.2f}",
                                   fontsize=7)
            if self.label_region:
                h, w = image.shape[:2]
                mask = self._region_mask((h, w))
                ys, xs = np.nonzero(mask)
                for ax in (axes[rr, cc], axes[rr + 1, cc]):
                    ax.add_patch(Rectangle((xs.min() - 0.5, ys.min() - 0.5), xs.max() - xs.min() + 1,
                                           ys.max() - ys.min() + 1, fill=False, ec="lime", lw=0.8))
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        return path

    # --------------------------------------------------------------------------------------- evaluate
    def evaluate(self, model_dir: Path, data_root: Path, run_dir: Path, options: dict[str, str]) -> RunResult:
        """Metrics of a saved model on a split of its split file (default: the test split).

        Options: ``--split train|val|test``, ``--split-file`` (default the model folder's ``split.json``),
        ``--seed``, ``--n-bootstrap``, ``--batch-size``, ``--tta``, ``--max-cases`` (patches, evenly spaced, as
        in training; 0: all).

        Raises:
            ConfigError: For an unknown option or value.
            DataError: If the data changed since the split was made, or are missing.
            FileNotFoundError: If there is no split file.
        """
        from breastdx.data.patch_split import apply_split, check_patch_split
        from breastdx.data.splits import SplitFile
        from breastdx.evaluation.classification import evaluate_logits, write_figures
        from breastdx.evaluation.report import HtmlReport
        from breastdx.inference.classifier import ClassificationPredictor
        from breastdx.runs import write_json, write_versions
        from breastdx.tasks.breastmnist import calibration_rows

        check_options(options, EVALUATE_OPTIONS, f"evaluate {self.name}")
        opts = {k.replace("_", "-"): v for k, v in options.items()}
        which = opts.get("split", "test")
        if which not in ("train", "val", "test"):
            raise ConfigError(f"Option --split expects train, val or test, got {which!r}.")
        seed, n_boot = _int_option(opts, "seed", 0), _int_option(opts, "n-bootstrap", 2000)
        predictor = ClassificationPredictor.from_dir(model_dir, task=self.name,
                                                     batch_size=_int_option(opts, "batch-size", 64),
                                                     tta=opts.get("tta") or None, **runtime_options(opts))
        split_path = Path(opts["split-file"]) if "split-file" in opts else Path(model_dir) / SPLIT_FILE
        if not split_path.is_file():
            raise FileNotFoundError(f"{split_path}: no split file; pass --split-file (the split.json of the training "
                                    f"run).")
        cfg = self.config_cls()
        magnification = predictor.meta.get("training_config", {}).get("magnification", 0)
        if magnification:
            from dataclasses import replace

            cfg = replace(cfg, magnification=int(magnification))
        source = self.load_source(cfg, data_root)
        split = SplitFile.from_json(split_path)
        check_patch_split(source, split)
        write_json(split.to_dict(), run_dir / SPLIT_FILE)
        view = apply_split(source, split)[which]
        max_cases = _int_option(opts, "max-cases", 0)
        if max_cases:
            view = view.subset(_subsample(len(view), max_cases))
        save_yaml({"task": self.name, "model": str(model_dir), "split_file": str(split_path), "split": which,
                   "max_cases": max_cases, "seed": seed, "n_bootstrap": n_boot, "tta": predictor.tta, "data_root": str(data_root),
                   "data_checksum": split.data_checksum}, run_dir / "config.yaml")
        write_versions(run_dir)
        images = [view.get(i)[0] for i in range(len(view))]
        labels = view.labels
        class_names = list(predictor.class_names)
        logits = predictor.predict_logits(images)
        ev = evaluate_logits(labels, logits, class_names, temperature=predictor.temperature,
                             threshold=float(predictor.threshold), positive=predictor.positive, n_boot=n_boot, seed=seed)
        text = self.split_text(split, which, len(view), view.class_counts())
        metrics = {"task": self.name, "split": text, "n": len(view), "model": str(model_dir),
                   "positive_class": predictor.positive, "threshold": predictor.threshold,
                   "temperature": predictor.temperature, "metrics": ev["metrics"], "calibration": ev["calibration"],
                   "confusion_matrix": {"class_names": class_names, "argmax": ev["confusion_matrix"],
                                        "operating_point": ev["confusion_matrix_operating_point"]},
                   "data_checksum": split.data_checksum}
        write_json(metrics, run_dir / "metrics.json")
        arch = predictor.meta["architecture"]
        rep = HtmlReport(f"breastdx — {self.title} (evaluation)")
        rep.paragraph(f"Model {model_dir} ({arch}); {text}; temperature {predictor.temperature:.3f}, operating "
                      f"threshold {float(predictor.threshold):.3f} on P({predictor.positive}); TTA {predictor.tta}.")
        rep.metrics_table(ev["metrics"])
        rep.table(["metric", "before (T = 1)", "after"], calibration_rows(ev["calibration"]))
        for png, caption in write_figures(run_dir, labels, {arch: ev}, arch, class_names, predictor.positive, which):
            rep.figure(png, caption)
        rep.write(run_dir / "report.html")
        rows = [[k, ci_text(ev["metrics"][k])] for k in SUMMARY]
        return RunResult(run_dir, metrics, f"{self.title}, {which} split (n = {len(view)}): value [95% CI]",
                         [["metric", "value [95% CI]"], *rows], [f"Split: {text}", f"Run folder: {run_dir}"])

    # ---------------------------------------------------------------------------------------- predict
    def predict(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        """``predictions.csv`` for image files and folders: ``p_<class>`` and the label at the operating point.

        Options: ``--batch-size`` (64), ``--workers`` (2 reader threads), ``--threads``, ``--tta none|hflip``,
        ``--gradcam true|false`` (default false; overlays in ``gradcam/``), ``--method gradcam|gradcampp``.
        Files that cannot be read are skipped and listed in the result's ``failures``.

        Raises:
            ConfigError: For an unknown option or value.
        """
        import torch

        from breastdx.explain.gradcam import CAM_METHODS
        from breastdx.inference.classifier import ClassificationPredictor, write_predictions

        check_options(options, PREDICT_OPTIONS, f"predict {self.name}")
        opts = {k.replace("_", "-"): v for k, v in options.items()}
        batch, workers, threads = (_int_option(opts, "batch-size", 64), _int_option(opts, "workers", 2),
                                   _int_option(opts, "threads", 0))
        gradcam = parse_bool(opts.get("gradcam", False), "gradcam")
        method = opts.get("method") or None
        if method is not None and method not in CAM_METHODS:
            raise ConfigError(f"Option --method expects one of {', '.join(CAM_METHODS)}, got {method!r}.")
        if threads > 0:
            torch.set_num_threads(threads)
        predictor = ClassificationPredictor.from_dir(model_dir, task=self.name, batch_size=batch,
                                                     tta=opts.get("tta") or None, gradcam_method=method,
                                                     **runtime_options(opts))
        rows, failures, seconds = write_predictions(predictor, inputs, run_dir, gradcam=gradcam, workers=workers)
        classes = predictor.class_names
        table = [["patch", *[f"P({c})" for c in classes], "label"]] + [
            [Path(r["source"]).name, *[f"{r[f'p_{c}']:.3f}" for c in classes], r["label"]] for r in rows[:50]]
        notes = [f"{len(rows)} patch(es) in {seconds:.1f} s ({len(rows) / max(seconds, 1e-9):.0f} patches/s, model "
                 f"{predictor.meta['architecture']}, Grad-CAM {'on' if gradcam else 'off'}); label: "
                 f"{predictor.meta.get('label_rule')} (threshold {predictor.threshold:.4f}). Wrote "
                 f"{run_dir / 'predictions.csv'}" + (", gradcam/" if gradcam else "")]
        if len(rows) > 50:
            notes.insert(0, f"(first 50 of {len(rows)} shown)")
        return RunResult(run_dir, {}, f"{self.title}: predictions", table, notes, failures)

    # ---------------------------------------------------------------------------------------- explain
    def explain(self, model_dir: Path, inputs: list[Path], run_dir: Path, options: dict[str, str]) -> RunResult:
        """Grad-CAM (and Grad-CAM++) overlays per patch, for the reported label or for every class.

        Writes ``explanations/<patch>_<method>_<class>.png`` (the patch with the map blended over it, enlarged
        ``--zoom`` times with nearest-neighbour pixels) and ``explanations.csv`` (source, probabilities, label,
        method, explained class, overlay). Files that cannot be read are listed in ``failures``.

        Options: ``--method gradcam,gradcampp`` (default both), ``--classes predicted|all``, ``--batch-size``,
        ``--workers``, ``--threads``, ``--tta``, ``--zoom`` (default 3).

        Raises:
            ConfigError: For an unknown option or value.
        """
        import torch
        from PIL import Image

        from breastdx.data.images import list_images
        from breastdx.explain.gradcam import CAM_METHODS, heatmap_overlay
        from breastdx.inference.classifier import ClassificationPredictor

        check_options(options, EXPLAIN_OPTIONS, f"explain {self.name}")
        opts = {k.replace("_", "-"): v for k, v in options.items()}
        methods = [m.strip() for m in str(opts.get("method", ",".join(CAM_METHODS))).split(",") if m.strip()]
        if not methods or any(m not in CAM_METHODS for m in methods):
            raise ConfigError(f"Option --method expects one or more of {', '.join(CAM_METHODS)} (comma-separated), "
                              f"got {opts.get('method')!r}.")
        which = opts.get("classes", "predicted")
        if which not in ("predicted", "all"):
            raise ConfigError(f"Option --classes expects predicted or all, got {which!r}.")
        batch, workers, threads = (_int_option(opts, "batch-size", 32), _int_option(opts, "workers", 2),
                                   _int_option(opts, "threads", 0))
        zoom = _int_option(opts, "zoom", 3)
        if not 1 <= zoom <= 16:
            raise ConfigError(f"Option --zoom expects an integer from 1 to 16, got {zoom}.")
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
            targets = [out.label_index] if which == "predicted" else list(range(len(classes)))
            for method in methods:
                for k in targets:
                    _, _, cams = predictor.explain([rec.array], method=method, class_idx=k)
                    overlay = Image.fromarray(heatmap_overlay(rec.array, cams[0]))
                    if zoom > 1:
                        overlay = overlay.resize((overlay.width * zoom, overlay.height * zoom), Image.NEAREST)
                    png = out_dir / f"{stem}_{method}_{classes[k]}.png"
                    overlay.save(png)
                    rows.append({"source": str(path), **{f"p_{c}": round(float(p), 6) for c, p in zip(classes, out.prob)},
                                 "label": out.label, "method": method, "explained_class": classes[k],
                                 "overlay": str(png.relative_to(run_dir))})
        fields = ["source", *[f"p_{c}" for c in classes], "label", "method", "explained_class", "overlay"]
        with open(run_dir / "explanations.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        seconds = time.perf_counter() - start
        table = [["patch", "label", "method", "class explained", "overlay"]] + [
            [Path(r["source"]).name, r["label"], r["method"], r["explained_class"], r["overlay"]] for r in rows[:50]]
        notes = [f"{len(records)} patch(es), {len(rows)} overlay(s) in {seconds:.1f} s (model "
                 f"{predictor.meta['architecture']}, layer {predictor.explainer(methods[0]).layer}); wrote "
                 f"{run_dir / 'explanations.csv'} and explanations/"]
        return RunResult(run_dir, {}, f"{self.title}: Grad-CAM explanations", table, notes, failures)


# --------------------------------------------------------------------------------------------- the tasks
@TASKS.register("pcam")
class PcamTask(HistoTask):
    """Tumour vs normal on PCam patches (lymph-node sections; label = tumour in the centre 32 x 32)."""

    name = "pcam"
    title = "PCam histopathology patches: tumour vs normal (compact CNN vs ResNet-18)"
    config_cls = HistoConfig
    dataset = "pcam"
    official_split = True
    label_region = 32 / 96

    def make_split(self, config: HistoConfig, source: Any, split_path: Path):
        """PCam's official split (every patch id, the data checksum), unless ``--split-file`` is given."""
        if config.split_file:
            return super().make_split(config, source, split_path)
        from breastdx.data.splits import SplitFile

        ids = list(source.ids)
        parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
        for i, item in enumerate(ids):  # ids of load_pcam(root, None) start with the split: "valid/1/..."
            key = item.split("/", 1)[0]
            if key not in parts:
                from breastdx.data.errors import DataError

                raise DataError(f"PCam patch id {item!r} names none of the splits train, valid, test.")
            parts[key].append(i)
        labels = source.labels
        counts = {s: {c: int((labels[idx] == k).sum()) for k, c in enumerate(source.class_names)}
                  for s, idx in zip(("train", "val", "test"), parts.values())}
        n = max(1, len(ids))
        split = SplitFile(path=None, data_checksum=source.checksum, seed=0,
                          ratios=tuple(len(v) / n for v in parts.values()),  # type: ignore[arg-type]
                          train=[ids[i] for i in parts["train"]], val=[ids[i] for i in parts["valid"]],
                          test=[ids[i] for i in parts["test"]], dataset="pcam",
                          summary={"n_items": len(ids), "class_names": list(source.class_names), "grouped_by": None,
                                   "kind": "official PCam split (train, valid -> val, test)", "counts": counts,
                                   "note": "PCam patches carry no patient ids in this layout; the official split "
                                           "separates slides (Veeling et al. 2018)."})
        split.to_json(split_path)
        return split

    def _card_data(self, split: Any) -> str:
        return ("- PatchCamelyon (Veeling et al. 2018, doi:10.1007/978-3-030-00934-2_24; CC0), from Camelyon16 "
                "lymph-node sections (metastases of breast cancer, not breast tissue). Label 1 = tumour in the "
                "centre 32 x 32 pixels of the 96 x 96 patch.\n" + super()._card_data(split) + "\n"
                "- Official split; the JPEG subset holds the first 2,000 patches per class of train, the last 3,000 "
                "of valid and the first 3,000 of test. JPEG re-encoding: pixels differ slightly from the HDF5 release.")

    def _card_limitations(self) -> list[str]:
        return ["Trained on 4,000 patches (1.5% of PCam's training split); lymph-node tissue from two Dutch centres "
                "(Camelyon16); no external validation.",
                "The label concerns the centre 32 x 32 pixels only; the model sees the whole patch.",
                "PCam holds pixel-identical duplicate patches within the tumour class (48 groups in this test "
                "subset); metrics without them are in the training run's metrics.json.",
                "Patches only: no whole-slide inference or aggregation.",
                "Research use only; not for diagnosis."]


@TASKS.register("idc")
class IdcTask(HistoTask):
    """Invasive ductal carcinoma vs not on 50 x 50 IDC patches, split by patient."""

    name = "idc"
    title = "IDC histopathology patches: invasive ductal carcinoma vs not (compact CNN vs ResNet-18)"
    config_cls = IdcConfig
    dataset = "idc"

    def _card_data(self, split: Any) -> str:
        return ("- IDC (Janowczyk & Madabhushi 2016, doi:10.4103/2153-3539.186902): 50 x 50 patches of 162 "
                "whole-mount slides; label 1 = invasive ductal carcinoma.\n" + super()._card_data(split))


@TASKS.register("breakhis")
class BreakHisTask(HistoTask):
    """Malignant vs benign BreakHis images, split by patient, optionally at one magnification."""

    name = "breakhis"
    title = "BreakHis histopathology images: malignant vs benign (compact CNN vs ResNet-18)"
    config_cls = BreakHisConfig
    dataset = "breakhis"

    def load_source(self, config: HistoConfig, data_root: Path):
        """BreakHis images, at ``--magnification`` only when it is not 0.

        Raises:
            ConfigError: For a magnification BreakHis does not have.
        """
        from breastdx.data.breakhis import MAGNIFICATIONS
        from breastdx.data.patches import load_patch_dataset

        if config.magnification and config.magnification not in MAGNIFICATIONS:
            raise ConfigError(f"Option --magnification expects 0 (all) or one of "
                              f"{', '.join(map(str, MAGNIFICATIONS))}, got {config.magnification}.")
        return load_patch_dataset(self.dataset, data_root, magnification=config.magnification or None)

    def _card_data(self, split: Any) -> str:
        return ("- BreakHis (Spanhol et al. 2016, doi:10.1109/TBME.2015.2496264): 700 x 460 H&E images of 82 "
                "patients at 40-400x; label 1 = malignant.\n" + super()._card_data(split))
