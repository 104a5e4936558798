"""Rendering: colour tables, contours, mask and heat-map overlays, PNG files and data URLs.

The lowest layer of breastdx's pictures (MONAI's name for the concern): the explainers, the predictors,
the tasks and the service draw with it; it imports nothing from breastdx above it (NumPy, SciPy, Pillow only).
"""

from breastdx.visualize.colors import (CONTOUR_RGBA, HEAT_STOPS, PREDICTION_COLOR, REFERENCE_COLOR, check_image,
                                       heat_lut, jet_lut, to_gray, to_rgb)
from breastdx.visualize.contours import contour, contour_rgba, line_width, overlay_contours
from breastdx.visualize.display import display_size, resize_image, resize_map
from breastdx.visualize.heatmap import (OVERLAY_ALPHA, SEEN_SQUARE, blend_table, heatmap_overlay, heatmap_rgba,
                                        mark_box, mark_region, with_legend)
from breastdx.visualize.png import (PNG_COMPRESS_LEVEL, png_bytes, png_data_url, write_cam_png, write_mask_png,
                                    write_overlay_png)

__all__ = [
    "CONTOUR_RGBA", "HEAT_STOPS", "OVERLAY_ALPHA", "PNG_COMPRESS_LEVEL", "PREDICTION_COLOR", "REFERENCE_COLOR",
    "SEEN_SQUARE", "blend_table", "check_image", "contour", "contour_rgba", "display_size", "heatmap_overlay",
    "heatmap_rgba", "heat_lut", "jet_lut", "line_width", "mark_box", "mark_region", "overlay_contours", "png_bytes",
    "png_data_url", "resize_image", "resize_map",
    "to_gray", "to_rgb", "with_legend", "write_cam_png", "write_mask_png", "write_overlay_png",
]
