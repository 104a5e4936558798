from dataclasses import dataclass
from pathlib import Path

import pytest

from breastdx.config import (ConfigError, load_config, parse_extra_args, resolve_data_root, save_yaml, to_dict,
                             with_overrides)


@dataclass(frozen=True)
class Cfg:
    seed: int = 0
    lr: float = 1e-3
    models: tuple[str, ...] = ("a", "b")
    flag: bool = False
    name: str = ""


def test_overrides_are_typed():
    cfg = with_overrides(Cfg(), {"seed": "7", "lr": "0.5", "models": "x, y,z", "flag": "true", "name": "n"})
    assert cfg == Cfg(seed=7, lr=0.5, models=("x", "y", "z"), flag=True, name="n")


def test_unknown_option_suggests_closest():
    with pytest.raises(ConfigError, match=r"Unknown option --model\. Did you mean --models\?"):
        with_overrides(Cfg(), {"model": "svm"})


def test_bad_value_names_option_and_type():
    with pytest.raises(ConfigError, match=r"Option 'seed' expects int, got 'abc'"):
        with_overrides(Cfg(), {"seed": "abc"})
    with pytest.raises(ConfigError, match=r"The 'flag' option must be true or false .* Got 'maybe' instead"):
        with_overrides(Cfg(), {"flag": "maybe"})


def test_one_strict_boolean_parser():
    from breastdx.config import parse_bool

    assert [parse_bool(v, "x") for v in ("true", "Yes", "ON", "1", True)] == [True] * 5
    assert [parse_bool(v, "x") for v in ("false", "No", "off", "0", False)] == [False] * 5
    with pytest.raises(ConfigError, match="'gradcam' option must be true or false"):
        parse_bool("flase", "gradcam")  # read as true before: three parsers, two of them lenient


def test_parse_extra_args_forms():
    assert parse_extra_args(["--epochs", "3", "--arch=unet", "--tta"]) == {"epochs": "3", "arch": "unet", "tta": "true"}
    with pytest.raises(ConfigError, match="Unexpected argument 'stray'"):
        parse_extra_args(["stray"])


def test_yaml_round_trip(tmp_path: Path):
    cfg = Cfg(seed=3, models=("svm",))
    save_yaml({"task": "t", **to_dict(cfg)}, tmp_path / "config.yaml")
    assert load_config(Cfg, tmp_path / "config.yaml") == cfg


def test_data_root_order(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("BREASTDX_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "flag") == (tmp_path / "flag").resolve()
    assert resolve_data_root(None) == (tmp_path / "env").resolve()
    monkeypatch.delenv("BREASTDX_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_root(None) == tmp_path / "cache" / "breastdx" / "data"
