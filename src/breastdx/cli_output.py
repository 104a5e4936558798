"""What the ``breastdx`` command line prints with: its two consoles, and how a command ends on an error.

Shared by :mod:`breastdx.cli` and the command groups beside it (:mod:`breastdx.cli_tokens`), so that every command
says an error the same way: ``error: <message>`` on standard error and exit status 2 for a bad input or option,
``unexpected error`` and status 1 for what no check anticipated, the traceback only under ``--verbose``.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

# Wide enough for a comparison table in a log file; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

VERBOSE = {"on": False}
"""Set by the ``--verbose`` option of the command line (this process's own state)."""


def fail(message: str, code: int = 2) -> None:
    """End the command with ``error: <message>`` (and the traceback under ``--verbose``).

    Raises:
        typer.Exit: Always, with ``code``.
    """
    if VERBOSE["on"] and sys.exc_info()[0] is not None:
        err_console.print_exception(show_locals=False)
    err_console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def unexpected(error: BaseException) -> None:
    """An error no check anticipated (a bug, or a library failing): say so; --verbose shows the traceback.

    Raises:
        typer.Exit: Always, with status 1.
    """
    if VERBOSE["on"]:
        err_console.print_exception(show_locals=False)
    hint = "" if VERBOSE["on"] else " Run again with --verbose (breastdx -v ...) to see the traceback."
    err_console.print(f"[bold red]unexpected error[/] ({type(error).__name__}): {escape(str(error))}. This is likely "
                      f"a bug in breastdx or a library it uses; please report it.{hint}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
