"""Moved to :mod:`breastdx.visualize`."""

from breastdx.visualize import write_mask_png, write_overlay_png  # noqa: F401  # re-exported until tasks/ import breastdx.visualize
