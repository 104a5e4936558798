"""The WDBC task's options and model folder, found in review: each test failed before its fix."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastdx.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args, said", [
    (["--seed", "abc"], "The 'seed' option must be an integer. Got 'abc' instead."),
    (["--seed", "-3"], "The 'seed' option of evaluate wdbc must be an integer >= 0"),
    (["--sed", "3"], "Unknown option --sed for evaluate wdbc. Did you mean --seed?"),
])
def test_evaluate_options_are_declared_and_checked(tmp_path: Path, args, said):
    """``evaluate wdbc --seed abc`` said only "invalid literal for int() with base 10: 'abc'", naming no option,
    and ``--help`` said that wdbc declares no options for evaluate, though it reads --data-file and --seed."""
    result = runner.invoke(app, ["evaluate", "wdbc", *args, "--out", str(tmp_path / "run")], terminal_width=300)
    assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output
    text = " ".join(runner.invoke(app, ["evaluate", "wdbc", "--help"], terminal_width=300).output.split())
    assert "Options of evaluate wdbc" in text and "--data-file" in text and "Seed of the bootstrap" in text
