"""The local runner end to end: records, bad inputs, resume after an interruption, writers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from sam3_core.jobs import iter_records, labeling_config, run_job, write_labelstudio
from sam3_core.jobs.worker import Worker
from sam3_core.postprocess import rle_to_mask
from tests.core.jobs.job_tools import BAD, GOOD, kill_driver_after_first_shard, shard_ids


def test_every_image_once_with_error_records(local_out, job_data):
    out, summary = local_out
    ids = shard_ids(out)
    assert len(ids) == len(set(ids)) == GOOD + len(BAD)
    assert (summary.total, summary.processed, summary.skipped) == (GOOD + len(BAD), len(ids), 0)
    records = {r["id"].rsplit("/", 1)[-1]: r for r in iter_records(out)}
    errors = {name: r["error"] for name, r in records.items() if r["error"]}
    assert sorted(errors) == sorted(BAD) and summary.errors == len(BAD)
    assert "max_pixels" in errors["huge.png"]
    assert "5 channels" in errors["five_channels.tif"]
    assert "cannot read image" in errors["truncated.png"]
    good = [r for r in records.values() if not r["error"]]
    assert sum(len(r["instances"]) for r in good) == summary.instances > 0
    rec = records["im03.png"]
    assert (rec["height"], rec["width"]) == (49, 62)
    for inst in (i for r in good for i in r["instances"]):
        assert inst["concept"] in ("cell", "dog") and inst["score"] > 0.3
        assert rle_to_mask(inst["segmentation"]).shape == tuple(inst["segmentation"]["size"])


def test_records_match_the_predictor(local_out, spec):
    out, _ = local_out
    records = [r for r in iter_records(out) if not r["error"]]
    worker = Worker(spec)
    paths = [r["id"] for r in records[:2]]  # the first planned batch holds these two
    inst = worker.predictor.predict_batch(paths, ["cell", "dog"], score_threshold=0.3)
    assert [len(i) for i in inst] == [len(r["instances"]) for r in records[:2]]
    for result, rec in zip(inst, records):
        got = np.array([i["score"] for i in rec["instances"]], np.float32)
        np.testing.assert_array_equal(got, result.scores)
        for mask, i in zip(result.masks, rec["instances"]):
            assert np.array_equal(rle_to_mask(i["segmentation"]), mask)


def test_rerun_skips_everything(local_out, spec):
    out, _ = local_out
    before = sorted(p.name for p in (out / "shards").iterdir())
    summary = run_job(spec, out, progress=False)
    assert (summary.processed, summary.skipped) == (0, GOOD + len(BAD))
    assert sorted(p.name for p in (out / "shards").iterdir()) == before


def test_driver_killed_then_resumed_equals_uninterrupted(tmp_path, local_out, spec):
    ref, _ = local_out
    out = tmp_path / "out"
    at_kill = kill_driver_after_first_shard(spec, out)  # a real SIGKILL, mid-job
    assert 0 < at_kill < GOOD + len(BAD) and len(set(shard_ids(out))) == at_kill
    summary = run_job(spec, out, exports=("coco", "labelstudio"), progress=False)
    assert (summary.skipped, summary.processed) == (at_kill, GOOD + len(BAD) - at_kill)
    ids = shard_ids(out)
    assert len(ids) == len(set(ids)) == GOOD + len(BAD)  # no duplicate, no partial shard
    assert not list((out / "shards").glob("*.tmp"))
    assert list(iter_records(out)) == list(iter_records(ref))
    for name in ("annotations.json", "labelstudio.json"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()


def test_coco_export_loads_in_pycocotools(local_out):
    out, summary = local_out
    coco = COCO(str(out / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cell", "dog"]
    assert len(coco.getImgIds()) == GOOD and len(coco.getAnnIds()) == summary.instances
    records = {r["id"]: r for r in iter_records(out)}
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann["image_id"])[0]
        mask = coco.annToMask(ann)
        assert mask.shape == (img["height"], img["width"]) and mask.sum() == ann["area"]
        assert coco.loadCats(ann["category_id"])[0]["name"] in {
            i["concept"] for i in records[img["file_name"]]["instances"]
        }


def test_labelstudio_export_brush_and_rectangle(local_out):
    out, summary = local_out
    from label_studio_sdk.converter.brush import decode_rle

    tasks = json.loads((out / "labelstudio.json").read_text())
    assert len(tasks) == GOOD
    results = [r for t in tasks for p in t["predictions"] for r in p["result"]]
    assert len(results) == summary.instances
    records = {r["id"]: r for r in iter_records(out)}
    task = next(t for t in tasks if t["predictions"][0]["result"])
    rec = records[task["data"]["image"]]
    region = task["predictions"][0]["result"][0]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"][0] in ("cell", "dog")
    h, w = rec["height"], rec["width"]
    alpha = decode_rle(region["value"]["rle"]).reshape(h, w, 4)[..., 3] > 0
    assert np.array_equal(alpha, rle_to_mask(rec["instances"][0]["segmentation"]))
    assert "<BrushLabels" in labeling_config(["cell", "dog"])
    rect = json.loads(write_labelstudio(out, out / "rect.json", kind="rectangle").read_text())
    box = rect[tasks.index(task)]["predictions"][0]["result"][0]["value"]
    x0, y0, x1, y1 = rec["instances"][0]["box"]
    assert [box[k] for k in ("x", "y", "width", "height")] == pytest.approx(
        [100 * x0 / w, 100 * y0 / h, 100 * (x1 - x0) / w, 100 * (y1 - y0) / h]
    )
