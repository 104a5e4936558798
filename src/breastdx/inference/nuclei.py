"""Nucleus instance segmentation of H&E tiles: sliding-window probabilities, then a marker watershed.

:class:`NucleusPredictor` reads a ``monuseg`` model folder (``meta.json`` + ``model.safetensors``). A tile of any size
is cut into overlapping square windows (:func:`sliding_window`, the windows and blending of MONAI's
``sliding_window_inference``, which the tests check it against); each window's class probabilities (background,
interior, boundary; softmax) are blended with Gaussian weights that fall towards the window's edges
(:func:`gaussian_weights`), so that the stitched map has no seams: it equals the whole tile's map up to the weight of
window edges (below 1e-3 of the prediction's range in the tests). A tile smaller than a window is padded by
reflection. The windowing is written here, in NumPy, rather than called from MONAI because importing MONAI costs
about 2 s of a cold ``breastdx predict monuseg`` and PyTorch about 1.3 s (issue 17: one tile in under 5 s end to end):
a model folder whose ONNX graph is cached runs on ONNX Runtime in float32 on the CPU
(:class:`~breastdx.inference.runners.CachedGraph`), so that predicting imports neither; the first run per machine
exports the graph through :class:`breastdx.inference.backends.NetworkRunner`, which also runs PyTorch where ONNX
Runtime does not apply.
With test-time augmentation (``meta["inference"]["tta"]``: ``flip`` or ``d8``), the probabilities are the mean over
the tile turned by 4 (identity, the two mirrorings and their product) or all 8 symmetries of the square, each mapped
back before averaging.
Instances: the connected regions of ``P(interior) > seed_threshold`` of at least ``min_seed`` pixels (split at the
necks of their distance transform when ``seed_split`` > 0) are the markers of a watershed on ``-P(interior)``
restricted to the foreground ``1 - P(background) > foreground_threshold``; foreground regions without a marker become
instances of their own (or are dropped, ``unseeded="drop"``); instances smaller than ``min_size`` pixels, or whose
mean foreground probability is below ``min_mean_foreground``, are dropped. A model trained with a distance output
(``meta["extra_outputs"] == ["distance"]``: a fourth logit, its sigmoid each nucleus's normalised distance to its
outline) gives a fourth probability channel, and ``markers="distance"`` takes the markers and the watershed's surface
from it instead of ``P(interior)``.

References:
    Kumar, N. et al. (2017). IEEE Trans Med Imaging 36(7):1550-1560. doi:10.1109/TMI.2017.2677499
    Beucher, S. & Meyer, F. (1993). The morphological approach to segmentation: the watershed transformation.
    Mathematical Morphology in Image Processing, 433-481.
    Soille, P. (2003). Morphological Image Analysis, 2nd ed., Springer, section 6.3 (h-maxima).
    doi:10.1007/978-3-662-05088-0
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from breastdx.inference.base import PREDICTORS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstancePostprocessing:
    """From class probabilities to instances (``meta.json``: ``postprocessing``).

    Attributes:
        seed_threshold: ``P(interior)`` above which a pixel belongs to a marker.
        foreground_threshold: ``1 - P(background)`` above which a pixel belongs to a nucleus.
        min_seed: Smallest marker, pixels.
        min_size: Smallest instance kept, pixels.
        unseeded: Foreground regions that hold no marker: ``keep`` (each its own instance) or ``drop``.
        min_mean_foreground: Instances whose mean ``1 - P(background)`` is below it are dropped (0: none), in
            [0, 1]: faint regions that are more likely stroma than nucleus.
        seed_split: Depth, pixels, by which a maximum of the markers' distance transform must rise above the
            saddle that joins it to a higher one to become a marker of its own (the h-maxima transform, Soille
            2003; 0: markers are not split): two touching nuclei whose interiors join through a neck get a marker
            each; a seed with no maximum that deep stays one marker.
        markers: What the markers and the watershed's surface come from: ``interior`` (``P(interior)``, channel 1)
            or ``distance`` (the network's distance output, channel 3, in [0, 1]: a model trained with
            ``--distance-weight``); ``seed_threshold`` then applies to that channel.

    Raises:
        ValueError: If ``unseeded`` is neither ``keep`` nor ``drop``, a threshold or ``min_mean_foreground`` is
            outside [0, 1] (or NaN), ``min_seed``, ``min_size`` or ``seed_split`` is negative, or ``markers`` is
            neither ``interior`` nor ``distance`` (a hand-edited ``meta.json``: a foreground threshold of -0.1 made
            the whole tile one nucleus).
    """

    seed_threshold: float = 0.5
    foreground_threshold: float = 0.5
    min_seed: int = 8
    min_size: int = 20
    unseeded: str = "keep"
    min_mean_foreground: float = 0.0
    seed_split: float = 0.0
    markers: str = "interior"

    def __post_init__(self) -> None:
        if self.unseeded not in ("keep", "drop"):
            raise ValueError(f"postprocessing: unseeded must be 'keep' or 'drop', got {self.unseeded!r}")
        for name in ("seed_threshold", "foreground_threshold", "min_mean_foreground"):  # NaN fails too
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"postprocessing: {name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("min_seed", "min_size"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"postprocessing: {name} must be >= 0 pixels, got {getattr(self, name)}")
        if not self.seed_split >= 0:
            raise ValueError(f"postprocessing: seed_split must be >= 0 pixels, got {self.seed_split}")
        if self.markers not in ("interior", "distance"):
            raise ValueError(f"postprocessing: markers must be 'interior' or 'distance', got {self.markers!r}")

    def to_meta(self) -> dict[str, Any]:
        """Plain data for ``meta.json``."""
        return asdict(self)

    def apply(self, prob: np.ndarray) -> np.ndarray:
        """Instance labels 1..K, int32 ``(H, W)``, from probabilities float ``(3, H, W)`` (``(4, H, W)`` with a
        distance output).

        Raises:
            ValueError: If ``markers`` is ``distance`` and ``prob`` has no fourth channel.
        """
        from scipy import ndimage as ndi
        from skimage.morphology import remove_small_objects
        from skimage.segmentation import watershed

        if self.markers == "distance" and prob.shape[0] < 4:
            raise ValueError(f"postprocessing: distance markers need a distance output (4 channels), got "
                             f"{prob.shape[0]} channels")
        interior = prob[3] if self.markers == "distance" else prob[1]
        fg = (1.0 - prob[0]) > self.foreground_threshold
        seeds = remove_small_objects((interior > self.seed_threshold) & fg, max_size=self.min_seed - 1)
        if self.seed_split > 0:  # markers: the regional maxima of the distance map reconstructed under itself
            from skimage.morphology import local_maxima, reconstruction

            depth = ndi.distance_transform_edt(seeds)
            tops = local_maxima(reconstruction(depth - self.seed_split, depth, method="dilation")) & seeds
            # A seed shallower than seed_split has no maximum left: it stays one marker (splitting, not removal).
            regions, _ = ndi.label(seeds)
            split = np.zeros(regions.max() + 1, bool)
            split[regions[tops]] = True
            seeds = tops | (seeds & ~split[regions])
        markers, n = ndi.label(seeds)
        labels = watershed(-interior, markers, mask=fg)
        if self.unseeded == "keep":
            rest, _ = ndi.label(fg & (labels == 0))
            labels = np.where(rest > 0, rest + n, labels)
        if self.min_size > 1 or self.min_mean_foreground > 0:
            sizes = np.bincount(labels.ravel())
            drop = sizes < self.min_size
            if self.min_mean_foreground > 0:
                total = np.bincount(labels.ravel(), weights=(1.0 - prob[0]).ravel(), minlength=len(sizes))
                drop |= total < self.min_mean_foreground * sizes
            drop[0] = False
            labels[drop[labels]] = 0
        from breastdx.data.monuseg import relabel

        return relabel(labels)


@dataclass(frozen=True)
class Windows:
    """Sliding windows (``meta.json``: ``inference``).

    Attributes:
        roi_size: Side of a window, pixels (a multiple of the network's stride product).
        overlap: Fraction of a window shared with its neighbour, in [0, 1).
        batch: Windows per network call.

    Raises:
        ValueError: If ``roi_size`` or ``batch`` is not an integer >= 1, or ``overlap`` is not in [0, 1).
    """

    roi_size: int = 544
    overlap: float = 0.125
    batch: int = 1

    def __post_init__(self) -> None:
        from numbers import Integral, Real

        for name in ("roi_size", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ValueError(f"windows: {name} must be an integer >= 1, got {value!r}")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, Real) or not 0 <= self.overlap < 1:
            raise ValueError(f"windows: overlap must be in [0, 1), got {self.overlap!r}")


TTA_TRANSFORMS = {"none": (0,), "flip": (0, 2, 4, 6), "d8": tuple(range(8))}
"""Test-time augmentations: the symmetries of the square averaged, as indices ``k`` of :func:`dihedral` (``flip``:
identity, rotation by 180°, left-right and up-down mirroring)."""


def dihedral(x: np.ndarray, k: int, inverse: bool = False) -> np.ndarray:
    """Symmetry ``k`` (0-7) of the square applied to the last two axes of ``x``: rotation by ``k % 4`` quarter turns,
    then, for ``k >= 4``, a left-right mirroring; ``inverse`` undoes it. A view of ``x`` (no copy)."""
    if inverse:
        x = x[..., ::-1] if k >= 4 else x
        return np.rot90(x, -(k % 4), axes=(-2, -1))
    x = np.rot90(x, k % 4, axes=(-2, -1))
    return x[..., ::-1] if k >= 4 else x


def gaussian_weights(size: int, sigma_scale: float = 0.125) -> np.ndarray:
    """Blending weights of a window, float32 ``(size, size)``: a Gaussian of sigma ``sigma_scale * size`` centred on
    the window, 1 at the centre, never clamped (MONAI's own map is clamped at 1e-3, which gives two windows the same
    weight near a tile's corners and lets the zero-padded edge of one show as a seam)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-0.5 * (x / (sigma_scale * size)) ** 2)
    return (g[:, None] * g[None, :]).astype(np.float32)


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Top (or left) edges of the windows along one axis of ``size`` pixels (``size >= roi``), as MONAI's
    ``dense_patch_slices`` places them: a step of ``int(roi * (1 - overlap))`` (at least 1; one window when
    ``size == roi``), the last window moved back to end at the border."""
    step = roi if size == roi else max(int(roi * (1 - overlap)), 1)
    count = next(d for d in range(-(-size // step) + 1) if d * step + roi >= size) + 1
    return [i * step - max(i * step + roi - size, 0) for i in range(count)]


def sliding_window(x: np.ndarray, roi: int, overlap: float, batch: int, predict: Any,
                   weights: np.ndarray) -> np.ndarray:
    """Probabilities of a whole image from overlapping square windows, blended by ``weights``.

    The same windows, padding and weighted mean as MONAI's ``sliding_window_inference(x, (roi, roi), batch, predict,
    overlap=overlap, roi_weight_map=weights, padding_mode="reflect")`` (MONAI 1.x), in NumPy, without importing MONAI
    or PyTorch.

    Shape:
        ``x``: ``(1, C, H, W)`` float32; ``predict``: ``(B, C, roi, roi) -> (B, K, roi, roi)`` float32 arrays;
        ``weights``: ``(roi, roi)``, positive. Returns ``(1, K, H, W)`` float32.

    Raises:
        ValueError: If ``x`` is not one image, ``overlap`` is not in [0, 1) or ``batch`` < 1.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"sliding_window: expected one image (1, C, H, W), got shape {tuple(x.shape)}")
    if not 0 <= overlap < 1 or batch < 1:
        raise ValueError(f"sliding_window: overlap must be in [0, 1) and batch >= 1, got {overlap} and {batch}")
    h, w = x.shape[-2:]
    ph, pw = max(roi - h, 0), max(roi - w, 0)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="reflect")
    big_h, big_w = x.shape[-2:]
    places = [(top, left) for top in window_starts(big_h, roi, overlap) for left in window_starts(big_w, roi, overlap)]
    out, count = None, np.zeros((1, 1, big_h, big_w), dtype=np.float32)
    for i in range(0, len(places), batch):
        chunk = places[i:i + batch]
        p = np.asarray(predict(np.ascontiguousarray(np.concatenate([x[..., t:t + roi, c:c + roi] for t, c in chunk]))),
                       dtype=np.float32)
        if out is None:
            out = np.zeros((1, p.shape[1], big_h, big_w), dtype=np.float32)
        for j, (t, c) in enumerate(chunk):
            out[..., t:t + roi, c:c + roi] += p[j:j + 1] * weights
            count[..., t:t + roi, c:c + roi] += weights
    return (out / count)[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]


@PREDICTORS.register("nucleus_instances")
class NucleusPredictor:
    """Predict nucleus instances with a saved network (model folders of kind ``nucleus_instances``).

    Args:
        network: ``(B, 3, H, W) -> (B, 3, H, W)`` logits: a PyTorch network (run as it is), or a model folder's
            :class:`~breastdx.inference.runners.CachedGraph` or :class:`~breastdx.inference.backends.NetworkRunner`
            (:meth:`from_dir`).
        meta: The model folder's ``meta.json``.
        windows: Sliding windows (default: the model's).
        postprocessing: From probabilities to instances (default: the model's).
        normalizer: Stain normaliser applied to a tile before the network (``from_dir``: the model's Macenko
            normaliser when ``meta["stain_normalisation"]`` asks for one), or None.
        tta: Test-time augmentation, a key of :data:`TTA_TRANSFORMS` (default: the model's, else ``none``).

    Raises:
        ValueError: If ``tta`` is not one of :data:`TTA_TRANSFORMS`.
    """

    kind: ClassVar[str] = "nucleus_instances"

    def __init__(self, network: Any, meta: Mapping[str, Any], windows: Windows | None = None,
                 postprocessing: InstancePostprocessing | None = None, normalizer: Any = None,
                 tta: str | None = None) -> None:
        self.tta = tta or meta.get("inference", {}).get("tta", "none")
        if self.tta not in TTA_TRANSFORMS:
            raise ValueError(f"test-time augmentation {self.tta!r}: expected one of {', '.join(TTA_TRANSFORMS)}")
        self.normalizer = normalizer
        # A model folder's runner (CachedGraph or NetworkRunner: both have .backend and .network), or a torch network.
        self.runner = network if hasattr(network, "backend") else None
        self._network = None if self.runner is not None else network.eval()
        self.meta = meta
        self.windows = windows or Windows(**meta.get("inference", {}).get("windows", {}))
        self.postprocessing = postprocessing or InstancePostprocessing(**meta.get("postprocessing", {}))
        self.training_hashes: frozenset[str] = frozenset()  # from_dir: the folder's training_hashes.json

    @classmethod
    def from_dir(cls, model_dir: str | Path, **kwargs: Any) -> "NucleusPredictor":
        """Load a model folder (nothing is unpickled).

        Where the backend is ONNX Runtime in float32 on the CPU (``auto`` there, or asked for) and the folder's graph
        is already cached, the graph runs without importing PyTorch (:class:`~breastdx.inference.runners.CachedGraph`);
        otherwise a :class:`~breastdx.inference.backends.NetworkRunner` runs the network (and exports the graph the
        first time).

        Args:
            model_dir: A ``monuseg`` model folder.
            **kwargs: ``dtype``, ``backend``, ``onnx_dir``, ``batch_size`` (see :meth:`from_checked_dir`) and the
                other arguments of the class.

        Raises:
            ModelFolderError: If the folder is not a ``monuseg`` model.
            ValueError: For an unknown dtype or backend.
        """
        from breastdx.models.saved import read_meta

        return cls.from_checked_dir(Path(model_dir), read_meta(model_dir, task="monuseg"), **kwargs)

    @classmethod
    def from_checked_dir(cls, model_dir: Path, meta: Mapping[str, Any], *, dtype: str = "auto",
                         backend: str = "auto", onnx_dir: Path | None = None, batch_size: int | None = None,
                         **kwargs: Any) -> "NucleusPredictor":
        """:meth:`from_dir` for a folder whose ``meta.json`` is read (the entry of
        :func:`breastdx.inference.base.load_predictor`, which the service loads every model folder with).

        Args:
            model_dir: A ``monuseg`` model folder.
            meta: Its ``meta.json`` (a dict or a :class:`~breastdx.inference.meta.ModelMeta`).
            dtype: ``auto``, ``float32`` or ``bfloat16`` (:func:`breastdx.runtime.choose_inference_dtype`).
            backend: ``auto`` (ONNX Runtime in float32 on the CPU, its graph exported once per machine with
                dynamic window sizes; PyTorch elsewhere), ``torch`` or ``onnxruntime``.
            onnx_dir: Folder of cached ONNX graphs (default ``~/.cache/breastdx/onnx``).
            batch_size: Windows run together (default the model's ``inference.windows.batch``).
            **kwargs: The other arguments of the class.

        Raises:
            ModelFolderError: If ``meta.json``'s ``inference`` (windows, test-time augmentation) or
                ``postprocessing`` is not what this class reads; the message names the file and the field.
            ValueError: For an unknown dtype or backend.
        """
        from breastdx.data.stain import load_stain_normalizer
        from breastdx.inference.meta import ModelMeta
        from breastdx.inference.runners import open_runner
        from breastdx.models.saved import META_FILE, ModelFolderError, read_training_hashes

        # checked here; the predictor keeps ``meta`` as given (a dict from from_dir, which calibrate edits)
        checked = meta if isinstance(meta, ModelMeta) else ModelMeta.from_dict(meta, Path(model_dir) / META_FILE)
        inference, post, field = checked.section("inference"), checked.section("postprocessing"), "inference"
        try:
            windows = Windows(**inference.get("windows", {}))
            if kwargs.get("tta") is None and inference.get("tta", "none") not in TTA_TRANSFORMS:
                raise ValueError(f"test-time augmentation {inference['tta']!r}: expected one of "
                                 f"{', '.join(TTA_TRANSFORMS)}")
            field = "postprocessing"
            kwargs.setdefault("postprocessing", InstancePostprocessing(**post))
        except (TypeError, ValueError) as e:
            raise ModelFolderError(f"{checked.source}: field {field!r}: {e}") from None
        kwargs.setdefault("normalizer", load_stain_normalizer(model_dir, meta))
        kwargs.setdefault("windows", windows if batch_size is None else
                          dataclasses.replace(windows, batch=int(batch_size)))
        # The graph is exported and checked on a window of the model's size; any size runs on it.
        view = {**meta, "preprocessing": {**meta.get("preprocessing", {}), "image_size": windows.roi_size}}
        runner = open_runner(view, Path(model_dir), dtype=dtype, backend=backend, onnx_dir=onnx_dir, dynamic_size=True)
        predictor = cls(runner, meta, **kwargs)
        predictor.training_hashes = read_training_hashes(model_dir)
        return predictor

    @property
    def network(self) -> Any:
        """The PyTorch network (for a model folder run by ONNX Runtime, built on first use)."""
        return self._network if self.runner is None else self.runner.network

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, K, H, W)`` float32 of a float32 batch ``(B, C, H, W)``: the softmax of the class
        logits, then the sigmoid of each extra output (``meta["extra_outputs"]``)."""
        k = len(self.meta.get("class_names", ())) or 3
        if self.runner is not None:  # a model folder's runner: NumPy in and out, either kind
            from scipy.special import expit, softmax

            logits = self.runner.run_numpy(x)
            return np.concatenate([softmax(logits[:, :k], axis=1), expit(logits[:, k:])], axis=1)
        import torch

        with torch.inference_mode():
            logits = self._network(torch.from_numpy(np.ascontiguousarray(x))).float()
            return torch.cat([torch.softmax(logits[:, :k], 1), torch.sigmoid(logits[:, k:])], 1).numpy()

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities of an RGB tile (uint8 ``(H, W, 3)``), float32 ``(3, H, W)`` (background, interior,
        boundary), or ``(4, H, W)`` with the distance output last, in [0, 1]."""
        image = np.asarray(image)[..., :3]
        if self.normalizer is not None:
            image = self.normalizer(image)
        # The network input: float32 (1, 3, H, W) in [0, 1] (as data.nucleus_patches.to_tensor, without PyTorch).
        x = (np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0))[None]
        w = self.windows
        transforms = TTA_TRANSFORMS[self.tta]
        weights = gaussian_weights(w.roi_size)
        out = None
        for k in transforms:
            p = sliding_window(dihedral(x, k), w.roi_size, w.overlap, w.batch, self._probabilities, weights)
            p = dihedral(p, k, inverse=True)
            out = p if out is None else out + p
        return np.ascontiguousarray(out[0] / len(transforms), dtype=np.float32)

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Instance labels int32 ``(H, W)`` and probabilities float32 ``(3, H, W)`` (``(4, H, W)`` with a distance
        output; :meth:`probabilities`) of an RGB tile."""
        prob = self.probabilities(image)
        return self.postprocessing.apply(prob), prob
