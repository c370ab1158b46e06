"""Fixtures for dataset jobs: a tiny checkpoint, a folder of good and bad images, a job spec
(the helpers behind them are in job_tools.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sam3_core.jobs import JobSpec, run_job
from tests.core.helpers import save_checkpoint, tiny_model
from tests.core.jobs.job_tools import MAX_PIXELS, make_images, prompts_of


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
    summary = run_job(spec, out, exports=("coco", "labelstudio", "overlays"), progress=False)
    return out, summary


@pytest.fixture(scope="session")
def prompt_spec(spec, job_data) -> JobSpec:
    """The shared job with "cell" for every image and per-image prompts for four of them (no
    score threshold: the tiny random model scores low)."""
    _, images = job_data
    return dataclasses.replace(
        spec, concepts=("cell",), image_prompts=prompts_of(images), score_threshold=0.0
    )


@pytest.fixture(scope="session")
def prompt_out(tmp_path_factory, prompt_spec):
    """One uninterrupted local run of `prompt_spec`, with its COCO file."""
    out = tmp_path_factory.mktemp("prompts") / "out"
    return out, run_job(prompt_spec, out, exports=("coco",), progress=False)
