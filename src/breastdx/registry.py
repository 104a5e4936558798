"""One small registry type, used for tasks and models.

Entries are added with a decorator and looked up by exact name; an unknown name raises a
``KeyError`` that lists the closest match ("did you mean ...?") and every choice.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised when a registry has no entry of the given name."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


def unknown_name(kind: str, name: str, choices: list[str]) -> UnknownNameError:
    """The error for a name that is not among ``choices``: the closest match ("did you mean ...?") and all choices."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(f"Unknown {kind} {name!r}.{hint} Choices: {', '.join(choices) or '(none)'}.")


class Registry(Generic[T]):
    """A named collection of factories, filled by :meth:`register`.

    Args:
        kind: What the registry holds ("task", "model", ...), used in error messages.

    Example:
        >>> MODELS = Registry("model")
        >>> @MODELS.register("logreg")
        ... def make_logreg(): ...
        >>> MODELS.get("logreg") is make_logreg
        True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds an entry under ``name``.

        Raises:
            ValueError: If ``name`` is already registered.
        """

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the entry registered as ``name``.

        Raises:
            UnknownNameError: If there is no such entry; the message suggests the closest name.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, list(self._entries)) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
