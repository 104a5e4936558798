"""Leave-tiles-out cross-validation of monuseg: the folds (synthetic names) and a tiny 2-fold run on crops of the real
tiles through the command line (skipped without BREASTDX_DATA)."""

import csv
import html
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.pipeline.nuclei_crossval import tile_folds, tissue_source_site

runner = CliRunner()
TILES = ["TCGA-A7-A13E-01Z-00-DX1", "TCGA-A7-A13F-01Z-00-DX1", "TCGA-AR-A1AK-01Z-00-DX1", "TCGA-AR-A1AS-01Z-00-DX1",
         "TCGA-E2-A14V-01Z-00-DX1", "TCGA-E2-A1B5-01Z-00-DX1"]


def test_tissue_source_site():
    assert tissue_source_site("TCGA-A7-A13E-01Z-00-DX1") == "A7"
    assert tissue_source_site("tile_3") == "tile_3"  # not a TCGA barcode: its own group


def test_three_folds_leave_one_site_out():
    folds = tile_folds(list(reversed(TILES)), 3, seed=0)
    assert sorted(n for f in folds for n in f) == TILES
    assert sorted("".join(sorted({tissue_source_site(n) for n in f})) for f in folds) == ["A7", "AR", "E2"]
    assert folds == tile_folds(TILES, 3, seed=0)  # reading order does not matter


def test_two_folds_keep_sites_whole_and_sizes_even():
    folds = tile_folds(TILES, 2, seed=1)
    assert sorted(len(f) for f in folds) == [2, 4]
    for f in folds:
        for site in {tissue_source_site(n) for n in f}:
            assert sum(tissue_source_site(n) == site for n in f) == 2
    names = [f"tile_{i}" for i in range(7)]
    assert sorted(len(f) for f in tile_folds(names, 3, seed=0)) == [2, 2, 3]


@pytest.mark.parametrize("k", [1, 4])
def test_fold_count_out_of_range(k):
    with pytest.raises(ValueError, match="2 to 3 folds .* 3 tissue source sites"):
        tile_folds(TILES, k, seed=0)


@pytest.fixture(scope="module")
def data_root() -> Path:
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / "monuseg_breast").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    return Path(env)


TINY = ["--crop", "192", "--val-rows", "64", "--patch-size", "64", "--epochs", "1", "--patches-per-epoch", "8",
        "--roi-size", "128", "--threads", "1", "--progress-bar", "false", "--tta", "none"]


CHOICE = {"a": "runs/monuseg-cv/none", "b": "runs/monuseg-cv/macenko", "n_tiles": 6,
          "aji": {"mean_a": 0.5533, "mean_b": 0.5805, "b_minus_a": 0.0271, "b_wins": "3 of 6"},
          "dice": {"mean_a": 0.7666, "mean_b": 0.7928, "b_minus_a": 0.0263, "b_wins": "5 of 6"},
          "rule": "B if mean AJI gain > 0.01", "choice": "B"}


def test_holdout_tiles_are_scored_and_test_tiles_unread(data_root, tmp_path):
    out = tmp_path / "fold"
    held = "TCGA-AR-A1AK-01Z-00-DX1"
    choice = tmp_path / "choice.json"
    choice.write_text(json.dumps(CHOICE))
    result = runner.invoke(app, ["train", "monuseg", "--data-dir", str(data_root), "--out", str(out), *TINY,
                                 "--holdout-tiles", held, "--recipe-choice", str(choice), "--blur-sigma", "1",
                                 "--scale", "0.2", "--stain-normalisation", "none"])
    assert result.exit_code == 0, result.output
    split = json.loads((out / "split.json").read_text())
    assert split["test"] == [held] and held not in split["train"] and len(split["train"]) == 5
    assert split["test_is_held_out_training_tiles"] is True
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 1 and [t["tile"] for t in metrics["per_tile"]] == [held]
    assert "test tiles were not read" in metrics["split"]
    assert json.loads((out / "model" / "training_hashes.json").read_text())["n_images"] == 5
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert meta["recipe_choice"]["comparisons"][0]["comparison"] == CHOICE
    card = " ".join((out / "model" / "MODEL_CARD.md").read_text().split())
    assert ("macenko against none: mean out-of-fold AJI 0.581 against 0.553 (higher on 3 of 6 tiles), Dice 0.793 "
            "against 0.767; rule: B if mean AJI gain > 0.01; chosen: macenko.") in card
    assert "Stain normalisation: none." in card and "blur up to sigma 1.0 px" in card and "zoom ±0.2" in card


@pytest.mark.parametrize("args, message", [
    (["--holdout-tiles", "TCGA-AC-A2FO-01A-01-TS1"], "not training tiles of MoNuSeg"),
    (["--holdout-tiles", ",".join(TILES)], "none is left to train on"),
    (["--cv-folds", "4"], "2 to 3 folds"),
    (["--recipe-choice", "no/such.json"], "--recipe-choice no/such.json: expected the JSON"),
    (["--cv-folds", "3", "--holdout-tiles", TILES[0]], "drop --holdout-tiles"),
])
def test_bad_holdout_and_fold_options(data_root, tmp_path, args, message):
    result = runner.invoke(app, ["train", "monuseg", "--data-dir", str(data_root), "--out", str(tmp_path / "r"),
                                 *TINY, *args])
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())


def test_two_fold_cross_validation_scores_every_training_tile_once(data_root, tmp_path):
    out = tmp_path / "cv"
    result = runner.invoke(app, ["train", "monuseg", "--data-dir", str(data_root), "--out", str(out), *TINY,
                                 "--cv-folds", "2"])
    assert result.exit_code == 0, result.output
    folds = json.loads((out / "folds.json").read_text())
    assert folds["test_tiles_read"] is False and sorted(n for f in folds["folds"] for n in f) == TILES
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "cross_validation" and metrics["n"] == 6 and metrics["tiles"] == TILES
    with open(out / "oof_per_tile.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["tile"] for r in rows] == TILES
    for r in rows:  # each tile scored by the fold model that held it out
        fold = int(r["fold"])
        assert r["tile"] in folds["folds"][fold]
        fold_metrics = json.loads((out / "folds" / f"f{fold}" / "metrics.json").read_text())
        tile = next(t for t in fold_metrics["per_tile"] if t["tile"] == r["tile"])
        assert float(r["aji"]) == pytest.approx(tile["aji"])
        assert r["tile"] not in json.loads((out / "folds" / f"f{fold}" / "split.json").read_text())["train"]
    assert metrics["metrics"]["aji"]["value"] == pytest.approx(sum(float(r["aji"]) for r in rows) / 6)
    _assert_cv_report(out, metrics)
    # the folds trained side by side, each in its own process: the same runs, the same scores
    side = tmp_path / "cv-workers"
    result = runner.invoke(app, ["train", "monuseg", "--data-dir", str(data_root), "--out", str(side), *TINY,
                                 "--cv-folds", "2", "--cv-workers", "2"])
    assert result.exit_code == 0, result.output
    with open(side / "oof_per_tile.csv") as fh:
        assert list(csv.DictReader(fh)) == rows
    assert all((side / "folds" / f"f{f}" / "fold.log").is_file() for f in (0, 1))
    assert "trained" in (side / "folds" / "f0" / "fold.log").read_text()
    # a cross-validation stopped after its folds had finished, resumed: the folds are read back, the run ends with
    # its metrics and its report
    for name in ("report.html", "metrics.json"):
        (out / name).unlink()
    (out / "error.txt").write_text("stopped while writing the out-of-fold figures\n")
    result = runner.invoke(app, ["train", "monuseg", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["metrics"]["aji"] == metrics["metrics"]["aji"]
    _assert_cv_report(out, resumed)


def _assert_cv_report(out, metrics):
    """The run's own report.html: the research-use notice, the options, the mean AJI as metrics.json gives it, the
    held-out sites and a link to every fold's report."""
    from breastdx import RESEARCH_USE_ONLY

    page = html.unescape((out / "report.html").read_text())
    assert RESEARCH_USE_ONLY in page and "cv_folds" in page  # config.yaml's options
    aji = metrics["metrics"]["aji"]
    assert f"<td>aji</td><td>{aji['value']:.3f}</td>" in page  # the mean over the held-out tiles
    assert f"<td>{TILES[0]}</td><td>A7</td>" in page and f"<td>{aji['per_tile'][0]:.3f}</td>" in page
    assert "6 tiles from 3 sites give no interval worth printing" in page
    folds = json.loads((out / "folds.json").read_text())["folds"]
    for f in range(metrics["k"]):
        assert f'<a href="folds/f{f}/report.html">' in page and (out / "folds" / f"f{f}" / "report.html").is_file()
        fold_aji = json.loads((out / "folds" / f"f{f}" / "metrics.json").read_text())["metrics"]["aji"]["value"]
        assert f"<td>{', '.join(folds[f])}</td><td>" in page and f"<td>{fold_aji:.3f}</td>" in page
    assert page.count('<a href="folds/f') == metrics["k"]


def test_cross_validation_report_without_a_fold_report(tmp_path):
    """A fold folder without its report.html gets no link; the page says so, and shows the means of metrics.json."""
    from breastdx.pipeline.cv_report import write_nuclei_cv_report

    per_tile = {"dice": [0.8, 0.7, 0.75, 0.72], "aji": [0.6, 0.5, 0.55, 0.5875], "pq": [0.5, 0.4, 0.45, 0.5],
                "sq": [0.7] * 4, "dq": [0.6] * 4}
    metrics = {"task": "monuseg", "k": 2, "n": 4, "split": "leave-tiles-out", "tiles": TILES[:4],
               "metrics": {s: {"value": sum(v) / 4, "ci95": None, "per_tile": v} for s, v in per_tile.items()},
               "per_fold": [{"fold": f, "held_out_tiles": TILES[2 * f:2 * f + 2], "best_val_dice": 0.8, "best_epoch": 3,
                             "postprocessing": {"seed_threshold": 0.8}, "tta": "d8",
                             "held_out_aji_per_tta": [["none", 0.61], ["d8", 0.63]]} for f in range(2)]}
    fold_metrics = [{"metrics": {"aji": {"value": 0.55 + f / 10}}} for f in range(2)]
    (tmp_path / "folds" / "f0").mkdir(parents=True)
    (tmp_path / "folds" / "f0" / "report.html").write_text("fold 0")
    page = html.unescape(write_nuclei_cv_report(tmp_path, "MoNuSeg", metrics, fold_metrics,
                                         tissue_source_site).read_text())
    assert "<td>aji</td><td>0.559</td><td>0.500 – 0.600</td>" in page
    assert '<a href="folds/f0/report.html">' in page and 'href="folds/f1' not in page
    assert "<td>d8</td><td>none 0.610, d8 0.630</td><td>none</td></tr>" in page
    assert "fold 0 site(s) A7; fold 1 site(s) AR" in page and "seed_threshold 0.8" in page


def test_a_worker_keeps_each_folds_log_apart(tmp_path):
    """A worker process that trains two folds one after the other writes each fold's log to its own file."""
    import logging

    from breastdx.pipeline.fold_runner import train_fold

    class _Task:
        def train(self, config, data_root, fold_dir):
            logging.getLogger("breastdx.test").info("training %s", fold_dir.name)
            return fold_dir.name

    class _Config:
        threads = 0

    for name in ("f0", "f2"):
        (tmp_path / name).mkdir()
        assert train_fold(_Task(), _Config(), tmp_path, tmp_path / name) == name
    assert "training f0" in (tmp_path / "f0" / "fold.log").read_text()
    assert "training f2" not in (tmp_path / "f0" / "fold.log").read_text()
    assert "training f2" in (tmp_path / "f2" / "fold.log").read_text()
