"""Per-image records as Arrow rows, and the folder of Parquet shards that holds them.

A record: id (path or URI), width, height, instances (concept, score, box xyxy pixels,
segmentation as COCO RLE {size: [H, W], counts}), and error (None, or why the image failed).
Shards are written whole (temporary name, then renamed), so a crash leaves no partial shard.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sam3_core.jobs.spec import SHARDS_DIR

RLE_TYPE = pa.struct([("size", pa.list_(pa.int32())), ("counts", pa.string())])
INSTANCE_TYPE = pa.struct(
    [
        ("concept", pa.string()),
        ("score", pa.float32()),
        ("box", pa.list_(pa.float32())),
        ("segmentation", RLE_TYPE),
    ]
)
RECORD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("instances", pa.list_(INSTANCE_TYPE)),
        ("error", pa.string()),
    ]
)


def records_table(records: Sequence[dict]) -> pa.Table:
    """Record dicts -> an Arrow table with `RECORD_SCHEMA`, sorted by id."""
    table = pa.Table.from_pylist(list(records), schema=RECORD_SCHEMA)
    return table.sort_by("id") if len(table) else table


def plan_batches(ids: Sequence[str], done: set[str], batch_size: int) -> list[list[str]]:
    """Cut the full sorted listing into fixed batches, then drop finished ids.

    Batches come from the whole listing, not from what is left, so a resumed job runs the
    same batches as an uninterrupted one (batch composition moves float results by ~1e-6).
    """
    batches = (ids[i : i + batch_size] for i in range(0, len(ids), batch_size))
    return [left for b in batches if (left := [i for i in b if i not in done])]


class ShardStore:
    """The `shards/` folder of a job: finished ids, atomic shard writes, reading back."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.folder = Path(out_dir) / SHARDS_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob("*.parquet.tmp"):
            leftover.unlink()  # a shard cut off by a crash: its batch was not finished
        self.run = uuid.uuid4().hex[:8]
        self.count = 0
        self.done = self.finished_ids()

    def shards(self) -> list[Path]:
        """The finished shard files, by name."""
        return sorted(self.folder.glob("*.parquet"))

    def finished_ids(self) -> set[str]:
        """Ids of every record already written (error records included)."""
        done: set[str] = set()
        for shard in self.shards():
            done.update(pq.read_table(shard, columns=["id"])["id"].to_pylist())
        return done

    def write(self, table: pa.Table) -> pa.Table:
        """Write the rows whose ids are not written yet as one shard; returns those rows."""
        ids = table["id"].to_pylist()
        seen: set[str] = set()
        fresh = []
        for row, image_id in enumerate(ids):
            if image_id not in self.done and image_id not in seen:
                seen.add(image_id)
                fresh.append(row)
        if len(fresh) < len(ids):
            table = table.take(fresh)
        if not len(table):
            return table
        self.count += 1
        path = self.folder / f"part-{self.run}-{self.count:06d}.parquet"
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table.cast(RECORD_SCHEMA), tmp)
        os.replace(tmp, path)
        self.done.update(table["id"].to_pylist())
        return table


def iter_records(
    out_dir: str | os.PathLike, columns: Sequence[str] | None = None
) -> Iterator[dict]:
    """Every record of a job's output in id order, read shard by shard (not all in memory).

    Reads the id column of all shards first (memory: one small entry per image), then the
    rows, keeping a few shard tables open at a time.
    """
    shards = sorted((Path(out_dir) / SHARDS_DIR).glob("*.parquet"))
    index: list[tuple[str, int, int]] = []
    for s, shard in enumerate(shards):
        ids = pq.read_table(shard, columns=["id"])["id"].to_pylist()
        index.extend((image_id, s, row) for row, image_id in enumerate(ids))
    index.sort()
    load = shard_cache(shards, columns)
    for _, s, row in index:
        yield load(s)[row]


def shard_cache(shards: list[Path], columns: Sequence[str] | None) -> Callable[[int], list[dict]]:
    """A loader of shard rows by shard index that keeps the last few shards in memory."""
    cache: dict[int, list[dict]] = {}

    def load(s: int) -> list[dict]:
        if s not in cache:
            if len(cache) >= 8:
                cache.pop(next(iter(cache)))
            table = pq.read_table(shards[s], columns=list(columns) if columns else None)
            cache[s] = table.to_pylist()
        return cache[s]

    return load
