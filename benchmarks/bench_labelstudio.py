"""Load test of the Label Studio backend: N concurrent clients for D seconds on the tiny model.

The backend runs as its own process (`python -m sam3_labelstudio.cli serve`) on loopback with a
tiny random checkpoint and local-storage images; clients mix batch pre-annotation (4 labels on a
fresh task) and interactive clicks (cached embeddings). Prints, last,
`ls_requests=N ls_errors=E ls_p95_ms=P ls_rss_growth_mb=G` (server RSS, after warm-up -> end).
`python benchmarks/bench_labelstudio.py --clients 32 --duration 60`
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = """<View><Image name="image" value="$image"/>
<BrushLabels name="brush" toName="image"><Label value="RBC" concept="red blood cell"/>
<Label value="WBC"/></BrushLabels>
<PolygonLabels name="poly" toName="image"><Label value="Nucleus"/></PolygonLabels>
<RectangleLabels name="rect" toName="image"><Label value="Cell"/></RectangleLabels>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="RBC" smart="true"/></KeyPointLabels>
</View>"""


def prepare(folder: Path, images: int) -> Path:
    """A tiny checkpoint and `images` test images in `folder`; returns the checkpoint."""
    from PIL import Image
    from safetensors.torch import save_file

    from tests.core.helpers import make_image, tiny_model

    ckpt = folder / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model().state_dict().items()}, str(ckpt))
    for i in range(images):
        Image.fromarray(make_image(240, 320, seed=i)).save(folder / f"img{i}.png")
    return ckpt


def request_body(rng: np.random.Generator, images: int, task_id: int) -> dict:
    """Either a batch pre-annotation of a new task or a click on one of a few cached tasks."""
    i = int(rng.integers(images))
    if rng.random() < 0.3:
        task = {"id": task_id, "data": {"image": f"/data/local-files/?d=img{i}.png"}}
        return {"tasks": [task], "label_config": CONFIG, "params": {}}
    click = {"type": "keypointlabels", "is_positive": bool(rng.random() < 0.8),
             "value": {"x": float(rng.uniform(5, 95)), "y": float(rng.uniform(5, 95)),
                       "keypointlabels": ["RBC"]}}  # fmt: skip
    task = {"id": i, "data": {"image": f"/data/local-files/?d=img{i}.png"}}
    return {"tasks": [task], "label_config": CONFIG, "params": {"context": {"result": [click]}}}


def client(url: str, stop: float, seed: int, images: int, out: list, errors: list) -> None:
    """One client: post until `stop`, recording latencies (ms) and failures."""
    rng = np.random.default_rng(seed)
    session = requests.Session()
    n = 0
    while time.time() < stop:
        body = request_body(rng, images, 100_000 * (seed + 1) + n)
        n += 1
        t0 = time.perf_counter()
        try:
            r = session.post(url + "/predict", json=body, timeout=120)
            ok = r.status_code == 200 and "results" in r.json()
        except requests.RequestException:
            ok = False
        (out if ok else errors).append((time.perf_counter() - t0) * 1000)


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument(
        "--memory-mb", type=float, default=64.0, help="the backend's memory for encoded images"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        ckpt = prepare(Path(tmp), args.images)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "plugins/labelstudio"),
                                                           str(ROOT)]))  # fmt: skip
        cmd = [sys.executable, "-m", "sam3_labelstudio.cli", "serve", "--port", str(port),
               "--checkpoint", str(ckpt), "--config", "sam3_tiny", "--device", "cpu",
               "--local-files-root", tmp, "--score-threshold", "0.3", "--log-level", "warning",
               "--memory-mb", str(args.memory_mb)]  # fmt: skip
        server = subprocess.Popen(cmd, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    if requests.get(url + "/health", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    time.sleep(0.5)
            rng = np.random.default_rng(0)
            for i in range(args.images):  # warm-up: every image encoded once, allocator settled
                requests.post(url + "/predict", json=request_body(rng, args.images, i), timeout=120)
            rss0 = rss_mb(server.pid)
            health: list[float] = []
            rss: list[float] = []
            lat: list[float] = []
            errors: list[float] = []
            stop = time.time() + args.duration
            threads = [
                threading.Thread(target=client, args=(url, stop, k, args.images, lat, errors))
                for k in range(args.clients)
            ]
            for t in threads:
                t.start()
            while time.time() < stop:  # /health must stay fast under load
                t0 = time.perf_counter()
                requests.get(url + "/health", timeout=5)
                health.append((time.perf_counter() - t0) * 1000)
                rss.append(rss_mb(server.pid))
                time.sleep(1.0)
            for t in threads:
                t.join()
            growth = rss_mb(server.pid) - rss0
        finally:
            server.terminate()
            server.wait(30)
    half = len(rss) // 2
    print(
        f"server rss_mb: start={rss0:.0f} mid={rss[half] if rss else 0:.0f} end={rss0 + growth:.0f}"
    )
    p95 = float(np.percentile(lat, 95)) if lat else float("nan")
    print(f"clients={args.clients} duration_s={args.duration:g} rps={len(lat) / args.duration:.1f} "
          f"p50_ms={np.percentile(lat, 50):.0f} health_max_ms={max(health):.0f}")  # fmt: skip
    print(f"ls_requests={len(lat) + len(errors)} ls_errors={len(errors)} ls_p95_ms={p95:.0f} "
          f"ls_rss_growth_mb={growth:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
