"""Errors raised by the data readers. Each message names the file (and row or column) and what was expected."""

from __future__ import annotations


class DataError(ValueError):
    """Input data that cannot be used: the message names the file, row or column, and the expectation.

    Attributes:
        problems: Every problem found, one line each (a reader checks the whole input before raising).
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            shown = self.problems[:20]
            more = len(self.problems) - len(shown)
            message = message + "\n" + "\n".join(f"  - {p}" for p in shown)
            if more:
                message += f"\n  ... and {more} more"
        super().__init__(message)
