"""Review of ``breastdx train`` for the image tasks: what a user's mistake leads to, on tiny synthetic data."""

import numpy as np
import pytest

from breastdx.data.classification import ClassificationDataset
from breastdx.data.transforms import Preprocessing
from breastdx.training.classification import ClassifierOptim, FitSettings, fit_classifier


def _dataset(n=16, size=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 255, (n, size, size)).astype(np.uint8)
    return ClassificationDataset(images, labels, Preprocessing(image_size=size), ("benign", "malignant"))


def test_a_diverged_training_is_said_so_not_reported_as_a_bug(tmp_path):
    """``--lr 1e30``: the first step makes every weight NaN; the run stopped later, in calibration, with "logits hold
    NaN or infinite values" taken for a bug. The fit now names the divergence and what to change (a ConfigError,
    which the command line prints plainly), and removes the useless checkpoints."""
    from breastdx.config import ConfigError
    from breastdx.models.networks import build_network
    from breastdx.training.trainer import TrainingDivergedError

    net, _ = build_network("compact_cnn", 1, 2, widths=[4, 8])
    settings = FitSettings(epochs=1, batch_size=8, progress_bar=False, seed=0)
    with pytest.raises(TrainingDivergedError, match=r"^The training diverged: at epoch 0, the network's outputs on "
                                                    r"the validation images hold NaN or infinite values\. Train again "
                                                    r"with a smaller --lr \(or a longer --warmup-fraction\)\.$"):
        fit_classifier(net, _dataset(), _dataset(n=8, seed=1), tmp_path / "arch", settings, ClassifierOptim(lr=1e30))
    assert issubclass(TrainingDivergedError, ConfigError)
    assert not (tmp_path / "arch" / "checkpoints").exists()


def test_a_finite_training_is_not_refused(tmp_path):
    from breastdx.models.networks import build_network

    net, _ = build_network("compact_cnn", 1, 2, widths=[4, 8])
    settings = FitSettings(epochs=1, batch_size=8, progress_bar=False, seed=0)
    result = fit_classifier(net, _dataset(), _dataset(n=8, seed=1), tmp_path / "arch", settings, ClassifierOptim())
    assert result.is_global_zero and result.epochs_run == 1


def test_a_segmentation_that_diverged_writes_no_model(tmp_path):
    """busi-seg ``--lr 1e30``: Dice of NaN outputs is a finite 0, so the run finished and shipped a model of NaN
    weights (test Dice 0.000). fit() now refuses the best epoch's weights, naming them, and removes the checkpoints."""
    import torch

    from breastdx.data.datasets import SegmentationDataset
    from breastdx.models.networks import build_network
    from breastdx.training.segmentation import OptimConfig, SegmentationModule
    from breastdx.training.trainer import FitSettings, TrainingDivergedError, fit, make_loaders

    rng = np.random.default_rng(0)
    images = (rng.random((8, 16, 16)) * 255).astype(np.uint8)
    masks = np.zeros((8, 16, 16), bool)
    masks[:, 4:10, 4:10] = True
    ds = SegmentationDataset(images, masks, Preprocessing(image_size=16), labels=["benign"] * 8)
    torch.manual_seed(0)
    net, _ = build_network("unet", 1, 2, channels=[4, 8], strides=[2], num_res_units=0)
    settings = FitSettings(epochs=1, batch_size=4, progress_bar=False, seed=0, monitor="val_dice")
    train, val = make_loaders(ds, ds, settings)
    with pytest.raises(TrainingDivergedError, match=r"^The training diverged: the weights of its best epoch \(\d+ of "
                                                    r"\d+ tensors, such as model\.\S+\) hold NaN or infinite values"):
        fit(SegmentationModule(net, OptimConfig(lr=1e30)), net, train, val, tmp_path / "run", settings)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("options, said", [
    ({"image_size": 16}, "Option --image-size: Network 'unet' needs images of at least 32 x 32 pixels, each side a "
                         "multiple of 16; got 16 x 16."),
    ({"image_size": 32, "arch_args": '{"channels": [4, 8, 16, 32, 64, 128], "strides": [2, 2, 2, 2, 2]}'},
     "Option --image-size: Network 'unet' needs images of at least 64 x 64 pixels, each side a multiple of 32"),
    ({"image_size": 16, "cv_folds": 2}, "Option --image-size: Network 'unet' needs images of at least 32 x 32"),
])
def test_busi_seg_refuses_an_image_size_its_network_cannot_take_before_any_work(tmp_path, options, said):
    """``train busi-seg --image-size 16`` (the option's own rule: >= 16, a multiple of 16) left the default U-Net a
    1 x 1 bottleneck and failed in the first training step as an "unexpected error"; a cross-validation did not
    check the network at all before its folds began."""
    import dataclasses

    from breastdx.config import ConfigError
    from breastdx.tasks import get_task

    task = get_task("busi-seg")
    config = dataclasses.replace(task.config_cls(), **options)
    with pytest.raises(ConfigError, match="^" + said.replace("(", r"\(").replace(")", r"\)")):
        task.train(config, tmp_path / "no-data", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_diverged_training_is_not_offered_a_resume(tmp_path):
    """After one architecture finished and another diverged, the failure message offered '--resume', which would
    diverge again; a failure that resuming meets again is recorded without that offer."""
    from breastdx.cli_runs import failed_run
    from breastdx.training.trainer import CHECKPOINT_DIR

    run = tmp_path / "run"
    (run / "resnet18" / CHECKPOINT_DIR).mkdir(parents=True)
    (run / "resnet18" / CHECKPOINT_DIR / "last.ckpt").write_bytes(b"x")
    assert "--resume" in failed_run("busi-cls", run, "stopped")
    said = failed_run("busi-cls", run, "The training diverged: ...", resumable=False)
    assert "--resume" not in said and said.startswith("The training diverged: ...\n(The run folder")


def test_busi_seg_writes_its_config_only_once_the_split_is_checked(tmp_path):
    """A resume given another data folder rewrote config.yaml with it before the split check refused it, so the next
    resume read the wrong folder; the config is now written after the check (shown on a split of other data)."""
    import json
    import os
    from pathlib import Path

    from typer.testing import CliRunner

    from breastdx.cli import app
    from breastdx.zoo import shipped_models

    data_root = Path(os.environ.get("BREASTDX_DATA", ""))
    if not (data_root / "busi").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    split = json.loads((shipped_models()["busi-seg"] / "split.json").read_text())
    split["data_checksum"] = "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(split))
    result = CliRunner().invoke(app, ["train", "busi-seg", "--data-dir", str(data_root), "--out", str(tmp_path / "run"),
                                      "--split-file", str(tmp_path / "other.json"), "--epochs", "1"])
    assert result.exit_code == 2 and "the data changed" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "run" / "config.yaml").exists()  # nothing written: the empty folder goes at exit
