"""Run folders: an --out that is a file, lies below a file or cannot be written is refused with a clear error,
never a traceback."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.data.wdbc import FEATURE_NAMES, load_wdbc
from breastdx.runs import RunFolderError, RunFolderExistsError, make_run_dir, utc_now_iso

runner = CliRunner()


def test_out_that_is_a_file_or_below_one_is_refused(tmp_path: Path):
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    with pytest.raises(RunFolderError, match=r"notes.txt is a file, not a folder; choose another --out"):
        make_run_dir("wdbc", afile, kind="predict")
    with pytest.raises(RunFolderError, match=r"notes.txt/run cannot be created or written to"):
        make_run_dir("wdbc", afile / "run", kind="predict")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(RunFolderExistsError, match="exists and is not empty"):
        make_run_dir("wdbc", tmp_path / "full")
    assert make_run_dir("wdbc", tmp_path / "new" / "run").is_dir()
    assert list((tmp_path / "new" / "run").iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_out_is_refused(tmp_path: Path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(RunFolderError, match="cannot be created or written to"):
            make_run_dir("wdbc", ro)
    finally:
        ro.chmod(0o700)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, which no one may write to")
def test_out_on_a_file_system_that_refuses_writes(tmp_path: Path):
    with pytest.raises(RunFolderError, match=r"/proc/breastdx-run cannot be created or written to"):
        make_run_dir("wdbc", "/proc/breastdx-run")


def test_cli_says_so_without_a_traceback(tmp_path: Path):
    cases = tmp_path / "cases.csv"
    cases.write_text(",".join(f'"{n}"' for n in FEATURE_NAMES) + "\n" + ",".join(map(str, load_wdbc().X[0])) + "\n")
    afile = tmp_path / "out.txt"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        result = runner.invoke(app, ["predict", "wdbc", str(cases), "--out", str(out)])
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert "error:" in text and "choose another --out" in text and "Traceback" not in text
        assert "unexpected error" not in text


def test_train_says_so_without_a_traceback(tmp_path: Path):
    afile = tmp_path / "out.txt"
    afile.write_text("x")
    result = runner.invoke(app, ["train", "wdbc", "--out", str(afile)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "out.txt is a file, not a folder" in text, text


def test_a_command_that_fails_before_writing_leaves_no_empty_folder(tmp_path: Path):
    """``evaluate`` with no data: the run folder it made, and the parents it made for it, are gone at exit; a folder
    given empty stays, and so does one the failing command wrote to."""
    import subprocess
    import sys

    def run(out: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "breastdx", "evaluate", "busi-seg", "--data-dir",
                               str(tmp_path / "no-data"), "--out", str(out)], capture_output=True, text=True,
                              timeout=120)

    made = run(tmp_path / "runs" / "busi-seg" / "x")
    assert made.returncode == 2 and "BUSI not found" in made.stdout + made.stderr
    assert not (tmp_path / "runs").exists()
    given = tmp_path / "given"
    given.mkdir()
    assert run(given).returncode == 2 and given.is_dir()


@pytest.mark.parametrize("stop, said", [("data", "row 3 of cases.csv: expected 30 numbers"),
                                        ("interrupt", "Interrupted before the end")])
def test_a_training_that_stops_leaves_its_reason_and_its_folder_is_not_reused(tmp_path: Path, monkeypatch, stop,
                                                                              said):
    """A run that fails after writing its config keeps the folder with ``error.txt`` (so it is not taken for a
    finished run), and a second ``--out`` to it is refused with that reason."""
    from breastdx.data.errors import DataError
    from breastdx.runs import FAILED_RUN_FILE
    from breastdx.tasks import get_task

    def failing_train(self, config, data_root, run_dir):
        (run_dir / "config.yaml").write_text("seed: 0\n")
        if stop == "data":
            raise DataError("row 3 of cases.csv: expected 30 numbers")
        raise KeyboardInterrupt

    monkeypatch.setattr(type(get_task("wdbc")), "train", failing_train)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "wdbc", "--out", str(out)])
    assert result.exit_code != 0
    assert (out / "config.yaml").is_file()
    assert (out / FAILED_RUN_FILE).read_text().startswith(said)
    assert "keeps what the run wrote and this error in error.txt" in " ".join(result.output.split())
    again = runner.invoke(app, ["train", "wdbc", "--out", str(out)])
    text = " ".join(again.output.split())
    assert again.exit_code == 2 and f"holds a run that failed (error.txt: {said}" in text, text
    assert (out / FAILED_RUN_FILE).read_text().startswith(said)  # not overwritten by the refused second run


def _stopped_run(folder: Path, task: str = "busi-seg", **options) -> Path:
    import yaml

    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"task": task, **options, "data_root": str(folder / "data")}))
    (folder / "error.txt").write_text("Interrupted before the end (Ctrl+C or a signal).\nstopped at 2026-12-05\n")
    return folder


def test_resume_trains_on_with_the_stopped_runs_options(tmp_path: Path, monkeypatch):
    """--resume reads the run's config.yaml (only --threads, --progress-bar, --num-workers may change), trains into
    the same folder with RESUME_ENV set, and moves error.txt into resumed.txt."""
    from breastdx.pipeline.task import RunResult
    from breastdx.tasks import get_task
    from breastdx.training.trainer import RESUME_ENV

    seen = {}

    def train(self, config, data_root, run_dir):
        seen.update(config=config, data_root=data_root, run_dir=run_dir, env=os.environ.get(RESUME_ENV))
        assert not (run_dir / "error.txt").exists()
        return RunResult(run_dir)

    monkeypatch.setattr(type(get_task("busi-seg")), "train", train)
    from breastdx.runs import RUN_DIR_ENV

    for name in (RESUME_ENV, RUN_DIR_ENV):  # set by the command: restored (unset) when the test ends
        monkeypatch.setenv(name, "")
    run = _stopped_run(tmp_path / "run", image_size=32, epochs=7, threads=2)
    result = runner.invoke(app, ["train", "busi-seg", "--resume", str(run), "--threads", "1", "--progress-bar", "false"])
    assert result.exit_code == 0, result.output
    assert seen["run_dir"] == run and seen["env"] == "1" and seen["data_root"] == tmp_path / "run" / "data"
    assert (seen["config"].image_size, seen["config"].epochs, seen["config"].threads) == (32, 7, 1)
    log = (run / "resumed.txt").read_text()
    assert log.startswith("Interrupted before the end") and "resumed at " in log


@pytest.mark.parametrize("setup, args, said", [
    ("none", [], "not a breastdx run folder (no config.yaml)"),
    ("finished", [], "not a stopped run (no error.txt and no running.json): a finished run has nothing to resume"),
    ("running", [], "its training is still running (process"),
    ("elsewhere", [], "its training ran on host 'another-host' (process 12345); resume it there"),
    ("cut-short", [], "running.json: not readable as the record of a training process (JSONDecodeError: Expecting "
                      "value: line 1 column 1 (char 0)); expected JSON with 'host' and 'pid'. If that training is "
                      "not running, delete the file"),
    ("other-task", [], "a run of task 'monuseg', not 'busi-seg'"),
    ("stopped", ["--epochs", "9"], "give no --out, --seed or task option with it but --num-workers, --progress-bar, "
                                   "--threads"),
    ("stopped", ["--seed", "3"], "give no --out, --seed or task option"),
    ("stopped", ["--seed", "0"], "give no --out, --seed or task option"),  # was taken for the default, and ignored
    ("stopped", ["--threads", "abc"], "The 'threads' option must be an integer. Got 'abc' instead."),
    ("stopped", ["--threads", "-1"], "The 'threads' option of busi-seg must be an integer >= 0. Got -1 instead."),
    ("stopped", ["--num-workers", "-2"], "The 'num-workers' option of busi-seg must be an integer >= 0. Got -2"),
    ("stopped", ["--lr", "0.1", "--threads", "1", "--out", "x"], "--threads (given: --lr, --out)."),
])
def test_resume_refuses_what_it_cannot_continue(tmp_path: Path, request, setup, args, said):
    run = tmp_path / "run"
    if setup == "finished":
        _stopped_run(run).joinpath("error.txt").unlink()
    elif setup in ("running", "elsewhere"):
        _stopped_run(run).joinpath("error.txt").unlink()
        if setup == "running":  # a live process that started before its record was written, as a training does
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            request.addfinalizer(child.kill)
            time.sleep(0.2)
            owner = {"host": socket.gethostname(), "pid": child.pid, "started": utc_now_iso()}
        else:
            owner = {"host": "another-host", "pid": 12345}
        (run / "running.json").write_text(json.dumps(owner))
    elif setup == "cut-short":  # killed while writing it
        _stopped_run(run).joinpath("error.txt").unlink()
        (run / "running.json").write_text("")
    elif setup == "other-task":
        _stopped_run(run, task="monuseg")
    elif setup == "stopped":
        _stopped_run(run)
    result = runner.invoke(app, ["train", "busi-seg", "--resume", str(run), *args])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and said in text, text
    assert "config.yaml:" not in text  # the command line's own values are not blamed on the file
    if setup == "stopped":
        assert (run / "error.txt").is_file() and not (run / "resumed.txt").exists()  # left as it was


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times are read from Linux's /proc")
def test_a_process_number_reused_since_the_run_stopped_does_not_hold_it(tmp_path: Path, request):
    """The number in running.json now names another process (a container restarted, its training PID 1 again; or
    this very process): the run is taken as stopped, not as still running."""
    from breastdx.runs import _gone_without_a_word

    run = _stopped_run(tmp_path / "run")
    run.joinpath("error.txt").unlink()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    request.addfinalizer(child.kill)
    for pid, started in ((child.pid, "2026-01-01T00:00:00+00:00"), (os.getpid(), utc_now_iso())):
        (run / "running.json").write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": started}))
        assert _gone_without_a_word(run).startswith(f"Stopped without a word (process {pid}, started {started}")


def test_wdbc_runs_are_not_resumed(tmp_path: Path):
    run = _stopped_run(tmp_path / "run", task="wdbc")
    result = runner.invoke(app, ["train", "wdbc", "--resume", str(run)])
    assert result.exit_code == 2 and "wdbc runs cannot be resumed" in " ".join(result.output.split())


def test_a_stopped_run_given_as_a_model_says_so(tmp_path: Path):
    from breastdx.models.saved import ModelFolderError, load_meta_json

    run = _stopped_run(tmp_path / "run")
    with pytest.raises(ModelFolderError, match=r"a training run that stopped before writing its model \(Interrupted "
                                               r"before the end .*'breastdx train busi-seg --resume .*run' finishes it"):
        load_meta_json(run)


def test_a_run_whose_process_vanished_is_resumed_and_says_so(tmp_path: Path, monkeypatch):
    """A run killed without a word (SIGKILL, out of memory) leaves running.json naming a process that is gone:
    --resume takes it as stopped and records why; a successful training leaves no running.json."""
    import subprocess
    import sys

    from breastdx.pipeline.task import RunResult
    from breastdx.runs import RUN_DIR_ENV
    from breastdx.tasks import get_task
    from breastdx.training.trainer import RESUME_ENV

    for name in (RESUME_ENV, RUN_DIR_ENV):
        monkeypatch.setenv(name, "")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = _stopped_run(tmp_path / "run")
    (run / "error.txt").unlink()
    (run / "running.json").write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid,
                                                  "started": "2026-12-05T00:00:00+00:00"}))
    seen = []
    monkeypatch.setattr(type(get_task("busi-seg")), "train",
                        lambda self, config, data_root, run_dir: seen.append(
                            json.loads((run_dir / "running.json").read_text())["pid"]) or RunResult(run_dir))
    result = runner.invoke(app, ["train", "busi-seg", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert seen == [os.getpid()]  # the resumed training's own process, while it runs
    log = (run / "resumed.txt").read_text()
    assert log.startswith(f"Stopped without a word (process {gone.pid}, started 2026-12-05T00:00:00+00:00, is gone")
    assert "stopped at an unknown time (found stopped at" in log
    assert not (run / "running.json").exists() and not (run / "error.txt").exists()


def test_a_resumed_cross_validation_keeps_the_folds_that_had_finished(tmp_path: Path, monkeypatch):
    """run_folds under --resume: a fold whose run had finished (fold_finished.json, written when its training
    returned) is read back, not trained again; a fold that had begun, or stopped while writing its last files
    (metrics.json and model/meta.json written, its report not), or had not started is trained (and resumes from
    its own last checkpoint); every fold that finishes is marked."""
    from breastdx.pipeline.fold_runner import run_folds
    from breastdx.pipeline.task import RunResult
    from breastdx.runs import RESUME_ENV

    folds = [tmp_path / f"f{i}" for i in range(3)]
    for f in folds:
        f.mkdir()
    (folds[0] / "model").mkdir()
    (folds[0] / "model" / "meta.json").write_text("{}")
    (folds[0] / "metrics.json").write_text(json.dumps({"metrics": {"dice": {"value": 0.5}}}))
    (folds[0] / "fold_finished.json").write_text("{}")
    (folds[1] / "model").mkdir()  # stopped while writing its per-image table, model card and report
    (folds[1] / "model" / "meta.json").write_text("{}")
    (folds[1] / "metrics.json").write_text("{}")

    class Task:
        name = "busi-seg"
        trained: list = []

        def train(self, config, data_root, fold_dir):
            self.trained.append(fold_dir.name)
            return RunResult(fold_dir, {"metrics": {"dice": {"value": 0.7}}})

    jobs = [(None, f) for f in folds]
    monkeypatch.setenv(RESUME_ENV, "1")
    results = run_folds(Task(), jobs, tmp_path, workers=1)
    assert Task.trained == ["f1", "f2"]
    assert [r.metrics["metrics"]["dice"]["value"] for r in results] == [0.5, 0.7, 0.7]
    assert [r.run_dir for r in results] == folds
    assert all((f / "fold_finished.json").is_file() for f in folds)
    monkeypatch.setenv(RESUME_ENV, "")
    Task.trained.clear()
    run_folds(Task(), jobs, tmp_path, workers=1)  # not resumed: every fold is trained
    assert Task.trained == ["f0", "f1", "f2"]


def test_a_predict_that_stops_says_so_in_its_folder(tmp_path: Path, monkeypatch):
    """predict / evaluate / explain / calibrate: a failure or Ctrl+C after the folder was written to leaves
    error.txt, so that half the outputs are not taken for all of them; a failure before writing leaves nothing."""
    from breastdx.tasks import get_task

    image = tmp_path / "case.png"
    from PIL import Image

    Image.new("L", (32, 32)).save(image)

    def predict(self, model_dir, inputs, run_dir, options):
        (run_dir / "masks").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(type(get_task("busi-seg")), "predict", predict)
    result = runner.invoke(app, ["predict", "busi-seg", str(image), "--out", str(tmp_path / "p")])
    assert result.exit_code != 0
    assert (tmp_path / "p" / "error.txt").read_text().startswith("Interrupted before the end (Ctrl+C).")

    def predict_nothing(self, model_dir, inputs, run_dir, options):
        raise ValueError("case.png: not an ultrasound image")

    monkeypatch.setattr(type(get_task("busi-seg")), "predict", predict_nothing)
    result = runner.invoke(app, ["predict", "busi-seg", str(image), "--out", str(tmp_path / "q")])
    assert result.exit_code == 2 and "not an ultrasound image" in result.output
    assert not (tmp_path / "q" / "error.txt").exists()  # an empty folder: nothing to mark (removed at exit)


def test_a_model_folder_left_half_written_is_replaced_only_on_resume(tmp_path: Path, monkeypatch):
    from breastdx.runs import RESUME_ENV, new_model_dir

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "meta.json").write_text("{}")
    monkeypatch.setenv(RESUME_ENV, "")
    with pytest.raises(FileExistsError, match="a model folder is there already"):
        new_model_dir(tmp_path)
    monkeypatch.setenv(RESUME_ENV, "1")
    path = new_model_dir(tmp_path, make=False)  # removed; the caller copies another model folder there
    assert path == tmp_path / "model" and not path.exists()
    assert new_model_dir(tmp_path).is_dir() and list(path.iterdir()) == []


def test_config_record_refuses_a_key_that_shadows_an_option():
    """config.yaml is read back as the run's options (train --resume): what was read beside them may not reuse an
    option's name (BreakHis's reader said magnification None where the option was 0; BreastMNIST's mask matches sat
    under lesion_masks, the option's name)."""
    from breastdx.config import run_config_record
    from breastdx.tasks import get_task

    config = get_task("breakhis").config_cls()
    record = run_config_record("breakhis", config, Path("/data"), reader_options={"magnification": None},
                               data_checksum="abc")
    assert record["magnification"] == 0 and record["reader_options"] == {"magnification": None}
    with pytest.raises(ValueError, match="magnification would shadow the option"):
        run_config_record("breakhis", config, Path("/data"), magnification=None)


def test_versions_name_every_package_that_shapes_a_runs_figures():
    """A training run scores its test split on ONNX Runtime (the exported graph), groups BUSI's near-duplicates by
    imagehash, normalises H&E stain with torchstain and reads PCam with h5py: versions.json names them all."""
    from breastdx.runs import package_versions

    versions = package_versions()
    for name in ("onnxruntime", "onnx", "imagehash", "torchstain", "h5py", "torch", "monai"):
        assert versions[name] not in ("", "not installed"), name


@pytest.mark.parametrize("task, recorded, method", [
    ("busi-seg", {"cv_folds": 3}, "absolute"), ("idc", {"cv_folds": 3}, "absolute"),
    ("busi-seg", {"cv_folds": 3, "split_method": "proportional"}, "proportional"),
    ("pcam", {}, "proportional"),  # not a cross-validation: its split.json is reused (PCam: the official split)
    ("monuseg", {"cv_folds": 3}, None),  # folds by site, no split method
])
def test_a_run_from_before_the_split_method_resumes_with_the_rule_it_began_with(tmp_path: Path, monkeypatch, task,
                                                                                 recorded, method):
    """A config.yaml without split_method was written when ``absolute`` was the only rule: a resumed
    cross-validation redraws its folds (and a busi-seg one its base split) with that rule, not the new default."""
    from breastdx.pipeline.task import RunResult
    from breastdx.runs import RUN_DIR_ENV
    from breastdx.tasks import get_task
    from breastdx.training.trainer import RESUME_ENV

    for name in (RESUME_ENV, RUN_DIR_ENV):
        monkeypatch.setenv(name, "")
    seen = {}
    monkeypatch.setattr(type(get_task(task)), "train",
                        lambda self, config, data_root, run_dir: seen.update(config=config) or RunResult(run_dir))
    run = _stopped_run(tmp_path / "run", task=task, **recorded)
    result = runner.invoke(app, ["train", task, "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert getattr(seen["config"], "split_method", None) == method


def test_two_runs_started_in_the_same_second_get_two_folders(tmp_path: Path, monkeypatch):
    """The default folder is runs/<task>/<UTC second>: a second run of the same second took the first one's folder
    while it was still empty (both wrote into it), and was refused once the first had written anything."""
    import breastdx.runs as runs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runs, "utc_timestamp", lambda: "20240102-030405")
    first = make_run_dir("wdbc", None)
    second = make_run_dir("wdbc", None)
    (first / "config.yaml").write_text("task: wdbc\n", encoding="utf-8")
    third = make_run_dir("wdbc", None)
    assert [p.name for p in (first, second, third)] == ["20240102-030405", "20240102-030405-2", "20240102-030405-3"]
    assert all(p.is_dir() for p in (first, second, third))
    runs._remove_if_empty([third, third.parent])  # the folder a command made but wrote nothing into goes at exit
    assert not third.exists() and first.exists()


def test_json_is_written_whole_or_not_at_all(tmp_path: Path):
    """write_json truncated the file in place: a reader holding it (the service reading metrics.json, a killed
    writer) saw a half-written or an emptied file; the new content now replaces it in one rename."""
    from breastdx.runs import write_json

    path = tmp_path / "metrics.json"
    write_json({"auroc": 0.5}, path)
    with open(path, encoding="utf-8") as held:
        write_json({"auroc": float("nan"), "n": np.int64(3)}, path)
        assert json.loads(held.read()) == {"auroc": 0.5}  # the old file, whole
    assert json.loads(path.read_text(encoding="utf-8")) == {"auroc": None, "n": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable as any file written with open(), not 0600


def test_json_keys_from_numpy_are_written():
    """A count per label keyed by NumPy integers (np.unique, a Counter of an array) failed in json.dumps."""
    from breastdx.runs import json_ready

    assert json.dumps(json_ready({np.int64(1): 2, np.str_("a"): np.float32(0.5)})) == '{"1": 2, "a": 0.5}'


def test_versions_say_the_cpu_that_chose_the_precision(tmp_path: Path):
    """--precision auto trains in bf16-mixed where the CPU computes bfloat16 natively and in float32 elsewhere, so the
    figures depend on the CPU: versions.json named only packages."""
    import torch

    from breastdx.runs import write_versions
    from breastdx.runtime import bf16_native_cpu, cpu_model

    written = json.loads(json.dumps(write_versions(tmp_path)))
    assert json.loads((tmp_path / "versions.json").read_text(encoding="utf-8")) == written
    assert written["cpu"] == cpu_model() and written["bf16_native_cpu"] == bf16_native_cpu()
    assert written["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert written["torch"] == torch.__version__.split("+")[0] or written["torch"] == torch.__version__
