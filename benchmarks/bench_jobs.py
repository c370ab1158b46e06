"""Dataset jobs: images/s of the local runner and of Ray with 1 and 2 workers (tiny model, CPU).

Writes `--images` small PNGs and a tiny random checkpoint to a temporary folder, then runs the
same job three times into fresh output folders; every worker (and the local runner) uses one
thread. Times are end to end (model loads and actor start-up included, Ray itself started
before). Last line: `jobs_local_ips=.. jobs_ray1_ips=.. jobs_ray2_ips=.. jobs_ray_overhead=..
jobs_scaling_2=..` with overhead = local / ray1 and scaling = ray2 / ray1.
Quick run: `python -m benchmarks.bench_jobs --images 300`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sam3_core.jobs import JobSpec, run_job
from tests.core.helpers import make_image, save_checkpoint, tiny_model


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
                runs[n] = run_job(spec, root / f"ray{n}", runner="ray", workers=n, progress=False)
                print(f"ray, {n} worker(s): {runs[n]}")
        finally:
            ray.shutdown()
    ips = [local.images_per_s, runs[1].images_per_s, runs[2].images_per_s]
    print(
        f"jobs_local_ips={ips[0]:.2f} jobs_ray1_ips={ips[1]:.2f} jobs_ray2_ips={ips[2]:.2f} "
        f"jobs_ray_overhead={ips[0] / ips[1]:.3f} jobs_scaling_2={ips[2] / ips[1]:.3f}"
    )


if __name__ == "__main__":
    main()
