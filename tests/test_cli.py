"""Command-line commands that are not a task verb: tasks, models, data download/summary."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastdx.cli import app

runner = CliRunner()
DATA = os.environ.get("BREASTDX_DATA")


def test_tasks_lists_wdbc():
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0 and "wdbc" in result.output


def test_data_download_unknown_name_suggests(tmp_path: Path):
    result = runner.invoke(app, ["data", "download", "breastmnst", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "Did you mean 'breastmnist'?" in result.output


def test_data_download_verifies_checksum(tmp_path: Path):
    fake = tmp_path / "breastmnist.npz"
    fake.write_bytes(b"not the real file")
    result = runner.invoke(app, ["data", "download", "breastmnist", "--data-dir", str(tmp_path / "root"),
                                 "--url", fake.as_uri()])
    assert result.exit_code == 2
    assert "checksum" in result.output.lower() or "md5" in result.output.lower()
    assert not (tmp_path / "root" / "breastmnist" / "breastmnist.npz").exists()


@pytest.mark.skipif(not DATA, reason="BREASTDX_DATA is not set (point it at ../shared/data)")
def test_data_summary_on_real_breakhis(tmp_path: Path):
    """The data root holds the derived 224 x 224 copy and the 12-image fixture: the real copy is read, with its
    per-patient report; the fixture is read when it is the folder given."""
    out = tmp_path / "summary"
    result = runner.invoke(app, ["data", "summary", "breakhis", "--data-dir", DATA, "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_items"] == 839 and summary["class_counts"] == {"benign": 202, "malignant": 637}
    patients = json.loads((out / "patients.json").read_text())
    assert patients["n_patients"] == 44 and (out / "report.html").is_file() and (out / "patients.html").is_file()
    out = tmp_path / "fixture"
    result = runner.invoke(app, ["data", "summary", "breakhis", "--data-dir", str(Path(DATA) / "breakhis_samples"),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["n_items"] == 12


@pytest.mark.skipif(not DATA, reason="BREASTDX_DATA is not set (point it at ../shared/data)")
def test_data_summary_of_the_monuseg_tiles_prints_a_row_per_tile(tmp_path: Path):
    result = runner.invoke(app, ["data", "summary", "monuseg", "--data-dir", DATA, "--out", str(tmp_path / "m")],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "monuseg: 8 tiles" in result.output and result.output.count("FFPE (diagnostic slide)") == 6
    assert "TCGA-AC-A2FO-01A-01-TS1" in result.output and "frozen (top slide)" in result.output
    assert (tmp_path / "m" / "nuclei_areas_and_stain.png").is_file()


def test_options_among_inputs_are_split_off(tmp_path: Path):
    from breastdx.cli import _split_inputs

    real = tmp_path / "--odd-name.png"
    real.write_bytes(b"x")
    paths, options = _split_inputs([Path("a.png"), Path("--method=gradcam"), Path("--zoom"), Path("2"), real,
                                    Path("--tta")])
    assert paths == [Path("a.png"), real]
    assert options == {"method": "gradcam", "zoom": "2", "tta": "true"}


@pytest.mark.skipif(not DATA, reason="BREASTDX_DATA is not set (point it at ../shared/data)")
def test_misspelt_boolean_and_unknown_dtype_are_refused(tmp_path: Path):
    image = str(Path(DATA) / "busi" / "benign" / "benign (1).png")
    result = runner.invoke(app, ["predict", "busi-seg", image, "--overlays", "flase", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "'overlays' option must be true or false" in result.output
    result = runner.invoke(app, ["predict", "busi-seg", image, "--dtype", "half", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "'dtype' option must be one of auto, float32, bfloat16" in result.output
    result = runner.invoke(app, ["predict", "busi-seg", image, "--backend", "ort", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "'backend' option must be one of auto, torch, onnxruntime" in result.output


def test_unexpected_errors_are_named_and_verbose_shows_the_traceback(monkeypatch, tmp_path: Path):
    from breastdx.tasks.wdbc import WDBCTask

    def broken(self, *args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(WDBCTask, "train", broken)
    quiet = runner.invoke(app, ["train", "wdbc", "--out", str(tmp_path / "a")])
    assert quiet.exit_code == 1 and "unexpected error (KeyError)" in quiet.output and "--verbose" in quiet.output
    assert "Traceback" not in quiet.output
    loud = runner.invoke(app, ["-v", "train", "wdbc", "--out", str(tmp_path / "b")])
    assert loud.exit_code == 1 and "Traceback" in loud.output and "broken" in loud.output


def test_train_help_lists_the_task_options_where_they_are_declared():
    result = runner.invoke(app, ["train", "wdbc", "--help"])
    assert result.exit_code == 0
    for option in ("--repeats", "--search", "--target-sensitivity", "--n-jobs"):
        assert option in result.output, option
    assert "Inner-search budget" in result.output  # the description from WDBCConfig's docstring
    bare = runner.invoke(app, ["train", "--help"])
    assert bare.exit_code == 0 and "breastdx train TASK --help" in bare.output
    for args in (["--out", "runs/x", "wdbc"], ["--seed", "3", "--out=runs/x", "wdbc"]):  # the task after an option
        given = runner.invoke(app, ["train", *args, "--help"])  # its value was taken for the task: no table
        assert given.exit_code == 0 and "Options of train wdbc" in given.output and "--repeats" in given.output


def test_every_declared_option_of_every_task_is_described():
    """`breastdx VERB TASK --help` reads the declarations: no option may lack its description (a subclass's
    inherited options included)."""
    from breastdx.config import describe_options
    from breastdx.tasks import TASKS, get_task

    missing = []
    for name in TASKS.names():
        task = get_task(name)
        for verb in ("train", "evaluate", "predict", "explain"):
            declared = task.options_cls(verb)
            if declared is not None:
                missing += [f"{verb} {name} {opt}" for opt, _, text in describe_options(declared) if not text]
    assert not missing, missing


def test_predict_help_lists_the_task_options():
    result = runner.invoke(app, ["predict", "pcam", "--help"])
    assert result.exit_code == 0
    assert "Options of predict pcam" in result.output and "--batch-size" in result.output and "--gradcam" in result.output


def test_python_dash_m_breastdx_is_the_command():
    """``python -m breastdx`` runs the same app as the ``breastdx`` script (for a Python without the script)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "breastdx", "train", "busi-seg", "--help"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "Usage: breastdx train" in done.stdout and "--focal-gamma" in done.stdout


def test_models_lists_every_shipped_model_with_its_headline_figures():
    """The headline of each kind: AUROC first for classifiers (macro AUROC too for more than two classes), Dice for
    segmenters, AJI for nuclei; intervals where the model has them; a generator says it has no test figures."""
    from breastdx.evaluation.tables import headline_metrics
    from breastdx.zoo import shipped_meta

    metas = shipped_meta()
    assert headline_metrics(metas["busi-cls"]) == ["macro_auroc", "auroc", "accuracy", "sensitivity"]
    assert headline_metrics(metas["idc"]) == ["auroc", "accuracy", "sensitivity", "specificity"]
    assert headline_metrics(metas["busi-seg"]) == ["dice", "iou", "hd95", "normal_fp_share"]
    assert headline_metrics(metas["monuseg"]) == ["dice", "aji", "pq"]
    assert headline_metrics(metas["idc-gan"]) == []
    result = runner.invoke(app, ["models"], terminal_width=400)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert all(name in text for name in metas)
    assert "macro_auroc 0.908 [0.868, 0.941], auroc 0.914 [0.862, 0.956]" in text  # busi-cls, as its card says
    assert "dice 0.772, aji 0.569, pq 0.535" in text  # two test tiles: no interval
    # wdbc's 'metrics' are at 0.5; its sensitivity and specificity @ op are those of its operating threshold
    op = metas["wdbc"]["operating_point_metrics"]
    assert f"sensitivity @ op {op['sensitivity']['value']:.3f}" in text and "sensitivity @ op 0.978" in text
    assert "no test figures" in text


def test_verbs_a_task_lacks_name_the_tasks_that_have_them(tmp_path: Path):
    result = runner.invoke(app, ["calibrate", "wdbc", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert ("Task 'wdbc' has nothing for this command to calibrate; it calibrates breakhis, breastmnist, busi-cls, "
            "idc, monuseg, pcam.") in said
    result = runner.invoke(app, ["explain", "busi-seg", str(tmp_path / "x.png"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2
    assert ("it explains breakhis, breastmnist, busi-cls, idc, pcam, wdbc (Grad-CAM on images, SHAP on WDBC "
            "features)") in " ".join(result.output.split())
    assert not (tmp_path / "c").exists() and not (tmp_path / "e").exists()


def test_models_name_shows_its_model_card(tmp_path: Path):
    from breastdx.zoo import shipped_models

    result = runner.invoke(app, ["models", "monuseg"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Research use only" in text and f"Model folder: {shipped_models()['monuseg']}" in text
    assert "AJI" in text  # the card's evaluation, rendered from its Markdown
    unknown = runner.invoke(app, ["models", "nope"])
    assert unknown.exit_code == 2 and "nope: neither a model folder nor a shipped model" in unknown.output
    (tmp_path / "meta.json").write_text("{}")
    no_card = runner.invoke(app, ["models", str(tmp_path)])
    assert no_card.exit_code == 2 and "no MODEL_CARD.md" in " ".join(no_card.output.split())
    typo = runner.invoke(app, ["models", "busi-cl"], terminal_width=300)
    assert typo.exit_code == 2 and "Did you mean 'busi-cls'?" in " ".join(typo.output.split())
    (tmp_path / "MODEL_CARD.md").write_bytes(b"\xff\xfe# card")  # UTF-16, say: no traceback
    other = runner.invoke(app, ["models", str(tmp_path)], terminal_width=300)
    said = " ".join(other.output.split())
    assert other.exit_code == 2 and "MODEL_CARD.md: not UTF-8 text (byte 0: invalid start byte)" in said, said


def test_a_shipped_models_folder_path_counts_as_the_shipped_model(tmp_path: Path):
    """calibrate copies a shipped model before writing into it; given the folder's path (as 'breastdx models NAME'
    prints it) rather than its name, it wrote into the installed package."""
    from breastdx.zoo import names_shipped_model, shipped_models

    folder = shipped_models()["breastmnist"]
    assert names_shipped_model(None) and names_shipped_model("breastmnist")
    assert names_shipped_model(str(folder)) and names_shipped_model(folder / ".." / folder.name)
    assert not names_shipped_model(tmp_path) and not names_shipped_model("no-such-model")



def test_a_failed_calibrate_leaves_no_copy_of_the_shipped_model(tmp_path: Path):
    """calibrate copies a shipped model before its options are checked; a refused option left OUT/model, an
    uncalibrated copy that looked like the run's result."""
    result = runner.invoke(app, ["calibrate", "breastmnist", "--fit", "bogus", "--out", str(tmp_path / "c")],
                           terminal_width=300)
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "must be each item one of temperature, conformal, ood. Got 'bogus'" in said
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())  # empty: removed at exit

def test_predict_on_folders_without_an_image_fails_and_writes_nothing(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not an image")
    result = runner.invoke(app, ["predict", "busi-seg", str(tmp_path / "empty"), str(tmp_path / "notes"), "--out",
                                 str(tmp_path / "out")], terminal_width=300)
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "no image found (PNG, JPEG, TIFF, DICOM" in said and "nothing to predict" in said
    assert not (tmp_path / "out").exists()
    from breastdx.data.errors import DataError
    from breastdx.data.wdbc import read_wdbc_file

    with pytest.raises(DataError, match="a folder; WDBC cases are read from CSV or wdbc.data files"):
        read_wdbc_file(tmp_path / "notes")


def test_an_empty_input_name_is_refused_not_read_as_the_current_folder(tmp_path: Path, monkeypatch):
    """``breastdx predict pcam "$UNSET"``: Path("") is ".", so an empty shell variable predicted every image of the
    working folder."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (96, 96), (200, 120, 160)).save(tmp_path / "here.png")
    for verb in ("predict", "explain"):
        result = runner.invoke(app, [verb, "pcam", "", "--out", str(tmp_path / verb)], terminal_width=300)
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and "An input is an empty name (an empty shell variable?)" in said, said
        assert not (tmp_path / verb).exists()


def test_help_shows_no_python_in_option_texts():
    """predict busi-seg --help said "As in :class:`SegEvaluateOptions`" and predict busi-cls gave --gradcam the
    default "None" (it is the task's default)."""
    text = runner.invoke(app, ["predict", "busi-seg", "--help"], terminal_width=300).output
    assert ":class:" not in text and "`presence_threshold`" in text
    for task, verb in (("busi-cls", "train"), ("monuseg", "calibrate"), ("busi-seg", "train")):
        shown = runner.invoke(app, [verb, task, "--help"], terminal_width=300).output
        assert not any(role in shown for role in (":func:", ":mod:", ":class:", ":data:", "``")), (task, verb)
    rows = [line for line in runner.invoke(app, ["predict", "busi-cls", "--help"], terminal_width=300).output.splitlines()
            if "--gradcam " in line]
    assert len(rows) == 1 and "None" not in rows[0] and "the task's default" in rows[0]


def test_calibrate_help_lists_the_tasks_own_options():
    """calibrate TASK --help listed no task options (monuseg's --tta), and described classifiers' only."""
    text = " ".join(runner.invoke(app, ["calibrate", "monuseg", "--help"], terminal_width=300).output.split())
    assert "Options of calibrate monuseg" in text and "--tta" in text and "watershed" in text
    text = " ".join(runner.invoke(app, ["calibrate", "busi-cls", "--help"], terminal_width=300).output.split())
    assert "Options of calibrate busi-cls" in text and "--fit" in text


def test_n_bootstrap_zero_is_refused_before_any_work(tmp_path: Path):
    """--n-bootstrap was declared '>= 0' but 0 failed after the whole evaluation (the intervals need >= 1)."""
    for verb in (["evaluate", "breastmnist"], ["train", "busi-seg"], ["train", "idc"]):
        result = runner.invoke(app, [*verb, "--n-bootstrap", "0", "--out", str(tmp_path / verb[1])],
                               terminal_width=300)
        assert result.exit_code == 2 and "'n-bootstrap' option" in result.output and ">= 1" in result.output, \
            result.output


def test_predict_and_explain_say_once_which_files_of_a_folder_are_not_read(tmp_path: Path):
    """The command listed the input folders twice (for the 'no image found' check, or --frame, and again in the
    task), so the warning on the files not read and the note on a skipped DICOMDIR were each printed twice."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "cd"
    folder.mkdir()
    Image.fromarray(np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)).save(folder / "scan.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    for verb, extra in (("predict", []), ("explain", []), ("predict", ["--frame", "all"])):
        out = tmp_path / f"{verb}{len(extra)}"
        result = runner.invoke(app, [verb, "breastmnist", str(folder), *extra, "--out", str(out)], terminal_width=300)
        said = " ".join(result.output.split())
        assert result.exit_code == 0, said
        assert said.count("file(s) in the input folders were not read") == 1, said
        assert said.count("notes.txt") == 1 and said.count("a DICOM media index (DICOMDIR)") == 1, said
        assert (out / ("explanations.csv" if verb == "explain" else "predictions.csv")).is_file()


def test_a_mask_file_named_on_the_command_line_is_left_out_and_said(tmp_path: Path):
    """``*_mask.*`` files are left out even when named (so that ``benign/*.png`` gives the images only); that was
    silent, and naming only masks gave a run of nothing without a word."""
    import numpy as np
    from PIL import Image

    image = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "scan.png")
    for name in ("scan_mask.png", "scan_mask_1.png", "b_mask.png", "c_mask.png"):
        Image.fromarray(image > 100).save(tmp_path / name)
    named = sorted(str(p) for p in tmp_path.glob("*.png"))
    result = runner.invoke(app, ["predict", "breastmnist", *named, "--out", str(tmp_path / "out")], terminal_width=300)
    said = " ".join(result.output.split())
    assert result.exit_code == 0, said
    assert "4 file(s) named are lesion masks by their names (*_mask.*, *_mask_<k>.*) and are left out" in said, said
    assert f"{tmp_path / 'b_mask.png'}, {tmp_path / 'c_mask.png'}, {tmp_path / 'scan_mask.png'} and 1 more" in said
    assert (tmp_path / "out" / "predictions.csv").read_text().count("scan") == 1  # scan.png only


def test_naming_only_mask_files_is_refused_not_a_run_of_nothing(tmp_path: Path):
    """Every file named a lesion mask: nothing is left to predict, so the command stops (exit 2, no run folder)
    instead of writing an empty predictions.csv with exit status 0."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "scan_mask.png")
    for verb in ("predict", "explain"):
        result = runner.invoke(app, [verb, "breastmnist", str(tmp_path / "scan_mask.png"), "--out",
                                     str(tmp_path / verb)], terminal_width=300)
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and "no image found" in said and "lesion masks" in said, said
        assert f"nothing to {verb}" in said and not (tmp_path / verb).exists()


def test_train_on_a_gpu_this_machine_lacks_is_refused_before_any_work(tmp_path: Path):
    """--accelerator gpu without a CUDA device was refused by Lightning only once its trainer was built: BUSI hashed
    (about 8 s), config.yaml and split.json written, the folder left with error.txt."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    result = runner.invoke(app, ["train", "busi-seg", "--accelerator", "gpu", "--out", str(tmp_path / "run")],
                           terminal_width=300)
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "--accelerator gpu: this machine has no CUDA GPU" in said
    assert not (tmp_path / "run").exists()


def test_names_and_reasons_in_square_brackets_are_printed_as_they_are(tmp_path: Path):
    """The console read '[x 3]' in a file name or reason as Rich markup and dropped it ('bad.png' for 'bad[x 3].png')."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80), dtype=np.uint8)).save(tmp_path / "scan[1].png")
    (tmp_path / "bad[x 3].png").write_text("not an image")
    result = runner.invoke(app, ["predict", "busi-seg", str(tmp_path), "--out", str(tmp_path / "out")],
                           terminal_width=300)
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "scan[1].png" in said and "bad[x 3].png: not an image" in said
