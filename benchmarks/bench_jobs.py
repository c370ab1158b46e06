"""Dataset jobs: images/s of the local runner and of Ray with 1 and 2 workers (tiny model, CPU).

Writes `--images` small PNGs and a tiny random checkpoint to a temporary folder, then runs the
same job three times into fresh output folders; every worker (and the local runner) uses one
thread. Times are end to end (model loads and actor start-up included, Ray itself started
before). Last line: `jobs_local_ips=.. jobs_ray1_ips=.. jobs_ray2_ips=.. jobs_ray_overhead=..
jobs_scaling_2=..` with overhead = local / ray1 and scaling = ray2 / ray1. Each Ray run also
prints where the machine's CPU time went: the driver (Ray Data's executor, writing shards), Ray's
own processes and the worker actors, as cores busy on average.
Quick run: `python -m benchmarks.bench_jobs --images 300`.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    import ray

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "images"
        folder.mkdir()
        for i in range(args.images):
            image = make_image(64 + i % 17, 80 + i % 23, seed=i)
            Image.fromarray(image).save(folder / f"{i:05d}.png")
        spec = JobSpec(
            inputs=(str(folder),),
            concepts=("cell", "dog"),
            checkpoint=str(save_checkpoint(tiny_model(), root / "tiny.safetensors")),
            config="sam3_tiny",
            device="cpu",
            batch_size=args.batch_size,
            score_threshold=0.3,
        )
        local = run_job(spec, root / "local", progress=False)
        print(f"local: {local}")
        # "local": a new cluster of its own, never one a `ray start` left behind on this machine
        ray.init(address="local", num_cpus=2, logging_level="WARNING", log_to_driver=False)
        try:
            runs = {}
            for n in (1, 2):
                with CpuMeter() as meter:
                    t0 = time.perf_counter()
                    runs[n] = run_job(
                        spec, root / f"ray{n}", runner="ray", workers=n, progress=False
                    )
                    wall = time.perf_counter() - t0
                busy = {k: v / wall for k, v in meter.seconds().items()}
                print(f"ray, {n} worker(s): {runs[n]}")
                print("  cores busy: " + " ".join(f"{k}={v:.2f}" for k, v in busy.items()))
        finally:
            ray.shutdown()
    ips = [local.images_per_s, runs[1].images_per_s, runs[2].images_per_s]
    print(
        f"jobs_local_ips={ips[0]:.2f} jobs_ray1_ips={ips[1]:.2f} jobs_ray2_ips={ips[2]:.2f} "
        f"jobs_ray_overhead={ips[0] / ips[1]:.3f} jobs_scaling_2={ips[2] / ips[1]:.3f}"
    )


if __name__ == "__main__":
    main()
