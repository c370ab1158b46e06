"""Jobs with per-image prompts: each listed image segmented with its own named concepts, the
others with the job's shared concepts; prompt files as inputs, resume, clear errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pycocotools.coco import COCO

from sam3_core.jobs import JobSpec, JobSpecError, iter_records, run_job
from sam3_core.jobs.image_prompts import as_image_prompts
from sam3_core.jobs.worker import Worker
from sam3_core.postprocess import rle_to_mask
from sam3_core.results import Concept, Exemplar
from tests.core.jobs.job_tools import (
    BAD,
    GOOD,
    kill_driver_after_first_shard,
    prompts_of,
    shard_ids,
)

TOTAL = GOOD + len(BAD)


def by_name(out) -> dict:
    return {r["id"].rsplit("/", 1)[-1]: r for r in iter_records(out)}


def test_each_image_runs_its_own_prompts(prompt_out, prompt_spec, job_data):
    out, summary = prompt_out
    records = by_name(out)
    assert len(records) == TOTAL and summary.errors == len(BAD) + 1
    assert {i["concept"] for i in records["im00.png"]["instances"]} == {"blob"}
    found01 = {i["concept"] for i in records["im01.png"]["instances"]}
    assert found01 and found01 <= {"cell", "dog"}
    empty = records["im02.png"]
    assert empty["instances"] == [] and empty["error"] is None and empty["height"] == 46
    assert "outside" in records["im03.png"]["error"]  # a bad box fails its image only
    shared = ("im04.png", "im05.png", "im06.png", "im07.png")  # the shared concept only
    assert {i["concept"] for n in shared for i in records[n]["instances"]} == {"cell"}
    assert sum(len(r["instances"]) for r in records.values()) == summary.instances > 0

    # the same instances as the predictor given the same concepts, under the given names
    _, images = job_data
    predictor = Worker(prompt_spec).predictor
    states = predictor.set_images([str(images / "im00.png"), str(images / "im01.png")])
    blob = Concept(None, (Exemplar((4, 4, 20, 20)),))
    dog = Concept("dog", (Exemplar((2, 2, 30, 30)), Exemplar((10, 10, 20, 20), False)))
    for state, concepts, names, name in (
        (states[0], [blob], ["blob"], "im00.png"),
        (states[1], ["cell", dog], ["cell", "dog"], "im01.png"),
    ):
        found = predictor.predict(state, concepts, score_threshold=0.0)
        rec = records[name]["instances"]
        assert len(found) == len(rec) > 0
        assert [names[k] for k in found.labels] == [i["concept"] for i in rec]
        np.testing.assert_array_equal([i["score"] for i in rec], found.scores)
        for mask, inst in zip(found.masks, rec):
            assert np.array_equal(rle_to_mask(inst["segmentation"]), mask)

    coco = COCO(str(out / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cell", "blob", "dog", "far"]
    assert len(coco.getAnnIds()) == summary.instances


def test_resume_skips_and_other_prompts_are_refused(prompt_out, prompt_spec, job_data, tmp_path):
    out, _ = prompt_out
    again = run_job(prompt_spec, out, progress=False)
    assert (again.processed, again.skipped) == (0, TOTAL)
    _, images = job_data
    moved = prompts_of(images)
    moved[str(images / "im00.png")] = [{"name": "blob", "exemplars": [[5, 4, 20, 20, 1]]}]
    other = dataclasses.replace(prompt_spec, image_prompts=moved)
    with pytest.raises(JobSpecError, match="image_prompts"):
        run_job(other, out, progress=False)

    killed = tmp_path / "killed"
    at_kill = kill_driver_after_first_shard(prompt_spec, killed)  # a real SIGKILL, mid-job
    assert 0 < at_kill < TOTAL
    resumed = run_job(prompt_spec, killed, progress=False)
    assert (resumed.skipped, resumed.processed) == (at_kill, TOTAL - at_kill)
    ids = shard_ids(killed)
    assert len(ids) == len(set(ids)) == TOTAL
    assert list(iter_records(killed)) == list(iter_records(out))


def test_prompt_file_is_the_input_list_with_relative_boxes(job_data, spec, tmp_path):
    _, images = job_data
    sizes = {"im00.png": (40, 56), "im01.png": (43, 58)}  # (H, W) of the test images
    pixel = {
        str(images / "im00.png"): [{"name": "blob", "exemplars": [[4, 4, 20, 20, 1]]}],
        str(images / "im01.png"): [{"text": "dog", "exemplars": [[2, 2, 30, 30, 0]]}, "cell"],
    }
    rows = []
    for path, entries in pixel.items():
        h, w = sizes[path.rsplit("/", 1)[-1]]
        rel = [
            e
            if isinstance(e, str)
            else {
                **e,
                "exemplars": [
                    [b[0] / w, b[1] / h, b[2] / w, b[3] / h, b[4]] for b in e["exemplars"]
                ],
            }
            for e in entries
        ]
        rows.append({"path": path, "prompts": rel})
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    relative = JobSpec(
        inputs=(),
        image_prompts=jsonl,
        relative_boxes=True,
        score_threshold=0.0,  # every query: the tiny random model scores low
        **{k: getattr(spec, k) for k in ("checkpoint", "config", "device")},
    )
    assert relative.inputs == (str(jsonl),) and relative.names() == ["blob", "dog", "cell"]
    done = run_job(relative, tmp_path / "rel", progress=False)
    assert (done.total, done.errors) == (2, 0) and done.instances > 0  # the file's images only
    absolute = dataclasses.replace(
        relative, inputs=tuple(pixel), image_prompts=pixel, relative_boxes=False
    )
    run_job(absolute, tmp_path / "abs", progress=False)
    for a, b in zip(iter_records(tmp_path / "rel"), iter_records(tmp_path / "abs")):
        assert [i["concept"] for i in a["instances"]] == [i["concept"] for i in b["instances"]]
        assert [i["score"] for i in a["instances"]] == pytest.approx(
            [i["score"] for i in b["instances"]], abs=1e-5
        )

    # the same prompts as a Parquet table (nested column) or a JSON string column
    nested = [{"path": r["path"], "prompts": [norm(e) for e in r["prompts"]]} for r in rows]
    pq.write_table(pa.Table.from_pylist(nested), tmp_path / "p.parquet")
    as_text = [{"path": r["path"], "prompts": json.dumps(r["prompts"])} for r in rows]
    pq.write_table(pa.Table.from_pylist(as_text), tmp_path / "s.parquet")
    digest = relative.image_prompts.digest
    assert as_image_prompts(tmp_path / "p.parquet").digest == digest
    assert as_image_prompts(tmp_path / "s.parquet").digest == digest

    # a .json array of the same rows is the input list too
    array = tmp_path / "prompts.json"
    array.write_text(json.dumps(rows))
    from_json = dataclasses.replace(relative, inputs=(), image_prompts=array)
    assert from_json.image_prompts.digest == digest and from_json.inputs == (str(array),)
    done = run_job(from_json, tmp_path / "json", progress=False)
    assert (done.total, done.errors) == (2, 0)
    assert list(iter_records(tmp_path / "json")) == list(iter_records(tmp_path / "rel"))


def norm(entry) -> dict:
    """A prompt entry with every key, as a Parquet struct column holds it."""
    if isinstance(entry, str):
        return {"text": entry, "exemplars": None, "name": None}
    return {"text": entry.get("text"), "exemplars": entry["exemplars"], "name": entry.get("name")}


def test_images_without_any_prompt_are_error_records(job_data, spec, tmp_path):
    _, images = job_data
    only = {str(images / "im00.png"): ["cell"]}
    job = dataclasses.replace(spec, concepts=(), image_prompts=only)
    summary = run_job(job, tmp_path / "out", progress=False)
    records = by_name(tmp_path / "out")
    assert records["im00.png"]["error"] is None
    assert "no prompt for this image" in records["im01.png"]["error"]
    assert summary.errors == TOTAL - 1


@pytest.mark.parametrize(
    "prompts, message",
    [
        ({"a.png": ["cat", {"text": "cat"}]}, "twice"),
        ({"a.png": [{"text": "cat", "box": [1, 2, 3, 4]}]}, "unknown keys"),
        ({"a.png": [{"name": "x"}]}, "neither text nor exemplars"),
        ({"a.png": [{"exemplars": [[1, 2, 3]]}]}, "x0, y0, x1, y1"),
        ({"a.png": 3}, "must be a list"),
        ({}, "lists no image"),
        (["a.png"], "must be a mapping"),
    ],
)
def test_bad_image_prompts_are_clear_errors(prompts, message):
    with pytest.raises(JobSpecError, match=message):
        JobSpec(inputs=("a.png",), image_prompts=prompts)


def test_prompt_file_problems_are_clear_errors(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text(json.dumps({"path": "a.png", "concepts": ["cat"]}) + "\n")
    with pytest.raises(JobSpecError, match="'prompts' column"):
        JobSpec(inputs=(), image_prompts=bad)
    with pytest.raises(JobSpecError, match="not found"):
        JobSpec(inputs=(), image_prompts=tmp_path / "missing.jsonl")
    with pytest.raises(JobSpecError, match="A job needs inputs"):
        JobSpec(inputs=(), image_prompts={"a.png": ["cat"]})


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"path": "a.png", "prompts": ["cat"]}, {"path": "b.png"}], "row 2 has no 'prompts'"),
        ([{"path": "a.png", "prompts": []}, {"name": "b.png", "prompts": []}], "row 2 has no path"),
        ([{"path": None, "prompts": ["cat"]}], "row 1 has an empty path"),
        ([{"path": "a.png", "prompts": "[cat"}], "row 1: its prompts are not valid JSON"),
    ],
)
def test_every_row_of_a_prompt_file_is_checked(tmp_path, rows, message):
    bad = tmp_path / "p.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(JobSpecError, match=message) as err:
        JobSpec(inputs=(), image_prompts=bad)
    assert str(bad) in str(err.value)


def test_pixel_boxes_given_as_relative_say_what_relative_means(job_data, spec, tmp_path):
    _, images = job_data
    pixel_boxes = {str(images / "im00.png"): [{"name": "blob", "exemplars": [[4, 4, 20, 20, 1]]}]}
    job = dataclasses.replace(
        spec, inputs=tuple(pixel_boxes), image_prompts=pixel_boxes, relative_boxes=True
    )
    for tile, out in ((None, "whole"), (64, "tiled")):
        run_job(
            dataclasses.replace(job, tile=tile, tile_overlap=16), tmp_path / out, progress=False
        )
        (record,) = iter_records(tmp_path / out)
        assert "outside" in record["error"] and "fractions" in record["error"]
        assert "--relative-boxes" in record["error"]


def test_cli_segment_with_a_prompts_file(job_data, tmp_path, capsys):
    import json

    from sam3_core.cli import main
    from sam3_core.jobs import iter_records

    ckpt, images = job_data
    rows = [
        {
            "path": str(images / "im00.png"),
            "prompts": [{"name": "blob", "exemplars": [[0.1, 0.1, 0.5, 0.5, 1]]}],
        },
        {"path": str(images / "im01.png"), "prompts": ["cell"]},
    ]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = ["--checkpoint", str(ckpt), "--config", "sam3_tiny", "--device", "cpu"]
    args = ["segment", "--prompts", str(prompts), "--relative-boxes", "--score-threshold", "0"]
    assert main([*args, "--out", str(tmp_path / "out"), "--no-overlays", *model]) == 0
    got = {
        r["id"].rsplit("/", 1)[-1]: {i["concept"] for i in r["instances"]}
        for r in iter_records(tmp_path / "out")
    }
    assert got == {"im00.png": {"blob"}, "im01.png": {"cell"}}
    assert main(["segment", "--out", str(tmp_path / "o2"), *model]) == 2
    assert "--prompts" in capsys.readouterr().err
