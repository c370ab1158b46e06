"""Fixtures for dataset jobs: a tiny checkpoint, a folder of good and bad images, a job spec."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from sam3_core.jobs import JobSpec, run_job
from tests.core.helpers import make_image, save_checkpoint, tiny_model

GOOD = 8
# Bad inputs that must become error records, each for its own reason.
BAD = ("huge.png", "not_an_image.jpg", "truncated.png", "five_channels.tif")
MAX_PIXELS = 150 * 150


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


@pytest.fixture(scope="session")
def job_data(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint file, image folder), made once per session."""
    root = tmp_path_factory.mktemp("jobs")
    ckpt = save_checkpoint(tiny_model(), root / "tiny.safetensors")
    return ckpt, make_images(root / "images")


@pytest.fixture(scope="session")
def spec(job_data) -> JobSpec:
    """The job the tests run: two concepts, a low threshold so instances are found."""
    ckpt, images = job_data
    return JobSpec(
        inputs=(str(images),),
        concepts=("cell", "dog"),
        score_threshold=0.3,
        checkpoint=str(ckpt),
        config="sam3_tiny",
        device="cpu",
        batch_size=2,
        max_pixels=MAX_PIXELS,
    )


@pytest.fixture(scope="session")
def local_out(tmp_path_factory, spec):
    """One uninterrupted local run with both exports: the reference output and its summary."""
    out = tmp_path_factory.mktemp("local") / "out"
    summary = run_job(spec, out, exports=("coco", "labelstudio"), progress=False)
    return out, summary
