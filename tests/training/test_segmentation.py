"""Segmentation training: schedule, per-image Dice, a 2-step Lightning run on synthetic data, reproducibility."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from breastdx.data.datasets import SegmentationDataset
from breastdx.data.transforms import Preprocessing, ultrasound_augmentation
from breastdx.models.networks import build_network
from breastdx.runs import seed_everything
from breastdx.evaluation.segmentation import dice_per_case
from breastdx.training.optim import warmup_cosine
from breastdx.training.segmentation import OptimConfig, SegmentationModule
from breastdx.training.trainer import (CHECKPOINT_DIR, FitSettings, best_state_dict, make_trainer,
                                       parse_devices, read_training_log, remove_checkpoints)

SIZE = 32


def _synthetic(n: int, seed: int) -> SegmentationDataset:
    """Dark images with a bright ellipse-ish square lesion (none in every third image)."""
    rng = np.random.default_rng(seed)
    images = (rng.random((n, SIZE, SIZE)) * 60).astype(np.uint8)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in range(n):
        if i % 3 == 2:
            continue
        r, c = rng.integers(4, SIZE - 12, size=2)
        h, w = rng.integers(5, 10, size=2)
        masks[i, r:r + h, c:c + w] = True
        images[i][masks[i]] += 150
    labels = ["normal" if i % 3 == 2 else "benign" for i in range(n)]
    return SegmentationDataset(images, masks, Preprocessing(image_size=SIZE), labels=labels)


def test_warmup_cosine():
    assert warmup_cosine(0, 100, 10, 0.01) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10, 0.01) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10, 0.01) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 10, 0.01) == pytest.approx(0.01)
    mid = warmup_cosine(55, 100, 10, 0.0)
    assert mid == pytest.approx(0.5)


def test_dice_per_case_in_torch():
    target = torch.zeros(3, 2, 3, dtype=torch.bool)
    pred = torch.zeros(3, 2, 3, dtype=torch.bool)
    target[0, 0, :2] = True
    pred[0, 0, :3] = True  # Dice 0.8
    pred[1, 1, 1] = True  # reference empty, prediction not: 0
    out = dice_per_case(pred, target)  # image 2: both empty -> 1
    torch.testing.assert_close(out, torch.tensor([0.8, 0.0, 1.0]))


def test_parse_devices():
    assert parse_devices("auto") == "auto"
    assert parse_devices("2") == 2
    assert parse_devices("0,1") == [0, 1]
    assert parse_devices("1,") == [1]
    with pytest.raises(ValueError, match="devices"):
        parse_devices("two")


def test_dataset_items_and_augmentation():
    ds = _synthetic(6, 0)
    item = ds[0]
    assert item["image"].shape == (1, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["mask"].shape == (1, SIZE, SIZE) and bool(item["has_lesion"])
    assert not bool(ds[2]["has_lesion"])
    aug = ds.subset([0, 1, 2], transform=ultrasound_augmentation(SIZE, seed=1))
    a = aug[0]
    assert a["image"].shape == (1, SIZE, SIZE) and set(a["mask"].unique().tolist()) <= {0.0, 1.0}
    assert 0.0 <= float(a["image"].min()) and float(a["image"].max()) <= 1.0
    aug2 = ds.subset([0, 1, 2], transform=ultrasound_augmentation(SIZE, seed=1))
    torch.testing.assert_close(aug2[0]["image"], a["image"])  # seeded
    with pytest.raises(ValueError, match="masks must have shape"):
        SegmentationDataset(ds.images, ds.masks[:2], ds.preprocessing)


def _fit(run_dir: Path, seed: int, ema_decay: float = 0.0, net: torch.nn.Module | None = None, epochs: int = 2,
         precise_bn_batches: int = 0, module_out: list | None = None) -> tuple[dict[str, torch.Tensor], float]:
    from monai.data import DataLoader

    seed_everything(seed)
    train = _synthetic(12, 1)
    train.transform = ultrasound_augmentation(SIZE, seed=seed)
    val = _synthetic(6, 2)
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train, batch_size=4, shuffle=True, generator=gen, num_workers=0)
    val_loader = DataLoader(val, batch_size=6, num_workers=0)
    if net is None:
        net, _ = build_network("unet", 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    module = SegmentationModule(net, OptimConfig(lr=1e-2, ema_decay=ema_decay,
                                                 precise_bn_batches=precise_bn_batches))
    if module_out is not None:
        module_out.append(module)
    trainer, ckpt = make_trainer(run_dir, FitSettings(epochs=epochs, max_train_batches=2, progress_bar=False, patience=5,
                                                      monitor="val_dice", accelerator="cpu", devices="1"),
                                 "max", log_every_n_steps=1)
    trainer.fit(module, train_loader, val_loader)
    state = best_state_dict(ckpt, prefix=module.state_prefix)
    return state, float(ckpt.best_model_score)


def test_two_step_training_smoke_and_same_seed_same_result(tmp_path):
    state, score = _fit(tmp_path / "a", seed=3)
    assert (tmp_path / "a" / CHECKPOINT_DIR / "best.ckpt").is_file()
    assert 0.0 <= score <= 1.0 and math.isfinite(score)
    net, _ = build_network("unet", 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    net.load_state_dict(state)  # keys without the LightningModule prefix
    curves = read_training_log(tmp_path / "a")
    assert curves["epoch"] == [0.0, 1.0] and "val_dice" in curves and "train_loss" in curves
    remove_checkpoints(tmp_path / "a")
    assert not (tmp_path / "a" / CHECKPOINT_DIR).exists()

    state2, score2 = _fit(tmp_path / "b", seed=3)
    assert score2 == score
    for k in state:
        torch.testing.assert_close(state2[k], state[k], rtol=0, atol=0)


def test_best_state_dict_without_checkpoint():
    class NoCheckpoint:
        best_model_path = ""
        monitor = "val_dice"

    with pytest.raises(FileNotFoundError, match="val_dice"):
        best_state_dict(NoCheckpoint())


def test_weight_averaging_exports_the_averaged_weights(tmp_path):
    state, score = _fit(tmp_path / "ema", seed=3, ema_decay=0.9)
    raw, _ = _fit(tmp_path / "raw", seed=3)
    net, _ = build_network("unet", 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    net.load_state_dict(state)
    assert any(not torch.equal(state[k], raw[k]) for k in state)  # averaged, not the raw weights
    module = SegmentationModule(net, OptimConfig(ema_decay=0.9))
    assert module.state_prefix == "ema.module."
    assert all(not p.requires_grad for p in module.ema.parameters())
    with pytest.raises(ValueError, match="ema_decay"):
        SegmentationModule(net, OptimConfig(ema_decay=1.5))


def test_precise_bn_gives_the_averaged_weights_statistics_of_their_own(tmp_path):
    """A batch-norm network with averaged weights is validated and exported with running statistics recomputed
    for those weights over the kept training batches (one update_bn pass), not with averaged statistics."""
    from torch.optim.swa_utils import update_bn

    seed_everything(3)
    net, _ = build_network("fcn", 1, 2, width=4, head_channels=8)
    modules: list = []
    state, _ = _fit(tmp_path / "pbn", seed=3, ema_decay=0.9, net=net, epochs=1, precise_bn_batches=8,
                    module_out=modules)
    kept = list(modules[0]._bn_batches)
    assert len(kept) == 2  # the epoch's two batches (max_train_batches=2), fewer than the 8 it may keep
    again, _ = build_network("fcn", 1, 2, width=4, head_channels=8)
    again.load_state_dict(state)
    update_bn(kept, again)
    for k, v in again.state_dict().items():
        if "running_" in k:
            torch.testing.assert_close(state[k], v)
    plain, _ = _fit(tmp_path / "avg", seed=3, ema_decay=0.9, net=build_network("fcn", 1, 2, width=4,
                                                                                 head_channels=8)[0], epochs=1)
    assert any(not torch.equal(plain[k], state[k]) for k in state if "running_mean" in k)


def test_precise_bn_leaves_a_network_without_batch_norm_alone():
    net, _ = build_network("unet", 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    assert not SegmentationModule(net, OptimConfig(precise_bn_batches=8))._has_bn


@pytest.mark.parametrize("native, want", [(False, "32-true"), (True, "bf16-mixed")])
def test_trainer_falls_back_to_float32_where_bfloat16_is_emulated(tmp_path, monkeypatch, caplog, native, want):
    """--precision bf16-mixed never crawls silently: on a CPU without native bfloat16 it trains in float32,
    with a warning; where bfloat16 is native it is kept. ``auto`` follows the same rule."""
    from breastdx.training.trainer import make_trainer

    monkeypatch.setattr("breastdx.runtime.bf16_native_cpu", lambda: native)
    with caplog.at_level("WARNING", logger="breastdx.runtime"):
        trainer, _ = make_trainer(tmp_path, FitSettings(precision="bf16-mixed", accelerator="cpu", progress_bar=False))
    assert str(trainer.precision) == want
    assert any("no native bfloat16" in r.getMessage() for r in caplog.records) != native
    auto, _ = make_trainer(tmp_path / "auto", FitSettings(precision="auto", accelerator="cpu", progress_bar=False))
    assert str(auto.precision) == want


def test_focal_loss_reduces_to_dice_ce_and_weighs_easy_pixels_less():
    import torch.nn as nn
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))
    net = nn.Conv2d(3, 3, 1)
    dice_ce = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)(logits, target)
    assert SegmentationModule(net).loss_fn(logits, target) == pytest.approx(dice_ce.item(), rel=1e-6)
    near_zero = SegmentationModule(net, OptimConfig(focal_gamma=1e-9)).loss_fn(logits, target)
    assert near_zero.item() == pytest.approx(dice_ce.item(), rel=1e-5)  # the focal term is CE at gamma 0
    focal = SegmentationModule(net, OptimConfig(focal_gamma=2.0)).loss_fn(logits, target)
    assert focal.item() < dice_ce.item() - 0.1  # every pixel's CE shrinks by (1 - p_true) ** 2


def test_a_stopped_fit_resumes_after_its_last_epoch_as_if_never_stopped(tmp_path, monkeypatch):
    """fit() keeps the whole state after each epoch (checkpoints/last.ckpt, read back with weights_only=True), random
    streams included; with RESUME_ENV set it goes on from there: the epochs before are not trained again, the
    training log covers every epoch, the checkpoints are gone at the end, and the weights are those of the same
    run never stopped (same data order and augmentations after resuming)."""
    from lightning.pytorch.callbacks import Callback
    from monai.data import DataLoader

    from breastdx.training import trainer as trainer_mod
    from breastdx.training.trainer import LAST_CHECKPOINT, RESUME_ENV, fit, resume_epoch

    class StopAfter(Callback):  # Ctrl+C after the validation of an epoch (0-based), as a user would press it
        def __init__(self, epoch: int):
            self.epoch = epoch

        def on_validation_end(self, trainer, pl_module):
            if trainer.current_epoch == self.epoch:
                raise KeyboardInterrupt

    trained_epochs = []

    class Count(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            trained_epochs.append(trainer.current_epoch)

    made = trainer_mod.make_trainer

    def with_callbacks(*extra):
        monkeypatch.setattr(trainer_mod, "make_trainer",
                            lambda *a, **k: made(*a, **{**k, "callbacks": [*k["callbacks"], *extra]}))

    def run(folder):
        seed_everything(0)
        net, _ = build_network("unet", 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
        module = SegmentationModule(net, OptimConfig(lr=1e-2, ema_decay=0.9))
        train = _synthetic(12, 1)
        train.transform = ultrasound_augmentation(SIZE, seed=0)
        loaders = (DataLoader(train, batch_size=4, shuffle=True, num_workers=0,
                              generator=torch.Generator().manual_seed(0)), DataLoader(_synthetic(6, 2), batch_size=6))
        return fit(module, net, *loaders, folder, FitSettings(epochs=5, progress_bar=False, monitor="val_dice",
                                                              accelerator="cpu", devices="1"))

    with_callbacks()
    never_stopped = run(tmp_path / "a")

    with_callbacks(StopAfter(2), Count())
    with pytest.raises(SystemExit):  # Lightning's graceful shutdown on KeyboardInterrupt
        run(tmp_path / "b")
    last = tmp_path / "b" / CHECKPOINT_DIR / LAST_CHECKPOINT
    assert last.is_file() and trained_epochs == [0, 1, 2]
    assert resume_epoch(last) == 1  # Lightning runs checkpoint callbacks last: epoch 2 stopped before its save
    torch.load(last, map_location="cpu", weights_only=True)  # plain data and tensors only

    trained_epochs.clear()
    monkeypatch.setenv(RESUME_ENV, "1")
    with_callbacks(StopAfter(3), Count())  # stopped a second time: the log keeps the first part's epochs
    with pytest.raises(SystemExit):
        run(tmp_path / "b")
    assert trained_epochs == [2, 3] and resume_epoch(last) == 2
    assert read_training_log(tmp_path / "b")["epoch"][:3] == [0.0, 1.0, 2.0]

    trained_epochs.clear()
    with_callbacks(Count())
    import shutil
    import warnings

    shutil.move(tmp_path / "b", tmp_path / "moved")  # copied to another machine, say: its checkpoints are found there
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        resumed = run(tmp_path / "moved")
    assert not [w for w in said if "dirpath has changed" in str(w.message)]  # Lightning then forgot the best score
    assert resumed.info["resumed_after_epoch"] == 2
    assert trained_epochs == [3, 4]  # epochs 0 to 2 are not trained again
    assert read_training_log(tmp_path / "moved")["epoch"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert not (tmp_path / "moved" / CHECKPOINT_DIR).exists()
    assert (resumed.best_epoch, resumed.best_score) == (never_stopped.best_epoch, never_stopped.best_score)
    for k, v in never_stopped.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[k], v, rtol=0, atol=0)


def test_a_finished_fit_is_not_trained_again_when_its_run_resumes(tmp_path, monkeypatch):
    """Inside a 'breastdx train' run (RUN_DIR_ENV), a finished fit keeps its best weights and figures in
    checkpoints/ (no Lightning file) until the run ends; a resumed run (stopped later: testing, the next
    architecture or fold) reads them back instead of training again; remove_fit_states clears them. A fit outside a
    run leaves nothing behind."""
    from monai.data import DataLoader

    from breastdx.runs import RUN_DIR_ENV
    from breastdx.training.trainer import FITTED, RESUME_ENV, fit, remove_fit_states

    def run(folder):
        seed_everything(0)
        net, _ = build_network("unet", 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
        loaders = (DataLoader(_synthetic(8, 1), batch_size=4, shuffle=True, num_workers=0,
                              generator=torch.Generator().manual_seed(0)), DataLoader(_synthetic(4, 2), batch_size=4))
        return net, fit(SegmentationModule(net, OptimConfig(lr=1e-2)), net, *loaders, folder,
                        FitSettings(epochs=2, progress_bar=False, monitor="val_dice", accelerator="cpu", devices="1"))

    monkeypatch.setenv(RESUME_ENV, "")
    monkeypatch.setenv(RUN_DIR_ENV, "")
    run(tmp_path / "alone")
    assert not (tmp_path / "alone" / CHECKPOINT_DIR).exists()

    monkeypatch.setenv(RUN_DIR_ENV, str(tmp_path / "run"))
    _, first = run(tmp_path / "run" / "archs" / "unet")
    kept = tmp_path / "run" / "archs" / "unet" / CHECKPOINT_DIR
    assert sorted(p.name for p in kept.iterdir()) == [f"{FITTED}.json", f"{FITTED}.safetensors"]

    monkeypatch.setenv(RESUME_ENV, "1")
    import breastdx.training.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "make_trainer", lambda *a, **k: pytest.fail("trained again"))
    net, again = run(tmp_path / "run" / "archs" / "unet")
    assert (again.best_epoch, again.best_score, again.epochs_run, again.info) == (
        first.best_epoch, first.best_score, first.epochs_run, first.info)
    assert not net.training
    for k, v in first.network.state_dict().items():
        torch.testing.assert_close(net.state_dict()[k], v, rtol=0, atol=0)
    remove_fit_states(tmp_path / "run")
    assert not kept.exists()


def test_each_epochs_log_line_shows_its_own_training_loss(tmp_path, caplog):
    """The line was written at the validation's end, before the epoch's training losses were aggregated: it showed
    the epoch before's (and none at epoch 0)."""
    import csv
    import logging
    import re

    from monai.data import DataLoader

    from breastdx.training.trainer import LOG_DIR, fit

    seed_everything(0)
    net, _ = build_network("unet", 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    loaders = (DataLoader(_synthetic(8, 1), batch_size=4, shuffle=True, num_workers=0,
                          generator=torch.Generator().manual_seed(0)), DataLoader(_synthetic(4, 2), batch_size=4))
    with caplog.at_level(logging.INFO, logger="breastdx.training.trainer"):
        fit(SegmentationModule(net, OptimConfig(lr=1e-2)), net, *loaders, tmp_path,
            FitSettings(epochs=3, progress_bar=False, monitor="val_dice", accelerator="cpu", devices="1"))
    said = {int(m[1]): float(m[2]) for m in re.finditer(r"epoch (\d+) \(\d+ s\):.*?train_loss (\S+),", caplog.text)}
    with open(tmp_path / LOG_DIR / "metrics.csv") as f:
        logged = {int(r["epoch"]): float(r["train_loss"]) for r in csv.DictReader(f) if r.get("train_loss")}
    assert sorted(said) == [0, 1, 2] and all(said[e] == pytest.approx(logged[e], abs=1e-4) for e in said)


@pytest.mark.parametrize("settings, said", [
    ({"accelerator": "bogus"}, "invalid accelerator name"),
    ({"accelerator": "gpu"} if not torch.cuda.is_available() else {"devices": "0"}, "Lightning cannot train so"),
    ({"strategy": "bogus"}, "invalid strategy name"),
])
def test_lightning_settings_it_cannot_use_are_named(tmp_path, settings, said):
    """They were 'unexpected error ... likely a bug in breastdx'."""
    from breastdx.config import ConfigError

    with pytest.raises(ConfigError, match=said):
        make_trainer(tmp_path, FitSettings(epochs=1, progress_bar=False, **settings))


def test_precise_bn_after_a_resume_recomputes_the_statistics_of_the_run_never_stopped(tmp_path, monkeypatch):
    """The kept batches live in memory only (last.ckpt would grow by hundreds of MB with them). They spanned epochs
    when an epoch had fewer batches than precise_bn_batches, so a resumed run, which starts with none, recomputed the
    statistics from fewer batches than the run never stopped: other validation scores, other exported statistics.
    They are now the current epoch's only, which a resumed epoch has as well."""
    from lightning.pytorch.callbacks import Callback
    from monai.data import DataLoader

    from breastdx.training import trainer as trainer_mod
    from breastdx.training.trainer import RESUME_ENV, fit

    class StopAfter(Callback):
        def on_validation_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt

    made = trainer_mod.make_trainer

    def run(folder, *extra):
        monkeypatch.setattr(trainer_mod, "make_trainer",
                            lambda *a, **k: made(*a, **{**k, "callbacks": [*k["callbacks"], *extra]}))
        seed_everything(0)
        net, _ = build_network("fcn", 1, 2, width=4, head_channels=8)
        module = SegmentationModule(net, OptimConfig(lr=1e-2, ema_decay=0.9, precise_bn_batches=8))
        train = _synthetic(12, 1)
        train.transform = ultrasound_augmentation(SIZE, seed=0)
        loaders = (DataLoader(train, batch_size=4, shuffle=True, num_workers=0,  # 3 batches an epoch, fewer than 8
                              generator=torch.Generator().manual_seed(0)), DataLoader(_synthetic(6, 2), batch_size=6))
        fit(module, net, *loaders, folder, FitSettings(epochs=3, progress_bar=False, monitor="val_dice",
                                                       accelerator="cpu", devices="1"))
        return module

    never_stopped = run(tmp_path / "a")
    assert len(never_stopped._bn_batches) == 3
    with pytest.raises(SystemExit):
        run(tmp_path / "b", StopAfter())
    monkeypatch.setenv(RESUME_ENV, "1")
    resumed = run(tmp_path / "b")
    assert read_training_log(tmp_path / "b")["val_dice"] == read_training_log(tmp_path / "a")["val_dice"]
    for k, v in never_stopped.ema.module.state_dict().items():
        torch.testing.assert_close(resumed.ema.module.state_dict()[k], v, rtol=0, atol=0)
