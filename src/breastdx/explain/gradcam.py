"""Grad-CAM and Grad-CAM++ for breastdx classifiers (MONAI ``monai.visualize``) and a localisation check.

Maps are drawn by :mod:`breastdx.visualize` (:func:`~breastdx.visualize.heatmap_overlay`).

:class:`CamExplainer` wraps MONAI's ``GradCAM`` / ``GradCAMpp`` with the target layer of each architecture
(the network registry's entry names it, :func:`breastdx.models.networks.gradcam_layer`). Three things differ from calling
MONAI directly, the first two needed for batches:

* the class score is taken per image (``logits[i, class_i]``); MONAI's ``ModelWithHooks.class_score``
  indexes ``logits[:, class_idx]``, which mixes the images' classes when a batch holds several;
* the score is kept with shape ``(B, 1, 1, 1)``, so Grad-CAM++'s ``exp(score) * grad`` broadcasts per image;
* Grad-CAM++'s ``alpha`` is Eq. 19 of the paper, ``g_ij^2 / (2 g_ij^2 + (sum_ab A_ab) g_ij^3)``: MONAI's
  ``GradCAMpp`` puts ``sum_ab A_ab g_ab^3`` in the denominator (:class:`breastdx.explain.cam._GradCAMpp`).

Maps are upsampled once, from the feature map straight to the original image size (bilinear), and
scaled per image to [0, 1] by their maximum (an all-zero map stays zero).

The localisation check compares a map with the lesion mask: the share of the map's mass inside the mask
(:func:`cam_mass_in_mask`; a uniform map scores the mask's area fraction) and the pointing game
(:func:`pointing_game_hit`: whether the map's maximum lies within 15 pixels of the lesion).

References:
    Selvaraju, R. R. et al. (2017). Grad-CAM: visual explanations from deep networks via gradient-based
    localization. ICCV, doi:10.1109/ICCV.2017.74
    Chattopadhay, A. et al. (2018). Grad-CAM++: generalized gradient-based visual explanations for deep
    convolutional networks. WACV, doi:10.1109/WACV.2018.00097
    Zhang, J. et al. (2018). Top-down neural attention by excitation backprop. IJCV 126:1084-1102.
    doi:10.1007/s11263-017-1059-x (the pointing game)
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn


log = logging.getLogger(__name__)


CAM_METHODS = ("gradcam", "gradcampp")
"""Names of the explanation methods."""

POINTING_TOLERANCE_PX = 15
"""Pointing-game tolerance in pixels, as Zhang et al. (2018)."""


def target_layer(network: nn.Module, architecture: str | None = None) -> str:
    """The Grad-CAM target layer of ``network``: its own ``gradcam_layer`` attribute, else the layer that the
    network registry's entry of ``architecture`` names (:func:`breastdx.models.networks.gradcam_layer`, default
    arguments).

    Args:
        network: The classifier.
        architecture: Its registry name.

    Raises:
        ValueError: If neither the network nor a registry entry names a layer.
    """
    own = getattr(network, "gradcam_layer", None)
    if own:
        return str(own)
    from breastdx.models.networks import NETWORKS, gradcam_layer

    layer = gradcam_layer(architecture) if architecture in NETWORKS else None
    if not layer:
        raise ValueError(f"No Grad-CAM target layer known for architecture {architecture!r}: its network registry "
                         f"entry names none (models/network_registry.py) and the network has no 'gradcam_layer'.")
    return layer


def upsample_map(cam: torch.Tensor | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a map to ``shape`` (bilinear) and scale it to [0, 1] by its maximum.

    Shape:
        ``(h, w)`` -> ``(H, W)`` float32.
    """
    t = torch.as_tensor(cam, dtype=torch.float32)[None, None]
    if tuple(t.shape[-2:]) != tuple(shape):
        t = torch.nn.functional.interpolate(t, size=tuple(int(s) for s in shape), mode="bilinear", align_corners=False)
    a = t[0, 0].clamp_(min=0).numpy()
    m = float(a.max()) if a.size else 0.0
    return (a / m).astype(np.float32) if m > 0 else np.zeros_like(a, dtype=np.float32)


def cam_mass_in_mask(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of a map's mass inside a mask: ``sum(cam * mask) / sum(cam)``.

    A uniform map scores the mask's area fraction; a map entirely inside the lesion scores 1.

    Args:
        cam: Non-negative map ``(H, W)``.
        mask: Lesion mask, bool ``(H, W)``.

    Returns:
        A value in [0, 1]; NaN when the map is all zero or the mask is empty.

    Raises:
        ValueError: If the shapes differ.
    """
    c = np.asarray(cam, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if c.shape != m.shape:
        raise ValueError(f"Map of shape {c.shape} and mask of shape {m.shape} differ.")
    total = c.sum()
    if total <= 0 or not m.any():
        return float("nan")
    return float(c[m].sum() / total)


def pointing_game_hit(cam: np.ndarray, mask: np.ndarray, tolerance_px: float = POINTING_TOLERANCE_PX) -> float:
    """Pointing game: 1.0 when the map's maximum lies within ``tolerance_px`` pixels of the mask, else 0.0.

    Ties for the maximum are resolved by the first in row-major order. An all-zero map points nowhere
    and scores 0.

    Args:
        cam: Map ``(H, W)``.
        mask: Lesion mask, bool ``(H, W)``.
        tolerance_px: Largest Euclidean distance from the maximum to a mask pixel (15 in Zhang et al.).

    Returns:
        1.0 or 0.0; NaN when the mask is empty.

    Raises:
        ValueError: If the shapes differ.

    References:
        Zhang, J. et al. (2018). IJCV 126:1084-1102. doi:10.1007/s11263-017-1059-x
    """
    from scipy import ndimage

    c = np.asarray(cam, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if c.shape != m.shape:
        raise ValueError(f"Map of shape {c.shape} and mask of shape {m.shape} differ.")
    if not m.any():
        return float("nan")
    if not (c > 0).any():
        return 0.0
    r, col = np.unravel_index(int(np.argmax(c)), c.shape)
    if m[r, col]:
        return 1.0
    dist = ndimage.distance_transform_edt(~m)
    return float(dist[r, col] <= tolerance_px)


def localisation_summary(cams: Sequence[np.ndarray], masks: Sequence[np.ndarray], *,
                         tolerance_px: float = POINTING_TOLERANCE_PX, n_boot: int = 2000,
                         seed: int = 0) -> dict[str, Any]:
    """Localisation of maps on images with a lesion, with 95% bootstrap intervals over images.

    Args:
        cams: Maps ``(H, W)`` in [0, 1] (original image sizes).
        masks: Lesion masks, bool, same shapes; images with an empty mask are left out.
        tolerance_px: Pointing-game tolerance.
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``{"cam_mass_in_mask", "pointing_game", "mask_area_fraction" (the mass a uniform map would score),
        "pointing_game_center" (the hit rate of always pointing at the image centre): {"value", "ci95",
        "n"}, "n_images", "n_empty_maps", "tolerance_px"}``.
    """
    from breastdx.evaluation.ci import mean_ci

    mass, hits, area, centre = [], [], [], []
    empty = 0
    for cam, mask in zip(cams, masks):
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            continue
        c = np.asarray(cam, dtype=np.float64)
        if not (c > 0).any():
            empty += 1
        mass.append(cam_mass_in_mask(c, m))
        hits.append(pointing_game_hit(c, m, tolerance_px))
        area.append(float(m.mean()))
        point = np.zeros_like(m, dtype=np.float64)
        point[m.shape[0] // 2, m.shape[1] // 2] = 1.0
        centre.append(pointing_game_hit(point, m, tolerance_px))
    return {"cam_mass_in_mask": mean_ci(mass, n_boot, seed), "pointing_game": mean_ci(hits, n_boot, seed),
            "mask_area_fraction": mean_ci(area, n_boot, seed), "pointing_game_center": mean_ci(centre, n_boot, seed),
            "n_images": len(area), "n_empty_maps": empty, "tolerance_px": float(tolerance_px)}

