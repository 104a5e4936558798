"""Model folders that feed a training run (``--init``, ``--synthetic-model``) must not have trained on its validation or
test cases (:mod:`breastdx.pipeline.leak_checks`)."""

import os
import shutil
from pathlib import Path

import pytest

from breastdx.config import ConfigError
from breastdx.data.splits import SplitFile
from breastdx.pipeline.leak_checks import check_source_split

DATA = Path(os.environ.get("BREASTDX_DATA", ""))


def _split(train, val, test):
    return SplitFile(path=None, data_checksum="x", seed=0, ratios=(0.6, 0.2, 0.2), train=list(train), val=list(val),
                     test=list(test))


@pytest.fixture()
def model_folder(tmp_path):
    """A model folder whose split trained on a, b, c and validated on d."""
    folder = tmp_path / "source"
    folder.mkdir()
    _split("abc", "d", "ef").to_json(folder / "split.json")
    return folder


def test_a_folder_that_trained_on_a_test_case_is_refused_naming_the_option(model_folder):
    with pytest.raises(ConfigError, match=r"Option --init: .*source: trained on 1 case\(s\) .*\(e\.g\. c\)"):
        check_source_split(model_folder, _split("abd", "e", "cf"), "--init")


def test_a_test_case_in_the_source_validation_counts_unless_train_only(model_folder):
    target = _split("abc", "e", "df")  # d chose the source model's epoch
    with pytest.raises(ConfigError, match="e.g. d"):
        check_source_split(model_folder, target, "--init")
    check_source_split(model_folder, target, "--synthetic-model", train_only=True)  # a generator's val chose nothing


def test_the_same_split_another_dataset_or_no_split_file_pass(model_folder, tmp_path, caplog):
    check_source_split(model_folder, _split("abc", "d", "ef"), "--init")
    check_source_split(model_folder, _split(["x1", "x2"], ["x3"], ["x4"]), "--init")
    check_source_split(model_folder, None, "--init")
    check_source_split(model_folder / "split.json", _split("def", "a", "b"), "--init")  # a file: nothing to read
    bare = tmp_path / "bare"
    bare.mkdir()
    check_source_split(bare, _split("def", "a", "b"), "--init")
    assert "cannot be checked" in caplog.text


def _needs_idc():
    if not (DATA / "idc").is_dir():
        pytest.skip("IDC data not found under BREASTDX_DATA")


def test_train_idc_refuses_init_from_the_shipped_idc_model_on_another_split(tmp_path):
    """The shipped idc model trained on the patients that split seed 1 puts into validation and test: it was taken,
    and the test figures were of patients its weights had seen."""
    _needs_idc()
    from breastdx.tasks.idc import IDC, IdcConfig
    from breastdx.zoo import shipped_models

    config = IdcConfig(init=str(shipped_models()["idc"]), split_seed=1, archs=("compact_cnn",), epochs=1)
    with pytest.raises(ConfigError, match=r"Option --init: .*idc: trained on \d+ case\(s\) of this run's validation"):
        IDC.train(config, DATA, tmp_path)
    assert not (tmp_path / "archs").exists()


def test_synthetic_patches_from_a_generator_that_saw_test_patients_are_refused(tmp_path):
    _needs_idc()
    from breastdx.models.gan import ConditionalGenerator, save_generator
    from breastdx.tasks.idc import IDC, IdcConfig
    from breastdx.zoo import shipped_models

    import torch

    torch.manual_seed(0)
    folder = tmp_path / "gen"
    save_generator(folder, ConditionalGenerator(2, 50, z_dim=8, widths=(16, 8, 8, 8), embed_dim=4),
                   {"task": "idc-synthesis", "class_names": ["normal", "tumour"], "split_file": "split.json"})
    shutil.copyfile(shipped_models()["idc-gan"] / "split.json", folder / "split.json")
    config = IdcConfig(synthetic_idc=3, synthetic_model=str(folder), split_seed=1)
    with pytest.raises(ConfigError, match=r"Option --synthetic-model: .*gen: trained on \d+ case\(s\)"):
        IDC.spec.read(config, DATA, None, tmp_path / "a.json")
    same = IDC.spec.read(config, DATA, shipped_models()["idc"] / "split.json", tmp_path / "b.json")
    assert same.parts["train"].ids[-1].startswith("synthetic/")


def test_cross_validation_refuses_synthetic_patches(tmp_path):
    from breastdx.tasks.idc import IDC, IdcConfig

    with pytest.raises(ConfigError, match="--cv-folds with --synthetic-idc 5"):
        IDC.train(IdcConfig(cv_folds=3, synthetic_idc=5), DATA, tmp_path)
    assert not (tmp_path / "folds").exists()
