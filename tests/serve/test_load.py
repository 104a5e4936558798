"""A bounded load test on loopback: ``breastdx serve --workers 2`` over one SQLite file, 200 ultrasound uploads
at concurrency 4 with an API token; no failure, every prediction recorded once, p50/p95 reported.

The models are the tiny test fixtures, so the figures measure the service (upload, decoding, answer images,
recording) more than the networks; ``benchmarks/serve_load.py`` measures the shipped models.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from breastdx.serve.db import PredictionStore

N_REQUESTS = 200
CONCURRENCY = 4


@pytest.fixture()
def image_bytes(request, synthetic_png) -> tuple[str, bytes]:
    """A real BUSI image when the data root has one, else the synthetic PNG."""
    try:
        path = request.getfixturevalue("busi_image")
        return path.name, path.read_bytes()
    except pytest.skip.Exception:
        return "synthetic.png", synthetic_png


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_bounded_load_on_loopback_with_two_workers(model_dirs, tmp_path, image_bytes, cli_server):
    import httpx

    name, data = image_bytes
    db_url = f"sqlite:///{tmp_path / 'p.sqlite'}"
    store = PredictionStore(db_url)
    token = store.create_token("load-test")
    store.close()
    models = [a for t in ("busi-seg", "busi-cls") for a in ("--model", str(model_dirs[t]))]
    url = cli_server(["--workers", "2", "--database-url", db_url, *models])
    workers = [p for p in _children(cli_server.procs[0].pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(workers) == 2, workers
    latencies = np.zeros(N_REQUESTS)
    failures: list[str] = []
    answers: set[tuple] = set()
    lock = threading.Lock()
    with httpx.Client(base_url=url, timeout=60.0, headers={"Authorization": f"Bearer {token}"}) as client:
        def one(i: int) -> None:
            t = time.perf_counter()
            r = client.post("/v1/predict/ultrasound", files={"file": (name, data, "image/png")})
            latencies[i] = (time.perf_counter() - t) * 1000
            with lock:
                if r.status_code != 200:
                    failures.append(f"{r.status_code}: {r.text[:200]}")
                else:
                    a = r.json()
                    answers.add((a["classification"]["label"], tuple(a["classification"]["probabilities"].values()),
                                 a["segmentation"]["lesion_area_px"]))

        client.post("/v1/predict/ultrasound", files={"file": (name, data, "image/png")})  # warm the path up
        t0 = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(one, range(N_REQUESTS)))
        wall = time.perf_counter() - t0
        recorded = client.get("/v1/predictions", params={"limit": 1}).json()["total"]
    p50, p95 = np.percentile(latencies, [50, 95])
    print(f"\nload test: {N_REQUESTS} requests of {name} to POST /v1/predict/ultrasound at concurrency {CONCURRENCY} "
          f"(tiny test models): p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {latencies.max():.0f} ms, "
          f"{N_REQUESTS / wall:.1f} requests/s, {len(failures)} failed")
    assert failures == []
    assert len(answers) == 1, "concurrent requests on the same image must give the same answer"
    assert recorded == N_REQUESTS + 1
