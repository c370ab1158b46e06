"""Per-image records as Arrow rows, and the folder of Parquet shards that holds them.

A record: id (path or URI), width, height, instances (concept, score, box xyxy pixels,
segmentation as COCO RLE {size: [H, W], counts}), and error (None, or why the image failed).
Shards are written whole (temporary name, then renamed), so a crash leaves no partial shard.
Shards are numbered in the order they were written (`shard-<seq>-<run>.parquet`); when an id
is in two shards (a re-tried error record, or a merge cut off by a crash), the later one holds
its record and the earlier copy is dropped when the store next opens or finishes a run.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
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
SHARD_NAME = re.compile(r"shard-(\d+)-")
COMPACT_BYTES = 64 << 20  # shards smaller than this are merged into shards of about this size


def records_table(records: Sequence[dict], schema: pa.Schema = RECORD_SCHEMA) -> pa.Table:
    """Record dicts -> an Arrow table with `schema` (segmentation records by default), sorted
    by id."""
    table = pa.Table.from_pylist(list(records), schema=schema)
    return table.sort_by("id") if len(table) else table


def plan_batches(ids: Sequence[str], done: set[str], batch_size: int) -> list[list[str]]:
    """Cut the full sorted listing into fixed batches, then drop finished ids.

    Batches come from the whole listing, not from what is left, so a resumed job runs the
    same batches as an uninterrupted one (batch composition moves float results by ~1e-6).
    """
    batches = (ids[i : i + batch_size] for i in range(0, len(ids), batch_size))
    return [left for b in batches if (left := [i for i in b if i not in done])]


def shard_seq(shard: Path) -> int:
    """The write order of a shard (0 for shards named before numbering)."""
    match = SHARD_NAME.match(shard.name)
    return int(match.group(1)) if match else 0


def list_shards(out_dir: str | os.PathLike) -> list[Path]:
    """The finished shard files of a job output, oldest first."""
    shards = (Path(out_dir) / SHARDS_DIR).glob("*.parquet")
    return sorted(shards, key=lambda s: (shard_seq(s), s.name))


def latest_rows(shards: Sequence[Path]) -> list[tuple[str, int, int]]:
    """(id, shard index, row) of each id's record, in id order: the latest shard's copy wins.

    Reads the id column of every shard (memory: one small entry per image).
    """
    where: dict[str, tuple[int, int]] = {}
    for s, shard in enumerate(shards):
        for row, image_id in enumerate(pq.read_table(shard, columns=["id"])["id"].to_pylist()):
            where[image_id] = (s, row)
    return sorted((image_id, s, row) for image_id, (s, row) in where.items())


class ShardStore:
    """The `shards/` folder of a job: finished ids, atomic shard writes, reading back.

    retry_errors: ids whose record is an error count as not finished; their new record
    supersedes the error row. schema: the records' columns (an `id` and an `error` column
    at least; `RECORD_SCHEMA` for segmentation).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        retry_errors: bool = False,
        schema: pa.Schema = RECORD_SCHEMA,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.schema = schema
        self.folder = self.out_dir / SHARDS_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob("*.tmp"):
            leftover.unlink()  # a shard cut off by a crash: its batch was not finished
        self.run = uuid.uuid4().hex[:8]
        self.seq = max((shard_seq(s) for s in self.shards()), default=0)
        self.drop_superseded()
        self.done = self.finished_ids(with_errors=not retry_errors)

    def shards(self) -> list[Path]:
        """The finished shard files, oldest first."""
        return list_shards(self.out_dir)

    def finished_ids(self, with_errors: bool = True) -> set[str]:
        """Ids of every record already written (error records only `with_errors`)."""
        done: set[str] = set()
        for shard in self.shards():
            table = pq.read_table(shard, columns=["id", "error"])
            if not with_errors:
                table = table.filter(pc.is_null(table["error"]))
            done.update(table["id"].to_pylist())
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
        self.put(table)
        self.done.update(table["id"].to_pylist())
        return table

    def put(self, table: pa.Table, rows_per_group: int | None = None) -> Path:
        """Write `table` whole as the newest shard (temporary file, then rename)."""
        self.seq += 1
        path = self.folder / f"shard-{self.seq:09d}-{self.run}.parquet"
        replace_table(table.cast(self.schema), path, rows_per_group)
        return path

    def drop_superseded(self) -> int:
        """Remove each id's rows but the latest (each shard rewritten atomically); returns
        how many rows went. Repairs a retry or a merge that a crash cut short."""
        shards = self.shards()
        keep: list[list[int]] = [[] for _ in shards]
        for _, s, row in latest_rows(shards):
            keep[s].append(row)
        dropped = 0
        for shard, rows in zip(shards, keep):
            total = pq.read_metadata(shard).num_rows
            if len(rows) == total:
                continue
            dropped += total - len(rows)
            if rows:
                replace_table(pq.read_table(shard).take(sorted(rows)), shard)
            else:
                shard.unlink()
        return dropped

    def compact(self, target_bytes: int = COMPACT_BYTES) -> int:
        """Merge shards smaller than `target_bytes` into shards of about that size; returns
        how many shards were merged away. Each merged shard is written before its sources
        go, so a crash in between leaves duplicates that `drop_superseded` removes; it runs
        first, so that merged shards hold current rows only."""
        self.drop_superseded()
        groups: list[list[Path]] = [[]]
        size = 0
        for shard in self.shards():
            nbytes = shard.stat().st_size
            if nbytes >= target_bytes:
                continue
            if size + nbytes > target_bytes and groups[-1]:
                groups.append([])
                size = 0
            groups[-1].append(shard)
            size += nbytes
        merged = 0
        for group in (g for g in groups if len(g) > 1):
            table = pa.concat_tables(pq.read_table(s) for s in group).sort_by("id")
            self.put(table, rows_per_group=len(table))
            for shard in group:
                shard.unlink()
            merged += len(group) - 1
        return merged


def replace_table(table: pa.Table, path: Path, rows_per_group: int | None = None) -> None:
    """Write a Parquet file under a temporary name, then rename it over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=rows_per_group)
    os.replace(tmp, path)


def iter_records(
    out_dir: str | os.PathLike, columns: Sequence[str] | None = None
) -> Iterator[dict]:
    """Every record of a job's output in id order, one per id, read shard by shard.

    Reads the id column of all shards first (memory: one small entry per image), then the
    rows, keeping a few shard tables open at a time.
    """
    shards = list_shards(out_dir)
    load = shard_cache(shards, columns)
    for _, s, row in latest_rows(shards):
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
