"""Image preprocessing for networks, and augmentation of ultrasound images with MONAI dictionary transforms.

Preprocessing resizes an image of any size ``(H, W)`` to the square network input ``(S, S)`` (the aspect
ratio is not kept; :func:`restore_size` maps a network output back to ``(H, W)``) and scales intensity
from uint8 to [0, 1]. It is described by :class:`Preprocessing`, which a model folder stores in
``meta.json`` so that prediction repeats exactly what training did.

Augmentation (:func:`ultrasound_augmentation`) acts on dictionaries ``{"image": (1, S, S) float in [0, 1],
"mask": (1, S, S) float in {0, 1}}``. It is suited to B-mode ultrasound: left-right flips only (the
transducer is at the top, so images are never turned upside down), small rotations, scalings and shifts,
gamma and gain changes, speckle-like Gaussian noise and slight blur.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a network input.

    Attributes:
        image_size: Side ``S`` of the square network input, in pixels.
        mode: ``"gray"`` (one channel) or ``"rgb"`` (three channels).
        resize: Interpolation of the image when resizing (``"bilinear"``, anti-aliased when shrinking).
        intensity: ``"divide_255"``: uint8 values ``v`` become ``v / 255`` in [0, 1]. ``"equalize_hist"`` or
            ``"clahe"``: the resized image's histogram is equalised first (:func:`equalize_intensity`), then divided
            by 255, so that a scanner's gain, gamma and dynamic range matter less.
    """

    image_size: int = 256
    mode: str = "gray"
    resize: str = "bilinear"
    intensity: str = "divide_255"

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, numbers.Integral):
            raise ValueError(f"Preprocessing.image_size must be a whole number of pixels, got {self.image_size!r}.")
        if self.image_size < 16:
            raise ValueError(f"Preprocessing.image_size must be at least 16 pixels, got {self.image_size}.")
        if self.mode not in ("gray", "rgb"):
            raise ValueError(f"Preprocessing.mode must be 'gray' or 'rgb', got {self.mode!r}.")
        if self.resize != "bilinear":
            raise ValueError(f"Preprocessing.resize must be 'bilinear', got {self.resize!r}.")
        if self.intensity not in INTENSITIES:
            raise ValueError(f"Preprocessing.intensity must be one of {', '.join(map(repr, INTENSITIES))}, "
                             f"got {self.intensity!r}.")

    @property
    def channels(self) -> int:
        """Input channels of the network: 1 for gray, 3 for RGB."""
        return 1 if self.mode == "gray" else 3

    def to_meta(self) -> dict[str, Any]:
        """The fields as a dictionary for ``meta.json``, with a human-readable description."""
        equalised = {"divide_255": "", "equalize_hist": "histogram equalised, then ",
                     "clahe": "contrast-limited adaptive histogram equalisation (CLAHE), then "}[self.intensity]
        return {**asdict(self), "description": f"resize to {self.image_size}x{self.image_size} (bilinear, aspect "
                                               f"ratio not kept); intensity {equalised}uint8 / 255 -> [0, 1]; "
                                               f"{self.channels} channel(s)"}

    @classmethod
    def from_meta(cls, data: dict[str, Any]) -> "Preprocessing":
        """Rebuild from :meth:`to_meta` output (unknown keys such as ``description`` are ignored).

        Raises:
            ValueError: If a value is not supported.
        """
        return cls(**{k: data[k] for k in ("image_size", "mode", "resize", "intensity") if k in data})

    def resize_image(self, image: np.ndarray) -> np.ndarray:
        """Resize a uint8 image to the network size (and equalise its histogram where :attr:`intensity` says so).

        Args:
            image: uint8 array ``(H, W)`` (gray) or ``(H, W, 3)`` (RGB), matching :attr:`mode`.

        Returns:
            uint8 array ``(S, S)`` or ``(S, S, 3)``.

        Raises:
            ValueError: If the array is not uint8 or its shape does not fit :attr:`mode`.
        """
        return equalize_intensity(resize_uint8(image, self.image_size, channels=self.channels), self.intensity)

    def to_array(self, resized: np.ndarray) -> np.ndarray:
        """Network input from resized uint8 images, without PyTorch.

        Shape:
            ``(S, S)``, ``(S, S, 3)``, ``(B, S, S)`` or ``(B, S, S, 3)`` uint8 ->
            ``(C, S, S)`` or ``(B, C, S, S)`` float32 in [0, 1].
        """
        a = np.asarray(resized)
        a = np.moveaxis(a, -1, -3) if self.channels == 3 else a[..., None, :, :]
        return np.ascontiguousarray(a, dtype=np.float32) / np.float32(255.0)

    def to_tensor(self, resized: np.ndarray) -> "torch.Tensor":
        """:meth:`to_array` as a torch tensor (same shapes and values)."""
        import torch

        return torch.from_numpy(self.to_array(resized))


INTENSITIES = ("divide_255", "equalize_hist", "clahe")
"""The values of :attr:`Preprocessing.intensity`."""


def equalize_intensity(image: np.ndarray, intensity: str) -> np.ndarray:
    """Equalise the histogram of a uint8 image, as :attr:`Preprocessing.intensity` names (scikit-image).

    ``"equalize_hist"``: global histogram equalisation (each value becomes its cumulative share of the pixels, so
    any strictly increasing change of the intensities, a gain, gamma or compression curve, gives the same image up to
    quantisation). ``"clahe"``: contrast-limited adaptive histogram equalisation (Zuiderveld 1994, Graphics Gems IV,
    doi:10.1016/B978-0-12-336156-1.50061-6; tiles of 1/8 of each side, clip limit 0.01), after a min-max stretch.
    A colour image is equalised on its value (``"clahe"``) or all its channels pooled (``"equalize_hist"``).
    A constant image is returned unchanged; ``"divide_255"`` returns the image itself.

    Args:
        image: uint8 ``(H, W)`` or ``(H, W, 3)``.
        intensity: One of :data:`INTENSITIES`.

    Returns:
        uint8 array of the same shape.

    Raises:
        ValueError: If ``intensity`` is not one of :data:`INTENSITIES`.
    """
    if intensity not in INTENSITIES:
        raise ValueError(f"intensity must be one of {', '.join(map(repr, INTENSITIES))}, got {intensity!r}.")
    if intensity == "divide_255" or image.min() == image.max():
        return image
    from skimage import exposure

    if intensity == "equalize_hist":  # the channels of a colour image pooled, as documented
        out = exposure.equalize_hist(image.reshape(-1), nbins=256).reshape(image.shape)
    else:
        out = exposure.equalize_adapthist(image, clip_limit=0.01, nbins=256)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def central_square_box(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(top, left, side)`` of the central square of an image of ``shape`` ``(H, W[, C])``: side ``min(H, W)``;
    when the difference is odd, the extra row or column is cut at the end."""
    side = min(shape[0], shape[1])
    return (shape[0] - side) // 2, (shape[1] - side) // 2, side


def central_square(a: np.ndarray) -> np.ndarray:
    """The central square of an ``(H, W[, C])`` array (:func:`central_square_box`), as MedMNIST v2 cropped BUSI's
    images for BreastMNIST."""
    top, left, side = central_square_box(a.shape)
    return a[top:top + side, left:left + side]


def cut_source(image: np.ndarray, source_crop: str | None) -> np.ndarray:
    """The part of an image a model reads: the image itself, or its :func:`central_square` when the model cuts one
    (``preprocessing.source_crop``, as MedMNIST made BreastMNIST from BUSI).

    Raises:
        ValueError: If ``source_crop`` is not None or ``"central_square"``.
    """
    if source_crop is None:
        return image
    if source_crop != "central_square":
        raise ValueError(f"source_crop must be None or 'central_square', got {source_crop!r}.")
    return central_square(np.asarray(image))


def resize_uint8(image: np.ndarray, size: int, channels: int = 1) -> np.ndarray:
    """Resize a uint8 image to ``size × size`` with anti-aliased bilinear interpolation (Pillow).

    Args:
        image: uint8 array ``(H, W)`` when ``channels`` is 1, ``(H, W, 3)`` when 3.
        size: Output side in pixels.
        channels: 1 or 3.

    Returns:
        uint8 array ``(size, size)`` or ``(size, size, 3)``.

    Raises:
        ValueError: If ``image`` is not uint8 or its shape does not fit ``channels``.
    """
    a = np.asarray(image)
    expected = 2 if channels == 1 else 3
    if a.dtype != np.uint8 or a.ndim != expected or (channels == 3 and a.shape[-1] != 3):
        want = "(H, W)" if channels == 1 else "(H, W, 3)"
        raise ValueError(f"Expected a uint8 image of shape {want}, got {a.dtype} of shape {a.shape}.")
    if a.shape[:2] == (size, size):
        return a.copy()
    return np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a binary mask to ``size × size``: bilinear on {0, 255}, then values >= 128 are inside.

    Args:
        mask: bool or {0, 1} array ``(H, W)``.
        size: Output side in pixels.

    Returns:
        bool array ``(size, size)``.
    """
    a = (np.asarray(mask) > 0).astype(np.uint8) * 255
    if a.shape == (size, size):
        return a > 0
    return np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR)) >= 128


def restore_size(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Map a network-size probability map back to the original image size (bilinear), without PyTorch.

    The same interpolation as ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
    (no anti-aliasing): output pixel ``i`` samples the input at ``(i + 0.5) * in / out - 0.5``, clamped at 0,
    between its two neighbours; computed in float32, it matches PyTorch to within 1e-5 (the float32 rounding of
    the source position, about 8e-6 at position 100).

    Shape:
        ``(S, S)`` -> ``(H, W)`` for ``shape = (H, W)``.

    Args:
        prob: Probabilities at network size (a NumPy array, or anything ``np.asarray`` reads: a CPU tensor).
        shape: Original ``(H, W)``.

    Returns:
        float32 probabilities ``(H, W)``.
    """
    p = np.asarray(prob, dtype=np.float32)
    if p.shape[-2:] == tuple(shape):
        return p.copy()
    r0, r1, wr = _bilinear_source(p.shape[0], int(shape[0]))
    c0, c1, wc = _bilinear_source(p.shape[1], int(shape[1]))
    rows = p[r0] + (p[r1] - p[r0]) * wr[:, None]
    return rows[:, c0] + (rows[:, c1] - rows[:, c0]) * wc[None, :]


def _bilinear_source(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two source indices and the weight of the second, per output index (PyTorch's align_corners=False)."""
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(n_in / n_out)
                     - np.float32(0.5), np.float32(0.0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)


@dataclass(frozen=True)
class AugmentationConfig:
    """Strength of each ultrasound augmentation (probabilities per sample).

    Attributes:
        flip_prob: Left-right flip.
        affine_prob: Rotation, scaling and shift together.
        rotate_deg: Largest rotation, degrees either way.
        scale: Largest relative zoom either way (0.1 = 90%–110%).
        translate: Largest shift as a fraction of the side.
        gamma_prob: Gamma (contrast) change.
        gamma: Range of the gamma exponent.
        gain_prob: Intensity gain (multiplicative brightness) change.
        gain: Largest relative gain change either way.
        noise_prob: Additive Gaussian noise.
        noise_std: Largest noise standard deviation (intensity in [0, 1]).
        blur_prob: Gaussian smoothing.
        blur_sigma: Range of the smoothing sigma, pixels.
        scanner: Add the augmentations aimed at other scanners (issue 13): a crop of 80-100% of each side resized
            back (hides the scanner's text, calipers and frame borders, and changes the field of view and aspect),
            a smooth multiplicative gain field (depth-dependent and lateral gain; MONAI ``RandBiasField``, a
            polynomial of degree 3), a lower resolution (down-sampled to 40-90% of the side, then back, bilinear)
            and Rician noise (the envelope statistics of speckle; standard deviation up to ``rician_std``).
        crop_prob: Probability of the scanner crop.
        gain_field_prob: Probability of the smooth gain field.
        gain_field_coeff: Largest absolute Legendre coefficient of the logarithm of the gain field.
        low_res_prob: Probability of the resolution change.
        rician_prob: Probability of the Rician noise.
        rician_std: Largest standard deviation of the Rician noise (intensity in [0, 1]).
    """

    flip_prob: float = 0.5
    affine_prob: float = 0.5
    rotate_deg: float = 10.0
    scale: float = 0.1
    translate: float = 0.08
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    gain_prob: float = 0.3
    gain: float = 0.15
    noise_prob: float = 0.2
    noise_std: float = 0.03
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.25, 1.0)
    scanner: bool = False
    crop_prob: float = 0.3
    gain_field_prob: float = 0.3
    gain_field_coeff: float = 0.1
    low_res_prob: float = 0.25
    rician_prob: float = 0.2
    rician_std: float = 0.05


def ultrasound_augmentation(image_size: int, config: AugmentationConfig | None = None, seed: int | None = None,
                            keys: tuple[str, str] = ("image", "mask")):
    """MONAI dictionary transforms that augment an ultrasound image and its mask together.

    Spatial transforms (flip, affine) move image and mask alike (bilinear for the image, nearest for the
    mask; zero padding, like the black border of ultrasound frames). Intensity transforms touch the image
    only; the image is clipped back to [0, 1] at the end. Outputs are plain tensors (no MONAI metadata).

    Shape:
        ``{"image": (C, S, S) float32 in [0, 1], "mask": (1, S, S) float32 in {0, 1}}``, same shapes out.

    Args:
        image_size: Side ``S`` of the images (used to convert the shift fraction to pixels).
        config: Strengths; default :class:`AugmentationConfig`.
        seed: Seed of the transforms' random state. A ``monai.data.DataLoader`` reseeds them from its
            generator, so with a seeded generator the sequence is the same from run to run.
        keys: Names of the image and the mask entries.

    Returns:
        A ``monai.transforms.Compose``.

    References:
        Cardoso, M. J. et al. (2022). MONAI: an open-source framework for deep learning in healthcare.
        arXiv:2211.02701.
    """
    import torch
    from monai.transforms import (Compose, EnsureTyped, RandAdjustContrastd, RandAffined, RandFlipd,
                                  RandGaussianNoised, RandGaussianSmoothd, RandScaleIntensityd,
                                  ScaleIntensityRanged)

    c = config or AugmentationConfig()
    img, msk = keys
    shift = c.translate * image_size
    scanner_spatial, scanner_intensity = [], []
    if c.scanner:
        from monai.transforms import (Identityd, OneOf, RandBiasFieldd, RandRicianNoised, RandScaleCropd, Resized,
                                      RandSimulateLowResolutiond)

        crop = Compose([RandScaleCropd(keys=[img, msk], roi_scale=0.8, max_roi_scale=1.0, random_size=True),
                        # nearest-exact for the mask: torch's "nearest" samples floor(i * in / out), half an output
                        # pixel away from the image's bilinear (i + 0.5) * in / out - 0.5
                        Resized(keys=[img, msk], spatial_size=(image_size, image_size),
                                mode=("bilinear", "nearest-exact"))])
        scanner_spatial = [OneOf([crop, Identityd(keys=[img, msk])], weights=[c.crop_prob, 1 - c.crop_prob])]
        scanner_intensity = [
            RandBiasFieldd(keys=[img], prob=c.gain_field_prob, coeff_range=(-c.gain_field_coeff, c.gain_field_coeff)),
            RandSimulateLowResolutiond(keys=[img], prob=c.low_res_prob, zoom_range=(0.4, 0.9),
                                       downsample_mode="area", upsample_mode="bilinear"),
            RandRicianNoised(keys=[img], prob=c.rician_prob, std=c.rician_std),
        ]
    compose = Compose([
        *scanner_spatial,
        RandFlipd(keys=[img, msk], prob=c.flip_prob, spatial_axis=1),
        RandAffined(keys=[img, msk], prob=c.affine_prob, rotate_range=np.deg2rad(c.rotate_deg),
                    scale_range=(c.scale, c.scale), translate_range=(shift, shift), mode=("bilinear", "nearest"),
                    padding_mode="zeros"),
        RandAdjustContrastd(keys=[img], prob=c.gamma_prob, gamma=tuple(c.gamma)),
        RandScaleIntensityd(keys=[img], prob=c.gain_prob, factors=c.gain),
        RandGaussianSmoothd(keys=[img], prob=c.blur_prob, sigma_x=tuple(c.blur_sigma), sigma_y=tuple(c.blur_sigma)),
        RandGaussianNoised(keys=[img], prob=c.noise_prob, std=c.noise_std),
        *scanner_intensity,
        ScaleIntensityRanged(keys=[img], a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True),
        EnsureTyped(keys=[img, msk], data_type="tensor", dtype=torch.float32, track_meta=False),
    ])
    if seed is not None:
        compose.set_random_state(seed=int(seed))
    return compose
