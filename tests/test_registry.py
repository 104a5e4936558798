import pytest

from breastdx.registry import Registry, UnknownNameError


def test_register_and_get():
    reg: Registry = Registry("model")

    @reg.register("resnet18")
    def make():
        return 18

    assert reg.get("resnet18")() == 18
    assert reg.names() == ["resnet18"]
    assert "resnet18" in reg and len(reg) == 1


def test_unknown_name_suggests_closest_and_lists_choices():
    reg: Registry = Registry("task")
    for name in ("wdbc", "busi-seg", "busi-cls"):
        reg.register(name)(object())
    with pytest.raises(UnknownNameError) as err:
        reg.get("busi_seg")
    message = str(err.value)
    assert "Unknown task 'busi_seg'" in message
    assert "Did you mean 'busi-seg'?" in message
    assert "busi-cls, busi-seg, wdbc" in message


def test_duplicate_registration_fails():
    reg: Registry = Registry("task")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(2)


def test_a_task_s_default_model_is_its_own_folder_whatever_sorts_first(tmp_path, monkeypatch):
    """A named second model of a task (``busi-seg-ensemble``) sorts before ``busi-seg/`` by path ('-' < '/'); the
    folder named after the task stays the task's default, and the second one is reached by its name."""
    import json

    import breastdx.zoo as zoo

    for name in ("busi-seg", "busi-seg-ensemble", "aaa"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "meta.json").write_text(json.dumps({"task": "busi-seg"}))
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    assert list(zoo.shipped_models()) == ["busi-seg", "aaa", "busi-seg-ensemble"]
    assert zoo.resolve_model(None, "busi-seg") == tmp_path / "busi-seg"
    assert zoo.resolve_model("busi-seg-ensemble", "busi-seg") == tmp_path / "busi-seg-ensemble"


def test_a_run_folder_stands_for_its_model(tmp_path):
    """``--model RUN`` (the folder ``breastdx train --out RUN`` wrote) means ``RUN/model``; a model folder is itself."""
    import breastdx.zoo as zoo

    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "model" / "meta.json").write_text("{}")
    assert zoo.resolve_model(tmp_path / "run", "busi-seg") == tmp_path / "run" / "model"
    assert zoo.resolve_model(tmp_path / "run" / "model", "busi-seg") == tmp_path / "run" / "model"
    (tmp_path / "other").mkdir()  # neither: left as given, for the model reader to refuse with its message
    assert zoo.resolve_model(tmp_path / "other", "busi-seg") == tmp_path / "other"
