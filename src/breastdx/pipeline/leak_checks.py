"""Refuse a model folder that feeds a training run (``--init`` weights, an IDC generator's patches) when it was
trained on cases of that run's validation or test split: its weights, or the patches it writes, would carry those
cases into training, and the run's validation and test figures would be optimistic.

The check reads the folder's split file (``meta.json`` ``split_file``, else ``split.json``) and compares case ids
with :func:`breastdx.models.init_weights.check_no_leak`; a model of another dataset (a PCam model into idc) shares no
id and passes. A folder without a readable split file cannot be checked: a warning says so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

log = logging.getLogger(__name__)


def check_source_split(folder: str | Path, target_split: Any, option: str, train_only: bool = False) -> None:
    """Refuse the model folder ``folder`` if it trained on a validation or test case of ``target_split``.

    Args:
        folder: A model folder (a weights file is not a folder: nothing to check, nothing done).
        target_split: The :class:`breastdx.data.splits.SplitFile` of the new run, or None (nothing to check).
        option: The option that named the folder (``--init``, ``--synthetic-model``), for the message.
        train_only: Only the folder's training cases count (a generator: its validation part chose nothing);
            otherwise a test case of ``target_split`` in the folder's validation part is refused too (it chose
            that model's epoch).

    Raises:
        ConfigError: Naming the option, the folder and how many cases leak, with a few of them.
    """
    from breastdx.config import ConfigError
    from breastdx.data.errors import DataError
    from breastdx.data.splits import SplitFile
    from breastdx.models.init_weights import InitWeightsError, check_no_leak

    folder = Path(folder)
    if target_split is None or not folder.is_dir():
        return
    name = "split.json"
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            name = str(json.loads(meta_path.read_text(encoding="utf-8")).get("split_file") or name)
        except (ValueError, AttributeError):
            pass
    try:
        source = SplitFile.from_json(folder / name)
    except (FileNotFoundError, DataError) as e:
        log.warning("%s %s: its training cases cannot be checked against this run's validation and test splits "
                    "(%s)", option, folder, e)
        return
    if train_only:
        source = SimpleNamespace(train=source.train, val=[], path=source.path)
    try:
        check_no_leak(source, target_split, str(folder))
    except InitWeightsError as e:
        raise ConfigError(f"Option {option}: {e}") from None
