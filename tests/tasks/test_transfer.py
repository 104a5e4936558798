"""Transfer learning: ``--init PATH`` (a safetensors file or a model folder) and ``--init-compare`` (the same
architecture from random and from given weights, on one split, with the paired test), on the real IDC patches
from the shipped PCam model."""

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.models.init_weights import InitWeightsError, init_from_file, read_state_file
from breastdx.models.networks import build_network
from breastdx.zoo import shipped_models

runner = CliRunner()
TINY = ["--epochs", "1", "--max-train-batches", "2", "--batch-size", "8", "--n-bootstrap", "50", "--progress-bar",
        "false", "--threads", "1", "--gradcam-examples", "0", "--image-size", "48", "--max-cases", "60"]


def test_a_model_folder_initialises_the_matching_layers(tmp_path):
    pcam = shipped_models()["pcam"]
    meta = json.loads((pcam / "meta.json").read_text())
    state = read_state_file(pcam)
    assert state.keys() == read_state_file(pcam / meta["weights_file"]).keys()
    net, _ = build_network(meta["architecture"], 3, 2, **meta["architecture_args"])
    report = init_from_file(net, pcam)
    assert len(report.matched) == len(state) and not report.missing and not report.shape_mismatch
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, state[key].to(value.dtype))
    # another architecture: at most a stray bias of the right shape fits, and the report says what did not
    other = init_from_file(build_network("resnet18", 3, 2)[0], pcam)
    assert len(other.matched) <= 1 and len(other.missing) > 100 and len(other.unexpected) > 40
    # a folder without weights is refused
    with pytest.raises(InitWeightsError, match="without model.safetensors"):
        read_state_file(tmp_path)


def test_init_compare_trains_both_on_one_split_with_a_paired_test(tmp_path):
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / "idc").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to ../shared/data")
    out = tmp_path / "run"
    pcam = shipped_models()["pcam"]
    result = runner.invoke(app, [str(a) for a in ["train", "idc", "--data-dir", env, "--out", out, "--archs",
                                                  "compact_cnn", "--init", pcam, "--init-compare", "true", *TINY]])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["models"]) == ["compact_cnn", "compact_cnn+init"]
    assert metrics["models"]["compact_cnn"]["init"] is None
    loaded = metrics["models"]["compact_cnn+init"]["init"]
    assert loaded["n_matched"] > 0 and loaded["n_missing"] == 0 and loaded["source"].endswith("model.safetensors")
    (c,) = metrics["comparison"]
    assert {c["model_a"], c["model_b"]} == {"compact_cnn", "compact_cnn+init"}
    meta = json.loads((out / "archs" / "compact_cnn+init" / "model" / "meta.json").read_text())
    assert meta["architecture"] == "compact_cnn" and meta["init"]["n_matched"] == loaded["n_matched"]
    result = runner.invoke(app, ["train", "idc", "--data-dir", env, "--out", str(tmp_path / "x"), "--init-compare",
                                 "true", *TINY])
    assert result.exit_code == 2 and "give --init PATH" in result.output
