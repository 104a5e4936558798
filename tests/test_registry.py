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
