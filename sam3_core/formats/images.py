"""Read images from disk, numpy or PIL into the uint8 RGB HxWx3 arrays the predictors take.

Handles what microscopy and remote-sensing users bring: grayscale, RGBA, 16-bit, 32-bit and
float data (percentile-normalised to 8 bits), multichannel and channel-first TIFF stacks
(pick the channels to show), OME-TIFF, and EXIF-rotated photos.
"""

from __future__ import annotations

import contextlib
import glob
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from sam3_core.formats.axes import AxesView, to_axes  # noqa: F401 (public here too)

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
EXIF_ORIENTATION = 0x0112  # EXIF tag: values 5..8 swap width and height


class ImageReadError(ValueError):
    """An image that cannot be found, read or shown as RGB; the message says what to do."""


class ImageTooLargeError(ImageReadError):
    """An image too large to read at once (`max_load_pixels`); segment it in tiles instead."""


def max_load_pixels() -> int | None:
    """Most pixels (H x W) `load_image` reads at once: PIL's decompression-bomb limit, or None."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file from its header, without decoding the pixels."""
    file = _existing_file(path)
    try:
        if _is_tiff(file):
            with tifffile.TiffFile(file) as tif:
                if not tif.series or not tif.series[0].shape:
                    raise ImageReadError(
                        f"image {file} holds no pixels; check that it is not corrupt"
                    )
                axes, shape = tif.series[0].axes, tif.series[0].shape
            if "Y" in axes and "X" in axes:
                return int(shape[axes.index("Y")]), int(shape[axes.index("X")])
            return int(shape[-2]), int(shape[-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _pil_limit(None), Image.open(file) as image:  # the header only
                w, h = image.size
                rotated = image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
                return (w, h) if rotated else (h, w)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, IndexError) as err:
        raise ImageReadError(
            f"cannot read image {file}: {err}. Supported formats: {SUPPORTED}; "
            "check that the file is complete and not corrupt"
        ) from err


def _too_large(path: Path, pixels: int | None) -> str:
    """The message of an `ImageTooLargeError`: names the tiled way to segment the image."""
    count = f"{pixels / 1e6:.3g} Mpx, " if pixels else ""
    limit = max_load_pixels() or 0
    return (
        f"image {path} ({count}more than the {limit / 1e6:.3g} Mpx read at once) is too large "
        "to segment whole; segment it in tiles: "
        "segment_tiled(predictor, open_array(path), concepts) in Python, "
        "or `sam3 segment --tile 1008` (automatic above --tile-above pixels per side)"
    )


def sample_pixels(arr, max_samples: int | None = None, channel_axis: bool = False) -> np.ndarray:
    """An evenly strided sample of a (lazy) array, read with one strided slice.

    Small axes are kept whole and the budget (`PERCENTILE_SAMPLES` by default) is spread over
    the others, so a [Z, H, W] stack of few slices samples every slice. With `channel_axis`,
    the last axis is kept whole. Returns a numpy array of the array's number of axes.
    """
    budget = float(max_samples or PERCENTILE_SAMPLES)
    shape = tuple(int(n) for n in arr.shape)
    spatial = shape[:-1] if channel_axis else shape
    steps = [1] * len(spatial)
    order = sorted(range(len(spatial)), key=lambda i: spatial[i])
    for left, i in zip(range(len(order), 0, -1), order):
        per_axis = max(budget, 1.0) ** (1.0 / left)
        steps[i] = max(1, int(np.ceil(spatial[i] / per_axis)))
        budget /= -(-spatial[i] // steps[i]) if spatial[i] else 1
    key = tuple(slice(None, None, s) for s in steps) + ((slice(None),) if channel_axis else ())
    return np.asarray(arr[key])


def intensity_range(
    arr,
    low: float = 1.0,
    high: float = 99.8,
    channels: Sequence[int] | None = None,
    per_channel: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) percentiles of a (lazy) array, estimated on `sample_pixels` (infinities ignored).

    `channels` picks entries of the last axis first. One range for all the values (float64
    scalars), or with `per_channel` one per entry of the last axis (float64 [C]). Used to
    scale every tile or slice of one image or volume alike (`scale_to_uint8`).
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    last = per_channel or channels is not None
    sample = sample_pixels(arr, channel_axis=last)
    if channels is not None:
        sample = sample[..., list(channels)]
    sample = sample.astype(np.float64)
    sample = sample.reshape(-1, sample.shape[-1]) if per_channel else sample.reshape(-1)
    finite = np.where(np.isfinite(sample), sample, np.nan)
    if not np.isfinite(finite).any():
        zero = np.zeros(sample.shape[-1]) if per_channel else np.float64(0.0)
        return zero, zero.copy()
    with warnings.catch_warnings():  # an all-NaN channel gives NaN, made 0 below
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(finite, [low, high], axis=0)
    return np.nan_to_num(lo), np.nan_to_num(hi)


def scale_to_uint8(block, lo, hi) -> np.ndarray:
    """Scale numbers to uint8: lo..hi (scalars, or per last-axis channel) -> 0..255, clipped.

    NaNs become 0, +inf 255, -inf 0; where hi <= lo the result is 0. Same shape as `block`.
    """
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    values = np.asarray(block, dtype=np.float64)
    scale = 255.0 / np.maximum(hi - lo, 1e-12)
    scaled = np.nan_to_num((values - lo) * scale, nan=0.0, posinf=255.0, neginf=0.0)
    return np.where(hi > lo, np.clip(np.rint(scaled), 0, 255), 0).astype(np.uint8)


def normalize_percentile(arr: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Scale any numeric array to uint8 (same shape): low..high percentile -> 0..255, clipped.

    NaNs become 0 and infinities are ignored for the percentiles; a constant image gives 0.
    """
    return scale_to_uint8(arr, *intensity_range(arr, low, high))


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


def _read_file(path: Path, limited: bool = True) -> np.ndarray:
    """Decode a file: TIFF via tifffile (first series, full resolution), others via PIL.

    With `limited`, an image over `max_load_pixels` raises `ImageTooLargeError` before decoding.
    """
    limit = max_load_pixels() if limited else None
    if limit is not None:
        h, w = read_image_size(path)
        if h * w > limit:
            raise ImageTooLargeError(_too_large(path, h * w))
    try:
        if _is_tiff(path):
            arr = tifffile.imread(path)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with _pil_limit(limit), Image.open(path) as image:
                    arr = _pil_to_array(image)
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(_too_large(path, None)) from err
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


@contextlib.contextmanager
def _pil_limit(limit: int | None):
    """PIL's decompression-bomb check lifted for limit None (a large image asked for), else kept."""
    if limit is not None:
        yield
        return
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


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

    Arrays pass through unchanged. Other image formats (PNG, JPEG, ...) load fully, without
    `load_image`'s size limit. Lazy arrays are read on slicing: `arr[y0:y1, x0:x1]` reads one
    block only.
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
    return _read_file(path, limited=False)
