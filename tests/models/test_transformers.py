"""The transformers ``vit`` and ``swin``: built for an image size, rebuilt from their arguments, size facts,
Grad-CAM through breastdx's explainer, and a tiny ``breastdx train idc`` / ``predict`` on real patches."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.explain.cam import CamExplainer
from breastdx.models.networks import (NETWORKS, build_network, check_input_size, count_parameters, gradcam_layer,
                                      with_image_size)

# small widths keep the unit tests fast; the defaults are exercised by the CLI run below
SMALL = {"vit": {"patch_size": 8, "hidden_size": 24, "mlp_dim": 48, "num_layers": 2, "num_heads": 2},
         "swin": {"patch_size": 2, "feature_size": 6, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2],
                  "window_size": 3}}


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_registered_as_explainable_classifiers(name):
    entry = NETWORKS.get(name)
    assert entry.kind == "classification"
    assert gradcam_layer(name) == {"vit": "token_map", "swin": "backbone.layers4.0"}[name]


@pytest.mark.parametrize("name, size, out", [("vit", 48, 2), ("vit", 64, 3), ("swin", 48, 2), ("swin", 32, 3)])
def test_logits_shape_and_args_record_the_image_size(name, size, out):
    torch.manual_seed(0)
    net, args = build_network(name, 3, out, image_size=size, **SMALL[name])
    assert args["image_size"] == size
    with torch.no_grad():
        y = net.eval()(torch.rand(2, 3, size, size))
    assert y.shape == (2, out) and y.dtype == torch.float32 and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_default_network_is_rebuilt_from_its_resolved_arguments(name):
    torch.manual_seed(0)
    net, args = build_network(name, 3, 2, image_size=48)
    stored = json.loads(json.dumps(args))  # as meta.json keeps them
    again, args2 = build_network(name, 3, 2, **stored)
    assert args2 == args and count_parameters(again) == count_parameters(net)
    assert list(again.state_dict()) == list(net.state_dict())
    again.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), again.eval()(x))


def test_default_sizes_are_small():
    assert count_parameters(build_network("vit", 3, 2, image_size=48)[0]) == 2_712_962
    assert count_parameters(build_network("swin", 3, 2, image_size=48)[0]) == 1_288_004


def test_check_input_size_names_the_patch_and_the_swin_downsampling():
    check_input_size("vit", 48, 48, image_size=48)
    with pytest.raises(ValueError, match="Network 'vit' needs images of at least 8 x 8 pixels, each side a multiple "
                                         "of 8; got 50 x 50"):
        check_input_size("vit", 50, 50, image_size=50)
    check_input_size("swin", 48, 48, image_size=48)
    with pytest.raises(ValueError, match="Network 'swin' needs images of at least 32 x 32 pixels, each side a "
                                         "multiple of 32; got 48 x 48"):
        check_input_size("swin", 48, 48, image_size=48, patch_size=4)
    with pytest.raises(ValueError, match="multiple of 8 . patch_size = 16, got 40"):
        build_network("swin", 3, 2, image_size=40)
    with pytest.raises(ValueError, match="multiple of patch_size 8, got 44"):
        build_network("vit", 3, 2, image_size=44)


def test_a_network_built_for_one_size_refuses_another():
    net, _ = build_network("vit", 3, 2, image_size=32, **SMALL["vit"])
    with pytest.raises(ValueError, match="built for 32 x 32 images .* got 48 x 48"):
        net(torch.rand(1, 3, 48, 48))


def test_with_image_size_adds_the_size_only_where_the_factory_takes_it():
    assert with_image_size("vit", 48, {"patch_size": 4}) == {"patch_size": 4, "image_size": 48}
    assert with_image_size("compact_cnn", 48, {"widths": [8]}) == {"widths": [8]}
    assert with_image_size("swin", None, {}) == {}
    with pytest.raises(ValueError, match="image_size=64 differs from the image size 48"):
        with_image_size("swin", 48, {"image_size": 64})


@pytest.mark.parametrize("name, size, grid", [("vit", 32, 4), ("swin", 48, 3)])
@pytest.mark.parametrize("fast_backward", [False, True])
def test_gradcam_maps_through_the_explainer(name, size, grid, fast_backward):
    torch.manual_seed(0)
    net, args = build_network(name, 3, 2, image_size=size, **SMALL[name])
    explainer = CamExplainer(net.eval(), name, fast_backward=fast_backward)
    assert explainer.layer == gradcam_layer(name, **args)
    x = torch.rand(2, 3, size, size)
    logits, idx, raw = explainer.raw_maps(x)
    assert logits.shape == (2, 2) and raw.shape == (2, grid, grid) and float(raw.sum()) > 0
    _, _, maps = explainer(x, sizes=[(50, 50), (size, size)])
    assert maps[0].shape == (50, 50) and maps[1].shape == (size, size)
    assert all(m.dtype == np.float32 and 0.0 <= m.min() and m.max() <= 1.0 for m in maps)


# ---------------------------------------------------------------------------------------- CLI on real data
TINY = ["--epochs", "1", "--max-train-batches", "2", "--batch-size", "8", "--n-bootstrap", "50", "--progress-bar",
        "false", "--threads", "1", "--gradcam-examples", "1", "--max-cases", "24", "--image-size", "32"]


def test_train_and_predict_idc_with_both_transformers(tmp_path):
    env = os.environ.get("BREASTDX_DATA")
    root = Path(env or "") / "idc" / "IDC_regular_ps50_idx5"
    if not env or not root.is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    runner = CliRunner()
    run = tmp_path / "run"
    small = json.dumps({"vit": {"hidden_size": 48, "mlp_dim": 96, "num_layers": 2}, "swin": {"feature_size": 12}})
    result = runner.invoke(app, ["train", "idc", "--data-dir", env, "--out", str(run), "--archs", "vit,swin",
                                 "--arch-args", small, *TINY])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["models"]) == {"vit", "swin"}
    (comparison,) = metrics["comparison"]
    assert {comparison["model_a"], comparison["model_b"]} == {"vit", "swin"}
    patch = root / json.loads((run / "split.json").read_text())["test"][0]
    for name in ("vit", "swin"):
        model = run / "archs" / name / "model"
        meta = json.loads((model / "meta.json").read_text())
        assert meta["architecture"] == name and meta["architecture_args"]["image_size"] == 32
        out = tmp_path / f"pred_{name}"
        result = runner.invoke(app, ["predict", "idc", str(patch), "--model", str(model), "--out", str(out),
                                     "--threads", "1"])
        assert result.exit_code == 0, result.output
        with open(out / "predictions.csv", newline="") as f:
            (row,) = list(csv.DictReader(f))
        assert 0.0 <= float(row["p_tumour"]) <= 1.0
