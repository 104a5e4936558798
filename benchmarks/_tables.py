"""Plain-text tables the cross-validation benchmarks print: one row per tile, then the column means.

A benchmark script imports it as ``from _tables import print_tile_table`` (scripts run as
``python benchmarks/NAME.py``, so this folder is on the path).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def print_tile_table(rows: Mapping[str, Sequence[float]], keys: Sequence[str], width: int = 15) -> None:
    """Print ``keys`` as the header, each tile's figures (3 decimals, ``width`` characters a column) and their means.

    Args:
        rows: Tile name to its figures, in the order of ``keys``.
        keys: Column names.
        width: Characters per column.
    """
    print(f"{'tile':28s}" + "".join(f"{k:>{width}s}" for k in keys))
    for name, values in rows.items():
        print(f"{name:28s}" + "".join(f"{v:{width}.3f}" for v in values))
    print(f"{'mean':28s}" + "".join(f"{v:{width}.3f}" for v in np.mean(list(rows.values()), axis=0)))
