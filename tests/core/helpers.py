"""Tiny SAM 3 models for the core tests: random perturbed weights, saved as checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch

from sam3_core import save_checkpoint  # noqa: F401 - the public writer, config recorded
from sam3_core.build import build_model
from sam3_core.config import sam3_tiny
from tests.reference import perturb_


def tiny_model(seed: int = 0):
    """Our full tiny model with perturbed weights (so outputs depend on the inputs)."""
    torch.manual_seed(seed)
    model = build_model(sam3_tiny())
    perturb_(model, seed)
    return model


def make_image(h: int = 97, w: int = 150, seed: int = 0) -> np.ndarray:
    """A non-square uint8 RGB image with some structure (blobs on a gradient)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 90.0)], -1)
    for _ in range(5):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 20)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(0, 255, 3)
    return img.clip(0, 255).astype(np.uint8)


def save_bare_checkpoint(model, path):
    """Save a model's weights as .safetensors WITHOUT a config record (as a file made elsewhere:
    the loader infers its config from the tensor shapes); returns path."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def write_mp4(path, frames, fps=10) -> None:
    """Write uint8 [T, H, W, 3] `frames` as an MPEG-4 video (PyAV), a keyframe every 4 frames."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 4
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


def loaded_after(code: str, modules: list[str]) -> dict[str, bool]:
    """Run `code` in a fresh interpreter; which of `modules` it left in sys.modules."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m in sys.modules for m in {modules!r}]))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return dict(zip(modules, json.loads(out.splitlines()[-1]), strict=True))
