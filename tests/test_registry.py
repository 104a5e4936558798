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


def test_every_shipped_card_table_gives_its_meta_json_figures():
    """Each ``| metric | value | 95% CI |`` row of a shipped model card is ``meta.json``'s figure to 3 decimals: the
    first table its ``metrics``, a second one (wdbc) its ``operating_point_metrics``."""
    import json
    import re

    from breastdx.zoo import ZOO_DIR

    row = re.compile(r"^\| ([\w/]+) \| (-?[\d.]+) \| (-?[\d.]+) – (-?[\d.]+) \|$")
    checked = 0
    for card in sorted(ZOO_DIR.glob("**/MODEL_CARD.md")):
        meta = json.loads((card.parent / "meta.json").read_text())
        tables = re.split(r"^\| metric \| value \| 95% CI \|$", card.read_text(), flags=re.M)[1:]
        for table, key in zip(tables, ("metrics", "operating_point_metrics")):
            for line in table.splitlines()[2:]:
                if not line.startswith("|"):
                    break
                m = row.match(line)
                if not m:  # a figure without an interval ('n/a | none': a class absent from the test split)
                    continue
                name, value, low, high = m.groups()
                fig = meta[key][name]
                shown = [f"{v:.3f}" for v in (fig["value"], *fig["ci95"])]
                assert shown == [value, low, high], f"{card.parent.name}: {name}"
                checked += 1
    assert checked >= 195, checked  # 10 tables of 9 cards (lesion_crop too; monuseg's has no intervals)


def test_a_mistyped_shipped_model_gets_did_you_mean():
    """--model busi_seg (an underscore) said only "neither a folder nor a shipped model" and listed all; breastdx
    models NAME suggested the closest, --model did not."""
    from breastdx.zoo import resolve_model

    with pytest.raises(FileNotFoundError, match=r"--model busi_seg: neither a folder nor a shipped model\. Did you mean "
                                                r"'busi-seg'\? Shipped models: .*busi-seg"):
        resolve_model("busi_seg", "busi-seg")
    with pytest.raises(FileNotFoundError, match=r"shipped model\. Shipped models: "):  # nothing close: no guess
        resolve_model("zzzzzzzz", "busi-seg")
