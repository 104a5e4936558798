"""Settings of the web service: where predictions are recorded, the upload and pixel limits, which models load.

One frozen dataclass, :class:`ServeSettings`, built by the ``breastdx serve`` command (or by a test) and
given to :func:`breastdx.serve.app.create_app`. With several worker processes, each worker rebuilds it from
the JSON that ``breastdx serve`` puts in :data:`SETTINGS_ENV` (:meth:`ServeSettings.to_json`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from breastdx.runtime import BACKENDS, DTYPES, usable_cores

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest accepted upload, in bytes (20 MiB: a large DICOM ultrasound frame fits)."""

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest accepted image, in pixels (width x height), checked from the file header before decoding."""

SETTINGS_ENV = "BREASTDX_SERVE_SETTINGS"
"""Environment variable holding the settings (JSON) for the worker processes of ``breastdx serve --workers N``."""

DEFAULT_DISPLAY_MAX_SIDE = 1024
"""Images in answers (overlays, masks, heat maps) are scaled down to at most this many pixels per side."""


def default_database_url() -> str:
    """The SQLite file predictions are recorded in when no ``--database-url`` is given.

    ``$XDG_DATA_HOME/breastdx/predictions.sqlite`` when ``XDG_DATA_HOME`` is set, else
    ``~/.local/share/breastdx/predictions.sqlite``.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(base) / 'breastdx' / 'predictions.sqlite'}"


def auto_torch_threads(n_networks: int) -> int:
    """Intra-op threads of torch when ``torch_threads`` is None: the usable cores shared by the served networks.

    Each network runs one request at a time (its lock), so up to ``n_networks`` run at once; giving each its
    share of the cores keeps the threads from outnumbering the cores, which slows every request down.
    """
    return max(1, usable_cores() // max(1, int(n_networks)))


@dataclass(frozen=True)
class ServeSettings:
    """How the service runs.

    Attributes:
        host: Address to listen on; the default answers only this machine.
        port: TCP port.
        database_url: SQLAlchemy URL of the prediction record, e.g. ``sqlite:///predictions.sqlite`` or
            ``postgresql+psycopg://user@host/breastdx``; None for :func:`default_database_url`.
        max_upload_bytes: Largest accepted upload, in bytes.
        max_pixels: Largest accepted image, in pixels (width x height).
        model_dirs: Model folders to serve; None for every shipped model of :mod:`breastdx.zoo`.
        torch_threads: Intra-op threads of torch in the threads that run the models (torch keeps this count
            per thread); None for :func:`auto_torch_threads` of the networks served.
        display_max_side: Images in answers are scaled down to at most this side, in pixels.
        dtype: Network precision, ``auto`` (bfloat16 only where fast, a CPU with AMX or a GPU, and validated),
            ``float32`` or ``bfloat16`` (see :func:`breastdx.runtime.choose_inference_dtype`).
        backend: Forward-pass backend, ``auto``, ``torch`` or ``onnxruntime`` (see
            :class:`breastdx.inference.backends.NetworkRunner`).
        gradcam: Compute Grad-CAM maps for image classifiers.
        lesion_aware: Serve busi-cls fused with its lesion-crop model (``--lesion-aware``; see
            :func:`breastdx.serve.models.load_model`).
        n_reasons: SHAP contributions reported per WDBC case.
        warmup: Run each model once on a blank input at start-up, so that the first request is not slow.
        max_list_limit: Largest ``limit`` of ``GET /v1/predictions``.
        auth: Every ``/v1/...`` request needs an API token (:mod:`breastdx.serve.auth`); False (``--no-auth``)
            is accepted only when ``host`` is a loopback address.
        workers: Worker processes (``uvicorn --workers``) sharing the database; each loads the models.
        record_names: Keep the file name of an upload (not of a DICOM) or the case id of a WDBC request in the
            record and the answer (``--record-names``). Off by default: a clinic's file names and case ids may
            identify a patient, and the SHA-256 of the input is the reference.

    Raises:
        ValueError: If a number is out of range (the message names the setting, the range and the value), or
            ``auth`` is False on a host that is not a loopback address.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    model_dirs: tuple[Path, ...] | None = None
    torch_threads: int | None = None
    display_max_side: int = DEFAULT_DISPLAY_MAX_SIDE
    dtype: str = "auto"
    backend: str = "auto"
    gradcam: bool = True
    lesion_aware: bool = False
    n_reasons: int = 5
    warmup: bool = True
    max_list_limit: int = 500
    auth: bool = True
    workers: int = 1
    record_names: bool = False

    def __post_init__(self) -> None:
        checks = [
            ("port", self.port, 0, 65535),
            ("max_upload_bytes", self.max_upload_bytes, 1, None),
            ("max_pixels", self.max_pixels, 1, None),
            ("display_max_side", self.display_max_side, 16, None),
            ("n_reasons", self.n_reasons, 0, 30),
            ("max_list_limit", self.max_list_limit, 1, None),
            ("workers", self.workers, 1, 64),
        ]
        if self.torch_threads is not None:
            checks.append(("torch_threads", self.torch_threads, 1, None))
        for name, value, low, high in checks:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"ServeSettings.{name} must be an integer, got {value!r}.")
            if value < low or (high is not None and value > high):
                bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
                raise ValueError(f"ServeSettings.{name} must be {bound}, got {value}.")
        if self.dtype not in DTYPES:
            raise ValueError(f"ServeSettings.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}.")
        if self.backend not in BACKENDS:
            raise ValueError(f"ServeSettings.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}.")
        if not self.auth:
            from breastdx.serve.auth import is_loopback

            if not is_loopback(self.host):
                raise ValueError(f"--no-auth is accepted only on a loopback address (127.0.0.1, ::1, localhost), "
                                 f"where no other machine can connect; the host is {self.host!r}. Create a token "
                                 f"with 'breastdx token create NAME' instead.")
        if self.model_dirs is not None:
            object.__setattr__(self, "model_dirs", tuple(Path(p) for p in self.model_dirs))

    def to_json(self) -> str:
        """The settings as JSON (model folders as strings), read back by :meth:`from_json`."""
        values = asdict(self)
        if values["model_dirs"] is not None:
            values["model_dirs"] = [str(p) for p in values["model_dirs"]]
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        """Settings from :meth:`to_json`'s output.

        Raises:
            ValueError: If the text is not a JSON object of known settings, or a value is out of range.
        """
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{SETTINGS_ENV} is not JSON ({e}).") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(values, dict) or set(values) - known:
            raise ValueError(f"{SETTINGS_ENV} must be a JSON object of the settings {sorted(known)}; got "
                             f"{sorted(values) if isinstance(values, dict) else type(values).__name__}.")
        if values.get("model_dirs") is not None:
            values["model_dirs"] = tuple(values["model_dirs"])
        return cls(**values)

    @property
    def resolved_database_url(self) -> str:
        """``database_url``, or :func:`default_database_url` when it is None."""
        return self.database_url or default_database_url()
