"""Nucleus instance segmentation of H&E tiles: sliding-window probabilities, then a marker watershed.

:class:`NucleusPredictor` reads a ``monuseg`` model folder (``meta.json`` + ``model.safetensors``). A tile of any size
is cut into overlapping square windows (MONAI ``sliding_window_inference``); each window's class probabilities
(background, interior, boundary; softmax) are blended with Gaussian weights that fall towards the window's edges
(:func:`gaussian_weights`), so that the stitched map has no seams: it equals the whole tile's map up to the weight of
window edges (below 1e-3 of the prediction's range in the tests). A tile smaller than a window is padded by
reflection.
With test-time augmentation (``meta["inference"]["tta"]``: ``flip`` or ``d8``), the probabilities are the mean over
the tile turned by 4 (identity, the two mirrorings and their product) or all 8 symmetries of the square, each mapped
back before averaging.
Instances: the connected regions of ``P(interior) > seed_threshold`` of at least ``min_seed`` pixels are the markers
of a watershed on ``-P(interior)`` restricted to the foreground ``1 - P(background) > foreground_threshold``; foreground
regions without a marker become instances of their own; instances smaller than ``min_size`` pixels are dropped.

References:
    Kumar, N. et al. (2017). IEEE Trans Med Imaging 36(7):1550-1560. doi:10.1109/TMI.2017.2677499
    Beucher, S. & Meyer, F. (1993). The morphological approach to segmentation: the watershed transformation.
    Mathematical Morphology in Image Processing, 433-481.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstancePostprocessing:
    """From class probabilities to instances (``meta.json``: ``postprocessing``).

    Attributes:
        seed_threshold: ``P(interior)`` above which a pixel belongs to a marker.
        foreground_threshold: ``1 - P(background)`` above which a pixel belongs to a nucleus.
        min_seed: Smallest marker, pixels.
        min_size: Smallest instance kept, pixels.
    """

    seed_threshold: float = 0.5
    foreground_threshold: float = 0.5
    min_seed: int = 8
    min_size: int = 20

    def to_meta(self) -> dict[str, Any]:
        """Plain data for ``meta.json``."""
        return asdict(self)

    def apply(self, prob: np.ndarray) -> np.ndarray:
        """Instance labels 1..K, int32 ``(H, W)``, from probabilities float ``(3, H, W)``."""
        from scipy import ndimage as ndi
        from skimage.morphology import remove_small_objects
        from skimage.segmentation import watershed

        interior = prob[1]
        fg = (1.0 - prob[0]) > self.foreground_threshold
        seeds = remove_small_objects((interior > self.seed_threshold) & fg, max_size=self.min_seed - 1)
        markers, n = ndi.label(seeds)
        labels = watershed(-interior, markers, mask=fg)
        rest, m = ndi.label(fg & (labels == 0))
        labels = np.where(rest > 0, rest + n, labels)
        if self.min_size > 1:
            sizes = np.bincount(labels.ravel())
            small = sizes < self.min_size
            small[0] = False
            labels[small[labels]] = 0
        from breastdx.data.monuseg import relabel

        return relabel(labels)


@dataclass(frozen=True)
class Windows:
    """Sliding windows (``meta.json``: ``inference``).

    Attributes:
        roi_size: Side of a window, pixels (a multiple of the network's stride product).
        overlap: Fraction of a window shared with its neighbour.
        batch: Windows per network call.
    """

    roi_size: int = 544
    overlap: float = 0.125
    batch: int = 1


TTA_TRANSFORMS = {"none": (0,), "flip": (0, 2, 4, 6), "d8": tuple(range(8))}
"""Test-time augmentations: the symmetries of the square averaged, as indices ``k`` of :func:`dihedral` (``flip``:
identity, rotation by 180°, left-right and up-down mirroring)."""


def dihedral(x: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """Symmetry ``k`` (0-7) of the square applied to the last two axes of ``x``: rotation by ``k % 4`` quarter turns,
    then, for ``k >= 4``, a left-right mirroring; ``inverse`` undoes it."""
    if inverse:
        x = x.flip(-1) if k >= 4 else x
        return torch.rot90(x, -(k % 4), dims=(-2, -1))
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


def gaussian_weights(size: int, sigma_scale: float = 0.125) -> torch.Tensor:
    """Blending weights of a window, float32 ``(size, size)``: a Gaussian of sigma ``sigma_scale * size`` centred on
    the window, 1 at the centre, never clamped (MONAI's own map is clamped at 1e-3, which gives two windows the same
    weight near a tile's corners and lets the zero-padded edge of one show as a seam)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / (sigma_scale * size)) ** 2)
    return (g[:, None] * g[None, :]).float()


class NucleusPredictor:
    """Predict nucleus instances with a saved network.

    Args:
        network: ``(B, 3, H, W) -> (B, 3, H, W)`` logits, in eval mode.
        meta: The model folder's ``meta.json``.
        windows: Sliding windows (default: the model's).
        postprocessing: From probabilities to instances (default: the model's).
        normalizer: Stain normaliser applied to a tile before the network (``from_dir``: the model's Macenko
            normaliser when ``meta["stain_normalisation"]`` asks for one), or None.
        tta: Test-time augmentation, a key of :data:`TTA_TRANSFORMS` (default: the model's, else ``none``).

    Raises:
        ValueError: If ``tta`` is not one of :data:`TTA_TRANSFORMS`.
    """

    def __init__(self, network: torch.nn.Module, meta: dict[str, Any], windows: Windows | None = None,
                 postprocessing: InstancePostprocessing | None = None, normalizer: Any = None,
                 tta: str | None = None) -> None:
        self.tta = tta or meta.get("inference", {}).get("tta", "none")
        if self.tta not in TTA_TRANSFORMS:
            raise ValueError(f"test-time augmentation {self.tta!r}: expected one of {', '.join(TTA_TRANSFORMS)}")
        self.normalizer = normalizer
        self.network = network.eval()
        self.meta = meta
        self.windows = windows or Windows(**meta.get("inference", {}).get("windows", {}))
        self.postprocessing = postprocessing or InstancePostprocessing(**meta.get("postprocessing", {}))

    @classmethod
    def from_dir(cls, model_dir: str | Path, **kwargs: Any) -> "NucleusPredictor":
        """Load a model folder (nothing is unpickled).

        Raises:
            ModelFolderError: If the folder is not a ``monuseg`` model.
        """
        from breastdx.inference.classifier import load_stain_normalizer
        from breastdx.models.networks import build_network
        from breastdx.models.saved import load_weights, read_meta

        meta = read_meta(model_dir, task="monuseg")
        kwargs.setdefault("normalizer", load_stain_normalizer(model_dir, meta))
        network, _ = build_network(meta["architecture"], meta["in_channels"], len(meta["class_names"]),
                                   **meta["architecture_args"])
        load_weights(network, Path(model_dir) / meta["weights_file"])
        return cls(network, meta, **kwargs)

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities of an RGB tile (uint8 ``(H, W, 3)``), float32 ``(3, H, W)``."""
        from monai.inferers import sliding_window_inference

        from breastdx.data.nucleus_patches import to_tensor

        image = np.asarray(image)[..., :3]
        x = to_tensor(self.normalizer(image) if self.normalizer is not None else image)[None]
        w = self.windows
        transforms = TTA_TRANSFORMS[self.tta]
        out = None
        for k in transforms:
            p = sliding_window_inference(dihedral(x, k), (w.roi_size, w.roi_size), w.batch,
                                         lambda t: torch.softmax(self.network(t), 1), overlap=w.overlap,
                                         roi_weight_map=gaussian_weights(w.roi_size), padding_mode="reflect")
            p = dihedral(p, k, inverse=True)
            out = p if out is None else out + p
        return (out[0] / len(transforms)).numpy()

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Instance labels int32 ``(H, W)`` and class probabilities float32 ``(3, H, W)`` of an RGB tile."""
        prob = self.probabilities(image)
        return self.postprocessing.apply(prob), prob
