"""Configuration: frozen dataclasses, the data-root setting, and overrides from the command line.

YAML is only the stored form: every run folder holds ``config.yaml``, the resolved configuration.
No string in a configuration is ever evaluated.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from breastdx.errors import ConfigError  # defined below every layer (breastdx.errors); imported from here

DATA_ENV_VAR = "BREASTDX_DATA"

C = TypeVar("C")


def user_cache_dir() -> Path:
    """breastdx's per-user cache folder: ``$XDG_CACHE_HOME/breastdx``, else ``~/.cache/breastdx``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "breastdx"


def default_data_root() -> Path:
    """The per-user cache folder used when neither ``--data-dir`` nor ``BREASTDX_DATA`` is set.

    ``$XDG_CACHE_HOME/breastdx/data`` when ``XDG_CACHE_HOME`` is set, else ``~/.cache/breastdx/data``.
    """
    return user_cache_dir() / "data"


def resolve_data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data root, from (in this order) ``data_dir``, ``$BREASTDX_DATA``, the per-user cache folder.

    Dataset readers look for their folder below it (``<root>/busi``, ``<root>/pcam_subset``, ...).

    Args:
        data_dir: Value of the ``--data-dir`` flag, or None.

    Returns:
        An absolute path. It is not required to exist (downloads create it).
    """
    if data_dir is not None:
        return Path(data_dir).expanduser().resolve()
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return default_data_root()


def parse_json_object(text: str, name: str) -> dict[str, Any]:
    """An option holding a JSON object (empty text: ``{}``), e.g. ``--arch-args '{"num_res_units": 1}'``.

    Raises:
        ConfigError: Naming the option, with an example and what was received.
    """
    import json

    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"Option --{name} expects a JSON object such as '{{\"num_res_units\": 1}}', got "
                          f"{text!r} ({e}).") from None
    if not isinstance(value, dict):
        raise ConfigError(f"Option --{name} expects a JSON object, got {text!r}.")
    return value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_bool(value: Any, name: str) -> bool:
    """A strict boolean option: ``true/false``, ``yes/no``, ``on/off`` or ``1/0`` (any case), or a bool.

    Raises:
        ConfigError: For anything else ("--gradcam flase" is refused, not read as true).
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigError(f"The '{name}' option must be true or false (also yes/no, on/off, 1/0). Got {value!r} "
                      f"instead.")


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert ``value`` (often a string from the command line) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        non_none = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null", ""}):
            if type(None) in args:
                return None
        return _coerce(value, non_none[0], name)
    if origin in (tuple, list):
        item_tp = args[0] if args else str
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",")] if value.strip() else []
            if "" in items:  # "1,,2" was (1, 2): an item dropped in silence
                raise ConfigError(f"The {name!r} option is a comma-separated list with an empty item (two commas in a "
                                  f"row, or one at an end). Got {value!r} instead.")
        else:
            items = list(value)
        return tuple(_coerce(v, item_tp, name) for v in items)
    if tp is bool:
        return parse_bool(value, name)
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if tp in (int, float) and isinstance(value, bool):  # YAML's `epochs: yes` is True, and int(True) is 1
                raise ValueError
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"The {name!r} option must be {_TYPE_WORDS[tp]}. Got {value!r} instead.") from None
        # "inf" and "nan" parse as floats, but no option means them (an infinite --lr failed deep in training)
        if tp is float and not math.isfinite(out):
            raise ConfigError(f"The {name!r} option must be a finite number. Got {value!r} instead.")
        return out
    return value


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a text"}


@dataclasses.dataclass(frozen=True)
class Constraint:
    """What an option's value must be, stated once where the option is declared (see :func:`option`).

    Attributes:
        ge, gt, le, lt: Bounds (None: none).
        choices: The allowed values (None: any).
        multiple_of: The value must be a multiple of this (None: any).
        each: Apply the check to every item of a tuple value.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    multiple_of: int | None = None
    each: bool = False

    def describe(self) -> str:
        """``"an integer >= 1"``-style words for the help and the error message."""
        if self.choices is not None:  # an empty choice is the default that defers (to the model folder's setting)
            named = ", ".join(str(c) for c in self.choices if c != "")
            return "one of " + named + (", or empty for the default" if "" in self.choices else "")
        parts = [f"{op} {_number(v)}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                 if v is not None]
        if self.multiple_of:
            parts.append(f"a multiple of {self.multiple_of}")
        return " and ".join(parts)

    def accepts(self, value: Any) -> bool:
        """Whether one value meets the constraint."""
        if self.choices is not None:
            return value in self.choices
        ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
              and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        return ok and (not self.multiple_of or value % self.multiple_of == 0)


def _number(v: float) -> str:
    """A bound as written: whole numbers in full (``4294967295``, not ``4.29497e+09``), others as ``:g``."""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def option(default: Any, **constraint: Any) -> Any:
    """A dataclass field with a default and a :class:`Constraint`, checked by :func:`validate`.

    Example:
        ``epochs: int = option(60, ge=1)``
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("option(): use a tuple default, not a mutable one")
    return dataclasses.field(default=default, metadata={"constraint": Constraint(**constraint)})


def validate(config: Any, where: str) -> None:
    """Check every field of a config or options dataclass against its declared :class:`Constraint`.

    Args:
        config: A dataclass instance.
        where: The command, for the message (``"busi-cls"``, ``"predict pcam"``).

    Raises:
        ConfigError: In scikit-learn's style: "The 'epochs' option of busi-cls must be an integer >= 1. Got 0
            instead."
    """
    types = _field_types(type(config))
    for f in dataclasses.fields(config):
        c = f.metadata.get("constraint")
        if c is None:
            continue
        value = getattr(config, f.name)
        values = value if c.each else (value,)
        if all(c.accepts(v) for v in values):
            continue
        tp = types[f.name]
        item = typing.get_args(tp)[0] if c.each else tp
        kind = _TYPE_WORDS.get(item, "a value") if c.choices is None else ""
        words = f"{'each item ' if c.each else ''}{kind + ' ' if kind else ''}{c.describe()}".strip()
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        raise ConfigError(f"The '{f.name.replace('_', '-')}' option of {where} must be {words}. Got {shown!r} "
                          f"instead.")


def parse_options(options_cls: type[C], options: dict[str, str], where: str) -> C:
    """A verb's options (``--name value`` strings) as its declared dataclass, typed and validated.

    The :data:`RUNTIME_OPTIONS` are accepted too and left to :func:`runtime_options`.

    Raises:
        ConfigError: For an unknown option (with the closest name), a value of the wrong type or out of range.
    """
    names = {f.name.replace("_", "-") for f in dataclasses.fields(options_cls)}
    check_options(options, names, where)
    given = {k: v for k, v in options.items() if k.replace("_", "-") not in RUNTIME_OPTIONS}
    parsed = with_overrides(options_cls(), given)  # type: ignore[call-arg]
    validate(parsed, where)
    return parsed


def with_overrides(config: C, overrides: dict[str, Any]) -> C:
    """Return a copy of the frozen dataclass ``config`` with ``overrides`` applied and type-checked.

    Args:
        config: A dataclass instance.
        overrides: Field name (dashes allowed for underscores) to value; strings are converted to the
            field's annotated type (``"a,b"`` becomes a tuple for tuple fields).

    Raises:
        ConfigError: For an unknown field (the message suggests the closest) or a value of the wrong type.
    """
    types = _field_types(type(config))
    changes = {}
    for raw_name, value in overrides.items():
        name = raw_name.replace("-", "_")
        if name not in types:
            close = difflib.get_close_matches(name, list(types), n=1, cutoff=0.5)
            hint = f" Did you mean --{close[0].replace('_', '-')}?" if close else ""
            choices = ", ".join("--" + n.replace("_", "-") for n in types)
            raise ConfigError(f"Unknown option --{raw_name}.{hint} Options of this task: {choices}.")
        changes[name] = _coerce(value, types[name], name)
    return dataclasses.replace(config, **changes)


def parse_extra_args(args: list[str]) -> dict[str, str]:
    """Parse ``--key value`` and ``--key=value`` pairs (task options) from the command line.

    A flag followed by another flag, or last, is taken as ``true``.

    Raises:
        ConfigError: For a bare value that follows no option.
    """
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        if not args[i].startswith("--"):
            raise ConfigError(f"Unexpected argument {args[i]!r}: task options are written --name value.")
        key, value, i = take_option(args, i)
        out[key] = value
    return out


def take_option(words: list[str], i: int) -> tuple[str, str, int]:
    """Read the option ``words[i]`` (``--name=value``, ``--name value``, or a bare ``--name``).

    Returns:
        ``(name, value, index of the next word)``; a bare flag (followed by another ``--`` word, or last)
        has the value ``"true"``.
    """
    key = words[i][2:]
    if "=" in key:
        key, value = key.split("=", 1)
        return key, value, i + 1
    if i + 1 < len(words) and not words[i + 1].startswith("--"):
        return key, words[i + 1], i + 2
    return key, "true", i + 1


RUNTIME_OPTIONS = frozenset({"dtype", "backend"})
"""Options of every model verb (predict, evaluate, explain), set by the command line: how the network runs."""


def _attribute_docs(doc: str | None) -> dict[str, str]:
    """Field name to description, from the ``Attributes:`` section of a Google-style class docstring."""
    docs: dict[str, str] = {}
    current = None
    in_attributes = False
    for line in (doc or "").splitlines():
        text = line.strip()
        if text == "Attributes:":
            in_attributes = True
            continue
        if not in_attributes:
            continue
        if text.endswith(":") and " " not in text:  # the next section
            break
        name, sep, rest = text.partition(":")
        if sep and name.isidentifier() and line.startswith(" " * 8) and not line.startswith(" " * 9):
            current = name
            docs[name] = rest.strip()
        elif current and text:
            docs[current] += " " + text
    return docs


_SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj):`~?([^`]+)`")


def plain_text(doc: str) -> str:
    """A docstring's text as a terminal shows it: Sphinx cross-references (``:func:`~a.b.f```) become the name in
    backticks, and double backticks single ones."""
    return _SPHINX_ROLE.sub(r"`\1`", doc).replace("``", "`")


def describe_options(config_cls: type) -> list[tuple[str, str, str]]:
    """``(--name, default, description)`` for each field of a task's config dataclass, for ``--help``.

    Descriptions come from the ``Attributes:`` section of the class docstring (Google style), so each
    option is described once, where it is declared; :func:`plain_text` strips their Sphinx markup.
    """
    docs: dict[str, str] = {}
    for cls in reversed(config_cls.__mro__):  # a subclass's description of a field wins over its base's
        docs.update(_attribute_docs(cls.__dict__.get("__doc__")))
    last = {f.name for cls in config_cls.__mro__ if cls.__dict__.get("options_last") and dataclasses.is_dataclass(cls)
            for f in dataclasses.fields(cls)}  # shared options (e.g. Lightning's) after the task's own
    rows = []
    for f in sorted(dataclasses.fields(config_cls), key=lambda f: f.name in last):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "")
        if default is None:  # deferred to the task or the model folder, as the description says ("empty: ...")
            default = ""
        elif isinstance(default, bool):
            default = str(default).lower()
        elif isinstance(default, (tuple, list)):
            default = ",".join(str(v) for v in default)
        c = f.metadata.get("constraint")
        rule = f" ({c.describe()})" if c is not None and c.describe() else ""
        rows.append((f"--{f.name.replace('_', '-')}", str(default), plain_text(docs.get(f.name, "")) + rule))
    return rows


def runtime_options(options: dict[str, str]) -> dict[str, str]:
    """``{"dtype": ..., "backend": ...}`` of a model verb's options, for a predictor's ``from_dir``."""
    return {"dtype": options.get("dtype", "auto"), "backend": options.get("backend", "auto")}


def check_options(options: dict[str, str], allowed: set[str], command: str) -> None:
    """Refuse options a command does not take (names compared with dashes), suggesting the closest.

    :data:`RUNTIME_OPTIONS` are always accepted (a task without networks ignores them).

    Raises:
        ConfigError: Naming the unknown option and listing the allowed ones.
    """
    allowed = set(allowed) | RUNTIME_OPTIONS
    for raw in options:
        name = raw.replace("_", "-")
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.5)
            hint = f" Did you mean --{close[0]}?" if close else ""
            choices = ", ".join(f"--{a}" for a in sorted(allowed)) or "(none)"
            raise ConfigError(f"Unknown option --{raw} for {command}.{hint} Options: {choices}.")


def given_options(config: Any, names: tuple[str, ...]) -> list[str]:
    """``--name`` of each field of ``names`` (those ``config`` has) whose value is not its declared default: the
    options a command line gave, for refusing those that would not apply."""
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    return [f"--{n.replace('_', '-')}" for n in names if n in defaults and getattr(config, n) != defaults[n]]


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass as plain YAML/JSON-safe data (tuples become lists, paths strings)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        if dataclasses.is_dataclass(v):
            return {k: plain(x) for k, x in dataclasses.asdict(v).items()}
        return v

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def run_config_record(task: str, config: Any, data_root: Path, **extra: Any) -> dict[str, Any]:
    """What a training run's ``config.yaml`` holds: the task, every option of ``config`` as resolved, the data root,
    then ``extra`` (what was read: a dataset's checksum, its reader's options). ``load_config`` reads the options
    back (``train --resume``), so ``extra`` may not reuse an option's name.

    Raises:
        ValueError: If a key of ``extra`` is an option of ``config`` (it would shadow the option's value).
    """
    options = to_dict(config)
    clash = sorted(set(extra) & set(options))
    if clash:
        raise ValueError(f"config.yaml: {', '.join(clash)} would shadow the option(s) of the same name.")
    return {"task": task, **options, "data_root": str(data_root), **extra}


def save_yaml(data: dict[str, Any], path: Path) -> None:
    """Write ``data`` as YAML (block style, keys in insertion order); only global rank 0 of a distributed run
    writes."""
    from breastdx.runs import is_rank_zero, write_text_atomic

    if not is_rank_zero():
        return
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def load_config(cls: type[C], path: Path) -> C:
    """Read a ``config.yaml`` written by :func:`save_yaml` back into ``cls``.

    Keys of the YAML file that are not fields of ``cls`` (such as ``task`` or ``data_root``) are ignored.

    Raises:
        ConfigError: For a value of the wrong type.
    """
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    names = {f.name for f in dataclasses.fields(cls)}
    return with_overrides(cls(), {k: v for k, v in data.items() if k in names})  # type: ignore[call-arg]
