"""The random state kept in a training's last checkpoint: captured, it brings the same batches back."""

import numpy as np
import torch
from monai.data import DataLoader

from breastdx.data.datasets import SegmentationDataset
from breastdx.data.nucleus_patches import NucleusPatches
from breastdx.data.transforms import Preprocessing, ultrasound_augmentation
from breastdx.training.random_state import capture, random_streams, restore


def _epoch(loader) -> list[torch.Tensor]:
    return [b["image"].clone() for b in loader]


def _round_trip(loader) -> None:
    _epoch(loader)  # the state after an epoch, as a checkpoint holds it
    state = capture(loader)
    next_epoch = _epoch(loader)
    torch.rand(3), np.random.rand(3)  # the global generators move on too
    restore(loader, state)
    again = _epoch(loader)
    assert len(again) == len(next_epoch)
    for a, b in zip(again, next_epoch):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_augmented_segmentation_batches_come_back():
    rng = np.random.default_rng(0)
    images = (rng.random((8, 32, 32)) * 255).astype(np.uint8)
    data = SegmentationDataset(images, images > 128, Preprocessing(image_size=32), labels=["benign"] * 8)
    data.transform = ultrasound_augmentation(32, seed=0)
    loader = DataLoader(data, batch_size=4, shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(0))
    paths = [p for p, _ in random_streams(loader)]
    assert any(p.endswith("generator") for p in paths) and any(p.startswith("dataset.transform") and p.endswith(".R") for p in paths)
    _round_trip(loader)


def test_scanner_augmentation_streams_nine_levels_down_come_back():
    """--scanner-augment's scale-crop keeps its streams at dataset.transform.transforms[0].transforms[0]
    .transforms[0].R, nine levels down: a walk cut at eight left them out and a resumed run drew other crops."""
    from breastdx.data.transforms import AugmentationConfig

    rng = np.random.default_rng(0)
    images = (rng.random((8, 32, 32)) * 255).astype(np.uint8)
    data = SegmentationDataset(images, images > 128, Preprocessing(image_size=32), labels=["benign"] * 8)
    data.transform = ultrasound_augmentation(32, AugmentationConfig(scanner=True, crop_prob=1.0), seed=0)
    loader = DataLoader(data, batch_size=4, shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(0))
    deepest = max(p.count(".") + p.count("[") for p, _ in random_streams(loader))
    assert deepest >= 9
    _round_trip(loader)


def test_streams_in_dicts_are_found():
    class Holder:  # an object of breastdx's modules holding its streams in a dict
        __module__ = "breastdx.test"

        def __init__(self):
            self.by_name = {"a": np.random.RandomState(1), "b": [np.random.default_rng(2)]}

    assert [p for p, _ in random_streams(Holder())] == ["by_name['a']", "by_name['b'][0]"]


def test_nucleus_patches_go_on_from_their_count():
    rng = np.random.default_rng(1)
    tile = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    classes = (rng.random((64, 64)) * 3).astype(np.uint8)
    loader = DataLoader(NucleusPatches([tile], [classes], size=32, n=4, seed=0), batch_size=2, num_workers=0)
    assert "dataset" in [p for p, _ in random_streams(loader)]
    _round_trip(loader)
    state = capture(loader)
    assert '"calls"' in state["streams"]["dataset"]
    # stored as tensors and text only: a checkpoint holding it loads without pickle
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)


def test_the_model_card_says_a_training_was_resumed():
    from breastdx.training.trainer import resumed_note

    assert resumed_note({"resumed_after_epoch": 14}) == ", resumed after epoch 14"
    assert resumed_note({"epochs_run": 30}) == ""
