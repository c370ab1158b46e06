"""Helpers for the dataset-job tests: a folder of good and bad images, the ids in a job's
shards, and a job driver killed after its first shard (the fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import tifffile
import torch
from PIL import Image

from sam3_core.jobs import JobSpec
from tests.core.helpers import make_image

GOOD = 8
# Bad inputs that must become error records, each for its own reason.
BAD = ("huge.png", "not_an_image.jpg", "truncated.png", "five_channels.tif")
MAX_PIXELS = 150 * 150
ROOT = Path(__file__).resolve().parents[3]
# A driver in its own process: run_job(spec from a pickle, out_dir, **run_job keywords).
DRIVER = (
    "import json, pickle, sys; from sam3_core.jobs import run_job; "
    "run_job(pickle.load(open(sys.argv[1], 'rb')), sys.argv[2], **json.loads(sys.argv[3]))"
)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a local job with the thread count of a Ray CPU worker (one each), so that their
    float sums run in the same order and the records can be compared exactly."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_images(folder: Path) -> Path:
    """GOOD small images plus one of each kind of bad input."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(GOOD):
        Image.fromarray(make_image(40 + 3 * i, 56 + 2 * i, seed=i)).save(folder / f"im{i:02d}.png")
    Image.fromarray(make_image(160, 200, seed=99)).save(folder / "huge.png")  # > MAX_PIXELS
    (folder / "not_an_image.jpg").write_bytes(b"this is not a JPEG")
    buf = io.BytesIO()
    Image.fromarray(make_image(80, 80, seed=7)).save(buf, format="PNG")
    (folder / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    tifffile.imwrite(folder / "five_channels.tif", np.zeros((5, 30, 30), np.uint8))
    return folder


def prompts_of(images) -> dict:
    """Per-image prompts over the job_data folder: exemplars alone under a name, text with
    positive and negative exemplars beside a plain text, an empty set, a box off the image."""
    return {
        str(images / "im00.png"): [{"name": "blob", "exemplars": [[4, 4, 20, 20, 1]]}],
        str(images / "im01.png"): [
            "cell",
            {"text": "dog", "exemplars": [[2, 2, 30, 30, 1], [10, 10, 20, 20, 0]]},
        ],
        str(images / "im02.png"): [],
        str(images / "im03.png"): [{"name": "far", "exemplars": [[500, 500, 600, 600]]}],
    }


def shard_ids(out: Path) -> list[str]:
    """Every id in every shard, duplicates kept."""
    shards = (out / "shards").glob("*.parquet")
    return [i for s in shards for i in pq.read_table(s, columns=["id"])["id"].to_pylist()]


def kill_driver_after_first_shard(spec: JobSpec, out: Path, timeout: float = 180, **kwargs) -> int:
    """Run the job in a child process, SIGKILL it as soon as its first shard exists; returns
    the number of images in shards at the kill. `kwargs` go to run_job (progress off)."""
    spec_file = out.with_name(out.name + "-spec.pkl")
    spec_file.write_bytes(pickle.dumps(spec))
    args = json.dumps({"progress": False, **kwargs})
    cmd = [sys.executable, "-c", DRIVER, str(spec_file), str(out), args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = out.with_name(out.name + "-driver.log")
    with open(log, "w") as fh:
        driver = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while not any((out / "shards").glob("*.parquet")):
            if driver.poll() is not None:
                raise RuntimeError(f"the driver ended before a shard:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no shard in {out} after {timeout} s")
            time.sleep(0.02)
        assert driver.poll() is None, "the driver finished before it could be killed"
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()
    assert driver.returncode == -signal.SIGKILL
    return len(shard_ids(out))
