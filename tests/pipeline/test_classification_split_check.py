"""The image-classification pipeline refuses a split with a class missing where it must be, naming the run's file."""

from pathlib import Path

import numpy as np
import pytest

from breastdx.data.errors import DataError
from breastdx.data.image_sets import ImageSet, SplitData
from breastdx.tasks import get_task


def _part(labels):
    labels = np.asarray(labels, dtype=np.int64)
    return ImageSet(tuple(f"p{i}" for i in range(labels.size)), labels, lambda i: (np.zeros((8, 8), np.uint8), None))


def test_a_split_without_a_class_names_the_run_split_file_and_the_way_out(tmp_path):
    task = get_task("idc")
    data = SplitData({"train": _part([0, 1, 0, 1]), "val": _part([0, 1]), "test": _part([0, 0, 0])},
                     ("normal", "tumour"), "0" * 64, "split by patient")
    with pytest.raises(DataError) as err:
        task._check_classes(data, tmp_path / "run" / "split.json")
    text = str(err.value)
    assert text.startswith(f"{Path(tmp_path / 'run' / 'split.json')}: every split needs patches of every class")
    assert "--split-file, or --split-seed / --split-ratios where idc has them" in text
    assert err.value.problems == ["test split has no tumour patch ({'normal': 3, 'tumour': 0})"]
    task._check_classes(SplitData({s: _part([0, 1]) for s in ("train", "val", "test")}, ("normal", "tumour"), "0" * 64,
                                  "split by patient"), tmp_path / "split.json")  # every class everywhere: no error
