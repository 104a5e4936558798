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
