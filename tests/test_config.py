from dataclasses import dataclass
from pathlib import Path

import pytest

from breastdx.config import (ConfigError, load_config, parse_extra_args, resolve_data_root, save_yaml, to_dict,
                             validate, with_overrides)


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


@pytest.mark.parametrize("value", ["x,,y", "x,y,", ",x", "x, ,y"])
def test_an_empty_item_of_a_list_option_is_refused(value):
    """``--models x,,y`` was read as (x, y): the empty item, a typo, was dropped in silence."""
    with pytest.raises(ConfigError, match=r"The 'models' option is a comma-separated list with an empty item"):
        with_overrides(Cfg(), {"models": value})
    assert with_overrides(Cfg(), {"models": ""}).models == ()  # an empty list stays possible


def test_unknown_option_suggests_closest():
    with pytest.raises(ConfigError, match=r"Unknown option --model\. Did you mean --models\?"):
        with_overrides(Cfg(), {"model": "svm"})


def test_bad_value_names_option_and_type():
    with pytest.raises(ConfigError, match=r"The 'seed' option must be an integer. Got 'abc' instead"):
        with_overrides(Cfg(), {"seed": "abc"})
    with pytest.raises(ConfigError, match=r"The 'flag' option must be true or false .* Got 'maybe' instead"):
        with_overrides(Cfg(), {"flag": "maybe"})


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999", float("inf")])
def test_a_number_option_must_be_finite(value):
    """``--lr inf`` was accepted (inf > 0) and the run failed in calibration with "logits hold NaN or infinite
    values", reported as a bug; NaN slipped past options without bounds."""
    with pytest.raises(ConfigError, match=rf"^The 'lr' option must be a finite number\. Got {value!r} instead\.$"):
        with_overrides(Cfg(), {"lr": value})
    assert with_overrides(Cfg(), {"lr": "-1e-3"}).lr == -1e-3  # finite: the bounds are validate()'s


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


def test_declared_constraints_are_checked_in_one_place():
    from breastdx.config import option, parse_options, validate

    @dataclass(frozen=True)
    class Opts:
        epochs: int = option(60, ge=1)
        tta: str = option("none", choices=("none", "hflip"))
        mode: str = option("", choices=("", "fast"))
        ratios: tuple[float, ...] = option((0.7, 0.3), ge=0, each=True)

    validate(Opts(), "toy")
    with pytest.raises(ConfigError, match=r"^The 'epochs' option of toy must be an integer >= 1\. Got 0 instead\.$"):
        validate(Opts(epochs=0), "toy")
    with pytest.raises(ConfigError, match=r"The 'tta' option of predict toy must be one of none, hflip\. Got 'vflip'"):
        parse_options(Opts, {"tta": "vflip"}, "predict toy")
    with pytest.raises(ConfigError, match=r"'mode' option of toy must be one of fast, or empty for the default\. Got 'slow'"):
        parse_options(Opts, {"mode": "slow"}, "toy")
    with pytest.raises(ConfigError, match=r"'ratios' option of toy must be each item a number >= 0\. Got '0.5,-1.0'"):
        parse_options(Opts, {"ratios": "0.5,-1"}, "toy")
    with pytest.raises(ConfigError, match=r"Unknown option --epoch for toy\. Did you mean --epochs\?"):
        parse_options(Opts, {"epoch": "3"}, "toy")
    assert parse_options(Opts, {"epochs": "3", "dtype": "float32"}, "toy") == Opts(epochs=3)


def test_idc_synthetic_seed_is_in_the_generators_range():
    """--synthetic-seed -1 was taken (torch wraps it to another seed), one past 2^64 - 1 failed late, in the
    generator."""
    from breastdx.tasks import get_task

    config_cls = get_task("idc").config_cls
    for value in ("-1", str(2**64)):
        with pytest.raises(ConfigError, match="The 'synthetic_seed' option|The 'synthetic-seed' option"):
            validate(with_overrides(config_cls(), {"synthetic_seed": value}), "idc")
    validate(with_overrides(config_cls(), {"synthetic_seed": str(2**64 - 1)}), "idc")


def test_bounds_are_written_in_full_in_help_and_errors():
    """--split-seed's help read '<= 4.29497e+09': a bound a user cannot type back."""
    from breastdx.config import Constraint

    assert Constraint(ge=0, le=2**32 - 1).describe() == ">= 0 and <= 4294967295"
    assert Constraint(ge=0, lt=2**64).describe() == ">= 0 and < 18446744073709551616"
    assert Constraint(gt=0.0, le=1e-3).describe() == "> 0 and <= 0.001"
    assert Constraint(ge=0.5, multiple_of=16).describe() == ">= 0.5 and a multiple of 16"


def test_a_yes_or_no_is_not_a_number(tmp_path: Path):
    """YAML reads `seed: yes` (or `on`, `true`) as True, and int(True) is 1: a config.yaml edited by hand, or a
    boolean given to with_overrides, became seed 1 or lr 1.0 without a word."""
    (tmp_path / "config.yaml").write_text("seed: yes\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^The 'seed' option must be an integer\. Got True instead\.$"):
        load_config(Cfg, tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match=r"^The 'lr' option must be a number\. Got False instead\.$"):
        with_overrides(Cfg(), {"lr": False})
    assert with_overrides(Cfg(), {"seed": 7.0, "lr": 2}) == Cfg(seed=7, lr=2.0)  # numbers of the other kind: kept
