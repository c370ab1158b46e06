"""--embedding-store: encoded images in a shared folder, read back by a second backend."""

from __future__ import annotations

import pytest
from sam3_labelstudio.cli import build_parser, make_backend
from sam3_labelstudio.server import create_app
from starlette.testclient import TestClient

CONFIG = """<View><Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image"><Label value="Cell"/></BrushLabels>
  <KeyPointLabels name="click" toName="image" smartOnly="true"><Label value="Cell"/></KeyPointLabels>
</View>"""


def serve_args(ckpt, images_dir, *extra):
    return build_parser().parse_args(
        ["serve", "--checkpoint", str(ckpt), "--config", "sam3_tiny", "--device", "cpu",
         "--local-files-root", str(images_dir), "--score-threshold", "0", *extra]
    )  # fmt: skip


def test_a_second_backend_reads_the_first_ones_embeddings(tiny_checkpoint, images_dir, tmp_path):
    store = tmp_path / "store"
    tasks = [{"id": i, "data": {"image": f"/data/local-files/?d={n}"}}
             for i, n in enumerate(["a.png", "b.png"])]  # fmt: skip
    first = make_backend(serve_args(tiny_checkpoint, images_dir, "--embedding-store", str(store)))
    with TestClient(create_app(first)) as c:
        resp = c.post("/predict", json={"tasks": tasks, "label_config": CONFIG})
        assert resp.status_code == 200 and len(resp.json()["results"]) == 2
    assert len(first.store) == 2 and first.store.stats["misses"] == 2

    # a restarted backend: nothing encoded again, the click reads the folder
    second = make_backend(
        serve_args(tiny_checkpoint, images_dir, "--embedding-store", str(store), "--memory-mb", "0")
    )
    click = {"type": "keypointlabels", "value": {"x": 30, "y": 40, "keypointlabels": ["Cell"]}}
    body = {"tasks": tasks[:1], "label_config": CONFIG, "params": {"context": {"result": [click]}}}
    with TestClient(create_app(second)) as c:
        resp = c.post("/predict", json=body)
        assert resp.status_code == 200 and resp.json()["results"][0]["result"]
        metrics = c.get("/metrics").json()
    assert metrics["disk_hits"] >= 1 and metrics["misses"] == 0


def test_a_store_folder_that_is_a_file_is_a_usage_error(tiny_checkpoint, images_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="--embedding-store: .*is a file; pass a folder"):
        make_backend(
            serve_args(tiny_checkpoint, images_dir, "--embedding-store", str(tmp_path / "file"))
        )


def test_the_old_cache_size_still_starts(tiny_checkpoint, images_dir, caplog):
    backend = make_backend(serve_args(tiny_checkpoint, images_dir, "--cache-size", "2"))
    assert backend.store.memory.max_bytes == 2 * 150 * 2**20
    assert "--cache-size is replaced by --memory-mb" in caplog.text


def test_per_concept_thresholds_replace_the_score_threshold(tiny_checkpoint, images_dir, tmp_path):
    from sam3_core.metrics.thresholds import Thresholds, save_thresholds

    config = """<View><Image name="image" value="$image"/>
      <BrushLabels name="mask" toName="image"><Label value="A" concept="cat"/><Label value="B"
        concept="dog"/></BrushLabels></View>"""  # fmt: skip
    th = save_thresholds(Thresholds(default=0.0, concepts={"dog": 1.0}), tmp_path / "th.json")
    backend = make_backend(serve_args(tiny_checkpoint, images_dir, "--thresholds", str(th)))
    task = {"id": 1, "data": {"image": "/data/local-files/?d=a.png"}}
    with TestClient(create_app(backend)) as c:
        regions = c.post("/predict", json={"tasks": [task], "label_config": config}).json()
    labels = {r["value"]["brushlabels"][0] for r in regions["results"][0]["result"]}
    assert labels == {"A"}  # every "cat" kept (0.0), no "dog" reaches 1.0
    (tmp_path / "bad.json").write_text('{"version": 7}')
    with pytest.raises(SystemExit, match="--thresholds: .*bad.json"):
        make_backend(
            serve_args(tiny_checkpoint, images_dir, "--thresholds", str(tmp_path / "bad.json"))
        )
