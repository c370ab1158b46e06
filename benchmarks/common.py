"""Shared benchmark helpers: the same weights on both sides, warmed-up medians, peak RSS."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(
    fn: Callable[[], object], runs: int, device: torch.device, warmup: int = 1
) -> float:
    """Median wall time of `fn` in seconds after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu(device: torch.device) -> str:
    """ " peak_gpu_mb=M" (the most GPU memory allocated so far) on a CUDA device, else ""."""
    if device.type != "cuda":
        return ""
    return f" peak_gpu_mb={torch.cuda.max_memory_allocated(device) / 2**20:.0f}"


def paired_models(config_name: str, device: torch.device):
    """(transformers Sam3Model, our Sam3Model) holding identical random weights, perturbed as
    the parity tests do so that scores vary and some queries pass the threshold (with default
    initialisation every score is about 0.28 and no side would compute a mask)."""
    from transformers import Sam3Model as HFSam3Model

    from sam3_core.build import build_model
    from sam3_core.config import get_config
    from tests.reference import hf_detector_config, perturb_

    cfg = get_config(config_name)
    torch.manual_seed(0)
    with torch.device(device):  # built, filled and copied where they run: fast on a GPU
        hf = HFSam3Model(hf_detector_config(cfg)).eval()
        with torch.no_grad():
            perturb_(hf, 0, on_device=True)
        ours = build_model(cfg)
    ours.detector_model.load_state_dict(hf.state_dict())
    return hf, ours, cfg
