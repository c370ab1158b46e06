"""The device the model tests run on: `SAM3_TEST_DEVICE` (default cpu; `cuda` on a GPU machine),
and the `gpu_only` mark for tests of code paths that exist only on a CUDA GPU."""

from __future__ import annotations

import os

import pytest
import torch

DEVICE_ENV = "SAM3_TEST_DEVICE"


def chosen_device() -> torch.device:
    """`SAM3_TEST_DEVICE` as a torch device, checked; on CUDA, TF32 is switched off so that
    fp32 parity compares fp32 arithmetic (cuDNN convolutions default to TF32, 10-bit mantissa)."""
    name = os.environ.get(DEVICE_ENV, "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RuntimeError(
            f"{DEVICE_ENV}={name!r} is not a torch device: use cpu or cuda"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"{DEVICE_ENV}={name} but torch sees no CUDA GPU here: unset it to test on the CPU"
            )
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


DEVICE = chosen_device()
HAS_CUDA = torch.cuda.is_available()


def gpu_only(test):
    """Marks a test as GPU-only: it needs CUDA and skips itself cleanly without it (the only
    skip CI=true allows)."""
    skip = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
    return pytest.mark.gpu(skip(test))
