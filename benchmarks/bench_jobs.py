"""Dataset jobs: images/s of the local runner and of Ray with 1 and 2 workers (tiny model, CPU).

Writes `--images` small PNGs and a tiny random checkpoint to a temporary folder, then runs the
same job three times into fresh output folders; every worker (and the local runner) uses one
thread. Times are end to end (model loads and actor start-up included, Ray itself started
before). Last line: `jobs_local_ips=.. jobs_ray1_ips=.. jobs_ray2_ips=.. jobs_ray_overhead=..
jobs_scaling_2=..` with overhead = local / ray1 and scaling = ray2 / ray1. Each Ray run also
prints where the machine's CPU time went: the driver (Ray Data's executor, writing shards), Ray's
own processes and the worker actors, as cores busy on average.
Quick run: `python -m benchmarks.bench_jobs --images 300`.
`--runners local --config sam3 --device cuda --precision bf16` times the local runner alone at
full size on a GPU (`benchmarks/gpu.sh` does; its last line is then `jobs_local_ips=..`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import psutil
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sam3_core.build import build_model
from sam3_core.jobs import JobSpec, run_job
from tests.core.helpers import make_image, save_checkpoint, tiny_model


class CpuMeter:
    """CPU seconds used while it runs by this process ("driver"), the Ray Data actors
    ("workers") and the other processes under it (Ray's own: "ray"), sampled every 0.2 s so
    that actors ending with the job are counted up to their last sample."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self) -> None:
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                used = sum(proc.cpu_times()[:2])
                cmd = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            kind = "driver" if proc.pid == me.pid else "workers" if "MapWorker" in cmd else "ray"
            self.first.setdefault(proc.pid, used if not self.thread.is_alive() else 0.0)
            self.last[proc.pid] = (kind, used)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.sample()

    def __enter__(self) -> Self:
        self.sample()  # the baseline of the processes already running
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.sample()

    def seconds(self) -> dict[str, float]:
        """CPU seconds per kind of process over the metered time."""
        used = {"driver": 0.0, "workers": 0.0, "ray": 0.0}
        for pid, (kind, total) in self.last.items():
            used[kind] += total - self.first[pid]
        return used


def job_spec(root: Path, args: argparse.Namespace) -> JobSpec:
    """`--images` PNGs around `--height` x `--width` (sizes vary) and a random checkpoint of
    `--config` under `root`, and the job over them (two concepts)."""
    folder = root / "images"
    folder.mkdir()
    for i in range(args.images):
        image = make_image(args.height + i % 17, args.width + i % 23, seed=i)
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    if args.config == "sam3_tiny":
        model = tiny_model()
    else:
        torch.manual_seed(0)
        model = build_model(args.config, device=args.device)  # saved from there
    return JobSpec(
        inputs=(str(folder),),
        concepts=("cell", "dog"),
        checkpoint=str(save_checkpoint(model, root / "model.safetensors")),
        config=args.config,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        score_threshold=0.3,
    )


def run_on_ray(spec: JobSpec, root: Path, workers: list[int]) -> dict:
    """The job on a new local Ray cluster (2 CPUs) with each of `workers` actor counts, each
    run's summary printed with where the CPU went."""
    import ray

    # "local": a new cluster of its own, never one a `ray start` left behind on this machine
    ray.init(address="local", num_cpus=2, logging_level="WARNING", log_to_driver=False)
    runs = {}
    try:
        for n in workers:
            with CpuMeter() as meter:
                t0 = time.perf_counter()
                runs[n] = run_job(spec, root / f"ray{n}", runner="ray", workers=n, progress=False)
                wall = time.perf_counter() - t0
            busy = {k: v / wall for k, v in meter.seconds().items()}
            print(f"ray, {n} worker(s): {runs[n]}")
            print("  cores busy: " + " ".join(f"{k}={v:.2f}" for k, v in busy.items()))
    finally:
        ray.shutdown()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--runners", default="local,ray1,ray2", help="which of local, ray1, ray2 to time"
    )
    parser.add_argument("--config", default="sam3_tiny", help="sam3_tiny, or sam3 (full size)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--height", type=int, default=64, help="smallest image height")
    parser.add_argument("--width", type=int, default=80, help="smallest image width")
    args = parser.parse_args()
    runners = args.runners.split(",")
    unknown = set(runners) - {"local", "ray1", "ray2"}
    if unknown:
        parser.error(f"--runners: unknown {sorted(unknown)}; use local, ray1, ray2")

    if args.device == "cpu":
        torch.set_num_threads(1)  # as each Ray CPU worker
    ips = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = job_spec(root, args)
        print(f"config={args.config} device={args.device} precision={args.precision}")
        if "local" in runners:
            local = run_job(spec, root / "local", progress=False)
            print(f"local: {local}")
            ips["local"] = local.images_per_s
        workers = [int(r[3:]) for r in runners if r.startswith("ray")]
        for n, summary in (run_on_ray(spec, root, workers) if workers else {}).items():
            ips[f"ray{n}"] = summary.images_per_s
    line = [f"jobs_{k}_ips={v:.2f}" for k, v in ips.items()]
    if {"local", "ray1"} <= ips.keys():
        line.append(f"jobs_ray_overhead={ips['local'] / ips['ray1']:.3f}")
    if {"ray1", "ray2"} <= ips.keys():
        line.append(f"jobs_scaling_2={ips['ray2'] / ips['ray1']:.3f}")
    print(" ".join(line))


if __name__ == "__main__":
    main()
