"""Job outputs over time: error records re-tried, shards compacted, overlays drawn."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from sam3_core.jobs import JobSpec, iter_records, overlay_names, run_job, write_overlays
from sam3_core.jobs.overlays import overlay_name, overlay_root
from sam3_core.jobs.records import ShardStore
from sam3_core.postprocess import rle_to_mask
from tests.core.helpers import make_image
from tests.core.jobs.job_tools import BAD, GOOD, shard_ids


def png_bytes(h: int, w: int, seed: int) -> bytes:
    """A small PNG file's bytes."""
    buf = io.BytesIO()
    Image.fromarray(make_image(h, w, seed=seed)).save(buf, format="PNG")
    return buf.getvalue()


def test_retry_errors_replaces_error_records(tmp_path, spec):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes(40, 50, 1))
    (folder / "fixed.png").write_bytes(png_bytes(44, 52, 2)[:100])  # truncated for now
    (folder / "still_bad.png").write_bytes(b"not a PNG")
    job = JobSpec(**{**spec.__dict__, "inputs": (str(folder),)})
    out = tmp_path / "out"
    first = run_job(job, out, progress=False, compact=False)
    assert first.errors == 2
    (folder / "fixed.png").write_bytes(png_bytes(44, 52, 2))  # the user repairs one file
    again = run_job(job, out, progress=False)
    assert (again.processed, again.skipped) == (0, 3)  # errors stay done unless asked
    retried = run_job(job, out, progress=False, compact=False, retry_errors=True)
    assert (retried.processed, retried.skipped, retried.errors) == (2, 1, 1)
    ids = shard_ids(out)
    assert len(ids) == len(set(ids)) == 3  # the old error rows are gone, not shadowed
    records = {Path(r["id"]).name: r for r in iter_records(out)}
    assert len(records) == 3
    assert records["fixed.png"]["error"] is None
    assert (records["fixed.png"]["height"], records["fixed.png"]["width"]) == (44, 52)
    assert records["still_bad.png"]["error"] and records["good.png"]["error"] is None


def split_into_shards(src: Path, dst: Path, rows: int) -> list[dict]:
    """Copy a job output's records into `dst` as shards of `rows` records; returns them."""
    table = pa.Table.from_pylist(
        list(iter_records(src)), schema=pq.read_schema(next((src / "shards").glob("*.parquet")))
    )
    store = ShardStore(dst)
    for start in range(0, len(table), rows):
        store.write(table.slice(start, rows))
    return table.to_pylist()


def test_compaction_merges_small_shards(tmp_path, local_out):
    ref, _ = local_out
    records = split_into_shards(ref, tmp_path, rows=2)
    store = ShardStore(tmp_path)
    assert len(store.shards()) == (GOOD + len(BAD)) // 2
    size = max(s.stat().st_size for s in store.shards())
    assert store.compact(target_bytes=3 * size) > 0
    shards = store.shards()
    assert 1 < len(shards) < (GOOD + len(BAD)) // 2
    ids = shard_ids(tmp_path)
    assert len(ids) == len(set(ids)) == GOOD + len(BAD)
    assert list(iter_records(tmp_path)) == records
    assert ShardStore(tmp_path).compact() == len(shards) - 1  # all under 64 MiB: one shard
    assert len(ShardStore(tmp_path).shards()) == 1 and list(iter_records(tmp_path)) == records


class Crash(Exception):
    """Stands in for the process dying between two file operations."""


def test_compaction_cut_short_keeps_each_record_once(tmp_path, local_out, monkeypatch):
    ref, _ = local_out
    records = split_into_shards(ref, tmp_path, rows=3)
    unlink = Path.unlink

    def crash_after_one(self, *args, **kwargs):
        unlink(self, *args, **kwargs)
        raise Crash

    monkeypatch.setattr(Path, "unlink", crash_after_one)
    with pytest.raises(Crash):
        ShardStore(tmp_path).compact()  # merged shard written, one source gone, then down
    monkeypatch.undo()
    assert len(shard_ids(tmp_path)) > len(records)  # the merged rows and their sources
    assert list(iter_records(tmp_path)) == records  # still one record per id
    store = ShardStore(tmp_path)  # opening the store drops the stale copies
    ids = shard_ids(tmp_path)
    assert len(ids) == len(set(ids)) == len(records) and store.done == set(ids)
    assert list(iter_records(tmp_path)) == records


def test_overlay_names_are_unique_and_path_safe():
    ids = ["/data/a/x.png", "/data/b/x.png", "/data/b/x.jpg", "/data/b/c/y.tif"]
    root = overlay_root(ids)
    assert root == "/data"
    names = [overlay_name(i, root) for i in ids]
    assert names == ["a/x.png.png", "b/x.png.png", "b/x.jpg.png", "b/c/y.tif.png"]
    assert overlay_name("/data/a/x.png", overlay_root(["/data/a/x.png"])) == "x.png.png"
    uris = ["s3://bucket/we ird/../na?me*.tif", "s3://bucket/na_me_.tif", "gs://b/k/z.png"]
    root = overlay_root(uris)
    odd, plain, other = (overlay_name(u, root) for u in uris)
    assert plain == "s3/bucket/na_me_.tif.png" and other == "gs/b/k/z.png.png"
    assert odd.startswith("s3/bucket/na_me_.tif-") and odd.endswith(".png") and odd != plain
    assert ".." not in odd and "?" not in odd and "*" not in odd


def test_overlays_of_large_images_are_thumbnails(tmp_path, spec):
    """An image over OVERLAY_MAX_SIDE (here lowered) is drawn on a thumbnail, masks from the
    RLE crops; the same pixels are tinted as in a full-size drawing, subsampled."""
    from sam3_core.jobs import overlays

    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "big.png").write_bytes(png_bytes(90, 120, 5))
    job = JobSpec(**{**spec.__dict__, "inputs": (str(folder),), "score_threshold": 0.0})
    out = tmp_path / "out"
    run_job(job, out, progress=False, exports=("overlays",))
    full = np.asarray(Image.open(out / "overlays" / "big.png.png"))
    assert full.shape == (90, 120, 3)
    (record,) = iter_records(out)
    masks = [rle_to_mask(i["segmentation"]) for i in record["instances"]]
    assert masks and np.any(masks, axis=0)[::2, ::2].any()
    overlays.OVERLAY_MAX_SIDE, saved = 60, overlays.OVERLAY_MAX_SIDE
    try:
        thumb = write_overlays(out, tmp_path / "thumbs")
    finally:
        overlays.OVERLAY_MAX_SIDE = saved
    small = np.asarray(Image.open(thumb / "big.png.png"))
    assert small.shape == (45, 60, 3)  # every 2nd pixel
    image = np.asarray(Image.open(folder / "big.png").convert("RGB"))[::2, ::2]
    tinted = (small != image).any(-1)
    covered = np.any(masks, axis=0)[::2, ::2]
    assert tinted[covered].mean() > 0.9
    write_overlays(out, thumb)  # drawn already: kept as it is (a resumed job draws new ones)
    assert np.asarray(Image.open(thumb / "big.png.png")).shape == (45, 60, 3)
    write_overlays(out, thumb, overwrite=True)
    assert np.asarray(Image.open(thumb / "big.png.png")).shape == (90, 120, 3)


def test_overlays_tint_masks_and_keep_other_pixels(local_out, tmp_path):
    out, _ = local_out
    folder = out / "overlays"  # written by run_job(exports=("overlays", ...))
    good = [r for r in iter_records(out) if r["error"] is None]
    names = overlay_names(out)
    assert sorted(p.name for p in folder.iterdir()) == sorted(names[r["id"]] for r in good)
    tinted = 0
    for rec in good:
        image = np.asarray(Image.open(rec["id"]).convert("RGB"))
        drawn = np.asarray(Image.open(folder / names[rec["id"]]))
        assert drawn.shape == image.shape
        changed = (drawn != image).any(-1)
        masks = [rle_to_mask(i["segmentation"]) for i in rec["instances"]]
        covered = np.any(masks, axis=0) if masks else np.zeros(image.shape[:2], bool)
        near = np.zeros_like(covered)
        for inst in rec["instances"]:  # box outline and its label text
            x0, y0, x1, y1 = (round(v) for v in inst["box"])
            near[max(y0 - 2, 0) : max(y1, y0 + 14) + 3, max(x0 - 2, 0) : max(x1, x0 + 70) + 3] = 1
        assert not changed[~covered & ~near].any()  # nothing drawn away from instances
        if covered.any():
            assert changed[covered].mean() > 0.9
            tinted += 1
    assert tinted > 0
    few = write_overlays(out, tmp_path / "few", limit=2)
    assert len(list(few.iterdir())) == 2
    picked = write_overlays(out, tmp_path / "one", ids=[good[-1]["id"]])
    assert [p.name for p in picked.iterdir()] == [names[good[-1]["id"]]]
