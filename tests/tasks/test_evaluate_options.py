"""Review 31 of the task modules and the command line: defects found by running the CLI on small real inputs."""

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastdx.cli import app

runner = CliRunner()
DATA = os.environ.get("BREASTDX_DATA")


def test_a_negative_evaluate_seed_is_refused_naming_the_option():
    """``evaluate idc --seed -1`` read the whole split and predicted it, then ended with NumPy's bare 'expected
    non-negative integer'; the seed's range is declared, so the message names the option before any work."""
    from breastdx.config import ConfigError, parse_options
    from breastdx.pipeline.task import EvaluateOptions
    from breastdx.pipeline.verbs import EvaluateOptions as ImageEvaluateOptions
    from breastdx.tasks.busi_seg import SegEvaluateOptions

    for cls in (EvaluateOptions, ImageEvaluateOptions, SegEvaluateOptions):
        with pytest.raises(ConfigError, match=r"'seed' option of evaluate x must be an integer >= 0"):
            parse_options(cls, {"seed": "-1"}, "evaluate x")
        with pytest.raises(ConfigError, match=r"'seed' option"):
            parse_options(cls, {"seed": str(2**32)}, "evaluate x")
        assert parse_options(cls, {"seed": str(2**32 - 1)}, "evaluate x").seed == 2**32 - 1


def test_evaluate_refuses_a_negative_seed_with_status_2(tmp_path: Path):
    result = runner.invoke(app, ["evaluate", "idc", "--out", str(tmp_path / "ev"), "--seed", "-1"])
    assert result.exit_code == 2, result.output
    assert "'seed' option of evaluate idc" in result.output and "Traceback" not in result.output


def test_evaluate_and_calibrate_help_list_the_data_options_they_accept():
    """``evaluate breakhis --labels binary`` (and busi-cls's --lesion-crop, breastmnist's --data-file) is accepted
    and read, but ``evaluate breakhis --help`` listed only the verb's own options: every option a verb takes is in
    its help, each described, its default the model's own."""
    from breastdx.config import describe_options
    from breastdx.tasks import TASKS, get_task

    checked = 0
    for name in TASKS.names():
        task = get_task(name)
        data_options = getattr(getattr(task, "spec", None), "data_options", ())
        for verb in ("evaluate", "calibrate"):
            if not data_options:
                continue
            rows = {opt: (default, text) for opt, default, text in describe_options(task.options_cls(verb))}
            for field in data_options:
                opt = "--" + field.replace("_", "-")
                assert opt in rows, f"{verb} {name}: {opt} missing from --help"
                default, text = rows[opt]
                assert default == "(the model's)" and "trained with" in text and len(text) > 40, (verb, name, opt)
                checked += 1
            assert "--split-file" in rows and "--batch-size" in rows  # the verb's own options stay
    assert checked >= 10
    result = runner.invoke(app, ["evaluate", "breakhis", "--help"], terminal_width=300)
    assert result.exit_code == 0 and "--magnification" in result.output and "--labels" in result.output


class _Stop(Exception):
    pass


@pytest.mark.skipif(not DATA, reason="BREASTDX_DATA is not set (point it at ../shared/data)")
def test_busi_seg_evaluate_config_records_every_resolved_option(tmp_path: Path, monkeypatch):
    """``evaluate busi-seg --tta hflip`` scored with the mirrored mean, but its run folder's ``config.yaml`` held only
    split, seed and n_bootstrap: the resolved options (tta as used, batch size, presence gate) are there now."""
    import yaml

    from breastdx.tasks.busi_seg import BusiSegTask
    from breastdx.zoo import resolve_model

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(BusiSegTask, "_evaluate_cases", stop)  # config.yaml is written before scoring
    with pytest.raises(_Stop):
        BusiSegTask().evaluate(resolve_model(None, "busi-seg"), Path(DATA), tmp_path,
                               {"split": "val", "tta": "hflip", "batch-size": "4", "seed": "7"})
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    assert config["tta"] == "hflip" and config["batch_size"] == 4 and config["seed"] == 7
    assert config["split"] == "val" and config["presence_model"] == "" and "presence_threshold" in config
    assert config["split_file"].endswith("split.json")  # the file read, not the option's empty default


@pytest.mark.skipif(not DATA, reason="BREASTDX_DATA is not set (point it at ../shared/data)")
@pytest.mark.parametrize("external", [False, True])
def test_image_evaluate_config_records_the_conformal_level_used(tmp_path: Path, monkeypatch, external):
    """``evaluate busi-cls`` scored the model folder's 0.9 prediction sets but its ``config.yaml`` said
    ``conformal_level: 0.0`` (the option's 'the model's' mark); it records the level used, as it does the TTA."""
    import yaml

    import breastdx.runs
    from breastdx.tasks import get_task
    from breastdx.zoo import resolve_model

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(breastdx.runs, "write_versions", stop)  # right after config.yaml
    options = {"external": str(Path(DATA) / "bus_uclm_sample")} if external else {"split": "val"}
    with pytest.raises(_Stop):
        get_task("busi-cls").evaluate(resolve_model(None, "busi-cls"), Path(DATA), tmp_path, options)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    assert config["conformal_level"] == 0.9 and config["tta"] == "hflip"


@pytest.mark.skipif(not DATA, reason="BREASTDX_DATA is not set (point it at ../shared/data)")
def test_external_evaluation_of_a_lesion_crop_model_runs_its_segmenter_as_asked(tmp_path: Path, monkeypatch):
    """``evaluate busi-cls --model <a --lesion-crop model> --external DIR --backend torch`` loaded the busi-seg model
    that finds the crops with the default backend and dtype, whatever was asked."""
    from breastdx.inference.lesion_crop import LesionCropper
    from breastdx.tasks import get_task
    from breastdx.zoo import resolve_model

    crop_model = resolve_model(None, "busi-cls") / "lesion_crop"
    if not (crop_model / "meta.json").is_file():
        pytest.skip("no shipped busi-cls lesion-crop model")
    asked = {}

    def spy(cls, model, margin=0.0, **options):
        asked.update(options)
        raise _Stop

    monkeypatch.setattr(LesionCropper, "from_model", classmethod(spy))
    with pytest.raises(_Stop):
        get_task("busi-cls").evaluate(crop_model, Path(DATA), tmp_path, {
            "external": str(Path(DATA) / "bus_uclm_sample"), "backend": "torch", "dtype": "float32"})
    assert asked == {"backend": "torch", "dtype": "float32"}
