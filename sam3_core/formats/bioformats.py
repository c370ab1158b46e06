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


def label_frames(volume: np.ndarray) -> dict[int, list[int]]:
    """Every id of [T, H, W] labels -> the sorted frames that hold it (one frame read at a time)."""
    frames: dict[int, list[int]] = {}
    for t in range(len(volume)):
        for i in np.unique(np.asarray(volume[t])).tolist():
            if i:
                frames.setdefault(int(i), []).append(t)
    return dict(sorted(frames.items()))


def track_rows(volume: np.ndarray) -> np.ndarray:
    """int64 [K, 4] (label, first frame, last frame, parent 0) of every id in [T, H, W] labels."""
    rows = [(i, ts[0], ts[-1], 0) for i, ts in label_frames(volume).items()]
    return np.array(rows, np.int64).reshape(-1, 4)


def split_track_gaps(
    volume: np.ndarray, tracks: np.ndarray | None = None
) -> tuple[np.ndarray, dict[int, dict[int, int]]]:
    """CTC rows for [T, H, W] labels, each track split where its label skips frames.

    The CTC format requires a label in every frame from its begin B to its end E. A label
    missing from some frames keeps its id up to the first gap; each later run of frames gets
    a new id (above every id in use) whose parent is the run before it. Returns the rows
    int64 [K, 4] (label, begin, end, parent) and, per frame, {old id: new id} for the pixels to
    relabel. `tracks` (label, begin, end, parent) supply parents; their begin and end must be
    the label's first and last frame; a child's parent becomes the parent's run that ends
    last before the child begins.
    """
    frames = label_frames(volume)
    parents: dict[int, int] = {}
    if tracks is not None:
        tracks = np.asarray(tracks, np.int64).reshape(-1, 4)
        missing = set(frames) - set(tracks[:, 0].tolist())
        if missing:
            raise ValueError(f"labels {sorted(missing)[:5]} have no track row; pass tracks=None")
        for label, begin, end, parent in tracks.tolist():
            held = frames.get(label)
            if held is None or (begin, end) != (held[0], held[-1]):
                where = f"frames {held[0]}..{held[-1]}" if held else "no frame"
                raise ValueError(
                    f"track row {label} {begin} {end} {parent}: label {label} is in {where} "
                    "of the volume; fix the row or pass tracks=None"
                )
            parents[label] = parent
    next_id = max(frames, default=0) + 1
    runs: dict[int, list[tuple[int, int, int]]] = {}  # label -> [(id, begin, end)]
    relabel: dict[int, dict[int, int]] = {}
    for label, ts in frames.items():
        cuts = [k for k in range(1, len(ts)) if ts[k] != ts[k - 1] + 1]
        starts, ends = [0, *cuts], [*cuts, len(ts)]
        runs[label] = []
        for n, (a, b) in enumerate(zip(starts, ends)):
            new = label if n == 0 else next_id
            next_id += n > 0
            runs[label].append((new, ts[a], ts[b - 1]))
            for t in ts[a:b] if n else ():
                relabel.setdefault(t, {})[label] = new
    rows = []
    for label, pieces in runs.items():
        for n, (new, begin, end) in enumerate(pieces):
            if n:
                rows.append((new, begin, end, pieces[n - 1][0]))
                continue
            parent = parents.get(label, 0)
            if parent in runs:
                before = [r for r in runs[parent] if r[2] < begin] or runs[parent][:1]
                parent = before[-1][0]
            rows.append((new, begin, end, parent))
    return np.array(sorted(rows), np.int64).reshape(-1, 4), relabel


def write_ctc(
    folder: str | os.PathLike, volume: np.ndarray, tracks: np.ndarray | None = None
) -> Path:
    """Write a [T, H, W] label time-lapse in Cell Tracking Challenge format (masks + tracks).

    tracks: int [K, 4] (label, begin, end, parent), or None to derive them (no parents).
    Every label in the volume needs a row spanning its first to last frame. A label that skips
    frames is split into one track per run of frames (`split_track_gaps`): the later runs get
    new ids in the written masks and `res_track.txt`, each the child of the run before.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"a CTC time-lapse is [T, H, W] labels; got shape {volume.shape}")
    _label_dtype(volume)
    rows, relabel = split_track_gaps(volume, tracks)
    top = int(rows[:, 0].max()) if len(rows) else 0
    dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    digits = 3 if len(volume) <= 1000 else 4
    for t, frame in enumerate(volume):
        written = frame.astype(dtype)
        for old, new in relabel.get(t, {}).items():
            written[frame == old] = new
        tifffile.imwrite(out / f"mask{t:0{digits}d}.tif", written, compression="zlib")
    lines = [" ".join(str(int(v)) for v in row) for row in rows]
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
