"""The ``breastdx`` command line: parse arguments, call the library, print. Nothing else lives here."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperCommand
from rich.table import Table
from rich.text import Text

from breastdx import RESEARCH_USE_ONLY, __version__
from breastdx.cli_output import VERBOSE as _VERBOSE
from breastdx.cli_output import console, err_console
from breastdx.cli_output import fail as _fail
from breastdx.cli_output import unexpected as _unexpected
from breastdx.cli_runs import failed_run as _failed_run
from breastdx.cli_runs import finished_run as _finished_run
from breastdx.cli_runs import new_run_dir as _new_run_dir
from breastdx.cli_runs import resumed as _resumed
from breastdx.cli_tokens import DATABASE_HELP, token_app

app = typer.Typer(
    name="breastdx",
    help=f"Breast-cancer diagnosis with machine learning: train, evaluate, predict. {RESEARCH_USE_ONLY}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
TASK_OPTIONS = {"allow_extra_args": True, "ignore_unknown_options": True}
BACKEND_HELP = ("Forward-pass backend: auto (ONNX Runtime for a model folder in float32 on the CPU, where it measured "
                "faster; PyTorch elsewhere), torch or onnxruntime. Grad-CAM always runs PyTorch.")
MODEL_HELP = ("Model folder (or a training run's folder: its model/), or shipped model name; default: the task's "
              "shipped model.")
FRAME_HELP = ("Multi-frame DICOM (cine loop): 'first', a frame number (1-based) or 'all' (one row per frame); the "
              "frame column says which was read.")
DTYPE_HELP = ("Network precision: auto (bfloat16 only where the hardware computes it fast, a CPU with AMX or a GPU, "
              "and the model folder validates it; float32 elsewhere), float32 or bfloat16. One log line says what "
              "was chosen and why.")


def _show(result: Any) -> None:
    if result.table:
        table = Table(title=result.table_title, show_lines=False)
        for col in result.table[0]:
            table.add_column(str(col), overflow="fold")
        for row in result.table[1:]:  # as text: a name such as 'scan[1].png' is no markup
            table.add_row(*[Text(str(c)) for c in row])
        console.print(table)
    for line in result.notes:
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    if result.failures:
        err_console.print(f"[bold red]{len(result.failures)} input(s) could not be used:[/]")
        for item, reason in result.failures:
            reason = reason[len(f"{item}: "):] if reason.startswith(f"{item}: ") else reason  # name it once
            err_console.print(f"  - {item}: {reason}", highlight=False, soft_wrap=True, markup=False)


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)], force=True)
    logging.getLogger("breastdx").setLevel(logging.DEBUG if verbose else logging.INFO)
    # Lightning prints through a handler of its own on the "lightning" logger: not through ours as well (every line
    # twice), and without its advertising tip.
    logging.getLogger("lightning").propagate = False
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "Tip:" not in r.getMessage())
    # A deprecation inside Lightning's own code (torch's pytree API), printed at every fit: not the user's concern.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details (debug level).")) -> None:
    """breastdx command line. Research use only."""
    _VERBOSE["on"] = verbose
    # Plots are written to files: the non-interactive backend, chosen here by the program, not by library modules
    # at import (a notebook that imports breastdx keeps its own backend). An explicit MPLBACKEND wins.
    os.environ.setdefault("MPLBACKEND", "Agg")
    _setup_logging(verbose)


def _set_threads(value: Any) -> None:
    """The thread count of this process's networks (``--threads``; 0 or a bad value: unchanged, the task says why).

    With PyTorch imported, its count is set. Otherwise ``OMP_NUM_THREADS`` is, which PyTorch reads when it is
    imported and ONNX Runtime sessions follow (:func:`breastdx.inference.onnx_graphs.default_threads`), so that a
    command that never needs PyTorch (``predict busi-seg`` on a cached graph) does not import it for this.
    """
    try:
        n = int(value)
    except (TypeError, ValueError):
        return
    if n > 0:
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)
        else:
            os.environ["OMP_NUM_THREADS"] = str(n)


class _TaskCommand(TyperCommand):
    """``breastdx VERB TASK --help`` also lists TASK's own options for VERB, from their declaration."""

    verb = "train"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # noqa: D102
        ctx.meta["breastdx_task"] = self._task_name(ctx, args)
        return super().parse_args(ctx, args)

    def _task_name(self, ctx: Any, args: list[str]) -> str | None:
        """The first word that is not an option nor the value of one of the verb's own options (``train --out DIR
        TASK``: DIR is no task)."""
        takes_value = {name for p in self.get_params(ctx)  # options (not the task argument) that take a value
                       if p.opts[0].startswith("-") and not getattr(p, "is_flag", False)
                       for name in (*p.opts, *p.secondary_opts)}
        words = iter(args)
        for word in words:
            if word == "--":
                return next(words, None)
            if not word.startswith("-"):
                return word
            if word in takes_value:  # --out DIR (not --out=DIR)
                next(words, None)
        return None

    def format_help(self, ctx: Any, formatter: Any) -> None:  # noqa: D102
        super().format_help(ctx, formatter)
        from breastdx.config import describe_options
        from breastdx.registry import UnknownNameError
        from breastdx.tasks import get_task

        name = ctx.meta.get("breastdx_task")
        try:
            task = get_task(name) if name else None
        except UnknownNameError:
            task = None
        declared = task.options_cls(self.verb) if task is not None else None
        if declared is None:
            console.print(f"Task options: run [bold]breastdx {self.verb} TASK --help[/] (breastdx tasks lists the "
                          f"tasks)." if task is None else f"{task.name} declares no options of its own for {self.verb}.",
                          highlight=False)
            return
        table = Table(title=f"Options of {self.verb} {task.name} (--name value)", title_justify="left")
        for col in ("option", "default", "meaning"):
            table.add_column(col, overflow="fold")
        for option, default, meaning in describe_options(declared):
            table.add_row(option, default, meaning)
        console.print(table)


def _command_for(verb: str) -> type:
    return type(f"_{verb.title()}Command", (_TaskCommand,), {"verb": verb})


@app.command(context_settings=TASK_OPTIONS, cls=_command_for("train"))
def train(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task name (breastdx tasks lists them)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data root; else $BREASTDX_DATA, else the "
                                            "per-user cache folder."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder; default runs/<task>/<UTC timestamp>."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**32 - 1, show_default="0",
                                       help="Seed of every random choice (0 to 2^32 - 1)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue a training run that stopped (Ctrl+C, an "
                                          "error, killed) after its last finished epoch, in its folder and with the "
                                          "options of its config.yaml (of the task options, only --threads, "
                                          "--progress-bar and --num-workers may be given)."),
) -> None:
    """Train and evaluate a task; write a run folder. Task options go after, as --name value."""
    from breastdx.config import ConfigError, parse_extra_args, resolve_data_root, with_overrides
    from breastdx.data.errors import DataError
    from breastdx.registry import UnknownNameError
    from breastdx.runs import RunFolderError, clear_running
    from breastdx.tasks import get_task

    try:
        t = get_task(task)
        if resume is not None:  # the stopped run's own folder and options
            config, run_dir, data_dir = _resumed(t, resume, ctx.args, out, seed, data_dir)
        else:
            config = with_overrides(t.config_cls(), {**parse_extra_args(list(ctx.args)), "seed": seed or 0})
            if hasattr(config, "accelerator"):  # no GPU: said before a folder is made or data read
                from breastdx.runtime import check_accelerator

                check_accelerator(config.accelerator)
            run_dir = _new_run_dir(task, out)
    except (UnknownNameError, ConfigError, RunFolderError) as e:  # RunFolderError: --out exists, is a file, read-only
        _fail(str(e))
    console.print(f"[bold]breastdx {__version__}[/] — {t.title}. {RESEARCH_USE_ONLY}", highlight=False)
    _set_threads(getattr(config, "threads", 0))
    try:
        result = t.train(config, resolve_data_root(data_dir), run_dir)
    except (DataError, FileNotFoundError, UnknownNameError, ConfigError) as e:
        from breastdx.training.trainer import TrainingDivergedError

        _fail(_failed_run(task, run_dir, str(e), resumable=not isinstance(e, TrainingDivergedError)))
    except Exception as e:  # noqa: BLE001 - said plainly, with the traceback under --verbose
        _failed_run(task, run_dir, f"unexpected error ({type(e).__name__}): {e}")
        _unexpected(e)
    except (KeyboardInterrupt, SystemExit):  # Ctrl+C: Lightning shuts down and exits with status 1
        err_console.print(_failed_run(task, run_dir, "Interrupted before the end (Ctrl+C or a signal)."),
                          highlight=False, soft_wrap=True)
        raise
    clear_running(run_dir)
    _finished_run(run_dir)
    _show(result)


@app.command(context_settings=TASK_OPTIONS, cls=_command_for("evaluate"))
def evaluate(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task name."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data root."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder; default runs/<task>/evaluate-<UTC ts>."),
    dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
) -> None:
    """Re-compute metrics (with 95% CIs) for a saved model."""
    _run_model_verb("evaluate", ctx, task, model, data_dir, out, [], dtype, backend)


@app.command(context_settings=TASK_OPTIONS, cls=_command_for("calibrate"))
def calibrate(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task name (image classifiers: busi-cls, pcam, ...; monuseg)."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data root."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder; default runs/<task>/calibrate-<UTC ts>."),
) -> None:
    """Calibrate a saved model on its validation data and write the result into its model folder (training does
    this for new models): an image classifier's conformal prediction sets; monuseg's test-time augmentation and
    watershed, chosen on the held-out rows. A shipped model (no --model, its name or its folder) is copied to
    OUT/model first and left as it is. The task's options: breastdx calibrate TASK --help."""
    _run_model_verb("calibrate", ctx, task, model, data_dir, out, [])


@app.command(context_settings=TASK_OPTIONS, cls=_command_for("predict"))
def predict(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task name."),
    inputs: list[str] = typer.Argument(..., help="Input files or folders."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder; default runs/<task>/predict-<UTC ts>."),
    dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    frame: str = typer.Option("first", "--frame", help=FRAME_HELP),
) -> None:
    """Predict new cases; write predictions.csv (and overlays for images)."""
    _run_model_verb("predict", ctx, task, model, None, out, inputs, dtype, backend, frame)


@app.command(context_settings=TASK_OPTIONS, cls=_command_for("explain"))
def explain(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task name (image classifiers: busi-cls, pcam, ...)."),
    inputs: list[str] = typer.Argument(..., help="Input images or folders."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder; default runs/<task>/explain-<UTC ts>."),
    dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    frame: str = typer.Option("first", "--frame", help=FRAME_HELP),
) -> None:
    """Explain predictions: Grad-CAM (and Grad-CAM++) heatmap overlays per predicted class, as PNG files."""
    _run_model_verb("explain", ctx, task, model, None, out, inputs, dtype, backend, frame)


def _split_inputs(inputs: list[str]) -> tuple[list[Path], dict[str, str]]:
    """Separate task options from input paths: the variadic INPUT argument also collects ``--name value``.

    A word starting with ``--`` that is not an existing file is an option; it takes ``=value`` or the
    next word as its value (``true`` when the next word is another option or there is none). An empty word is
    refused (``Path("")`` is the current folder: an empty shell variable would predict all it holds).
    """
    from breastdx.config import ConfigError, take_option

    paths: list[Path] = []
    options: dict[str, str] = {}
    words = [str(p) for p in inputs]
    if any(not w.strip() for w in words):
        raise ConfigError("An input is an empty name (an empty shell variable?); name files or folders ('.' for the "
                          "current folder).")
    i = 0
    while i < len(words):
        if words[i].startswith("--") and not Path(words[i]).exists():
            key, value, i = take_option(words, i)
            options[key] = value
        else:
            paths.append(Path(words[i]))
            i += 1
    return paths, options


def _drop_copy(copy: Path | None) -> None:
    """Remove calibrate's copy of a shipped model after a failed run: left there, it would look like a calibrated
    model (``OUT/model``) although nothing was fitted."""
    import shutil

    if copy is not None:
        shutil.rmtree(copy, ignore_errors=True)


def _run_model_verb(verb: str, ctx: typer.Context, task: str, model: Optional[str], data_dir: Optional[Path],
                    out: Optional[Path], inputs: list[str], dtype: str = "auto", backend: str = "auto",
                    frame: str = "first") -> None:
    from breastdx.config import ConfigError, parse_extra_args, resolve_data_root
    from breastdx.data.dicom_frames import check_frame_option, expand_frames
    from breastdx.runtime import check_backend, check_dtype
    from breastdx.models.saved import ModelFolderError
    from breastdx.registry import UnknownNameError
    from breastdx.runs import RunFolderExistsError, make_run_dir
    from breastdx.tasks import calibratable_tasks, explainable_tasks, get_task, is_calibratable
    from breastdx.zoo import names_shipped_model, resolve_model

    run_dir = None  # made once the inputs and the model are checked; a failure after that is recorded in it
    copy: Path | None = None  # calibrate's copy of a shipped model: removed when the run fails, as it is no result
    try:
        t = get_task(task)
        if verb == "calibrate" and not is_calibratable(t):
            raise ConfigError(f"Task {task!r} has nothing for this command to calibrate; it calibrates "
                              f"{', '.join(calibratable_tasks())}.")
        if verb == "explain" and not hasattr(t, "explain"):
            raise ConfigError(f"Task {task!r} has no explanations from this command; it explains "
                              f"{', '.join(explainable_tasks())} (Grad-CAM on images, SHAP on WDBC features).")
        inputs, input_options = _split_inputs(inputs)
        if task == "wdbc" and (dtype != "auto" or backend != "auto" or frame != "first"):
            raise ConfigError("wdbc's models are scikit-learn's, on a table of features: --dtype, --backend and "
                              "--frame are for the image tasks.")
        if verb in ("predict", "explain") and task != "wdbc":  # listed once here: its warnings are said once
            from breastdx.data.image_files import is_mask_name, list_images

            named, inputs = inputs, list_images(inputs)  # the task lists these files again, silently
            masks = sorted(str(p) for p in named if is_mask_name(p) and not p.is_dir())
            if masks:  # left out by list_images (a glob such as benign/*.png names them): said, not dropped in silence
                logging.getLogger("breastdx.cli").info(
                    "%d file(s) named are lesion masks by their names (*_mask.*, *_mask_<k>.*) and are left out: %s%s",
                    len(masks), ", ".join(masks[:3]), f" and {len(masks) - 3} more" if len(masks) > 3 else "")
            if named and not inputs:  # a mistyped or wrong folder, or masks only: not a batch of nothing that succeeded
                raise ConfigError(f"{', '.join(map(str, named))}: no image found (PNG, JPEG, TIFF, DICOM, a "
                                  f"MedMNIST .npz or a PCam .h5{'; the files named are lesion masks' if masks else ''}"
                                  f"); nothing to {verb}.")
        options = {**parse_extra_args(list(ctx.args)), **input_options}
        frame = options.pop("frame", frame)
        if verb in ("predict", "explain") and check_frame_option(frame) != "first":
            from breastdx.data.image_files import list_images

            inputs = expand_frames(list_images(inputs) if task == "wdbc" else inputs, frame)  # others: listed above
        options["dtype"] = check_dtype(options.get("dtype", dtype))
        options["backend"] = check_backend(options.get("backend", backend))
        model_dir = resolve_model(model, task)
        _set_threads(options.get("threads", 0))
        run_dir = make_run_dir(task, out, kind=verb)
        if verb == "calibrate" and names_shipped_model(model):  # never rewrite the installed package's model
            import shutil

            model_dir = Path(shutil.copytree(model_dir, run_dir / "model"))
            copy = model_dir
            logging.getLogger("breastdx.cli").info("calibrating a copy of the shipped model %s in %s; the shipped "
                                             "model stays as it is", model or task, model_dir)
        if verb == "evaluate":
            result = t.evaluate(model_dir, resolve_data_root(data_dir), run_dir, options)
        elif verb == "calibrate":
            from breastdx.pipeline.calibrate import calibrate as calibrate_classifier

            calibrate = getattr(t, "calibrate", None) or (lambda *a: calibrate_classifier(t, *a))
            result = calibrate(model_dir, resolve_data_root(data_dir), run_dir, options)
        elif verb == "explain":
            result = t.explain(model_dir, list(inputs), run_dir, options)
        else:
            result = t.predict(model_dir, list(inputs), run_dir, options)
    except (UnknownNameError, RunFolderExistsError, ModelFolderError, FileNotFoundError, ValueError) as e:
        # ValueError covers DataError and ConfigError (bad input, bad option values)
        _drop_copy(copy)
        _fail(_failed_run(task, run_dir, str(e)) if run_dir else str(e))
    except Exception as e:  # noqa: BLE001 - said plainly, with the traceback under --verbose
        _drop_copy(copy)
        if run_dir:
            _failed_run(task, run_dir, f"unexpected error ({type(e).__name__}): {e}")
        _unexpected(e)
    except KeyboardInterrupt:  # a long batch stopped: its folder says it is incomplete
        _drop_copy(copy)
        if run_dir:
            err_console.print(_failed_run(task, run_dir, "Interrupted before the end (Ctrl+C)."), highlight=False,
                              soft_wrap=True)
        raise
    _show(result)
    if result.failures:
        raise typer.Exit(1)


@app.command("synthesize")
def synthesize(
    task: str = typer.Argument(..., help="Task with a generator: idc."),
    n: int = typer.Option(..., "--n", help="Number of patches to write."),
    label: int = typer.Option(..., "--label", help="Class: 0 (normal, no IDC) or 1 (IDC)."),
    out: Path = typer.Option(..., "--out", help="Output folder (created; refused when not empty)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same patches."),
    model: Optional[str] = typer.Option(None, "--model", help="A generator folder or shipped name; default idc-gan."),
    threads: int = typer.Option(0, "--threads", min=0, help="Torch CPU threads (0: PyTorch's default)."),
) -> None:
    """Write N generated 50 x 50 H&E patches of one class as PNG files (research on augmentation only)."""
    from breastdx.models.saved import ModelFolderError
    from breastdx.pipeline.synthesis import synthesize as run
    from breastdx.runs import RunFolderError

    _set_threads(threads)
    try:
        result = run(task, n, label, out, seed=seed, model=model)
    except (ValueError, FileNotFoundError, ModelFolderError, RunFolderError) as e:
        _fail(str(e))
    console.print(f"{result['n']} {result['label']} patches (seed {result['seed']}, model {result['model']}) in "
                  f"{result['out']}, {result['seconds']:.1f} s. Generated, not real tissue; {RESEARCH_USE_ONLY}",
                  highlight=False)


@app.command("tasks")
def list_tasks() -> None:
    """List the tasks."""
    from breastdx.tasks import TASKS

    table = Table(title="breastdx tasks")
    table.add_column("task")
    table.add_column("what")
    for name in TASKS.names():
        table.add_row(name, TASKS.get(name).title)
    console.print(table)


@app.command("models")
def list_models(name: Optional[str] = typer.Argument(None, help="A shipped model's name or a model folder: show its "
                                                               "model card.")) -> None:
    """List the shipped models with their task and headline metrics; with NAME, show that model's card."""
    from breastdx.zoo import MODELS_TABLE_COLUMNS, MODELS_TABLE_TITLE, model_card, models_table_rows

    if name is not None:
        try:
            folder, card = model_card(name)
        except (OSError, ValueError) as e:  # FileNotFoundError; a card that is not UTF-8; unreadable
            _fail(str(e))
        from rich.markdown import Markdown  # markdown-it: only for a card

        return console.print(Markdown(card), f"Model folder: {folder}", sep="\n", highlight=False)
    table = Table(*MODELS_TABLE_COLUMNS, title=MODELS_TABLE_TITLE)
    for row in models_table_rows():
        table.add_row(*row)
    console.print(table)


data_app = typer.Typer(help="Datasets: download with checksum verification, summarise.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("download")
def data_download(
    name: str = typer.Argument(..., help="Dataset: busi, breastmnist, pcam."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data root; else $BREASTDX_DATA, else the "
                                            "per-user cache folder."),
    url: Optional[str] = typer.Option(None, "--url", help="Another address of the same files (a mirror, file://)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing dataset folder (pcam: download and "
                               "verify again the files already there)."),
) -> None:
    """Download a public dataset into the data root and verify its checksums."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from breastdx.config import resolve_data_root
    from breastdx.data.download import download_named
    from breastdx.registry import UnknownNameError

    root = resolve_data_root(data_dir)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err_console, transient=True) as bar:
        job = bar.add_task(f"{name}", total=None)
        kept: list[str] = []
        try:
            folder = download_named(name, root, url=url, force=force, kept=kept,
                                    progress=lambda done, total: bar.update(job, completed=done, total=total))
        except (UnknownNameError, ValueError, OSError) as e:
            _fail(str(e))
    if kept:  # pcam, file by file: those already there were not downloaded, so not MD5-checked
        console.print(f"{name}: installed in {folder}; {len(kept)} file(s) already there were kept without an MD5 "
                      f"check (only their layout was checked; --force downloads and verifies them): "
                      f"{', '.join(kept)}", highlight=False)
    else:
        console.print(f"{name}: verified and installed in {folder}", highlight=False)


@data_app.command("summary")
def data_summary(
    name: str = typer.Argument(..., help="Dataset: busi, breastmnist, pcam, idc, breakhis, monuseg, wdbc."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data root."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder; default runs/<name>/summary-<UTC ts>."),
    split: Optional[str] = typer.Option(None, "--split", help="Only this split of the dataset's own split."),
    max_items: Optional[int] = typer.Option(None, "--max-items", min=1, help="Largest number of images analysed "
                                            "(seeded sample; default 5000); not for wdbc and monuseg, summarised "
                                            "whole."),
    data_file: Optional[Path] = typer.Option(None, "--data-file", help="wdbc: a wdbc.data or CSV in place of "
                                                                        "scikit-learn's copy."),
) -> None:
    """Class distribution, image size and quality, duplicates and sample grids, as a report with plots (monuseg:
    nuclei, their sizes and stain per tile; wdbc: each feature by class)."""
    from breastdx.config import resolve_data_root
    from breastdx.data.summary_datasets import summarize_dataset, summary_table
    from breastdx.registry import UnknownNameError
    from breastdx.runs import RunFolderExistsError, make_run_dir

    try:
        run_dir = make_run_dir(name, out, kind="summary")
        result = summarize_dataset(name, resolve_data_root(data_dir), run_dir, split=split, max_items=max_items,
                                   data_file=data_file)
    except (UnknownNameError, RunFolderExistsError, ValueError, OSError) as e:
        _fail(str(e))
    title, columns, rows, notes = summary_table(name, result, run_dir)
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[Text(str(c)) for c in row])  # a folder name in brackets is no markup
    console.print(table)
    for line in notes:
        console.print(line, highlight=False, markup=False)


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"breastdx {__version__}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    database_url: Optional[str] = typer.Option(None, "--database-url", help=DATABASE_HELP),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest accepted upload, in MiB."),
    dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve /v1/... without API tokens; accepted only on a "
                                 "loopback host (127.0.0.1, ::1, localhost)."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes sharing the database; each "
                                "loads the models."),
    model: Optional[list[Path]] = typer.Option(None, "--model", help="A model folder to serve (repeatable); "
                                               "default every shipped model."),
    lesion_aware: bool = typer.Option(False, "--lesion-aware", help="A switch, without a value: serve busi-cls "
                                      "fused with its lesion-crop model, as 'predict busi-cls --lesion-aware true'."),
    record_names: bool = typer.Option(False, "--record-names", help="A switch: keep the file name of an upload "
                                      "(never a DICOM's) or a WDBC case id in the record; by default none is kept, "
                                      "as names may identify a patient, and the input's SHA-256 is its reference."),
) -> None:
    """Serve the web page and the REST API (OpenAPI at /docs) with the shipped models.

    Every /v1/... request needs 'Authorization: Bearer TOKEN' of a token made by 'breastdx token create NAME'
    on the same database."""
    import uvicorn

    from breastdx.serve import ServeSettings, create_app
    from breastdx.serve.db import DatabaseError, PredictionStore, redact_url
    from breastdx.serve.settings import SETTINGS_ENV

    try:
        settings = ServeSettings(host=host, port=port, database_url=database_url,
                                 max_upload_bytes=int(max_upload_mb * 1024 * 1024), dtype=dtype, backend=backend,
                                 auth=not no_auth, workers=workers, lesion_aware=lesion_aware,
                                 record_names=record_names, model_dirs=tuple(model) if model else None)
        store = PredictionStore(settings.resolved_database_url)  # creates or upgrades the schema once, here
        valid = sum(t.revoked_at is None for t in store.list_tokens())
    except (ValueError, DatabaseError) as e:
        _fail(str(e))
    access = ("without API tokens (--no-auth, this machine only)" if no_auth else
              f"to holders of an API token ({valid} valid)")
    console.print(f"[bold]breastdx {__version__}[/] serving on http://{host}:{port} {access}, with {workers} "
                  f"worker(s), recording predictions in {redact_url(store.url)}. {RESEARCH_USE_ONLY}",
                  highlight=False, soft_wrap=True)
    if not no_auth and not valid:
        err_console.print("[bold yellow]warning:[/] no valid API token exists, so every /v1/... request will be "
                          "refused; create one with 'breastdx token create NAME' (same --database-url).",
                          highlight=False, soft_wrap=True)
    try:
        if workers == 1:
            uvicorn.run(create_app(settings, store=store), host=host, port=port, log_level="info",
                        timeout_graceful_shutdown=5)
        else:
            store.close()
            os.environ[SETTINGS_ENV] = settings.to_json()
            uvicorn.run("breastdx.serve.app:app_from_environment", factory=True, host=host, port=port,
                        workers=workers, log_level="info", timeout_graceful_shutdown=5)
    finally:
        store.close()


app.add_typer(token_app, name="token")


if __name__ == "__main__":  # pragma: no cover
    app()
