"""Latency of the web service's ultrasound endpoint under a bounded load on loopback.

Starts the service in a child process (uvicorn on 127.0.0.1, a free port, a temporary SQLite record), sends
``--requests`` uploads of one BUSI image to ``POST /v1/predict/ultrasound`` (segmentation + classification
with Grad-CAM, the full answer with its images) from ``--concurrency`` client threads, and prints p50, p95,
mean and max latency (client side, request sent to answer parsed), the throughput, failed requests, the
server's own time per part, the CPU time per request of the server and of the load generator, and the
machine's load average (latency figures on a machine shared with other work are not those of 2 free cores;
the CPU time per request is, nearly).

Models: the shipped ``busi-seg`` and ``busi-cls`` when the zoo holds them, else ``--seg-model`` /
``--cls-model`` folders, else stand-ins of the shipped architectures with random weights (the same compute:
a MONAI residual U-Net at 256 x 256 for segmentation, the multi-task U-Net encoder at 256 x 256 for
classification, or ``--cls-arch resnet18``). The run says which.

In the same run, the service answers 20 requests one at a time, the naive notebook loops (segmentation, then
classification without Grad-CAM; one image at a time, float32, eager PyTorch, PIL in) process the same image
20 times in a fresh process, after as many untimed images as the service had warm-up requests, and the ratio of their time per image to the service's median latency of one
request at a time is printed (the service also computes Grad-CAM, encodes the answer's images and records it), with the machine line (CPU, AVX2 / AVX-512 /
AMX, torch's capability, threads, the dtype and backend asked for).

The issue's target: p95 < 400 ms on 2 CPU cores at concurrency 4, no failed request.

Usage::

    python benchmarks/serve_load.py [--requests 200] [--concurrency 4] [--image PATH] [--threads N]
        [--server-cpus 0,1] [--client-cpus 2,3] [--seg-model DIR] [--cls-model DIR] [--cls-arch unet_multitask]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpus(text: str | None) -> set[int] | None:
    return {int(c) for c in text.split(",")} if text else None


def make_standins(root: Path, cls_arch: str) -> dict[str, Path]:
    """Model folders with random weights and the shipped architectures' compute."""
    import torch

    from breastdx.data.transforms import Preprocessing
    from breastdx.inference.classifier import save_classifier
    from breastdx.inference.predictor import WEIGHTS_FILE, Postprocessing, save_weights
    from breastdx.models.networks import build_network
    from breastdx.models.saved import write_meta

    torch.manual_seed(0)
    net, args = build_network("unet", 1, 2, channels=[16, 32, 64, 128, 256], strides=[2, 2, 2, 2], num_res_units=2,
                              norm="instance")
    seg = root / "busi-seg"
    seg.mkdir(parents=True)
    save_weights(net, seg / WEIGHTS_FILE)
    write_meta(seg, {"task": "busi-seg", "architecture": "unet", "architecture_args": args, "in_channels": 1,
                     "weights_file": WEIGHTS_FILE, "class_names": ["background", "lesion"],
                     "preprocessing": Preprocessing(image_size=256).to_meta(), "threshold": 0.5,
                     "postprocessing": Postprocessing(min_area_fraction=0.005).to_meta(),
                     "note": "benchmark stand-in: random weights"})
    if cls_arch == "unet_multitask":
        net, args = build_network("unet_multitask", 1, 3, decoder=False)
    else:
        net, args = build_network(cls_arch, 1, 3)
    cls = root / "busi-cls"
    save_classifier(cls, net, {"task": "busi-cls", "architecture": cls_arch, "architecture_args": args,
                               "in_channels": 1, "class_names": ["normal", "benign", "malignant"],
                               "positive_class": "malignant", "threshold": 0.3, "temperature": 1.2,
                               "preprocessing": Preprocessing(image_size=256 if cls_arch == "unet_multitask"
                                                              else 224).to_meta(),
                               "gradcam": {"method": "gradcam"}, "note": "benchmark stand-in: random weights"})
    return {"busi-seg": seg, "busi-cls": cls}


def serve_child(args: argparse.Namespace) -> None:
    """The child process: serve the given model folders until killed."""
    import uvicorn

    from breastdx.serve import ServeSettings, create_app

    if args.server_cpus:
        os.sched_setaffinity(0, _cpus(args.server_cpus))
    # No API tokens: the service listens on loopback only, where --no-auth is allowed.
    settings = ServeSettings(database_url=args.database_url, model_dirs=tuple(Path(p) for p in args.model_dir),
                             torch_threads=args.threads, dtype=args.dtype, backend=args.backend, auth=False)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(url: str, task: str, data: bytes, filename: str, n: int, concurrency: int) -> dict:
    """Send ``n`` uploads from ``concurrency`` threads; latencies in ms, failures, answers' labels and timings."""
    import httpx

    latencies = np.zeros(n)
    failures: list[str] = []
    labels: set[str] = set()
    server: dict[str, list[float]] = {}
    lock = threading.Lock()
    with httpx.Client(base_url=url, timeout=120.0, limits=httpx.Limits(max_connections=concurrency)) as client:
        def one(i: int) -> None:
            t = time.perf_counter()
            try:
                r = client.post(f"/v1/predict/{task}", files={"file": (filename, data, "image/png")})
                body = r.json()
                ok = r.status_code == 200
            except (httpx.HTTPError, ValueError) as e:
                ok, body = False, {"error": {"message": f"{type(e).__name__}: {e}"}}
            latencies[i] = (time.perf_counter() - t) * 1000
            with lock:
                if not ok:
                    failures.append(str(body.get("error", body))[:200])
                    return
                labels.add(str((body.get("classification") or {}).get("label")))
                for k, v in {**body["timings_ms"], "server_total": body["elapsed_ms"]}.items():
                    server.setdefault(k, []).append(v)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(n)))
        wall = time.perf_counter() - t0
    return {"requests": n, "concurrency": concurrency, "failed": len(failures), "failures": failures[:3],
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p95_ms": round(float(np.percentile(latencies, 95)), 1),
            "mean_ms": round(float(latencies.mean()), 1), "max_ms": round(float(latencies.max()), 1),
            "throughput_rps": round(n / wall, 2), "labels": sorted(labels),
            "server_mean_ms": {k: round(float(np.mean(v)), 1) for k, v in server.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--image", type=Path, default=None, help="Default: $BREASTDX_DATA/busi/malignant/"
                                                                "malignant (1).png, else ../shared/data/...")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads of the server; default "
                                                                 "auto (usable cores / networks served).")
    parser.add_argument("--server-cpus", default=None, help="Pin the server to these CPUs, e.g. 0,1.")
    parser.add_argument("--client-cpus", default=None, help="Pin the load generator to these CPUs, e.g. 2,3.")
    parser.add_argument("--seg-model", type=Path, default=None)
    parser.add_argument("--cls-model", type=Path, default=None)
    parser.add_argument("--cls-arch", default="unet_multitask", help="Stand-in classifier: unet_multitask, resnet18.")
    parser.add_argument("--warmup", type=int, default=4, help="Requests sent before measuring.")
    parser.add_argument("--dtype", default="auto", help="auto, float32 or bfloat16 (the service's --dtype).")
    parser.add_argument("--backend", default="auto", help="auto, torch or onnxruntime (the service's --backend).")
    # child mode
    parser.add_argument("--serve-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default="sqlite://", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_child:
        serve_child(args)
        return

    from breastdx.zoo import shipped_models

    data_root = Path(os.environ.get("BREASTDX_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    image = args.image or data_root / "busi" / "malignant" / "malignant (1).png"
    data = image.read_bytes()
    tmp = Path(tempfile.mkdtemp(prefix="breastdx-serve-load-"))
    zoo = shipped_models()
    chosen: dict[str, tuple[Path, str]] = {}
    standins = None
    for task, given in (("busi-seg", args.seg_model), ("busi-cls", args.cls_model)):
        if given is not None:
            chosen[task] = (given, "given folder")
        elif task in zoo:
            chosen[task] = (zoo[task], "shipped (zoo)")
        else:
            standins = standins or make_standins(tmp / "standins", args.cls_arch)
            chosen[task] = (standins[task], "stand-in, random weights")
    port = _free_port()
    cmd = [sys.executable, __file__, "--serve-child", "--port", str(port),
           "--database-url", f"sqlite:///{tmp / 'predictions.sqlite'}"]
    for path, _ in chosen.values():
        cmd += ["--model-dir", str(path)]
    cmd += ["--dtype", args.dtype, "--backend", args.backend]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.server_cpus:
        cmd += ["--server-cpus", args.server_cpus]
    if args.client_cpus:
        os.sched_setaffinity(0, _cpus(args.client_cpus))
    child = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 300
        while True:
            try:
                health = httpx.get(url + "/healthz", timeout=2).json()
                break
            except httpx.HTTPError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.3)
        models = httpx.get(url + "/v1/models", timeout=10).json()
        run_load(url, "ultrasound", data, image.name, max(1, args.warmup), 1)
        serial = run_load(url, "ultrasound", data, image.name, 20, 1)  # one request at a time: vs the naive loops
        server_cpu, client_cpu = _cpu_seconds(child.pid), time.process_time()
        result = run_load(url, "ultrasound", data, image.name, args.requests, args.concurrency)
        server_cpu, client_cpu = _cpu_seconds(child.pid) - server_cpu, time.process_time() - client_cpu
        load = os.getloadavg()
    finally:
        child.terminate()
        child.wait(timeout=30)
    from _machine import machine_line, run_naive_child

    naive_ms = 0.0
    for task, kind in (("busi-seg", "segmentation"), ("busi-cls", "classification")):
        # warmed up as the service was (its first calls' one-off costs are not in its p50 either)
        loop = run_naive_child(kind, chosen[task][0], [image] * 20, tmp / f"naive-{task}", warmup=max(1, args.warmup))
        naive_ms += 1000 * loop["seconds"] / loop["images"]
    print(json.dumps(machine_line(dtype=args.dtype, backend=args.backend)))
    h, w = __import__("PIL.Image", fromlist=["Image"]).open(image).size[::-1]
    print(json.dumps({
        "endpoint": "POST /v1/predict/ultrasound (busi-seg + busi-cls with Grad-CAM, images in the answer)",
        "image": f"{image.name} ({w}x{h}, {len(data):,} bytes)",
        "models": {t: {"name": m["name"], "version": m["version"], "architecture": m["architecture"],
                       "network_size": m["input"].get("network_size"), "source": chosen[t][1]}
                   for t in ("busi-seg", "busi-cls") for m in models["models"] if m["task"] == t},
        "tasks_served": health["tasks"],
        "server_cpus": args.server_cpus or f"all ({os.cpu_count()})", "client_cpus": args.client_cpus or "all",
        "torch_threads": args.threads or "auto (usable cores / networks served)",
        **result,
        "cpu_ms_per_request": {"server": round(1000 * server_cpu / args.requests, 1),
                               "client": round(1000 * client_cpu / args.requests, 1)},
        "machine_load_average_1_5_15_min": [round(x, 2) for x in load],
        "p50_ms_one_request_at_a_time": serial.get("p50_ms"),
        "naive_loops_ms_per_image": round(naive_ms, 1),
        "ratio_naive_ms_to_one_request_p50": round(naive_ms / serial["p50_ms"], 2) if serial.get("p50_ms") else None,
        "target": "p95 < 400 ms on 2 cores, no failed request",
    }, indent=2))


if __name__ == "__main__":
    main()
