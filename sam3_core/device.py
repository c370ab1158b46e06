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


def fast_bf16(device: str | torch.device) -> bool:
    """Whether bf16 runs much faster than fp32 on `device`: CUDA GPUs with bf16 support, and
    CPUs with AMX tiles (Sapphire Rapids and newer: about 3.5x fp32 measured here). Elsewhere
    (AVX-512-BF16 or AVX2 CPUs, measured on AMD EPYC) bf16 is no faster than fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx is not None and amx())
    return False


def recommended_precision(device: str | torch.device | None = None) -> str:
    """ "bf16" where it is fast (`fast_bf16`), else "fp32" (exact, and as fast there)."""
    return "bf16" if fast_bf16(pick_device(device)) else "fp32"


def precision_note(device: str | torch.device, precision: str) -> str | None:
    """A one-line warning when `precision` is a poor choice on `device`, else None."""
    device = torch.device(device)
    if precision in ("bf16", "fp16") and device.type == "cpu" and not fast_bf16(device):
        return (
            f"{precision} on this CPU (no AMX) is no faster than fp32 and less exact: "
            "use --precision fp32 here (bf16 pays off on GPUs and AMX CPUs)"
        )
    if precision == "fp32" and fast_bf16(device):
        return (
            f"this {device.type} runs bf16 about 3x faster: --precision bf16 (scores within ~1e-3)"
        )
    return None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to bf16/fp16 for `precision`, or nothing for fp32."""
    dtype = precision_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
