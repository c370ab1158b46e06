"""Job inputs and settings: listing, batch planning, job.json signatures and restarts."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sam3_core.jobs import InputError, JobSpec, JobSpecError, list_inputs
from sam3_core.jobs.inputs import local_copy
from sam3_core.jobs.records import ShardStore, plan_batches, records_table
from sam3_core.jobs.spec import prepare_output


def test_list_inputs_folders_globs_lists_and_uris(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/1.png", "a/deep/2.jpg", "a/notes.txt", "a/.hidden.png", "b.tif"):
        (tmp_path / name).write_bytes(b"x")
    a1, a2, b = (str(tmp_path / n) for n in ("a/1.png", "a/deep/2.jpg", "b.tif"))
    assert list_inputs([tmp_path / "a"]) == [a1, a2]  # recursive, images only, no hidden
    assert list_inputs([str(tmp_path / "*.tif"), tmp_path / "a", a1]) == [a1, a2, b]  # once each
    (tmp_path / "list.txt").write_text(f"# images\n{a1}\n\n{b}\ns3://bucket/x.png\n")
    assert list_inputs([tmp_path / "list.txt"]) == [a1, b, "s3://bucket/x.png"]
    pq.write_table(pa.table({"uri": [b, a2]}), tmp_path / "list.parquet")
    assert list_inputs([tmp_path / "list.parquet"]) == [a2, b]
    rows = [{"path": a1}, {"uri": b}, {"image": None}]  # each row names its own path column
    (tmp_path / "list.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert list_inputs([tmp_path / "list.jsonl"]) == [a1, b]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    assert list_inputs([tmp_path / "list.json"]) == [a1, b]
    uris = list_inputs([f"file://{tmp_path}/a"])
    assert uris == [f"file://{a1}", f"file://{a2}"]
    with local_copy(uris[0]) as local:
        assert local.read_bytes() == b"x" and str(local) != a1


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        list_inputs([tmp_path / "missing"])
    pq.write_table(pa.table({"name": ["x"]}), tmp_path / "l.parquet")
    with pytest.raises(InputError, match="no path column"):
        list_inputs([tmp_path / "l.parquet"])
    (tmp_path / "l.jsonl").write_text('{"path": "a.png"}\n{"name": "b.png"}\n')
    with pytest.raises(InputError, match=r"l.jsonl row 2 has no path column"):
        list_inputs([tmp_path / "l.jsonl"])
    with pytest.raises(JobSpecError, match="No prompt"):
        JobSpec(inputs=("x",))
    with pytest.raises(JobSpecError, match="score_threshold"):
        JobSpec(inputs=("x",), concepts=("cat",), score_threshold=2)
    with pytest.raises(JobSpecError, match="empty or inverted"):
        JobSpec(inputs=("x",), exemplars=((5, 5, 1, 1),))


def test_batches_are_cut_from_the_full_listing():
    ids = [f"{i}" for i in range(7)]
    assert plan_batches(ids, set(), 3) == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    # A resume keeps the same batches (float results depend on batch composition).
    assert plan_batches(ids, {"0", "1", "2", "4"}, 3) == [["3", "5"], ["6"]]


def test_shard_store_writes_each_id_once(tmp_path):
    store = ShardStore(tmp_path)
    row = {"id": "a", "width": 1, "height": 1, "instances": [], "error": None}
    assert len(store.write(records_table([row, {**row, "id": "b"}]))) == 2
    assert len(store.write(records_table([row, {**row, "id": "c"}]))) == 1  # "a" is done
    (store.folder / "part-x.parquet.tmp").write_bytes(b"cut off by a crash")
    again = ShardStore(tmp_path)
    assert again.done == {"a", "b", "c"} and not list(store.folder.glob("*.tmp"))


def test_resume_with_other_settings_is_refused_then_restart_moves_aside(tmp_path, spec):
    out = prepare_output(spec, tmp_path)
    (out / "shards").mkdir()
    (out / "shards" / "part-1.parquet").write_bytes(b"old results")
    assert prepare_output(spec, tmp_path) == out  # same settings: resume
    other = JobSpec(**{**spec.__dict__, "concepts": ("cat",)})
    with pytest.raises(JobSpecError, match=r"concepts \(\['cell', 'dog'\] there\).*restart=True"):
        prepare_output(other, tmp_path)
    stricter = JobSpec(**{**spec.__dict__, "score_threshold": 0.9})
    with pytest.raises(JobSpecError, match="score_threshold"):
        prepare_output(stricter, tmp_path)
    prepare_output(other, tmp_path, restart=True)
    assert json.loads((out / "job.json").read_text())["signature"]["concepts"] == ["cat"]
    (moved,) = out.glob("replaced-*")
    assert (moved / "shards" / "part-1.parquet").read_bytes() == b"old results"  # kept
    (out / "job.json").write_text("{cut off")
    with pytest.raises(JobSpecError, match="unreadable"):
        prepare_output(other, tmp_path)
    prepare_output(other, tmp_path, restart=True)  # starts over even with the same settings
    assert len(list(out.glob("replaced-*"))) == 2 and (out / "job.json").is_file()


def test_other_weights_are_refused(tmp_path, spec, job_data):
    prepare_output(spec, tmp_path)
    ckpt = tmp_path / "changed.safetensors"
    data = bytearray(job_data[0].read_bytes())
    data[-1] ^= 1
    ckpt.write_bytes(bytes(data))
    with pytest.raises(JobSpecError, match="weights"):
        prepare_output(JobSpec(**{**spec.__dict__, "checkpoint": str(ckpt)}), tmp_path)
