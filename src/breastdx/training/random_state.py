"""The random state of a training, kept in its last checkpoint so that a resumed run goes on as it would have.

A run resumed from ``checkpoints/last.ckpt`` (``breastdx train TASK --resume RUN``) gets back its weights, optimiser
and schedule from Lightning; :class:`RandomStateCallback` adds what decides the epochs after: the order the training
loader draws (its ``torch.Generator``), the augmentation's random streams (MONAI transforms keep a
``numpy.random.RandomState`` each, breastdx's stain and pose jitter a ``numpy.random.Generator``) and the global
generators of torch, NumPy and Python. With them, the epochs after resuming see the images in the order and with the
augmentations of an uninterrupted run of the same seed (on the same machine and thread count, training gives the
same weights; a test checks it). Data-loader worker processes (``--num-workers N``) keep the augmentation streams in
themselves, out of reach: a run resumed with them draws other augmentations from there on (:func:`fit` says so).

Everything is stored as tensors and strings, so that the checkpoint still loads with
``torch.load(weights_only=True)``: a NumPy state is written as JSON text.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any, Iterator

import numpy as np
import torch

log = logging.getLogger(__name__)

_OWN_MODULES = ("breastdx", "monai", "torch.utils.data")
"""Objects of these modules are searched for random streams (others, such as the cached arrays, are not)."""
_MAX_DEPTH = 64
"""Deeper than any data pipeline here (MONAI's scale-crop keeps its stream nine levels down under --scanner-augment);
cycles are stopped by the objects already seen, and a walk cut here is logged, since its streams would not resume."""


def random_streams(root: Any) -> Iterator[tuple[str, Any]]:
    """``(path, stream)`` of every random stream reachable from ``root`` (a data loader) through the attributes,
    lists, tuples and dicts of objects of :data:`_OWN_MODULES`: ``torch.Generator``, ``numpy.random.RandomState`` and
    ``numpy.random.Generator``, and objects with ``resume_state()`` / ``restore_resume_state(state)`` (a JSON-able
    state, such as :class:`breastdx.data.nucleus_patches.NucleusPatches`'s count of patches drawn). Paths are attribute names (``dataset.transform.transforms[2].R``), the same from run
    to run of the same code; a stream reachable twice is given once, under its first path."""
    seen: set[int] = set()

    def walk(obj: Any, path: str, depth: int) -> Iterator[tuple[str, Any]]:
        if id(obj) in seen:
            return
        if depth > _MAX_DEPTH:
            log.warning("random streams under %s are not searched (over %d levels deep): a resumed run may draw "
                        "other augmentations", path, _MAX_DEPTH)
            return
        if isinstance(obj, (torch.Generator, np.random.RandomState, np.random.Generator)) or hasattr(
                obj, "resume_state"):  # a stream, or an object whose draws follow a counter of its own
            seen.add(id(obj))
            yield path, obj
            if not hasattr(obj, "resume_state"):
                return
        if isinstance(obj, (list, tuple)):
            seen.add(id(obj))
            for i, item in enumerate(obj):
                yield from walk(item, f"{path}[{i}]", depth + 1)
            return
        if isinstance(obj, dict):
            seen.add(id(obj))
            for key, item in obj.items():
                if isinstance(key, (str, int)):  # a path that is the same from run to run
                    yield from walk(item, f"{path}[{key!r}]", depth + 1)
            return
        if not (type(obj).__module__ or "").startswith(_OWN_MODULES) or not hasattr(obj, "__dict__"):
            return
        seen.add(id(obj))
        for name, value in vars(obj).items():
            yield from walk(value, f"{path}.{name}" if path else name, depth + 1)

    yield from walk(root, "", 0)


def _legacy_text(state: tuple) -> str:
    """A ``RandomState`` state (``np.random.get_state()``) as JSON text."""
    name, keys, pos, has_gauss, cached = state
    return json.dumps(["RandomState", name, keys.tolist(), int(pos), int(has_gauss), float(cached)])


def _legacy_state(text: str) -> tuple:
    _, name, keys, pos, has_gauss, cached = json.loads(text)
    return name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached


def _numpy_text(stream: Any) -> str:
    if hasattr(stream, "resume_state"):
        return json.dumps(["Own", stream.resume_state()])
    if isinstance(stream, np.random.RandomState):
        return _legacy_text(stream.get_state())
    return json.dumps(["Generator", stream.bit_generator.state])


def _set_numpy(stream: Any, text: str) -> None:
    if hasattr(stream, "resume_state"):
        stream.restore_resume_state(json.loads(text)[1])
    elif isinstance(stream, np.random.RandomState):
        stream.set_state(_legacy_state(text))
    else:
        stream.bit_generator.state = json.loads(text)[1]


def capture(loader: Any) -> dict[str, Any]:
    """The random state of a training now: the streams of ``loader`` (:func:`random_streams`) and the global
    generators, as tensors and JSON text."""
    streams = {path: (s.get_state() if isinstance(s, torch.Generator) else _numpy_text(s))
               for path, s in random_streams(loader)}
    state = {"streams": streams, "torch": torch.get_rng_state(), "numpy": _legacy_text(np.random.get_state()),
             "python": json.dumps(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from the GPU's own
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(loader: Any, state: dict[str, Any]) -> None:
    """Set the random state of a training to ``state`` (from :func:`capture`); a stream of the saved state that this
    loader does not have, or the reverse, is logged (the data pipeline changed), the rest restored."""
    streams = dict(random_streams(loader))
    saved = state.get("streams", {})
    for path in sorted(set(streams) ^ set(saved)):
        log.warning("random stream %s is only in %s: not restored", path,
                    "the checkpoint" if path in saved else "this run")
    for path, stream in streams.items():
        if path in saved:
            if isinstance(stream, torch.Generator):
                stream.set_state(saved[path])
            else:
                _set_numpy(stream, saved[path])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            log.warning("the checkpoint holds the random state of %d GPU(s), this run has %d: the GPU draws "
                        "(dropout) after resuming differ from the stopped run's", len(state["cuda"]),
                        torch.cuda.device_count() if torch.cuda.is_available() else 0)
    np.random.set_state(_legacy_state(state["numpy"]))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))


def random_state_callback(loader: Any) -> Any:
    """A Lightning callback that puts :func:`capture` of ``loader`` into every checkpoint and :func:`restore` s it
    when a fit resumes from one."""
    from lightning.pytorch.callbacks import Callback

    class RandomStateCallback(Callback):
        def state_dict(self) -> dict[str, Any]:  # noqa: D102
            return capture(loader)

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102
            restore(loader, state_dict)

    return RandomStateCallback()
