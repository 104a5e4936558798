"""Summary of the nucleus-instance tiles (``breastdx data summary monuseg``): what each tile holds and how it was made.

Per tile: its part (train / test), the TCGA tissue source site and slide preparation read from its barcode (``-DX``:
diagnostic FFPE slide; ``-TS``, ``-BS``, ``-MS``: top, bottom or middle slide of frozen tissue), where its instances
come from (XML polygons, or the binary mask split by a watershed: :func:`breastdx.data.monuseg.load_case`), the
number of nuclei, their areas (px and µm² at :data:`breastdx.data.monuseg.MICRONS_PER_PIXEL`) and equivalent
diameters, the share of the tile that is nucleus, the background share, and the mean haematoxylin and eosin optical
density (scikit-image's ``rgb2hed``) inside the nuclei and over the tile. These are the figures that show the
shift between MoNuSeg's FFPE training tiles and its frozen test tiles before any model is trained.

Writes ``summary.json``, ``report.html`` and ``nuclei_areas_and_stain.png``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_BARCODE = re.compile(r"^TCGA-(?P<site>[A-Z0-9]{2})-[A-Z0-9]{4}-\d{2}[A-Z]-\d{2}-(?P<slide>[A-Z]{2})")
SLIDE_TYPES = {"DX": "FFPE (diagnostic slide)", "TS": "frozen (top slide)", "BS": "frozen (bottom slide)",
               "MS": "frozen (middle slide)"}
"""TCGA slide codes (the barcode's last field) and the preparation they mean."""


def tcga_site_and_preparation(name: str) -> tuple[str, str]:
    """The tissue source site and the slide preparation of a TCGA slide barcode.

    Args:
        name: A file stem such as ``TCGA-A7-A13E-01Z-00-DX1`` or ``TCGA-AO-A0J2-01A-01-BSA``.

    Returns:
        ``(site, preparation)``: e.g. ``("A7", "FFPE (diagnostic slide)")``; ``("unknown", "unknown")`` for a name
        that is not a TCGA slide barcode, and ``"unknown (<code>)"`` for a slide code not in :data:`SLIDE_TYPES`.
    """
    m = _BARCODE.match(name)
    if m is None:
        return "unknown", "unknown"
    slide = m.group("slide")
    return m.group("site"), SLIDE_TYPES.get(slide, f"unknown ({slide})")


def tile_figures(image: np.ndarray, labels: np.ndarray, microns_per_pixel: float) -> dict[str, Any]:
    """The figures of one tile.

    Args:
        image: RGB ``uint8`` ``(H, W, 3)``.
        labels: Nucleus instance labels, integer ``(H, W)``, 0 background.
        microns_per_pixel: The tile's resolution, µm per pixel (> 0).

    Returns:
        ``n_nuclei``; ``area_px`` and ``area_um2`` (``[25th percentile, median, 75th percentile]``);
        ``diameter_um_median`` (the equivalent diameter, ``2 sqrt(area / pi)``); ``nucleus_share`` (of the tile's
        pixels); ``background_share``; ``h_od`` and ``e_od`` (``{"nuclei": mean, "tile": mean}``).
    """
    from skimage.color import rgb2hed

    from breastdx.data.summary_patients import background_share

    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel())[1:]
    areas = counts[counts > 0].astype(np.float64)
    inside = labels > 0
    hed = rgb2hed(image)
    quartiles = np.percentile(areas, [25, 50, 75]) if areas.size else np.full(3, np.nan)
    um2 = microns_per_pixel ** 2

    def od(channel: int) -> dict[str, float]:
        values = hed[..., channel]
        return {"nuclei": round(float(values[inside].mean()), 4) if inside.any() else float("nan"),
                "tile": round(float(values.mean()), 4)}

    return {"n_nuclei": int(areas.size), "area_px": [round(float(v), 1) for v in quartiles],
            "area_um2": [round(float(v) * um2, 2) for v in quartiles],
            "diameter_um_median": round(float(2 * np.sqrt(quartiles[1] / np.pi) * microns_per_pixel), 2),
            "nucleus_share": round(float(inside.mean()), 4), "background_share": round(background_share(image), 4),
            "h_od": od(0), "e_od": od(1)}


def summarize_nuclei_tiles(data_root: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Summarise the MoNuSeg breast tiles below the data root (see the module's text).

    Args:
        data_root: The data root (``monuseg_breast/`` below it, or the folder itself).
        out_dir: Output folder (created; files of the same names are replaced).

    Returns:
        The content of ``summary.json``: ``dataset``, ``n_tiles``, ``microns_per_pixel``, ``parts`` (tiles and
        nuclei per part), ``tiles`` (one record per tile: ``name``, ``part``, ``site``, ``preparation``,
        ``instances_from``, ``height``, ``width`` and :func:`tile_figures`) and ``files``.

    Raises:
        DataError: If the folder is missing or a tile or its annotation cannot be read (the message names it).
    """
    import matplotlib.pyplot as plt

    from breastdx.data.monuseg import MICRONS_PER_PIXEL, find_monuseg_root, load_case, scan_monuseg
    from breastdx.evaluation.plots import save_figure
    from breastdx.evaluation.report import HtmlReport
    from breastdx.runs import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tiles, areas = [], []
    for case in scan_monuseg(find_monuseg_root(Path(data_root))):
        image, labels = load_case(case)
        site, preparation = tcga_site_and_preparation(case.name)
        counts = np.bincount(labels.ravel())[1:]
        areas.append(counts[counts > 0] * MICRONS_PER_PIXEL ** 2)
        tiles.append({"name": case.name, "part": case.part, "site": site, "preparation": preparation,
                      "instances_from": "XML polygons" if case.annotation is not None
                      else "binary mask, split by a watershed", "height": int(image.shape[0]),
                      "width": int(image.shape[1]), **tile_figures(image, labels, MICRONS_PER_PIXEL)})
    parts = {p: {"n_tiles": sum(t["part"] == p for t in tiles),
                 "n_nuclei": sum(t["n_nuclei"] for t in tiles if t["part"] == p),
                 "preparations": sorted({t["preparation"] for t in tiles if t["part"] == p}),
                 "sites": sorted({t["site"] for t in tiles if t["part"] == p})} for p in ("train", "test")}

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = ["#4060a0" if t["part"] == "train" else "#b03060" for t in tiles]
    box = axes[0].boxplot(areas, vert=False, showfliers=False, patch_artist=True)
    for patch, colour in zip(box["boxes"], colours):
        patch.set_facecolor(colour)
    axes[0].set_yticks(range(1, len(tiles) + 1), [t["name"][5:12] for t in tiles], fontsize=7)
    axes[0].set_xlabel("nucleus area (µm²)")
    axes[0].set_title("nucleus areas per tile (blue: train, red: test)", fontsize=9)
    axes[1].scatter([t["h_od"]["nuclei"] for t in tiles], [t["e_od"]["nuclei"] for t in tiles], c=colours)
    for t in tiles:
        axes[1].annotate(t["name"][5:12], (t["h_od"]["nuclei"], t["e_od"]["nuclei"]), fontsize=6)
    axes[1].set_xlabel("mean haematoxylin OD in nuclei")
    axes[1].set_ylabel("mean eosin OD in nuclei")
    axes[1].set_title("stain inside the nuclei", fontsize=9)
    figure = save_figure(fig, out / "nuclei_areas_and_stain.png")
    result = {"dataset": "monuseg", "n_tiles": len(tiles), "microns_per_pixel": MICRONS_PER_PIXEL, "parts": parts,
              "tiles": tiles, "files": ["summary.json", "report.html", figure.name]}
    write_json(result, out / "summary.json")

    rep = HtmlReport("breastdx — monuseg: nucleus tiles")
    rep.paragraph(" ".join(f"{p}: {v['n_tiles']} tiles, {v['n_nuclei']} nuclei, sites {', '.join(v['sites'])}, "
                           f"{'; '.join(v['preparations'])}." for p, v in parts.items())
                  + f" Areas in µm² at {MICRONS_PER_PIXEL} µm per pixel (MoNuSeg's 40x).")
    rep.figure(figure, "Nucleus areas per tile, and the mean stain inside the nuclei of each tile")
    rep.table(["tile", "part", "site", "preparation", "instances from", "nuclei", "area µm² (median, IQR)",
               "diameter µm", "nucleus share", "background", "H OD nuclei / tile", "E OD nuclei / tile"],
              [[t["name"], t["part"], t["site"], t["preparation"], t["instances_from"], str(t["n_nuclei"]),
                f"{t['area_um2'][1]:.1f} ({t['area_um2'][0]:.1f}-{t['area_um2'][2]:.1f})",
                f"{t['diameter_um_median']:.2f}",
                f"{t['nucleus_share']:.3f}", f"{t['background_share']:.3f}",
                f"{t['h_od']['nuclei']:.3f} / {t['h_od']['tile']:.3f}",
                f"{t['e_od']['nuclei']:.3f} / {t['e_od']['tile']:.3f}"] for t in tiles])
    rep.write(out / "report.html")
    logger.info("summary of %d monuseg tiles written to %s", len(tiles), out)
    return result
