"""Segmentation predictor: rebuild a network from its model folder alone, predict lesion masks at the original size.

A segmentation model folder holds ``model.safetensors`` (the state dict), ``meta.json`` and
``MODEL_CARD.md``. ``meta.json`` gives the network (``architecture``, ``architecture_args``,
``in_channels``, ``class_names``), the preprocessing (:class:`breastdx.data.transforms.Preprocessing`),
the decision threshold and the postprocessing (:class:`Postprocessing`), and how to run inference
(``inference``: the dtypes validated for it and test-time augmentation; the dtype used is chosen per
machine, see :mod:`breastdx.runtime`). Weights are read with ``safetensors``; nothing is
unpickled.

Pipeline per image ``(H, W)``: resize to ``(S, S)``, network, lesion probability (softmax), optional
left-right flip averaging, bilinear resize of the probability back to ``(H, W)``, threshold, optional
removal of small components / all but the largest one.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from breastdx.data.transforms import Preprocessing, restore_size
from breastdx.models.saved import ModelFolderError, read_meta

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"

INFERENCE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
TTA_MODES = ("none", "hflip")


@dataclass(frozen=True)
class Postprocessing:
    """How a lesion probability map becomes a mask.

    Attributes:
        threshold: Pixels with probability >= threshold are lesion.
        keep_largest: Keep only the largest connected component (8-connectivity).
        min_area_fraction: Remove components smaller than this fraction of the image area (0 keeps all).
    """

    threshold: float = 0.5
    keep_largest: bool = False
    min_area_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"Postprocessing.threshold must be in (0, 1), got {self.threshold}.")
        if not 0.0 <= float(self.min_area_fraction) < 1.0:
            raise ValueError(f"Postprocessing.min_area_fraction must be in [0, 1), got {self.min_area_fraction}.")

    def to_meta(self) -> dict[str, Any]:
        """The fields as a dictionary for ``meta.json``."""
        return asdict(self)

    @classmethod
    def from_meta(cls, data: dict[str, Any]) -> "Postprocessing":
        """Rebuild from :meth:`to_meta` output."""
        return cls(**{k: data[k] for k in ("threshold", "keep_largest", "min_area_fraction") if k in data})

    def apply(self, prob: np.ndarray) -> tuple[np.ndarray, int]:
        """Threshold and clean a probability map.

        Args:
            prob: Lesion probability, float ``(H, W)``.

        Returns:
            ``(mask bool (H, W), number of connected components kept)``.
        """
        mask = prob >= self.threshold
        if not mask.any():
            return mask, 0
        if not self.keep_largest and self.min_area_fraction <= 0:
            return mask, int(ndimage.label(mask, structure=np.ones((3, 3)))[1])
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        keep = sizes >= self.min_area_fraction * mask.size
        if self.keep_largest and keep.any():
            largest = int(np.argmax(np.where(keep, sizes, -1)))
            keep = np.zeros_like(keep)
            keep[largest] = True
        lut = np.concatenate([[False], keep])
        return lut[labels], int(keep.sum())


@dataclass
class SegmentationOutput:
    """The prediction for one image.

    Attributes:
        mask: Lesion mask at the original size, bool ``(H, W)``.
        prob: Lesion probability at the original size, float32 ``(H, W)`` (None when not kept).
        area_px: Lesion area in pixels.
        area_mm2: Lesion area in mm² when the pixel spacing is known, else None.
        n_components: Connected lesion regions in ``mask``.
        max_prob: Largest lesion probability in the image.
    """

    mask: np.ndarray
    prob: np.ndarray | None
    area_px: int
    area_mm2: float | None
    n_components: int
    max_prob: float


def save_weights(network: nn.Module, path: Path) -> Path:
    """Write a network's state dict as safetensors (tensors made contiguous and unshared).

    Args:
        network: The network.
        path: The ``.safetensors`` file.
    """
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in network.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
    os.chmod(path, 0o644)  # readable by everyone, like any other package file
    return path


def load_weights(network: nn.Module, path: Path) -> nn.Module:
    """Load a safetensors state dict into ``network`` (strict: every key must match).

    Raises:
        ModelFolderError: If the file is unreadable or its tensors do not fit the network; the message
            names the file and the first mismatched keys.
    """
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises SafetensorError / OSError on a bad file
        raise ModelFolderError(f"{path}: cannot read the weights ({type(e).__name__}: {e}).") from None
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[:4]
        raise ModelFolderError(f"{path}: the weights do not fit the network described in meta.json: "
                               f"{' '.join(first)}") from None
    return network


class SegmentationPredictor:
    """Predict lesion masks with a saved segmentation network.

    Args:
        network: The network, ``(B, C, S, S) -> (B, 2, S, S)`` logits (background, lesion), or None to
            build it from ``model_dir`` when needed (:meth:`from_dir` does so).
        meta: The model folder's ``meta.json`` content.
        batch_size: Images per forward pass.
        device: Torch device for the network.
        dtype: ``"auto"`` (default), ``"float32"`` or ``"bfloat16"`` (autocast). ``auto`` runs bfloat16 only where
            the device computes it natively and ``meta["inference"]`` says it was validated; elsewhere float32
            (see :func:`breastdx.runtime.choose_inference_dtype`). The choice is in ``self.dtype`` and its
            reason in ``self.dtype_reason``.
        tta: ``"none"`` or ``"hflip"`` (average with the left-right flipped image); default from meta.
        model_dir: The model folder (for the ONNX Runtime backend and a network built on demand).
        backend: ``"auto"``, ``"torch"`` or ``"onnxruntime"`` (see :class:`breastdx.inference.backends.NetworkRunner`).
        onnx_dir: Folder of cached ONNX graphs (default ``~/.cache/breastdx/onnx``).

    Raises:
        ModelFolderError: If ``meta`` lacks the preprocessing or names an unknown dtype or TTA mode.
        ValueError: If ``dtype`` is not ``auto``, ``float32`` or ``bfloat16``, or ``backend`` is unknown.
    """

    def __init__(self, network: nn.Module | None, meta: dict[str, Any], *, batch_size: int = 16,
                 device: str | torch.device = "cpu", dtype: str | None = "auto", tta: str | None = None,
                 model_dir: Path | None = None, backend: str = "auto", onnx_dir: Path | None = None) -> None:
        from breastdx.inference.backends import NetworkRunner
        from breastdx.runtime import validated_dtypes

        if "preprocessing" not in meta:
            raise ModelFolderError("meta.json of a segmentation model must hold 'preprocessing'.")
        inference = meta.get("inference", {})
        self.meta = meta
        self.preprocessing = Preprocessing.from_meta(meta["preprocessing"])
        self.postprocessing = Postprocessing.from_meta({"threshold": meta.get("threshold", 0.5),
                                                        **meta.get("postprocessing", {})})
        unknown = [d for d in validated_dtypes(meta) if d not in INFERENCE_DTYPES]
        if unknown:
            raise ModelFolderError(f"meta.json: unknown inference dtype {unknown[0]!r}; expected one of "
                                   f"{', '.join(INFERENCE_DTYPES)}.")
        self.tta = tta or inference.get("tta", "none")
        if self.tta not in TTA_MODES:
            raise ModelFolderError(f"Unknown test-time augmentation {self.tta!r}; expected one of "
                                   f"{', '.join(TTA_MODES)}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.batch_size = int(batch_size)
        self.runner = NetworkRunner(meta, network=network, model_dir=model_dir, device=device, dtype=dtype,
                                    backend=backend, onnx_dir=onnx_dir)
        self.device = self.runner.device
        self.dtype, self.dtype_reason = self.runner.dtype, self.runner.dtype_reason
        self.backend = self.runner.backend
        self.class_names = list(meta.get("class_names", ["background", "lesion"]))

    @property
    def network(self) -> nn.Module:
        """The PyTorch network (built from the model folder on first use under ONNX Runtime)."""
        return self.runner.network

    @classmethod
    def from_dir(cls, model_dir: str | Path, *, task: str | None = None, **kwargs: Any) -> "SegmentationPredictor":
        """Rebuild the predictor from a model folder alone.

        Args:
            model_dir: Folder with ``meta.json`` and the weights file it names.
            task: When given, the task the model must belong to (e.g. ``"busi-seg"``).
            **kwargs: Passed to the constructor (``batch_size``, ``device``, ``dtype``, ``tta``, ``backend``).

        Raises:
            ModelFolderError: If the folder, ``meta.json`` or the weights are missing or do not match.
        """
        model_dir = Path(model_dir)
        meta = read_meta(model_dir, task=task)
        for key in ("architecture_args", "in_channels", "preprocessing"):
            if key not in meta:
                raise ModelFolderError(f"{model_dir / 'meta.json'}: missing key {key!r} of a segmentation model.")
        return cls(None, meta, model_dir=model_dir, **kwargs)  # read_meta checked that the weights file exists

    # ------------------------------------------------------------------------------------------ network
    def predict_resized(self, batch: torch.Tensor) -> torch.Tensor:
        """Lesion probability at network size.

        Shape:
            ``(B, C, S, S)`` float in [0, 1] -> ``(B, S, S)`` float32 in [0, 1].
        """
        prob = self._lesion_prob(self.runner(batch))
        if self.tta == "hflip":
            prob = 0.5 * (prob + self._lesion_prob(self.runner(batch.flip(-1))).flip(-1))
        return prob

    @staticmethod
    def _lesion_prob(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if logits.shape[1] == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=1)[:, -1]

    # ------------------------------------------------------------------------------------------- images
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Resize one uint8 image to the network size (see :class:`Preprocessing`)."""
        return self.preprocessing.resize_image(image)

    def predict_prepared(self, resized: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]],
                         spacings: Sequence[tuple[float, float] | None] | None = None,
                         keep_prob: bool = True) -> list[SegmentationOutput]:
        """Predict images already resized by :meth:`prepare`.

        Args:
            resized: uint8 ``(S, S)`` (or ``(S, S, 3)``) per image.
            shapes: Original ``(H, W)`` per image.
            spacings: Pixel spacing ``(row, col)`` in mm per image, or None.
            keep_prob: Return the probability maps (else ``prob`` is None, saving memory).

        Returns:
            One :class:`SegmentationOutput` per image, in order.
        """
        spacings = list(spacings) if spacings is not None else [None] * len(resized)
        outputs: list[SegmentationOutput] = []
        for start in range(0, len(resized), self.batch_size):
            chunk = np.stack(resized[start:start + self.batch_size])
            prob_small = self.predict_resized(self.preprocessing.to_tensor(chunk))
            for k in range(prob_small.shape[0]):
                i = start + k
                prob = restore_size(prob_small[k], tuple(shapes[i])).numpy()
                mask, n_comp = self.postprocessing.apply(prob)
                area = int(mask.sum())
                sp = spacings[i]
                outputs.append(SegmentationOutput(
                    mask=mask, prob=prob if keep_prob else None, area_px=area,
                    area_mm2=float(area * sp[0] * sp[1]) if sp is not None else None,
                    n_components=n_comp, max_prob=float(prob.max())))
        return outputs

    def predict(self, images: Sequence[np.ndarray], spacings: Sequence[tuple[float, float] | None] | None = None,
                keep_prob: bool = True) -> list[SegmentationOutput]:
        """Predict lesion masks at the original size of each image.

        Args:
            images: uint8 ``(H, W)`` (gray models) or ``(H, W, 3)`` (RGB models), any sizes.
            spacings: Pixel spacing ``(row, col)`` in mm per image (None where unknown), or None.
            keep_prob: Return the probability maps.

        Returns:
            One :class:`SegmentationOutput` per image, in order.

        Raises:
            ValueError: If an image is not uint8 of the expected layout.
        """
        resized = [self.prepare(im) for im in images]
        return self.predict_prepared(resized, [im.shape[:2] for im in images], spacings, keep_prob)

    def predict_files(self, paths: Iterable[Path], *, workers: int = 2,
                      keep_prob: bool = False) -> Iterator[tuple[Path, Any, SegmentationOutput | None, str | None]]:
        """Read, preprocess and predict image files, overlapping file reading with the network.

        Reading and resizing run in ``workers`` threads (Pillow releases the GIL while decoding), one batch
        ahead of the network. A file that cannot be read is reported, not raised.

        Args:
            paths: Image files (PNG, JPEG, TIFF, DICOM; see :func:`breastdx.data.images.read_image`).
            workers: Reader threads.
            keep_prob: Keep the probability maps in the outputs.

        Yields:
            ``(path, record, output, None)`` per image read (record: :class:`breastdx.data.images.ImageRecord`),
            or ``(path, None, None, reason)`` per file that could not be read, in input order.
        """
        from breastdx.data.images import ImageReadError, read_image

        mode = self.preprocessing.mode

        def load(path: Path):
            try:
                rec = read_image(path, mode=mode)
                return path, rec, self.prepare(rec.array), None
            except (ImageReadError, ValueError, OSError) as e:
                return path, None, None, str(e)

        paths = [Path(p) for p in paths]
        batches = [paths[i:i + self.batch_size] for i in range(0, len(paths), self.batch_size)]
        with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
            pending = [pool.submit(load, p) for p in batches[0]] if batches else []
            for b in range(len(batches)):
                loaded = [f.result() for f in pending]
                pending = [pool.submit(load, p) for p in batches[b + 1]] if b + 1 < len(batches) else []
                good = [item for item in loaded if item[3] is None]
                outs = iter(self.predict_prepared([g[2] for g in good], [g[1].shape for g in good],
                                                  [g[1].spacing_mm for g in good], keep_prob) if good else [])
                for path, rec, _, err in loaded:
                    if err is None:
                        yield path, rec, next(outs), None
                    else:
                        yield path, None, None, err
