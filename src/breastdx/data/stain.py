"""Stain augmentation (HED colour jitter) and Macenko stain normalisation for H&E patches.

**HED jitter** (:class:`HEDJitter`, Tellez et al. 2018, 2019) perturbs the amount of each stain:
the image is unmixed into haematoxylin, eosin and DAB optical densities with scikit-image's stain
matrices (:data:`skimage.color.hed_from_rgb`, after Ruifrok & Johnston 2001), each stain ``s`` becomes
``alpha_s * s + beta_s`` with ``alpha_s ~ U(1 - sigma, 1 + sigma)`` and ``beta_s ~ U(-bias, bias)``, and the
result is mixed back. Optical density is the natural-log Beer-Lambert one, ``OD = -ln(I / I0)``, with
intensities in [0, 1] clamped below at 1e-6; shifting one stain by 0.05 scales each channel's
intensity by at least ``exp(-0.05)``, about 0.95 (the stain vectors have unit length).
Unlike ``skimage.color.rgb2hed`` / ``hed2rgb``, which clip negative stain amounts to 0 and so change
many H&E pixels (up to 78 grey levels on PCam patches) even without jitter, the unmixing here is kept
linear and exactly invertible: with ``sigma = bias = 0`` the output equals the input. The defaults,
``sigma = 0.05``, ``bias = 0.05``, are a light jitter (on 100 PCam patches the mean absolute change is
1.2-7.9 grey levels, 5th-95th percentile, median 3.0; with 0.2 and 0.2, 4.9-29, median 11); Tellez et
al. (2019) call ranges of 0.05 "HED-light" and 0.2 "HED-strong", on their own intensity scale, which
differs from this one, so their numbers are a guide, not an equivalence.

**Macenko normalisation** (:class:`MacenkoNormalizer`, Macenko et al. 2009) estimates the two stain
vectors of an image from the extreme angles of its optical densities in the plane of their two main
principal directions, and re-renders the image with the stain vectors and maximal concentrations of a
target image. It is computed by ``torchstain``'s NumPy backend (``torchstain.normalizers``, MIT licence,
numpy only), which follows the reference implementation of Macenko's method.

References:
    Tellez, D. et al. (2018). Whole-slide mitosis detection in H&E breast histology using PHH3 as a
    reference to train distilled stain-invariant convolutional networks. IEEE Trans Med Imaging
    37(9):2126-2136. doi:10.1109/TMI.2018.2820199
    Tellez, D. et al. (2019). Quantifying the effects of data augmentation and stain color normalization
    in convolutional neural networks for computational pathology. Med Image Anal 58:101544.
    doi:10.1016/j.media.2019.101544
    Ruifrok, A. C. & Johnston, D. A. (2001). Quantification of histochemical staining by color
    deconvolution. Anal Quant Cytol Histol 23(4):291-299.
    Macenko, M. et al. (2009). A method for normalizing histology slides for quantitative analysis.
    IEEE ISBI 2009:1107-1110. doi:10.1109/ISBI.2009.5193250
    Barbano, C. A. & Pedersen, A. torchstain. https://github.com/EIDOSlab/torchstain
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_EPS = 1e-6
STAIN_METHODS = ("none", "macenko")
"""Stain normalisations a model can be trained with (``meta.json``: ``stain_normalisation.method``)."""
STAIN_TARGET_FILE = "stain_target.png"
"""The reference patch of a Macenko-normalised model, in its model folder."""


def _to_hwc_float(image: Any, channel_axis: int) -> tuple[np.ndarray, Any]:
    """The image as float64 ``(H, W, 3)`` in [0, 1], and what is needed to restore its type and layout."""
    is_torch = False
    device = None
    try:
        import torch

        if isinstance(image, torch.Tensor):
            is_torch, device = True, image.device
            image = image.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[channel_axis] != 3:
        raise ValueError(f"expected an RGB image with 3 channels on axis {channel_axis} "
                         f"((H, W, 3) for channel_axis=-1, (3, H, W) for 0); got shape {a.shape}.")
    dtype = a.dtype
    if dtype == np.uint8:
        x = a.astype(np.float64) / 255.0
    elif np.issubdtype(dtype, np.floating):
        x = a.astype(np.float64)
    else:
        raise ValueError(f"expected a uint8 image or a float image in [0, 1]; got dtype {dtype}.")
    x = np.moveaxis(x, channel_axis, -1)
    return x, (dtype, channel_axis, is_torch, device)


def _restore(x: np.ndarray, info: Any) -> Any:
    dtype, channel_axis, is_torch, device = info
    x = np.clip(x, 0.0, 1.0)
    out = np.rint(x * 255.0).astype(np.uint8) if dtype == np.uint8 else x.astype(dtype)
    out = np.ascontiguousarray(np.moveaxis(out, -1, channel_axis))
    if is_torch:
        import torch

        return torch.from_numpy(out).to(device)
    return out


def rgb_to_hed_od(rgb: np.ndarray) -> np.ndarray:
    """Unmix RGB intensities into haematoxylin, eosin and DAB optical densities (linear, no clipping).

    Args:
        rgb: Float intensities in [0, 1], shape ``(..., 3)``.

    Returns:
        Stain optical densities (natural log), shape ``(..., 3)``; may be negative for colours outside
        the stains' span.
    """
    from skimage.color import hed_from_rgb

    od = -np.log(np.maximum(rgb, _EPS))
    return od @ hed_from_rgb


def hed_od_to_rgb(hed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hed_od`: intensities in [0, 1] (not clipped), shape ``(..., 3)``."""
    from skimage.color import rgb_from_hed

    return np.exp(-(hed @ rgb_from_hed))


class HEDJitter:
    """Random H&E stain jitter in HED optical-density space (see the module docstring).

    Usable as a plain callable in a torch or MONAI pipeline. Inside a ``DataLoader`` with workers, call
    :meth:`set_random_state` from ``worker_init_fn`` with each worker's seed, otherwise every worker
    starts from the same generator state and draws the same jitters.

    Args:
        sigma: Half-range of the multiplicative factor: ``alpha ~ U(1 - sigma, 1 + sigma)``, ``0 <= sigma < 1``.
        bias: Half-range of the additive shift in optical density: ``beta ~ U(-bias, bias)``, ``>= 0``.
        prob: Probability of jittering an image (otherwise it is returned unchanged).
        channel_axis: Axis of the 3 colour channels: -1 for ``(H, W, 3)`` arrays, 0 for ``(3, H, W)``
            tensors (MONAI's layout).
        seed: Seed of the ``np.random.Generator``; None for fresh entropy.

    Shape:
        Input and output: ``(H, W, 3)`` or ``(3, H, W)`` by ``channel_axis``; ``uint8`` in and out, or
        float in [0, 1] in and the same float dtype out (clipped to [0, 1]); NumPy arrays or torch
        tensors (returned on the same device).

    Raises:
        ValueError: For parameters out of range.

    References:
        Tellez et al. (2018), doi:10.1109/TMI.2018.2820199; Tellez et al. (2019),
        doi:10.1016/j.media.2019.101544.
    """

    def __init__(self, sigma: float = 0.05, bias: float = 0.05, prob: float = 1.0, channel_axis: int = -1,
                 seed: int | None = None) -> None:
        if not 0.0 <= sigma < 1.0:
            raise ValueError(f"sigma must be in [0, 1); got {sigma}.")
        if bias < 0.0:
            raise ValueError(f"bias must be >= 0; got {bias}.")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1]; got {prob}.")
        if channel_axis not in (0, -1, 2):
            raise ValueError(f"channel_axis must be -1 (H, W, 3) or 0 (3, H, W); got {channel_axis}.")
        self.sigma = float(sigma)
        self.bias = float(bias)
        self.prob = float(prob)
        self.channel_axis = channel_axis
        self.rng = np.random.default_rng(seed)

    def set_random_state(self, seed: int) -> "HEDJitter":
        """Reseed the generator (e.g. per data-loader worker); returns ``self``."""
        self.rng = np.random.default_rng(seed)
        return self

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(alpha, beta)``, each of shape ``(3,)`` for H, E, D."""
        alpha = self.rng.uniform(1.0 - self.sigma, 1.0 + self.sigma, size=3)
        beta = self.rng.uniform(-self.bias, self.bias, size=3)
        return alpha, beta

    def apply(self, image: Any, alpha: np.ndarray, beta: np.ndarray) -> Any:
        """Apply given factors ``alpha`` and shifts ``beta`` (each ``(3,)``: H, E, D) deterministically."""
        x, info = _to_hwc_float(image, self.channel_axis)
        hed = rgb_to_hed_od(x)
        hed = hed * np.asarray(alpha, dtype=np.float64) + np.asarray(beta, dtype=np.float64)
        return _restore(hed_od_to_rgb(hed), info)

    def __call__(self, image: Any) -> Any:
        if self.prob < 1.0 and self.rng.random() >= self.prob:
            return image
        alpha, beta = self.draw()
        return self.apply(image, alpha, beta)

    def __repr__(self) -> str:
        return f"HEDJitter(sigma={self.sigma}, bias={self.bias}, prob={self.prob}, channel_axis={self.channel_axis})"


BLACK_LEVEL = 10
"""Pixels at or below this in every channel are black, not stained tissue (a scanner's padding, a slide's edge, a
painted-out area): :class:`MacenkoNormalizer` leaves them out of the stain estimate and keeps them as they are."""


class MacenkoNormalizer:
    """Macenko stain normalisation to a target image (``torchstain``'s NumPy implementation underneath).

    ``fit(target)`` estimates the target's stain matrix and 99th-percentile concentrations; calling the
    normaliser re-renders an image with them. An image with too few stained pixels to estimate its own
    stains (a blank background patch) is returned unchanged, with a debug log.

    Args:
        io: Transmitted light intensity ``I0`` (background brightness), 0-255.
        alpha: Percentile (in %) of the extreme angles taken as the pure stains.
        beta: Optical-density threshold below which pixels count as background.
        min_tissue: Fewest stained pixels (OD above ``beta`` in every channel) needed to estimate stains.

    Shape:
        ``uint8`` ``(H, W, 3)`` in and out.

    References:
        Macenko et al. (2009), doi:10.1109/ISBI.2009.5193250.
    """

    def __init__(self, io: float = 240.0, alpha: float = 1.0, beta: float = 0.15, min_tissue: int = 64) -> None:
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

        self.io, self.alpha, self.beta, self.min_tissue = float(io), float(alpha), float(beta), int(min_tissue)
        self._impl = NumpyMacenkoNormalizer()
        self.fitted = False

    def _check(self, image: np.ndarray, what: str) -> np.ndarray:
        a = np.asarray(image)
        if a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8:
            raise ValueError(f"{what} must be a uint8 RGB image of shape (H, W, 3); got {a.dtype} {a.shape}.")
        return a

    def tissue_pixels(self, image: np.ndarray) -> int:
        """Number of pixels whose optical density exceeds ``beta`` in every channel (those used to fit)."""
        od = -np.log((np.asarray(image, dtype=np.float64).reshape(-1, 3) + 1.0) / self.io)
        return int(np.count_nonzero(np.all(od >= self.beta, axis=1)))

    def fit(self, target: np.ndarray) -> "MacenkoNormalizer":
        """Estimate the target's stain vectors and maximal concentrations.

        Raises:
            ValueError: If ``target`` is not ``uint8`` ``(H, W, 3)`` or has fewer than ``min_tissue``
                stained pixels.
        """
        t = self._check(target, "target")
        n = self.tissue_pixels(t)
        if n < self.min_tissue:
            raise ValueError(f"target has {n} stained pixels (optical density >= {self.beta} in every channel); "
                             f"at least {self.min_tissue} are needed to estimate its stains. Choose a target "
                             f"patch with tissue.")
        self._impl.fit(t, Io=self.io, alpha=self.alpha, beta=self.beta)
        self.fitted = True
        return self

    def reference(self) -> dict[str, list[Any]]:
        """The fitted target as numbers, for ``meta.json`` (``stain_matrix`` 3 x 2, ``max_concentrations`` 2):
        :meth:`from_reference` rebuilds the same normaliser without the target image.

        Raises:
            RuntimeError: If :meth:`fit` has not been called.
        """
        if not self.fitted:
            raise RuntimeError("MacenkoNormalizer: call fit(target) before reading its reference.")
        return {"stain_matrix": self.stain_matrix.tolist(), "max_concentrations": self.max_concentrations.tolist()}

    @classmethod
    def from_reference(cls, record: dict[str, Any], **kwargs: Any) -> "MacenkoNormalizer":
        """A fitted normaliser from :meth:`reference`'s numbers (``kwargs``: the constructor's).

        Raises:
            ValueError: If the stain matrix is not 3 x 2 or the concentrations not 2 positive finite numbers.
        """
        he = np.asarray(record.get("stain_matrix"), dtype=np.float64)
        max_c = np.asarray(record.get("max_concentrations"), dtype=np.float64)
        if he.shape != (3, 2) or max_c.shape != (2,) or not np.isfinite(he).all() or not (max_c > 0).all():
            raise ValueError(f"a Macenko reference needs a 3 x 2 stain_matrix and 2 positive max_concentrations; got "
                             f"shapes {he.shape} and {max_c.shape}.")
        norm = cls(**kwargs)
        norm._impl.HERef, norm._impl.maxCRef = he, max_c
        norm.fitted = True
        return norm

    @property
    def stain_matrix(self) -> np.ndarray:
        """Target stain vectors (optical density), shape ``(3, 2)``: column 0 haematoxylin, 1 eosin."""
        return np.asarray(self._impl.HERef, dtype=np.float64)

    @property
    def max_concentrations(self) -> np.ndarray:
        """Target 99th-percentile stain concentrations, shape ``(2,)``."""
        return np.asarray(self._impl.maxCRef, dtype=np.float64)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Normalise ``image`` to the fitted target (``uint8`` ``(H, W, 3)``).

        Raises:
            RuntimeError: If :meth:`fit` has not been called.
            ValueError: If ``image`` is not ``uint8`` ``(H, W, 3)``.
        """
        if not self.fitted:
            raise RuntimeError("MacenkoNormalizer: call fit(target) before normalising.")
        a = self._check(image, "image")
        black = np.all(a <= BLACK_LEVEL, axis=-1)  # no stain absorbs all light: padding or a painted-out area
        work = a
        if black.any():  # as background for the stain estimate (its huge optical density would set the stains)
            work = a.copy()
            work[black] = 255
        if self.tissue_pixels(work) < self.min_tissue:
            logger.debug("Macenko: too few stained pixels to estimate stains; image returned unchanged")
            return a.copy()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out, _, _ = self._impl.normalize(work, Io=self.io, alpha=self.alpha, beta=self.beta, stains=False)
        out = np.asarray(out, dtype=np.uint8)
        out[black] = a[black]
        return out


def load_stain_normalizer(model_dir: str | Path, meta: dict[str, Any]) -> "MacenkoNormalizer | None":
    """The Macenko normaliser a model was trained with, or None: rebuilt from the numbers in ``meta.json``
    (``stain_matrix``, ``max_concentrations``; :meth:`MacenkoNormalizer.reference`), or else fitted to the folder's
    ``stain_target.png``.

    Raises:
        ModelFolderError: If ``meta.json`` asks for an unknown stain normalisation, or for Macenko with a
            missing or unusable reference patch.
    """
    from breastdx.models.saved import ModelFolderError

    stain = meta.get("stain_normalisation") or {}
    method = stain.get("method", "none")
    if method == "none":
        return None
    if method != "macenko":
        raise ModelFolderError(f"{Path(model_dir) / 'meta.json'}: unknown stain normalisation {method!r}; expected "
                               f"one of {', '.join(STAIN_METHODS)}.")
    if "stain_matrix" in stain:
        try:
            return MacenkoNormalizer.from_reference(stain)
        except ValueError as e:
            raise ModelFolderError(f"{Path(model_dir) / 'meta.json'}: stain_normalisation: {e}") from None
    from breastdx.data.images import ImageReadError, read_image

    target = Path(model_dir) / stain.get("target_file", STAIN_TARGET_FILE)
    try:
        return MacenkoNormalizer().fit(read_image(target, mode="rgb").array)
    except (ImageReadError, OSError, ValueError) as e:
        raise ModelFolderError(f"{target}: the Macenko reference patch of this model cannot be used ({e}).") from None
