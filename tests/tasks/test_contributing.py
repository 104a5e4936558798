"""CONTRIBUTING.md's two recipes, followed as written: a toy dataset spec and a toy network, defined in the test.

The toy dataset is made in memory (three classes of 20 x 20 gray images: a bright square top-left, bottom-right,
or none), declared as a :class:`~breastdx.pipeline.classification.ClassificationSpec`, registered, trained
for one step through the command line, and its saved model predicts a PNG through the command line. A second
test registers a toy network with ``@register_network`` and trains the toy spec with it. Both take the
registrations away afterwards, so that the other tests see the registries unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.config import option
from breastdx.data.image_sets import ImageSet, SplitData
from breastdx.pipeline.task import TASKS
from breastdx.pipeline.classification import (
    ClassificationSpec,
    ImageClassificationConfig,
    register,
)

runner = CliRunner()
TOY = "toy-squares"
CLASSES = ("blank", "top_left", "bottom_right")
SIDE = 20  # odd-ish on purpose: the pipeline resizes to --image-size
FAST = ["--epochs", "1", "--max-train-batches", "1", "--batch-size", "8", "--n-bootstrap", "20", "--image-size", "16",
        "--gradcam-examples", "0", "--progress-bar", "false", "--num-workers", "0", "--threads", "1"]


def toy_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``(SIDE, SIDE)`` noise, with a bright 8 x 8 square top-left (label 1) or bottom-right (label 2)."""
    image = rng.integers(0, 60, (SIDE, SIDE)).astype(np.uint8)
    if label == 1:
        image[2:10, 2:10] = 220
    elif label == 2:
        image[-10:-2, -10:-2] = 220
    return image


@dataclass(frozen=True)
class ToyConfig(ImageClassificationConfig):
    """Options of ``breastdx train toy-squares``: the shared ones with small defaults, and:

    Attributes:
        n_per_class: Images per class in each of train, val and test.
    """

    archs: tuple[str, ...] = ("compact_cnn",)
    epochs: int = option(1, ge=1)
    n_per_class: int = option(4, ge=2)


def read_toy(config: Any, data_root: Path, reuse: Path | None, out: Path) -> SplitData:
    """The recipe's reader: make (here: draw) the data, write the split file, return the three parts."""
    rng = np.random.default_rng(config.seed)
    parts: dict[str, ImageSet] = {}
    split: dict[str, list[str]] = {}
    digest = hashlib.sha256()
    for name in ("train", "val", "test"):
        labels = np.tile(np.arange(len(CLASSES), dtype=np.int64), config.n_per_class)
        images = [toy_image(int(k), rng) for k in labels]
        for image in images:
            digest.update(image.tobytes())
        ids = tuple(f"{name}_{i}" for i in range(len(labels)))
        parts[name] = ImageSet(ids, labels, lambda i, images=images: (images[i], None))
        split[name] = list(ids)
    out.write_text(json.dumps({"dataset": TOY, "seed": config.seed, **split}, indent=1))
    return SplitData(parts, CLASSES, digest.hexdigest(), "drawn at random (toy)",
                     about="- Toy squares: synthetic 20 x 20 gray images made in the test.")


TOY_SPEC = ClassificationSpec(name=TOY, title="Toy squares (test of CONTRIBUTING.md)", config_cls=ToyConfig,
                              read=read_toy, positive="top_left", mode="gray")


@pytest.fixture(scope="module")
def toy_task():
    """The toy spec in the task registry for the module's tests, removed afterwards."""
    task = register(TOY_SPEC)
    yield task
    TASKS._entries.pop(TOY, None)


@pytest.fixture(scope="module")
def toy_run(toy_task, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "run"
    result = runner.invoke(app, ["train", TOY, "--archs", "compact_cnn", "--arch-args",
                                 '{"compact_cnn": {"widths": [8, 16]}}', *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_toy_spec_trains_through_the_command_line(toy_run):
    for name in ("config.yaml", "versions.json", "split.json", "metrics.json", "report.html", "model/meta.json",
                 "model/model.safetensors", "model/MODEL_CARD.md", "model/split.json"):
        assert (toy_run / name).is_file(), name
    metrics = json.loads((toy_run / "metrics.json").read_text())
    assert metrics["task"] == TOY and metrics["n"] == 12 and metrics["positive_class"] == "top_left"
    assert "drawn at random (toy)" in metrics["split"]
    assert "benchmark" not in metrics  # the spec declares none
    meta = json.loads((toy_run / "model" / "meta.json").read_text())
    assert meta["task"] == TOY and meta["class_names"] == list(CLASSES) and meta["positive_class"] == "top_left"
    assert meta["architecture"] == "compact_cnn" and meta["architecture_args"]["widths"] == [8, 16]
    assert meta["gradcam"]["layer"] == "stages.1"
    assert meta["training_config"]["n_per_class"] == 4
    assert "Research use only" in (toy_run / "model" / "MODEL_CARD.md").read_text()


def test_the_toy_model_predicts_a_png(toy_run, tmp_path):
    png = tmp_path / "square.png"
    Image.fromarray(toy_image(1, np.random.default_rng(1))).save(png)
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", TOY, str(png), "--model", str(toy_run / "model"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["label"] in CLASSES
    probs = [float(rows[0][f"p_{c}"]) for c in CLASSES]
    assert abs(sum(probs) - 1) < 1e-4


def test_train_help_lists_the_toy_options(toy_task):
    result = runner.invoke(app, ["train", TOY, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "--n-per-class" in result.output and "--epochs" in result.output and "--archs" in result.output


class Tiny(nn.Module):
    """A toy classifier: one convolution, global average pooling, a linear head; ``(B, C, H, W) -> (B, K)``."""

    def __init__(self, in_channels: int, out_channels: int, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(width, out_channels)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


@pytest.fixture
def toy_network():
    """Registers toy networks by ``(name, min_size)`` for one test (the Grad-CAM layer only in the registry
    entry, as CONTRIBUTING.md says), and removes them afterwards."""
    from breastdx.models.network_registry import register_network
    from breastdx.models.networks import NETWORKS

    names: list[str] = []

    def add(name: str, min_size: int = 3) -> str:
        @register_network(name, kind="classification", gradcam_layer="features.0", min_size=min_size)
        def factory(in_channels: int, out_channels: int, *, width: int = 4) -> nn.Module:
            return Tiny(in_channels, out_channels, width)

        names.append(name)
        return name

    yield add
    for name in names:
        NETWORKS._entries.pop(name, None)
    assert not any(n in NETWORKS for n in names)


def test_a_toy_network_registered_in_the_test_trains_the_toy_spec(toy_task, toy_network, tmp_path):
    name = toy_network("toy_tiny_cnn")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", TOY, "--archs", name, *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert meta["architecture"] == name and meta["architecture_args"] == {"width": 4}
    # its own argument through --arch-args, as the guide shows (a 'width' once clashed with the size check's)
    out = tmp_path / "wide"
    result = runner.invoke(app, ["train", TOY, "--archs", name, "--arch-args", json.dumps({name: {"width": 6}}),
                                 *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "model" / "meta.json").read_text())["architecture_args"] == {"width": 6}
    assert meta["gradcam"]["layer"] == "features.0"


def test_an_image_size_below_the_network_minimum_is_refused_before_training(toy_task, toy_network, tmp_path):
    name = toy_network("toy_tiny_cnn_min32", min_size=32)
    result = runner.invoke(app, ["train", TOY, "--archs", name, *FAST, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "32" in result.output, result.output
    assert not (tmp_path / "run" / "archs").exists()
