"""On-disk entries: one safetensors file per image, written atomically and checksummed.

Layout: `DIR/store.json` (signature and storage dtype) and `DIR/<key[:2]>/<key>.safetensors`.
Each file's metadata holds its key, the store's signature digest, a CRC-32 of each tensor's
bytes and each tensor's dtype before storage, so a truncated, corrupt or foreign file is
detected on read and never trusted.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from sam3_core.store.errors import StoreError

META_FILE = "store.json"
SUFFIX = ".safetensors"
MAX_HEADER = 1 << 20  # an entry's JSON header is a few hundred bytes
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class CorruptEntryError(Exception):
    """An entry file that is truncated, damaged or from another store (it is recomputed)."""


def entry_path(root: Path, key: str) -> Path:
    """Where the entry of `key` lives (256 subfolders keep folders small)."""
    return root / key[:2] / f"{key}{SUFFIX}"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and os.replace, so
    readers and other writers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_entry(
    tensors: Mapping[str, torch.Tensor], key: str, signature: str, dtype: str
) -> bytes:
    """Serialise tensors (floats cast to the storage `dtype`) with the entry's metadata."""
    store_dtype = DTYPES[dtype]
    cast = {
        k: (t.to(store_dtype) if t.is_floating_point() else t).detach().cpu().contiguous()
        for k, t in tensors.items()
    }
    crcs = {k: zlib.crc32(t.reshape(-1).view(torch.uint8).numpy()) for k, t in cast.items()}
    meta = {
        "key": key,
        "signature": signature,
        "dtypes": json.dumps({k: str(t.dtype).removeprefix("torch.") for k, t in tensors.items()}),
        "crc32": json.dumps(crcs),
    }
    return save_tensors(cast, metadata=meta)


def parse_header(blob: bytes) -> tuple[int, dict[str, tuple[int, int]], dict]:
    """An entry's first bytes -> (header length, tensor byte spans, metadata with "crc32"
    and "dtypes" parsed); raises CorruptEntryError when they are no header of ours."""
    try:
        (header_len,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8 : 8 + header_len])
        meta = header.pop("__metadata__")
        spans = {k: tuple(v["data_offsets"]) for k, v in header.items()}
        meta = {**meta, "crc32": json.loads(meta["crc32"]), "dtypes": json.loads(meta["dtypes"])}
    except (struct.error, ValueError, KeyError, TypeError) as err:
        raise CorruptEntryError(f"unreadable header ({err})") from None
    return header_len, spans, meta


def check_header(size: int, header_len: int, spans: dict, meta: dict, key: str, signature: str):
    """Raise CorruptEntryError unless a file of `size` bytes holds all the header describes,
    for `key` and the store of `signature`."""
    end = 8 + header_len + max((b for _, b in spans.values()), default=0)
    if size != end:
        raise CorruptEntryError(f"{size} bytes where the header describes {end}")
    if meta.get("key") != key or meta.get("signature") != signature:
        raise CorruptEntryError("written for another key or by another store")


def read_header(path: Path, key: str, signature: str) -> tuple[dict[str, tuple[int, int]], dict]:
    """(tensor byte spans, metadata) of an entry file, from its header and length only.

    Raises FileNotFoundError when absent, CorruptEntryError when truncated, damaged or foreign.
    """
    with open(path, "rb") as fh:
        head = fh.read(8)
        header_len = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        blob = head + fh.read(min(header_len, MAX_HEADER))
        size = os.fstat(fh.fileno()).st_size
    header_len, spans, meta = parse_header(blob)
    check_header(size, header_len, spans, meta, key, signature)
    return spans, meta


def stored_parts(path: Path, key: str, signature: str) -> set[str] | None:
    """The tensor names of a complete-looking entry file, from its header and length only
    (checksums are checked when it is read), or None when absent or damaged."""
    try:
        return set(read_header(path, key, signature)[0])
    except (OSError, CorruptEntryError):
        return None


def read_parts(
    path: Path,
    key: str,
    signature: str,
    names: Iterable[str],
    formats: Mapping[str, torch.memory_format] | None = None,
) -> dict[str, torch.Tensor]:
    """Check and read the parts `names` of an entry file (those it holds) -> tensors in their
    original dtypes, each in its own CPU memory.

    The file is memory-mapped (safetensors): parts not asked for are never read, and each part
    is copied once, its dtype conversion and `formats` (a memory format per name, e.g.
    channels_last) done in that copy. Raises FileNotFoundError when absent, CorruptEntryError
    when the header, length, a checksum, the key or the signature is wrong.
    """
    formats, out = formats or {}, {}
    try:
        with safe_open(str(path), framework="pt") as fh:  # one file: header and bytes agree
            meta = fh.metadata() or {}
            if meta.get("key") != key or meta.get("signature") != signature:
                raise CorruptEntryError("written for another key or by another store")
            crcs, originals = json.loads(meta["crc32"]), json.loads(meta["dtypes"])
            held = set(fh.keys())
            for name in (n for n in names if n in held):
                stored = fh.get_tensor(name)  # a view of the mapped file
                if zlib.crc32(stored.reshape(-1).view(torch.uint8).numpy()) != crcs[name]:
                    raise CorruptEntryError(f"checksum mismatch in {name!r}")
                fmt = formats.get(name, torch.contiguous_format)
                dtype = getattr(torch, originals[name])
                out[name] = torch.empty(stored.shape, dtype=dtype, memory_format=fmt)
                out[name].copy_(stored)
    except (SafetensorError, ValueError, KeyError, AttributeError, TypeError) as err:
        raise CorruptEntryError(f"unreadable entry ({err!r})") from None
    return out


def decode_entry(blob: bytes, key: str, signature: str) -> dict[str, torch.Tensor]:
    """Check and read an entry's bytes -> tensors in their original dtypes (CPU).

    Raises CorruptEntryError when the header, length, checksums, key or signature is wrong.
    """
    header_len, spans, meta = parse_header(blob)
    check_header(len(blob), header_len, spans, meta, key, signature)
    crcs, originals = meta["crc32"], meta["dtypes"]
    data = memoryview(blob)[8 + header_len :]
    if set(crcs) != set(spans) or any(
        zlib.crc32(data[a:b]) != crcs[k] for k, (a, b) in spans.items()
    ):
        raise CorruptEntryError("checksum mismatch")
    try:
        return {k: t.to(getattr(torch, originals[k])) for k, t in load_tensors(blob).items()}
    except (SafetensorError, KeyError, AttributeError, TypeError) as err:
        raise CorruptEntryError(f"unreadable tensors ({err})") from None


def read_meta(root: Path) -> dict | None:
    """The folder's `store.json`, or None for a new folder."""
    path = root / META_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise StoreError(
            f"{path} is unreadable ({err}); move the folder aside (or delete it) and "
            "recompute its embeddings in a new one."
        ) from None


def create_meta(root: Path, meta: dict) -> dict:
    """Write `store.json` unless another process already did; returns the folder's meta.

    The file is linked into place, which fails if it exists: of two racing creators exactly
    one wins and the other reads (and is checked against) the winner's meta.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".store.", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(meta, fh, indent=1, sort_keys=True)
        os.link(tmp, root / META_FILE)
    except FileExistsError:
        pass
    finally:
        Path(tmp).unlink(missing_ok=True)
    return read_meta(root) or meta


def iter_keys(root: Path) -> Iterator[str]:
    """Keys of the entry files in a folder (complete or not)."""
    for path in root.glob(f"??/*{SUFFIX}"):
        yield path.name[: -len(SUFFIX)]
