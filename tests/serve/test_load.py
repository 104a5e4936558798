"""A bounded load test on loopback: 200 ultrasound uploads at concurrency 4; no failure, p50/p95 reported.

The models are the tiny test fixtures, so the figures measure the service (upload, decoding, answer images,
recording) more than the networks; ``benchmarks/serve_load.py`` measures the shipped models.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from breastdx.serve import ServeSettings, create_app, running_server

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


def test_bounded_load_on_loopback(registry, tmp_path, image_bytes):
    import httpx

    name, data = image_bytes
    settings = ServeSettings(auth=False, database_url=f"sqlite:///{tmp_path / 'p.sqlite'}")
    latencies = np.zeros(N_REQUESTS)
    failures: list[str] = []
    answers: set[tuple] = set()
    lock = threading.Lock()
    with running_server(create_app(settings, registry=registry)) as url:
        with httpx.Client(base_url=url, timeout=60.0) as client:
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
