"""ModelMeta (checked meta.json, unknown keys kept) and the predictor registry (load_predictor by kind)."""

import json
from pathlib import Path

import pytest

from breastdx.inference.base import PREDICTORS, load_predictor
from breastdx.inference.meta import MODEL_KINDS, ModelMeta, infer_kind
from breastdx.models.saved import META_SCHEMA_VERSION, ModelFolderError
from breastdx.registry import UnknownNameError

ZOO = Path(__file__).resolve().parents[2] / "src" / "breastdx" / "zoo"

BASE = {"schema_version": 1, "task": "toy", "architecture": "resnet18", "class_names": ["a", "b"],
        "weights_file": "model.safetensors"}


def test_fields_are_typed_and_unknown_keys_kept():
    meta = ModelMeta.from_dict({**BASE, "threshold": 0.25, "metrics": {"auc": 0.9}, "new_key": [1, 2]}, "x/meta.json")
    assert meta.class_names == ("a", "b") and meta.positive_class == "b" and meta.threshold == 0.25
    assert meta.kind == "classification" and meta.schema_version == 1
    assert meta["new_key"] == [1, 2] and meta.get("metrics") == {"auc": 0.9} and meta.get("missing", 7) == 7
    assert "new_key" in meta and len(meta) == len(BASE) + 3 and {**meta}["task"] == "toy"
    assert meta.to_dict()["architecture"] == "resnet18"


@pytest.mark.parametrize("change, message", [
    ({"task": None}, "field 'task' must be a task name. Got None instead."),
    ({"schema_version": "1"}, "field 'schema_version' must be an integer >= 1. Got '1' instead."),
    ({"schema_version": META_SCHEMA_VERSION + 1}, "newer than this breastdx reads"),
    ({"class_names": ["a"]}, "field 'class_names' must be a list of at least two distinct class names"),
    ({"class_names": ["a", "a"]}, "distinct"),
    ({"positive_class": "c"}, "field 'positive_class' must be one of \\['a', 'b'\\] \\(or a group of them.*Got 'c' instead."),
    ({"threshold": 1.5}, "field 'threshold' must be a number in \\[0, 1\\] or null. Got 1.5 instead."),
    ({"threshold": True}, "field 'threshold'"),
    ({"kind": "video"}, "field 'kind' must be one of classification, segmentation, tabular, nucleus_instances. Got 'video'"),
])
def test_invalid_fields_name_the_file_the_field_and_the_value(change, message):
    with pytest.raises(ModelFolderError, match=f"^x/meta.json: .*{message}"):
        ModelMeta.from_dict({**BASE, **change}, "x/meta.json")


def test_missing_field_is_named(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({k: v for k, v in BASE.items() if k != "architecture"}))
    with pytest.raises(ModelFolderError, match=r"meta.json: missing field 'architecture' \(a network"):
        ModelMeta.read(tmp_path)
    (tmp_path / "meta.json").write_text("{")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        ModelMeta.read(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps(BASE))
    with pytest.raises(ModelFolderError, match="weights file 'model.safetensors' named in meta.json is missing"):
        ModelMeta.read(tmp_path)
    with pytest.raises(ModelFolderError, match="missing field\\(s\\) 'preprocessing', 'x' of a toy model"):
        ModelMeta.from_dict(BASE).require(("preprocessing", "x", "task"), "a toy model")


def test_kind_from_the_folder():
    assert infer_kind({**BASE, "kind": "segmentation"}) == "segmentation"
    assert infer_kind({**BASE, "weights_file": "model.skops"}) == "tabular"
    assert infer_kind({**BASE, "postprocessing": {}}) == "segmentation"
    assert infer_kind({**BASE, "task": "busi-seg"}) == "segmentation"
    assert infer_kind(BASE) == "classification"
    assert set(PREDICTORS.names()) <= set(MODEL_KINDS)


@pytest.mark.parametrize("name, cls", [("wdbc", "WDBCPredictor"), ("busi-seg", "SegmentationPredictor"),
                                       ("busi-cls", "ClassificationPredictor"),
                                       ("breastmnist", "ClassificationPredictor"),
                                       ("pcam", "ClassificationPredictor")])
def test_load_predictor_picks_the_class_of_the_kind(name, cls):
    if not (ZOO / name / "meta.json").is_file():
        pytest.skip(f"no shipped {name} model")
    p = load_predictor(ZOO / name, task=name, batch_size=1, backend="torch")
    assert type(p).__name__ == cls and p.meta.task == name
    assert p.meta["architecture"] == p.meta.get("architecture") == p.meta.architecture  # dict-like


def test_a_predictor_refuses_another_kind():
    if not (ZOO / "busi-seg" / "meta.json").is_file():
        pytest.skip("no shipped busi-seg model")
    from breastdx.inference.classifier import ClassificationPredictor

    with pytest.raises(ModelFolderError, match="a segmentation model \\(task 'busi-seg'\\), not a classification model"):
        ClassificationPredictor.from_dir(ZOO / "busi-seg")
    with pytest.raises(UnknownNameError, match="Unknown model kind 'segmentatio'. Did you mean 'segmentation'"):
        PREDICTORS.get("segmentatio")


@pytest.mark.parametrize("weights", ["../other/model.safetensors", "/etc/passwd", "sub/../../model.safetensors",
                                     "..\\model.safetensors", "C:\\weights\\model.safetensors", "link.safetensors"])
def test_weights_file_must_lie_inside_the_folder(tmp_path, weights):
    """``weights_file`` cannot make breastdx read a file outside the model folder (issue 14)."""
    folder, other = tmp_path / "model", tmp_path / "other"
    folder.mkdir()
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"x")
    (folder / "link.safetensors").symlink_to(other / "model.safetensors")
    (folder / "meta.json").write_text(json.dumps({**BASE, "weights_file": weights}))
    with pytest.raises(ModelFolderError, match=r"meta.json: field 'weights_file' must name a file inside the model "
                                               r"folder .* Got .* instead"):
        ModelMeta.read(folder)


def test_weights_file_in_a_sub_folder_is_accepted(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "meta.json").write_text(json.dumps({**BASE, "weights_file": "weights/model.safetensors"}))
    assert ModelMeta.read(tmp_path).weights_file == "weights/model.safetensors"


@pytest.mark.parametrize("name", ["wdbc", "busi-seg"])
def test_a_word_as_threshold_names_the_file_and_the_key(tmp_path, name):
    import shutil

    if not (ZOO / name / "meta.json").is_file():
        pytest.skip(f"no shipped {name} model")
    folder = shutil.copytree(ZOO / name, tmp_path / name)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "threshold": "high"}))
    with pytest.raises(ModelFolderError, match=rf"{folder / 'meta.json'}: field 'threshold' must be a number in "
                                               rf"\[0, 1\] or null. Got 'high' instead."):
        load_predictor(folder, batch_size=1, backend="torch")


@pytest.fixture
def edited_model(tmp_path):
    """``edited_model(name, **fields)``: a copy of the shipped model ``name`` whose meta.json has ``fields`` set (a
    value of ``...`` removes the field); skips when the model is not shipped."""
    import shutil

    def edit(name, **fields):
        if not (ZOO / name / "meta.json").is_file():
            pytest.skip(f"no shipped {name} model")
        folder = shutil.copytree(ZOO / name, tmp_path / name)
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        meta.update(fields)
        meta = {k: v for k, v in meta.items() if v is not ...}
        (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        return folder
    return edit


@pytest.mark.parametrize("change, message", [
    ({"temperature": 0}, r"field 'temperature' must be a number > 0 .* Got 0 instead"),
    ({"temperature": -1.5}, r"field 'temperature' must be a number > 0 .* Got -1.5 instead"),
    ({"temperature": "1.2"}, r"field 'temperature' must be a number > 0 .* Got '1.2' instead"),
    ({"preprocessing": None}, r"field 'preprocessing' must be a JSON object.* Got None instead"),
    ({"preprocessing": {"image_size": 96, "mode": "bgr"}}, r"field 'preprocessing': .*mode must be 'gray' or 'rgb'"),
    ({"preprocessing": {"image_size": "96", "mode": "rgb"}}, r"field 'preprocessing': image_size must be an integer"),
    ({"inference": None}, r"field 'inference' must be a JSON object.* Got None instead"),
    ({"inference": {"validated_dtypes": "bfloat16"}}, r"field 'inference': validated_dtypes must be a list"),
    ({"gradcam": None}, r"field 'gradcam' must be a JSON object"),
    ({"ood": {"threshold": 0.05, "bank_file": "ood_features.safetensors"}}, r"field 'ood': .*'k'"),
])
def test_an_odd_classifier_field_names_the_file_and_the_field(edited_model, change, message):
    """An odd value in a classifier's meta.json is a ModelFolderError naming the file and the field, not a TypeError or
    AttributeError at load time, nor (temperature 0 or below) probabilities divided by zero or turned round."""
    folder = edited_model("pcam", **change)
    with pytest.raises(ModelFolderError, match=rf"^{folder / 'meta.json'}: {message}"):
        load_predictor(folder, batch_size=1, backend="torch")


@pytest.mark.parametrize("value", [None, ...])
def test_a_null_or_absent_temperature_is_no_temperature_scaling(edited_model, value):
    folder = edited_model("pcam", temperature=value)
    assert load_predictor(folder, batch_size=1, backend="torch").temperature == 1.0


@pytest.mark.parametrize("change, message", [
    ({"threshold": 0.3}, r"field 'threshold' \(0.3\) and postprocessing.threshold \(0.5\) differ"),
    ({"postprocessing": None}, r"field 'postprocessing' must be a JSON object"),
    ({"postprocessing": {"min_area_fraction": 2}}, r"field 'postprocessing': .*min_area_fraction must be in \[0, 1\)"),
    ({"threshold": 1.0, "postprocessing": {}}, r"field 'postprocessing': .*threshold must be in \(0, 1\), got 1.0"),
])
def test_an_odd_segmenter_field_names_the_file_and_the_field(edited_model, change, message):
    """busi-seg's mask threshold is meta.json's 'threshold', which the model card, the service's model list and
    'evaluate' report: a postprocessing.threshold that says otherwise is refused, not silently applied instead."""
    folder = edited_model("busi-seg", **change)
    with pytest.raises(ModelFolderError, match=rf"^{folder / 'meta.json'}: {message}"):
        load_predictor(folder, batch_size=1, backend="torch")


@pytest.mark.parametrize("change, expected", [({"threshold": None}, 0.5),
                                              ({"threshold": 0.4, "postprocessing": {"keep_largest": True}}, 0.4),
                                              ({"threshold": ..., "postprocessing": {}}, 0.5)])
def test_the_segmenter_threshold_comes_from_either_field_when_one_is_given(edited_model, change, expected):
    p = load_predictor(edited_model("busi-seg", **change), batch_size=1, backend="torch")
    assert p.postprocessing.threshold == expected


@pytest.mark.parametrize("change, message", [
    ({"postprocessing": None}, r"field 'postprocessing' must be a JSON object"),
    ({"postprocessing": {"min_size": 20, "foo": 1}}, r"field 'postprocessing': .*unexpected keyword argument 'foo'"),
    ({"postprocessing": {"unseeded": "x"}}, r"field 'postprocessing': .*unseeded must be 'keep' or 'drop'"),
    ({"inference": None}, r"field 'inference' must be a JSON object"),
    ({"inference": {"windows": {"roi": 544}}}, r"field 'inference': .*unexpected keyword argument 'roi'"),
    ({"inference": {"windows": {"roi_size": "544"}}}, r"field 'inference': .*roi_size must be an integer"),
    ({"inference": {"windows": {"overlap": 1.5}}}, r"field 'inference': .*overlap must be in \[0, 1\)"),
    ({"inference": {"tta": "x"}}, r"field 'inference': test-time augmentation 'x'"),
])
def test_an_odd_nucleus_model_field_names_the_file_and_the_field(edited_model, change, message):
    """monuseg's windows, test-time augmentation and watershed settings: a clear error at load time, not a TypeError
    or AttributeError (nor a window size in text that fails on the first tile)."""
    folder = edited_model("monuseg", **change)
    with pytest.raises(ModelFolderError, match=rf"^{folder / 'meta.json'}: {message}"):
        load_predictor(folder, backend="torch")
