"""Fixtures of the service tests: tiny model folders of each kind, a loaded registry, real BUSI images."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _wdbc_model(root: Path) -> Path:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from breastdx.data.wdbc import CLASS_NAMES, FEATURE_NAMES, FEATURE_UNITS, load_wdbc
    from breastdx.inference.tabular import BACKGROUND_FILE, SKOPS_FILE
    from breastdx.models.saved import write_meta, write_model_card

    table = load_wdbc()
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]).fit(table.X, table.y)
    d = root / "wdbc"
    d.mkdir()
    sio.dump(model, d / SKOPS_FILE)
    np.save(d / BACKGROUND_FILE, table.X[:20], allow_pickle=False)
    meta = write_meta(d, {"task": "wdbc", "architecture": "logreg", "weights_file": SKOPS_FILE, "title": "test logreg",
                          "class_names": list(CLASS_NAMES), "positive_class": "malignant",
                          "feature_names": list(FEATURE_NAMES), "feature_units": FEATURE_UNITS, "threshold": 0.3,
                          "metrics": {"auroc": {"value": 0.99, "ci95": [0.98, 1.0]},
                                      "ece": {"value": float("nan"), "ci95": None}},
                          "metrics_split": "training data (test fixture)"})
    write_model_card(d, meta, title="WDBC test model", summary="A tiny test model.", data="- WDBC.",
                     evaluation="None.", limitations=["A test fixture."])
    return d


def _seg_model(root: Path) -> Path:
    import torch

    from breastdx.data.transforms import Preprocessing
    from breastdx.inference.predictor import WEIGHTS_FILE, Postprocessing, save_weights
    from breastdx.models.networks import build_network
    from breastdx.models.saved import write_meta

    torch.manual_seed(0)
    net, args = build_network("unet", 1, 2, channels=[4, 8, 16], strides=[2, 2], num_res_units=1)
    with torch.no_grad():  # bias the lesion logit up so that the tiny random network finds "lesions"
        last = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))][-1]
        if last.bias is not None:
            last.bias[1] += 0.5
    d = root / "busi-seg"
    d.mkdir()
    save_weights(net, d / WEIGHTS_FILE)
    write_meta(d, {"task": "busi-seg", "architecture": "unet", "architecture_args": args, "in_channels": 1,
                   "weights_file": WEIGHTS_FILE, "class_names": ["background", "lesion"],
                   "preprocessing": Preprocessing(image_size=32).to_meta(), "threshold": 0.5,
                   "postprocessing": Postprocessing().to_meta(),
                   "metrics": {"dice": {"value": 0.5, "ci95": [0.4, 0.6]}}})
    (d / "MODEL_CARD.md").write_text("# Model card: busi-seg test model\n\n- Research use only.\n")
    return d


def training_scan() -> np.ndarray:
    """The one 'training image' the tiny busi-cls model keeps the hashes of: smooth blobs on a gradient, uint8
    ``(80, 100)``."""
    yy, xx = np.mgrid[:80, :100]
    a = 50.0 + 0.8 * yy + 90 * np.exp(-((yy - 30) ** 2 + (xx - 60) ** 2) / 300.0) - 40 * np.exp(
        -((yy - 55) ** 2 + (xx - 25) ** 2) / 150.0)
    return np.clip(a, 0, 255).astype(np.uint8)


def _cls_model(root: Path) -> Path:
    import torch

    from breastdx.data.transforms import Preprocessing
    from breastdx.inference.classifier import save_classifier
    from breastdx.models.networks import build_network

    torch.manual_seed(1)
    net, args = build_network("unet_multitask", 1, 3, channels=[4, 8, 16], strides=[2, 2], num_res_units=1,
                              decoder=False)
    d = root / "busi-cls"
    save_classifier(d, net, {"task": "busi-cls", "architecture": "unet_multitask", "architecture_args": args,
                             "in_channels": 1, "class_names": ["normal", "benign", "malignant"],
                             "positive_class": "malignant", "preprocessing": Preprocessing(image_size=32).to_meta(),
                             "temperature": 1.5, "threshold": 0.3, "gradcam": {"method": "gradcam"},
                             "conformal": {"method": "aps", "level": 0.9, "qhat": 0.95, "n_calibration": 50,
                                           "split": "fixture", "quantiles": {"aps": {"0.9": 0.95, "0.8": 0.4},
                                                                             "lac": {"0.9": 0.7}}},
                             "metrics": {"auroc": {"value": 0.8, "ci95": [0.7, 0.9]}}})
    (d / "MODEL_CARD.md").write_text("# Model card: busi-cls test model\n\n- Research use only.\n")
    from breastdx.data.checksum import image_hash
    from breastdx.data.duplicates import model_view_hash
    from breastdx.models.saved import write_training_hashes

    write_training_hashes(d, [image_hash(training_scan())], [model_view_hash(training_scan())])
    return d


@pytest.fixture(scope="session")
def training_image() -> np.ndarray:
    """The tiny busi-cls model's one training image (:func:`training_scan`)."""
    return training_scan()


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny model folders: ``wdbc`` (logistic regression), ``busi-seg`` (U-Net), ``busi-cls`` (multi-task U-Net)."""
    root = tmp_path_factory.mktemp("models")
    return {"wdbc": _wdbc_model(root), "busi-seg": _seg_model(root), "busi-cls": _cls_model(root)}


@pytest.fixture(scope="session")
def registry(model_dirs):
    """The three tiny models, loaded once for the whole session."""
    from breastdx.serve.models import ModelRegistry

    reg = ModelRegistry.load(list(model_dirs.values()))
    assert not reg.unavailable, reg.unavailable
    return reg


def _busi_root() -> Path | None:
    env = os.environ.get("BREASTDX_DATA")
    if not env:
        return None
    p = Path(env) / "busi"
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def busi_image() -> Path:
    """A real BUSI image (``malignant (1).png``); skipped without ``$BREASTDX_DATA/busi``."""
    root = _busi_root()
    if root is None:
        pytest.skip("real data not available: set BREASTDX_DATA to a data root holding busi/")
    for name in ("malignant/malignant (1).png", "benign/benign (1).png"):
        if (root / name).is_file():
            return root / name
    pytest.skip(f"no BUSI image found in {root}")


@pytest.fixture(scope="session")
def ultrasound_png(busi_image) -> bytes:
    """The bytes of the real BUSI image."""
    return busi_image.read_bytes()


def png_bytes(array: np.ndarray) -> bytes:
    """A uint8 array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def synthetic_png() -> bytes:
    """A 45 x 61 gray PNG with a dark blob (odd sizes on purpose)."""
    rng = np.random.default_rng(0)
    a = rng.integers(80, 200, size=(45, 61), dtype=np.uint8)
    a[15:30, 20:40] = 20
    return png_bytes(a)


@pytest.fixture()
def cli_server(tmp_path):
    """A factory: ``start(args) -> base URL`` runs ``breastdx serve ARGS --port P`` in a subprocess (its own
    process group) and waits for ``/healthz``; every server started is stopped with SIGTERM at the end, which
    must end it within 15 s. The started processes are in ``start.procs``."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    procs: list[subprocess.Popen] = []

    def start(args: list[str], timeout_s: float = 120.0) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(tmp_path / f"serve-{port}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "breastdx.cli", "serve", *args, "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"breastdx serve exited ({proc.returncode}): "
                                   f"{(tmp_path / f'serve-{port}.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"breastdx serve did not answer within {timeout_s:.0f} s")

    start.procs = procs
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError("breastdx serve did not stop within 15 s of SIGTERM")


@pytest.fixture()
def asgi_call():
    """A factory: ``call(app, method, path, headers=(), chunks=()) -> (status, headers, body, bytes_read)`` sends
    one request straight to a started app's ASGI interface, the body in ``chunks``. Unlike the test client, which
    reads a request's whole body before the app asks for it and drops a HEAD answer's body, it shows what the app
    sends, body included, and how many request body bytes the app read."""
    import asyncio

    def call(app, method: str, path: str, headers: dict[str, str] | None = None,
             chunks: list[bytes] | tuple[bytes, ...] = ()) -> tuple[int, dict[str, str], bytes, int]:
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                    for i, c in enumerate(chunks)] or [{"type": "http.request", "body": b"", "more_body": False}]
        sent: list[dict] = []
        pulled = 0

        async def run() -> None:
            finished = asyncio.Event()

            async def receive() -> dict:
                nonlocal pulled
                if pulled < len(messages):
                    pulled += 1
                    return messages[pulled - 1]
                await finished.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict) -> None:
                sent.append(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    finished.set()

            scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
                     "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                     "query_string": b"", "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
                     "headers": [(b"host", b"testserver")] + [(k.lower().encode(), v.encode())
                                                              for k, v in (headers or {}).items()]}
            await app(scope, receive, send)

        asyncio.run(run())
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        read = sum(len(m["body"]) for m in messages[:pulled])
        return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body, read

    return call


@pytest.fixture(scope="module")
def client(registry, tmp_path_factory):
    """The service on the tiny models: no access control, uploads up to 1,000,000 bytes and 1,000,000 pixels,
    composites at most 256 px a side, its own SQLite record per test module (a module may define its own)."""
    from fastapi.testclient import TestClient

    from breastdx.serve import ServeSettings, create_app

    db = tmp_path_factory.mktemp("db") / "predictions.sqlite"
    settings = ServeSettings(auth=False, database_url=f"sqlite:///{db}", max_upload_bytes=1_000_000,
                             max_pixels=1_000_000, display_max_side=256)
    with TestClient(create_app(settings, registry=registry)) as c:
        yield c


@pytest.fixture(scope="session")
def api_error():
    """``check(response, status, code=None) -> dict``: asserts an error answer (its status, the body's two keys, the
    research-use notice, a message and, when given, its code) and returns its ``error`` object."""
    from breastdx import RESEARCH_USE_ONLY

    def check(r, status: int, code: str | None = None) -> dict:
        assert r.status_code == status, r.text
        body = r.json()
        assert set(body) == {"error", "research_use_only"}
        assert body["research_use_only"] == RESEARCH_USE_ONLY
        assert body["error"]["message"]
        if code is not None:
            assert body["error"]["code"] == code, body
        return body["error"]

    return check


@pytest.fixture(scope="session")
def upload():
    """``upload(client, task, data, name="case.png", content_type="image/png")``: POST one file to
    ``/v1/predict/<task>``."""
    def post(client, task: str, data: bytes, name: str = "case.png", content_type: str = "image/png"):
        return client.post(f"/v1/predict/{task}", files={"file": (name, data, content_type)})

    return post


@pytest.fixture(scope="session")
def wdbc_features():
    """``wdbc_features() -> dict``: the first WDBC case's 30 features by name (a malignant case), a new dict at
    each call."""
    from breastdx.data.wdbc import FEATURE_NAMES, load_wdbc

    row = load_wdbc().X[0]
    return lambda: {name: float(v) for name, v in zip(FEATURE_NAMES, row)}


@pytest.fixture(scope="session")
def dicom_file(grey_dicom):
    """``dicom_file(arr, spacing=(0.1, 0.2)) -> bytes``: a secondary-capture DICOM of a 2-D array (12 bits stored in
    16, MONOCHROME2) with the given PixelSpacing (mm: rows, columns), written in memory (tests/conftest.py)."""
    return lambda arr, spacing=(0.1, 0.2): grey_dicom(None, arr, spacing=spacing)
