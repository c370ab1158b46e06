"""Synthetic microscopy samples (made on the fly, nothing downloaded) so a new user can try SAM 3."""

from __future__ import annotations

import numpy as np

LayerData = list[tuple[np.ndarray, dict, str]]


def _blobs(shape: tuple[int, int], centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """float [H, W] sum of soft disks (nuclei-like), brightest in the middle."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    out = np.zeros(shape, np.float32)
    for (cy, cx), r in zip(centres, radii):
        d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
        out += np.clip(1.2 - d2, 0, 1) ** 0.5
    return out


def make_cells(size: int = 256, n: int = 14, seed: int = 0) -> np.ndarray:
    """uint16 [size, size] fluorescence-like nuclei on a noisy background (12-bit range)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1 * size, 0.9 * size, (n, 2))
    radii = rng.uniform(0.04 * size, 0.08 * size, n)
    img = 200 + 2500 * _blobs((size, size), centres, radii)
    img += rng.normal(0, 60, img.shape)
    return np.clip(img, 0, 4095).astype(np.uint16)


def make_stack(depth: int = 8, size: int = 128, n: int = 6, seed: int = 1) -> np.ndarray:
    """uint16 [depth, size, size] nuclei that drift and swell through z."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2 * size, 0.8 * size, (n, 2))
    drift = rng.normal(0, 0.01 * size, (n, 2))
    radii = rng.uniform(0.06 * size, 0.1 * size, n)
    planes = []
    for z in range(depth):
        swell = 0.6 + 0.4 * np.sin(np.pi * (z + 0.5) / depth)
        planes.append(200 + 2500 * _blobs((size, size), centres + z * drift, radii * swell))
    stack = np.stack(planes) + rng.normal(0, 60, (depth, size, size))
    return np.clip(stack, 0, 4095).astype(np.uint16)


def cells() -> LayerData:
    """Sample: one 16-bit image of nuclei."""
    return [(make_cells(), {"name": "SAM3 sample cells", "colormap": "gray"}, "image")]


def stack() -> LayerData:
    """Sample: a small 16-bit z-stack of nuclei."""
    return [(make_stack(), {"name": "SAM3 sample stack", "colormap": "gray"}, "image")]
