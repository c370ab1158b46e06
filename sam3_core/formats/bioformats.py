"""Write and read results in bio-imaging formats: label TIFFs, zarr, Cell Tracking Challenge.

CTC layout (a time-lapse result folder): `mask000.tif`, `mask001.tif`, ... one uint16 label
image per frame (4 digits past 1000 frames), plus `res_track.txt` with one `L B E P` line per
track: label, first frame, last frame, parent label (0 for none).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import tifffile

CTC_TRACKS = "res_track.txt"
_MASK_NAME = re.compile(r"^mask(\d+)\.tif$")


def _label_dtype(labels: np.ndarray, dtype=None) -> np.dtype:
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers (got {labels.dtype}); cast ids to uint16/uint32")
    top = int(labels.max()) if labels.size else 0
    if int(labels.min() if labels.size else 0) < 0:
        raise ValueError("labels must be >= 0 (0 is background)")
    dtype = np.dtype(dtype or (np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32))
    if top > np.iinfo(dtype).max:
        raise ValueError(f"label {top} does not fit in {dtype.name}; pass dtype=np.uint32")
    return dtype


def write_label_tiff(
    path: str | os.PathLike, labels: np.ndarray, axes: str | None = None, dtype=None
) -> Path:
    """Save a label image/volume ([Y, X], [Z, Y, X], ...) as a uint16 (or uint32) TIFF.

    uint16 is chosen when every id fits, else uint32; `axes` (e.g. 'ZYX') is stored as
    ImageJ-readable metadata. Large volumes are written compressed (zlib) plane by plane.
    """
    labels = np.asarray(labels)
    out = Path(path)
    data = labels.astype(_label_dtype(labels, dtype), copy=False)
    meta = {"axes": axes.upper()} if axes else None
    if axes is not None and len(axes) != data.ndim:
        raise ValueError(f"axes={axes!r} names {len(axes)} axes for data of shape {data.shape}")
    tifffile.imwrite(out, data, compression="zlib", metadata=meta)
    return out


def read_label_tiff(path: str | os.PathLike) -> np.ndarray:
    """A label TIFF back as its integer array."""
    arr = tifffile.imread(Path(path))
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{path} holds {arr.dtype} pixels, not integer labels")
    return arr


def write_label_zarr(path: str | os.PathLike, labels: np.ndarray, chunks=None, dtype=None):
    """Save labels as a zarr array (needs `pip install zarr`); returns the opened array."""
    try:
        import zarr
    except ImportError as err:
        raise ImportError("writing zarr needs the optional dependency: pip install zarr") from err
    labels = np.asarray(labels)
    dtype = _label_dtype(labels, dtype)
    chunks = chunks or tuple(
        min(s, 1 if i < labels.ndim - 2 else 1024) for i, s in enumerate(labels.shape)
    )
    arr = zarr.open(str(path), mode="w", shape=labels.shape, chunks=chunks, dtype=dtype)
    arr[...] = labels
    return arr


def track_rows(volume: np.ndarray) -> np.ndarray:
    """int64 [K, 4] (label, first frame, last frame, parent 0) of every id in [T, H, W] labels."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in range(len(volume)):
        for i in np.unique(np.asarray(volume[t])).tolist():
            if i:
                first.setdefault(i, t)
                last[i] = t
    return np.array([(i, first[i], last[i], 0) for i in sorted(first)], np.int64).reshape(-1, 4)


def write_ctc(
    folder: str | os.PathLike, volume: np.ndarray, tracks: np.ndarray | None = None
) -> Path:
    """Write a [T, H, W] label time-lapse in Cell Tracking Challenge format (masks + tracks).

    tracks: int [K, 4] (label, begin, end, parent); derived from the volume (no parents) when
    None. Every label in the volume must have a row, each row's frames must hold its label.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"a CTC time-lapse is [T, H, W] labels; got shape {volume.shape}")
    tracks = track_rows(volume) if tracks is None else np.asarray(tracks, np.int64).reshape(-1, 4)
    present = set(np.unique(volume).tolist()) - {0}
    missing = present - set(tracks[:, 0].tolist())
    if missing:
        raise ValueError(f"labels {sorted(missing)[:5]} have no track row; pass tracks=None")
    dtype = _label_dtype(volume, np.uint16 if volume.max(initial=0) <= 65535 else np.uint32)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    digits = 3 if len(volume) <= 1000 else 4
    for t, frame in enumerate(volume):
        tifffile.imwrite(out / f"mask{t:0{digits}d}.tif", frame.astype(dtype), compression="zlib")
    lines = [" ".join(str(int(v)) for v in row) for row in tracks]
    (out / CTC_TRACKS).write_text("\n".join(lines) + ("\n" if lines else ""))
    return out


def read_ctc(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A CTC result folder -> (labels [T, H, W], tracks int64 [K, 4] label, begin, end, parent)."""
    root = Path(folder)
    frames = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _MASK_NAME.match(p.name)))
    if not frames:
        raise FileNotFoundError(f"no mask###.tif files in {root}; is it a CTC result folder?")
    if [t for t, _ in frames] != list(range(len(frames))):
        raise ValueError(f"CTC masks in {root} are not numbered 0..{len(frames) - 1} without gaps")
    volume = np.stack([tifffile.imread(p) for _, p in frames])
    track_file = root / CTC_TRACKS
    if not track_file.exists():
        raise FileNotFoundError(f"{track_file} is missing; write it with write_ctc")
    rows = [line.split() for line in track_file.read_text().splitlines() if line.strip()]
    if any(len(r) != 4 for r in rows):
        raise ValueError(f"{track_file}: every line must be 'L B E P' (4 integers)")
    return volume, np.array(rows, np.int64).reshape(-1, 4)
