"""Tiled segmentation of a large image: wall time and peak RSS, image read lazily from disk.

The image (uint16 gray, `--size` squared, default 8000) is written to a memory-mapped .npy
first, so the run reads it tile by tile as a user's slide would be. Prints the tile count and
the merged instance count, and, last, `tiles_mpix_per_s=X tiles_peak_rss_mb=M` (and
`peak_gpu_mb=G` on a GPU).
Quick run: `python -m benchmarks.bench_tiles --config sam3_tiny --size 2000`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import peak_gpu, peak_rss_mb, sync
from sam3_core.device import pick_device


def synthetic_slide(path: Path, size: int, seed: int = 0) -> np.memmap:
    """A uint16 [size, size] memmap of bright blobs on a dim background, written in strips."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(size, size))
    rng = np.random.default_rng(seed)
    strip = 512
    for y in range(0, size, strip):
        h = min(strip, size - y)
        block = rng.normal(1000, 50, (h, size)).astype(np.float32)
        for cy, cx in rng.uniform(0, [h, size], (size // 64, 2)):  # each blob in its box
            y0, y1 = max(0, int(cy) - 15), min(h, int(cy) + 16)
            x0, x1 = max(0, int(cx) - 15), min(size, int(cx) + 16)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            block[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 < 15**2] += 3000
        arr[y : y + h] = block.clip(0, 65535).astype(np.uint16)
    arr.flush()
    return np.load(path, mmap_mode="r")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="sam3", help="sam3 (full size) or sam3_tiny (smoke test)")
    ap.add_argument("--size", type=int, default=8000, help="image side in pixels")
    ap.add_argument("--tile-size", type=int, default=None, help="default: the model's image size")
    ap.add_argument("--overlap", type=int, default=None, help="default: tile size / 8")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    from sam3_core.build import build_model
    from sam3_core.large.tiling import segment_tiled
    from sam3_core.predictor import ImagePredictor

    device = pick_device(args.device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    model = build_model(args.config, device=device)  # built where it runs: fast on a GPU
    pred = ImagePredictor(model, device=device, precision=precision)
    tile = args.tile_size or model.config.image_size
    overlap = args.overlap if args.overlap is not None else tile // 8
    image = synthetic_slide(Path(tempfile.mkdtemp()) / "slide.npy", args.size)
    rss_before = peak_rss_mb()
    tiles = []
    sync(device)
    t0 = time.perf_counter()
    result = segment_tiled(
        pred,
        image,
        "cell",
        tile_size=tile,
        overlap=overlap,
        batch_size=args.batch_size,
        score_threshold=0.5,
        progress=lambda done, total: tiles.append(total),
    )
    sync(device)
    seconds = time.perf_counter() - t0
    mpix = args.size**2 / 1e6
    print(
        f"device={device} precision={precision} config={args.config} size={args.size} "
        f"tile={tile} overlap={overlap} batch={args.batch_size}"
    )
    print(
        f"tiles={tiles[-1]} instances={len(result)} seconds={seconds:.2f} "
        f"rss_before_run_mb={rss_before:.0f}"
    )
    print(
        f"tiles_mpix_per_s={mpix / seconds:.3f} tiles_peak_rss_mb={peak_rss_mb():.0f}"
        + peak_gpu(device)
    )


if __name__ == "__main__":
    main()
