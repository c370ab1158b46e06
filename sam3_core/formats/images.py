"""Read images from disk, numpy or PIL into the uint8 RGB HxWx3 arrays the predictors take.

Handles what microscopy and remote-sensing users bring: grayscale, RGBA, 16-bit, 32-bit and
float data (percentile-normalised to 8 bits), multichannel and channel-first TIFF stacks
(pick the channels to show), OME-TIFF, and EXIF-rotated photos.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import zarr

ImageSource = str | os.PathLike | np.ndarray | Image.Image

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".jp2", ".ppm", ".pgm"}
)
SUPPORTED = "PNG, JPEG, TIFF/OME-TIFF, BMP, WebP, GIF, JPEG 2000, PPM/PGM"
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Percentiles are estimated on at most this many evenly strided pixels (speed on huge images).
PERCENTILE_SAMPLES = 1 << 22


class ImageReadError(ValueError):
    """An image that cannot be found, read or shown as RGB; the message says what to do."""


def normalize_percentile(arr: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Scale any numeric array to uint8 (same shape): low..high percentile -> 0..255, clipped.

    NaNs become 0 and infinities are ignored for the percentiles; a constant image gives 0.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    values = np.asarray(arr, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    sample = finite[:: max(1, finite.size // PERCENTILE_SAMPLES)]
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(values, nan=lo, posinf=hi, neginf=lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 kept, bool -> 0/255, every other numeric dtype percentile-normalised."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ImageReadError(
            f"cannot show pixels of dtype {arr.dtype} as an image; pass integer or float data"
        )
    return normalize_percentile(arr)


def _channels_last(arr: np.ndarray) -> tuple[np.ndarray, bool]:
    """Array -> (H, W, C) view plus whether it is plain gray/RGB/RGBA (C in 1, 3, 4 last)."""
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return arr[..., None], True
    if arr.ndim != 3:
        raise ImageReadError(
            f"an array of shape {arr.shape} cannot be an image; pass HxW, HxWxC or CxHxW "
            "(for a Z/T stack pick one plane, e.g. read_stack(path)[i])"
        )
    if arr.shape[-1] in (1, 3, 4):
        return arr, True
    if arr.shape[0] < min(arr.shape[1:]):
        return np.moveaxis(arr, 0, -1), False
    if arr.shape[-1] < min(arr.shape[:2]):
        return arr, False
    raise ImageReadError(
        f"an array of shape {arr.shape} has no clear channel axis; pass HxWxC or CxHxW with "
        "fewer channels than pixels per side"
    )


def _select_channels(arr: np.ndarray, plain: bool, channels: Sequence[int] | None) -> np.ndarray:
    """(H, W, C) -> (H, W, 1..3): the chosen channels, or a default for common layouts."""
    count = arr.shape[-1]
    if channels is None:
        if plain:
            return arr[..., :3] if count == 4 else arr
        if count <= 3:
            return arr
        raise ImageReadError(
            f"the image has {count} channels (or planes); choose 1 to 3 to show, "
            "e.g. channels=[0] for gray or channels=[0, 1, 2] for RGB"
        )
    chosen = [int(c) for c in channels]
    if not 1 <= len(chosen) <= 3:
        raise ImageReadError(
            f"channels must name 1 to 3 channels (gray, R+G composite or RGB), got {chosen}"
        )
    if any(not -count <= c < count for c in chosen):
        raise ImageReadError(
            f"channels {chosen} out of range: the image has {count} channels (0..{count - 1})"
        )
    return arr[..., chosen]


def _to_rgb(arr: np.ndarray) -> np.ndarray:
    """(H, W, 1..3) uint8 -> (H, W, 3): gray replicated, two channels as R, G with zero blue."""
    count = arr.shape[-1]
    if count == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif count == 2:
        arr = np.concatenate([arr, np.zeros_like(arr[..., :1])], axis=-1)
    return np.ascontiguousarray(arr)


def as_rgb8(arr: np.ndarray, channels: Sequence[int] | None = None) -> np.ndarray:
    """Any image-like array (HxW, HxWxC, CxHxW; any numeric dtype) -> uint8 RGB HxWx3.

    RGBA drops alpha. Data that is not uint8 is percentile-normalised (`normalize_percentile`),
    jointly for gray/RGB data, per channel for channels picked from multichannel data.
    """
    arr = np.asarray(arr)
    if arr.size == 0:
        raise ImageReadError(f"the image is empty (shape {arr.shape}); pass an image with pixels")
    hwc, plain = _channels_last(arr)
    selected = _select_channels(hwc, plain, channels)
    if plain or selected.dtype == np.uint8:
        selected = _to_uint8(selected)
    else:
        selected = np.stack([_to_uint8(selected[..., i]) for i in range(selected.shape[-1])], -1)
    return _to_rgb(selected)


def _is_tiff(path: Path) -> bool:
    """True when the file starts with a (Big)TIFF signature, whatever its extension."""
    with open(path, "rb") as fh:
        return fh.read(4) in TIFF_MAGIC


def _existing_file(source: str | os.PathLike) -> Path:
    """The path as a Path, or ImageReadError when it is missing or a folder."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ImageReadError(f"image file {path} not found; check the path")
    if not path.is_file():
        raise ImageReadError(f"{path} is not a file; pass an image file (or use iter_image_files)")
    return path


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """PIL image -> numpy with EXIF orientation applied; palettes/CMYK/etc. become RGB(A)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("1", "LA", "La"):
        image = image.convert("L")
    elif image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode not in ("L", "RGB", "RGBA", "I", "F") and not image.mode.startswith("I;16"):
        image = image.convert("RGB")
    return np.asarray(image)


def _read_file(path: Path) -> np.ndarray:
    """Decode a file: TIFF via tifffile (first series, full resolution), others via PIL."""
    try:
        if _is_tiff(path):
            arr = tifffile.imread(path)
        else:
            with Image.open(path) as image:
                arr = _pil_to_array(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageReadError(
            f"cannot read image {path}: {err}. Supported formats: {SUPPORTED}; "
            "check that the file is complete and not corrupt"
        ) from err
    if arr.size == 0:
        raise ImageReadError(
            f"image {path} holds no pixels (shape {arr.shape}); check that it is not corrupt"
        )
    return arr


def load_image(source: ImageSource, channels: Sequence[int] | None = None) -> np.ndarray:
    """Read a path, numpy array or PIL image into a uint8 RGB HxWx3 array for the predictors.

    Gray (HxW, HxWx1) is replicated to 3 channels; RGBA drops alpha (it is not composited);
    16/32-bit and float data are percentile-normalised per image (1st..99.8th); uint8 is kept.
    Multichannel data (more than 4 channels, or channel-first CxHxW such as TIFF stacks) shows
    the chosen `channels`: 1 -> gray, 2 -> R, G composite with zero blue, 3 -> RGB.
    """
    if isinstance(source, (str, os.PathLike)):
        arr = _read_file(_existing_file(source))
    elif isinstance(source, Image.Image):
        arr = _pil_to_array(source)
    elif isinstance(source, np.ndarray):
        arr = source
    else:
        raise TypeError(
            f"cannot load an image from {type(source).__name__}; pass a path, a numpy array "
            "or a PIL image"
        )
    return as_rgb8(arr, channels)


def iter_image_files(path_or_folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files named by a file, a folder (its images, sorted) or a glob pattern (sorted).

    Hidden files and files without an image extension are skipped in folders and globs; a
    single file is returned as named. An existing folder without images gives an empty list.
    """
    path = Path(path_or_folder).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        candidates = path.rglob("*") if recursive else path.iterdir()
    elif glob.has_magic(str(path)):
        candidates = (Path(p) for p in glob.glob(str(path), recursive=True))
    else:
        raise ImageReadError(f"{path} not found; pass an image file, a folder or a glob pattern")
    return sorted(
        p
        for p in candidates
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def read_stack(path: str | os.PathLike) -> np.ndarray | zarr.Array:
    """The raw array of a TIFF/OME-TIFF stack (e.g. [Z, H, W] or [T, C, H, W]), read lazily.

    Uncompressed files are memory-mapped; compressed ones open as a lazy zarr array when the
    optional `zarr` package is installed (`pip install sam3-tools[bio]`), else load fully.
    """
    file = _existing_file(path)
    if not _is_tiff(file):
        raise ImageReadError(f"{file} is not a TIFF file; read_stack reads TIFF and OME-TIFF")
    try:
        return tifffile.memmap(file, mode="r")
    except ValueError:
        pass
    try:
        import zarr
    except ImportError:
        zarr = None
    try:
        if zarr is not None:
            return zarr.open(tifffile.imread(file, aszarr=True), mode="r")
        return tifffile.imread(file)
    except (OSError, ValueError) as err:
        raise ImageReadError(f"cannot read TIFF stack {file}: {err}; check the file") from err


def _open_zarr(path: Path, level: int):
    """A zarr array at `path`; for a group (OME-Zarr), its multiscale `level` (0 = full size)."""
    try:
        import zarr
    except ImportError as err:
        raise ImageReadError(
            f"{path} is a zarr store; install the optional dependency: pip install zarr"
        ) from err
    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):
        return node
    names = sorted(name for name, _ in node.arrays())
    if not names:
        raise ImageReadError(f"the zarr group {path} holds no array; pass the array's own path")
    multiscales = node.attrs.get("multiscales") or node.attrs.get("ome", {}).get("multiscales")
    if multiscales:
        paths = [d["path"] for d in multiscales[0]["datasets"]]
        if not 0 <= level < len(paths):
            raise ImageReadError(f"level={level}: {path} has levels 0..{len(paths) - 1}")
        return node[paths[level]]
    return node[names[0]]


def open_array(source: str | os.PathLike | np.ndarray, level: int = 0):
    """A lazily read array: zarr (incl. OME-Zarr groups) / TIFF (memmap or zarr) / .npy (memmap).

    Arrays pass through unchanged. Other image formats load fully (`load_image`'s decoders).
    Lazy arrays are read on slicing: `arr[y0:y1, x0:x1]` reads one block only.
    """
    if hasattr(source, "shape") and hasattr(source, "__getitem__"):
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise ImageReadError(f"{path} not found; check the path")
    if path.is_dir() or path.suffix.lower() == ".zarr":
        return _open_zarr(path, level)
    if path.suffix.lower() == ".npy":
        return np.load(path, mmap_mode="r")
    if _is_tiff(path):
        return read_stack(path)
    return _read_file(path)


class AxesView:
    """A lazy reordering of an array's axes: slicing reads only the selected block."""

    def __init__(self, source, order: list[int], squeeze: list[int], expand: list[int]) -> None:
        self.source, self._order, self._squeeze, self._expand = source, order, squeeze, expand
        kept = [source.shape[i] for i in order]
        for pos in expand:
            kept.insert(pos, 1)
        self.shape, self.dtype, self.ndim = tuple(kept), np.dtype(source.dtype), len(kept)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        arr = self[...]
        return arr if dtype is None else arr.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim or not all(isinstance(k, (int, np.integer, slice)) for k in key):
            raise IndexError(f"index an AxesView with ints and slices for its {self.ndim} axes")
        own = [k for pos, k in enumerate(key) if pos not in self._expand]
        src_key: list = [slice(None)] * self.source.ndim
        for i in self._squeeze:
            src_key[i] = 0
        for i, k in zip(self._order, own):
            src_key[i] = k
        block = np.asarray(self.source[tuple(src_key)])
        wanted = [i for i, k in zip(self._order, own) if isinstance(k, slice)]
        block = np.transpose(block, [sorted(wanted).index(i) for i in wanted])
        for pos, k in enumerate(key):
            if pos in self._expand and isinstance(k, slice):
                at = sum(isinstance(q, slice) for q in key[:pos])
                block = np.expand_dims(block, at)
        return block


def _parse_want(want: str) -> tuple[str, set[str]]:
    """'ZYX(C)' -> ('ZYXC', {'C'}): letters in parentheses are optional."""
    letters, optional, inside = [], set(), False
    for ch in want.upper():
        if ch in "()":
            inside = ch == "("
        elif ch.strip():
            letters.append(ch)
            if inside:
                optional.add(ch)
    return "".join(letters), optional


def to_axes(arr, axes: str, want: str = "ZYX(C)"):
    """Reorder an array from its `axes` (e.g. 'TZCYX') to `want` (e.g. 'ZYX(C)', 'TYXC').

    Letters in parentheses are optional (kept when present); a missing required axis is added
    with size 1; an axis not wanted must have size 1 (it is dropped). numpy arrays come back as
    views, lazy arrays (zarr, memmap-like) as an `AxesView` that reads on slicing.
    """
    axes = axes.upper().replace("S", "C")
    order_s, optional = _parse_want(want)
    if len(axes) != arr.ndim or len(set(axes)) != len(axes):
        raise ValueError(
            f"axes={axes!r} does not fit an array of shape {tuple(arr.shape)}: give one distinct "
            f"letter per axis ({arr.ndim}), e.g. 'TZCYX'"
        )
    if len(set(order_s)) != len(order_s):
        raise ValueError(f"want={want!r} repeats an axis; give each letter once, e.g. 'ZYX(C)'")
    for pos, letter in enumerate(axes):
        if letter not in order_s and arr.shape[pos] != 1:
            raise ValueError(
                f"axis {letter} has {arr.shape[pos]} entries but want={want!r} has no {letter}: "
                f"select one first (e.g. arr[{':, ' * pos}i]) or add {letter} to want"
            )
    present = [a for a in order_s if a in axes or a not in optional]
    order = [axes.index(a) for a in present if a in axes]
    squeeze = [i for i, a in enumerate(axes) if a not in present]
    expand = [pos for pos, a in enumerate(present) if a not in axes]
    if isinstance(arr, np.ndarray):
        out = np.transpose(arr, order + squeeze)
        out = out.reshape(out.shape[: len(order)])
        for pos in expand:
            out = np.expand_dims(out, pos)
        return out
    return AxesView(arr, order, squeeze, expand)
