"""Shared parts of the `dump_official_*keys.py` scripts: keep Meta's "cuda"-only code on the
CPU, and write a model's state-dict layout (key -> shape, dtype) as a gzipped JSON fixture."""

import gzip
import json

import torch
from torch.overrides import TorchFunctionMode


class CudaToCpu(TorchFunctionMode):
    """Rewrites device="cuda" arguments to the CPU and makes `.cuda()` a no-op."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if "cuda" in str(kwargs.get("device", "")):
            kwargs["device"] = "cpu"
        if getattr(func, "__name__", "") == "cuda":
            return args[0]
        return func(*args, **kwargs)


def write_layout(model: torch.nn.Module, source: str, out_path: str) -> None:
    """Write {"source": source, "keys": {key: [shape, dtype]}} of `model` to `out_path`."""
    layout = {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()}
    with gzip.open(out_path, "wt") as f:
        json.dump({"source": source, "keys": layout}, f, indent=0)
    print(f"wrote {len(layout)} keys to {out_path}")
