"""Device choice and mixed precision: cuda, then mps, then cpu; precision is an argument."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else the best available one."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def precision_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of `precision` ("fp32": None), or a clear error for an unknown one."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use one of {sorted(PRECISIONS)}.")
    return PRECISIONS[precision]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to bf16/fp16 for `precision`, or nothing for fp32."""
    dtype = precision_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
