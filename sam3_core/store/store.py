"""`EmbeddingStore`: image embeddings in a memory LRU and, optionally, in a folder on disk."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from sam3_core.store import disk
from sam3_core.store.errors import StoreError, StoreMismatchError
from sam3_core.store.keys import describe, differences, signature_digest
from sam3_core.store.memory import Entry, MemoryLRU

log = logging.getLogger("sam3_core.store")
STORE_FORMAT = 1


@dataclass(frozen=True)
class StoredImage:
    """One image put in a store by `ImagePredictor.precompute`: its key, the entry's bytes
    (on disk; in memory for a memory-only store) and whether the backbone ran for it."""

    key: str
    nbytes: int
    computed: bool


class EmbeddingStore:
    """Backbone outputs keyed by image content, signed by the model that computed them.

    path: a folder (created if missing) shared by threads and processes, or None for a
    memory-only store; memory_bytes: bound of the in-process LRU; dtype: storage precision
    of floats ("fp32" exact; "fp16"/"bf16" halve the bytes), None: the folder's own.
    The first predictor that uses the store binds it to its model signature; another
    model's predictor is refused (`StoreMismatchError`).
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        memory_bytes: int = 2 << 30,
        dtype: str | None = None,
    ) -> None:
        if dtype is not None and dtype not in disk.DTYPES:
            raise StoreError(f"dtype must be one of {sorted(disk.DTYPES)} or None; got {dtype!r}.")
        self.path = None if path is None else Path(path).expanduser()
        if self.path is not None and self.path.exists() and not self.path.is_dir():
            raise StoreError(f"The embedding store {self.path} is a file; pass a folder.")
        meta = None if self.path is None else disk.read_meta(self.path)
        if meta is not None and dtype is not None and meta.get("dtype") != dtype:
            raise StoreError(
                f"The store {self.path} keeps {meta.get('dtype')} embeddings, not {dtype}; pass "
                f"dtype=None (or {meta.get('dtype')!r}) to use it, or another folder for {dtype}."
            )
        self.dtype: str = meta["dtype"] if meta is not None else (dtype or "fp32")
        self.signature: dict | None = None
        self.memory = MemoryLRU(memory_bytes)
        self.stats = dict.fromkeys(
            ("memory_hits", "disk_hits", "misses", "corrupt", "writes", "write_errors"), 0
        )
        self._digest = ""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = "memory only" if self.path is None else str(self.path)
        return f"EmbeddingStore({where}, dtype={self.dtype})"

    # ---------------------------------------------------------------- signature
    def bind(self, signature: dict) -> None:
        """Tie the store to a model signature; raise StoreMismatchError for another model's."""
        with self._lock:
            if self.signature is not None:
                self._check(self.signature, signature, "this store object")
                return
            if self.path is not None:
                mine = {"format": STORE_FORMAT, "dtype": self.dtype, "signature": signature}
                try:  # a read-only store made earlier is only read
                    meta = disk.read_meta(self.path) or disk.create_meta(self.path, mine)
                except OSError as err:
                    raise StoreError(
                        f"Cannot use {self.path} as an embedding store ({err}); pass a folder "
                        "you can write to."
                    ) from None
                if meta.get("format") != STORE_FORMAT:
                    raise StoreError(
                        f"The store {self.path} has format {meta.get('format')!r}; this version "
                        f"reads format {STORE_FORMAT}: use another folder (or the version that "
                        "made it)."
                    )
                if meta.get("dtype") != self.dtype:
                    raise StoreError(
                        f"The store {self.path} keeps {meta.get('dtype')} embeddings, not "
                        f"{self.dtype}; open it with dtype=None or use another folder."
                    )
                self._check(meta.get("signature", {}), signature, str(self.path))
            self.signature = signature
            self._digest = signature_digest(signature)

    @staticmethod
    def _check(have: dict, want: dict, where: str) -> None:
        if have == want:
            return
        raise StoreMismatchError(
            f"The embedding store {where} was made by another model "
            f"(differs in: {', '.join(differences(have, want)) or 'format'}).\n"
            f"  store:     {describe(have)}\n  predictor: {describe(want)}\n"
            "Use another store folder for this model, or the weights, config and precision "
            "that made it; embeddings of another model are never reused."
        )

    def _require_bound(self) -> None:
        if self.signature is None:
            raise StoreError(
                "This store is not bound to a model yet: pass it to an ImagePredictor "
                "(`ImagePredictor(model, store=store)`) before reading or writing entries."
            )

    # ---------------------------------------------------------------- entries
    def has(self, key: str) -> bool:
        """Whether `key` is held in memory or has a file on disk (checked when read)."""
        return key in self.memory or self.nbytes(key) is not None

    def nbytes(self, key: str) -> int | None:
        """Bytes of an entry on disk (in memory for a memory-only store), or None."""
        if self.path is not None:
            try:
                return disk.entry_path(self.path, key).stat().st_size
            except FileNotFoundError:
                return None
        return self.memory.size_of(key)

    def parts(self, key: str) -> set[str]:
        """Names of the tensors stored for `key` (on disk: from the file's header and length,
        without reading it; memory-only: in memory); empty when absent or damaged."""
        self._require_bound()
        if self.path is None:
            return set(self.memory.get(key) or ())
        return disk.stored_parts(disk.entry_path(self.path, key), key, self._digest) or set()

    def get(self, key: str) -> Entry | None:
        """The tensors stored for `key` (CPU, original dtypes), from memory or disk; None
        for a miss. A damaged disk entry counts as a miss (it is logged, then rewritten)."""
        self._require_bound()
        entry = self.memory.get(key)
        if entry is not None:  # it may hold only some parts (`read`): add the file's others
            self._count("memory_hits")
            on_disk = self.parts(key) if self.path is not None else set()
            return self.read(key, [*entry, *on_disk]) or entry
        entry = self._read(key, None)
        if entry is None:
            self._count("misses")
            return None
        self._count("disk_hits")
        self.memory.put(key, entry)
        return entry

    def lookup(self, key: str, names: Iterable[str]) -> bool:
        """Whether the parts `names` are stored for `key`, in memory or in the disk file (judged
        by its header and length; `read` checks the bytes). Counted like `get`: a memory hit
        (memory holds every part asked), a disk hit or a miss; a damaged file is logged and
        counted corrupt (then rewritten)."""
        self._require_bound()
        names, held = set(names), set(self.memory.get(key) or ())
        found = names <= held
        if not found and self.path is not None:
            path = disk.entry_path(self.path, key)
            try:
                found = names <= held | set(disk.read_header(path, key, self._digest)[0])
            except OSError:
                pass
            except disk.CorruptEntryError as err:
                self._damaged(path, err)
        self._count(("memory_hits" if names <= held else "disk_hits") if found else "misses")
        return found

    def read(
        self,
        key: str,
        names: Iterable[str],
        formats: Mapping[str, torch.memory_format] | None = None,
    ) -> Entry | None:
        """The parts `names` of `key`'s entry: those held in memory, the others read from disk
        (only they, checked, in `formats`: a memory format per name) and kept in memory. None
        when one is not stored or the file is damaged (logged, counted corrupt). Not counted as
        a hit: `lookup` (or `get`) counts each use of an image once."""
        self._require_bound()
        names = list(dict.fromkeys(names))
        entry = self.memory.get(key) or {}
        missing = [n for n in names if n not in entry]
        if missing:
            got = self._read(key, missing, formats)
            if got is None or set(got) != set(missing):
                return None
            if not self.memory.extend(key, got):
                self.memory.put(key, got)
            entry = {**entry, **got}
        return entry

    def put(self, key: str, tensors: Mapping[str, torch.Tensor], *, persist: bool = True) -> Entry:
        """Store an entry (replacing the key's) -> the tensors as `get` will return them
        (rounded through the storage dtype, on the CPU). In memory they join what the key had
        there; the disk file holds exactly `tensors`. `persist=False`: added, as given, to the
        key's entry in memory only, if it is held there."""
        self._require_bound()
        if not persist:
            self.memory.extend(key, {k: t.detach().to("cpu") for k, t in tensors.items()})
            return dict(tensors)
        entry = {k: self._round(t) for k, t in tensors.items()}
        if self.path is not None:
            blob = disk.encode_entry(entry, key, self._digest, self.dtype)
            try:
                disk.atomic_write(disk.entry_path(self.path, key), blob)
                self._count("writes")
            except OSError as err:  # a read-only or full disk: the entry stays in memory
                log.warning("Could not write to the embedding store %s: %s", self.path, err)
                self._count("write_errors")
        self.memory.put(key, entry, merge=True)
        return entry

    def keys(self) -> Iterator[str]:
        """Keys of the stored entries (on disk; in memory for a memory-only store)."""
        if self.path is None:
            return iter(self.memory.keys())
        return disk.iter_keys(self.path)

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    def disk_bytes(self) -> int:
        """Total bytes of the entry files on disk (0 for a memory-only store)."""
        if self.path is None:
            return 0
        return sum(self.nbytes(k) or 0 for k in self.keys())

    # ---------------------------------------------------------------- helpers
    def _round(self, t: torch.Tensor) -> torch.Tensor:
        """`t` on the CPU with the storage dtype's rounding, in its own dtype (fp32: as is)."""
        t = t.detach().to("cpu")
        if not t.is_floating_point():
            return t
        stored = t.to(disk.DTYPES[self.dtype])
        if self.dtype == "fp16" and not torch.isfinite(stored).all() and torch.isfinite(t).all():
            raise StoreError(
                "These embeddings exceed the fp16 range (|x| > 65504); keep this model's "
                "embeddings in a store with dtype='bf16' or 'fp32'."
            )
        return stored.to(t.dtype)

    def _read(
        self,
        key: str,
        names: Iterable[str] | None,
        formats: Mapping[str, torch.memory_format] | None = None,
    ) -> Entry | None:
        """The parts `names` (None: all) of `key`'s disk file, checked; None when it is absent
        or damaged (logged, counted corrupt)."""
        if self.path is None:
            return None
        path = disk.entry_path(self.path, key)
        try:
            if names is None:
                names = disk.read_header(path, key, self._digest)[0]
            return disk.read_parts(path, key, self._digest, names, formats)
        except FileNotFoundError:
            return None
        except disk.CorruptEntryError as err:
            self._damaged(path, err)
            return None

    def _damaged(self, path: Path, err: Exception) -> None:
        """Log and count a damaged entry file (its image is recomputed and the file rewritten)."""
        log.warning("Recomputing the damaged store entry %s: %s", path, err)
        self._count("corrupt")

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1
