"""Lazy frame sources for videos: decode on demand, never hold a whole video in memory.

`open_frames(source)` takes a video file (mp4/avi/mov/mkv/webm via PyAV), a folder of frames
(sorted by name), a numpy array [T, H, W] or [T, H, W, C], a TIFF stack (memory-mapped) or a
list of images, and returns a `FrameSource`: `len()`, `size` (H, W) and `source[t]` -> uint8
RGB [H, W, 3] through the same conversions as `sam3_core.formats.images.load_image`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

import numpy as np

from sam3_core.formats.images import (
    ImageReadError,
    as_rgb8,
    iter_image_files,
    load_image,
    read_stack,
)

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
VIDEO_FORMATS = "MP4, AVI, MOV, MKV, WebM (any codec FFmpeg/PyAV decodes)"
SEQUENTIAL_GAP = 32
"""A forward jump of at most this many frames decodes on instead of seeking."""


class VideoReadError(ImageReadError):
    """A video (or frame stack) that cannot be opened or decoded; the message says what to do."""


class FrameSource:
    """Frames of one video, decoded on demand: `len()`, `size` (H, W), `[t]` -> uint8 [H, W, 3]."""

    name: str = "video"

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return tuple(self[0].shape[:2])

    def _get(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, index: int) -> np.ndarray:
        n = len(self)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(
                f"frame {index} is out of range: {self.name} has {n} frames (0..{n - 1})"
            )
        return self._get(int(index) % n)

    def __iter__(self):
        for t in range(len(self)):
            yield self[t]

    def close(self) -> None:
        """Release open files (a no-op for in-memory sources)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArrayFrames(FrameSource):
    """A [T, H, W] or [T, H, W, C] (or [T, C, H, W]) array; numpy, memmap or zarr, read lazily."""

    def __init__(self, array: Any, channels: Sequence[int] | None = None, name: str = "array"):
        if getattr(array, "ndim", 0) not in (3, 4):
            raise VideoReadError(
                f"a frame array must be [T, H, W] or [T, H, W, C], got shape "
                f"{getattr(array, 'shape', None)}; for one image use ImagePredictor"
            )
        if array.shape[0] == 0:
            raise VideoReadError(f"the frame array has no frames (shape {array.shape})")
        self.array, self.channels, self.name = array, channels, name
        self._size = tuple(self[0].shape[:2])

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def _get(self, index: int) -> np.ndarray:
        frame = np.asarray(self.array[index])
        return as_rgb8(frame[..., None] if frame.ndim == 2 else frame, self.channels)


class ImageListFrames(FrameSource):
    """A list of image files (e.g. a sorted folder) or arrays, each read when asked for."""

    def __init__(self, images: Sequence[Any], channels: Sequence[int] | None = None, name="images"):
        if not images:
            raise VideoReadError(f"{name} holds no frames; pass a non-empty folder or list")
        self.images, self.channels, self.name = list(images), channels, name
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        first = self[0]
        self._size = tuple(first.shape[:2])

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def _get(self, index: int) -> np.ndarray:
        if index in self._cache:
            return self._cache[index]
        frame = load_image(self.images[index], self.channels)
        if hasattr(self, "_size") and frame.shape[:2] != self._size:
            raise VideoReadError(
                f"frame {index} ({self.images[index]}) is {frame.shape[1]}x{frame.shape[0]} but "
                f"the first frame is {self._size[1]}x{self._size[0]}; give frames of one size"
            )
        self._cache[index] = frame
        while len(self._cache) > 2:
            self._cache.popitem(last=False)
        return frame


class VideoFileFrames(FrameSource):
    """A video file decoded with PyAV: sequential reads decode on, others seek to a keyframe.

    Only packet timestamps are indexed at open (no decoding); a small LRU cache keeps the last
    `cache_size` decoded frames.
    """

    def __init__(self, path: str | os.PathLike, cache_size: int = 8) -> None:
        import av

        self.path, self.name = Path(path), str(path)
        try:
            self._container = av.open(str(self.path))
            streams = self._container.streams.video
            if not streams:
                raise VideoReadError(f"{self.path} has no video stream; formats: {VIDEO_FORMATS}")
            self._stream = streams[0]
            pts = sorted(
                p.pts for p in self._container.demux(self._stream) if p.pts is not None and p.size
            )
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
            raise VideoReadError(
                f"cannot read video {self.path}: {err}. Supported formats: {VIDEO_FORMATS}; "
                "check that the file is complete, or pass a folder of frames instead"
            ) from err
        if not pts:
            raise VideoReadError(f"video {self.path} has no frames; check that it is not corrupt")
        self._pts = pts
        self._index = {p: i for i, p in enumerate(pts)}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._decoder = None
        self._next = -1
        self.fps = float(self._stream.average_rate or 0) or None
        self._size = tuple(self[0].shape[:2])

    def __len__(self) -> int:
        return len(self._pts)

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def _seek(self, index: int) -> None:
        self._container.seek(self._pts[index], stream=self._stream, backward=True)
        self._decoder = self._container.decode(self._stream)
        self._next = -1

    def _decode_next(self) -> tuple[int, np.ndarray]:
        frame = next(self._decoder)
        index = self._index.get(frame.pts, max(self._next, 0))
        self._next = index + 1
        return index, frame.to_ndarray(format="rgb24")

    def _get(self, index: int) -> np.ndarray:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        if self._decoder is None or not 0 <= index - self._next <= SEQUENTIAL_GAP:
            self._seek(index)
        try:
            while True:
                got, image = self._decode_next()
                self._remember(got, image)
                if got >= index:
                    break
        except StopIteration:
            self._decoder = None
            raise VideoReadError(
                f"frame {index} of {self.path} could not be decoded; the file may be truncated"
            ) from None
        if index not in self._cache:
            raise VideoReadError(f"frame {index} of {self.path} is missing after seeking")
        return self._cache[index]

    def _remember(self, index: int, image: np.ndarray) -> None:
        self._cache[index] = np.ascontiguousarray(image)
        self._cache.move_to_end(index)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def close(self) -> None:
        self._decoder = None
        self._container.close()


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def open_frames(source: Any, channels: Sequence[int] | None = None) -> FrameSource:
    """A lazy `FrameSource` for a video file, a frame folder, a TIFF stack, an array or a list.

    channels: for multichannel data (TIFF stacks, arrays), the 1-3 channels to show.
    """
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, (list, tuple)):
        return ImageListFrames(source, channels, name="the frame list")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise VideoReadError(f"video {path} not found; pass a video file, folder or stack")
        if path.is_dir():
            files = iter_image_files(path)
            if not files:
                raise VideoReadError(f"folder {path} holds no image frames; formats: PNG, JPEG...")
            return ImageListFrames(files, channels, name=f"folder {path}")
        if _is_tiff(path):
            stack = read_stack(path)
            if stack.ndim == 2:
                stack = stack[None]
            return ArrayFrames(stack, channels, name=f"stack {path}")
        return VideoFileFrames(path)
    if hasattr(source, "ndim") and hasattr(source, "shape"):
        return ArrayFrames(source, channels)
    raise TypeError(
        f"cannot read frames from {type(source).__name__}; pass a video path, a folder, a "
        "TIFF stack, a [T, H, W(, C)] array or a list of images"
    )


__all__ = [
    "ArrayFrames",
    "FrameSource",
    "ImageListFrames",
    "VideoFileFrames",
    "VideoReadError",
    "open_frames",
]
