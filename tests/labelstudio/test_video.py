"""Video tasks: concepts tracked into videorectangle sequences; a drawn box tracked forward."""

from __future__ import annotations

import numpy as np
import pytest
from sam3_labelstudio.cli import build_parser, make_backend
from sam3_labelstudio.labeling import OutputTag, parse_config
from sam3_labelstudio.server import create_app
from sam3_labelstudio.video import drawn_boxes, track_sequence, videorectangle_result
from starlette.testclient import TestClient

from sam3_core.video.association import AssociationConfig

CONFIG = """<View>
  <Video name="video" value="$video" frameRate="10"/>
  <Labels name="labels" toName="video"><Label value="Car" concept="car"/><Label value="Bus"/></Labels>
  <VideoRectangle name="box" toName="video"/>
</View>"""


def test_track_sequence_closes_spans_and_counts_frames_from_one():
    boxes = {t: np.array([10, 20, 30, 60], np.float32) for t in (0, 1, 2, 5)}
    seq = track_sequence(boxes, width=100, height=200, fps=10)
    assert [s["frame"] for s in seq] == [1, 2, 3, 6]
    assert [s["enabled"] for s in seq] == [True, True, False, False]
    assert seq[0] == {"frame": 1, "x": 10.0, "y": 10.0, "width": 20.0, "height": 20.0,
                      "rotation": 0, "enabled": True, "time": 0.0}  # fmt: skip
    assert (seq[1]["x"], seq[1]["y"], seq[1]["width"]) == (10, 10, 20)
    assert seq[3]["time"] == 0.5
    out = OutputTag("box", "video", "VideoRectangle", {"Car": "car"})
    res = videorectangle_result(seq, out, "Car", frames=8, fps=10, score=0.7)
    assert res["type"] == "videorectangle" and res["value"]["labels"] == ["Car"]
    assert res["value"]["framesCount"] == 8 and res["value"]["duration"] == 0.8
    item = {"id": "r1", "type": "videorectangle", "value": {"labels": ["Bus"], "sequence": seq}}
    [(rid, frame, box, labels)] = drawn_boxes([item], 100, 200)
    assert (rid, frame, labels) == ("r1", 5, ["Bus"]) and np.allclose(box, (10, 20, 30, 60))


def test_video_config():
    schema = parse_config(CONFIG)
    assert schema.media_tag == "Video" and schema.frame_rate == 10
    assert schema.outputs[0].tag == "VideoRectangle"
    assert schema.outputs[0].concepts == {"Car": "car", "Bus": "Bus"}


@pytest.fixture(scope="module")
def client(tiny_checkpoint, images_dir):
    from tests.core.helpers import make_image
    from tests.core.video.test_video import write_mp4

    frames = np.stack([np.roll(make_image(64, 80, seed=3), 2 * t, axis=1) for t in range(5)])
    write_mp4(images_dir / "clip.mp4", frames)
    args = build_parser().parse_args(
        ["serve", "--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu",
         "--local-files-root", str(images_dir), "--score-threshold", "0.0"]
    )  # fmt: skip
    backend = make_backend(args)
    # random tiny weights score every detection low: let them all start tracks
    backend.video.association = AssociationConfig(score_threshold_detection=0.0, new_det_thresh=0.0)
    with TestClient(create_app(backend)) as c:
        yield c


def test_video_concepts_and_drawn_box(client):
    task = {"id": 1, "data": {"video": "/data/local-files/?d=clip.mp4"}}
    resp = client.post("/predict", json={"tasks": [task], "label_config": CONFIG})
    assert resp.status_code == 200, resp.text
    regions = resp.json()["results"][0]["result"]
    assert regions
    for region in regions:
        assert region["type"] == "videorectangle" and region["value"]["framesCount"] == 5
        assert region["value"]["labels"][0] in ("Car", "Bus")
    drawn = {"id": "abc", "type": "videorectangle", "from_name": "box", "to_name": "video",
             "value": {"labels": ["Car"], "framesCount": 5, "duration": 0.5,
                       "sequence": [{"frame": 2, "x": 20, "y": 20, "width": 40, "height": 50,
                                     "enabled": True, "rotation": 0, "time": 0.1}]}}  # fmt: skip
    body = {"tasks": [task], "label_config": CONFIG, "params": {"context": {"result": [drawn]}}}
    resp = client.post("/predict", json=body)
    assert resp.status_code == 200, resp.text
    [region] = resp.json()["results"][0]["result"]
    assert region["id"] == "abc" and region["value"]["labels"] == ["Car"]
    frames = [s["frame"] for s in region["value"]["sequence"]]
    assert frames[0] == 2 and frames == sorted(frames) and frames[-1] <= 5


def drawn_box(**key) -> dict:
    seq = [{"frame": 2, "x": 20, "y": 20, "width": 40, "height": 50} | key]
    return {"id": "abc", "type": "videorectangle", "value": {"labels": ["Car"], "sequence": seq}}


@pytest.mark.parametrize(("item", "needle"), [
    (drawn_box(height=None), "needs a sequence whose last keyframe has numeric frame"),
    (drawn_box(frame=9), "A box is drawn on frame 9, but the video has 5 frames (1..5)"),
    ({"type": "videorectangle", "value": {"sequence": "x"}}, "needs a sequence"),
])  # fmt: skip
def test_a_bad_drawn_box_is_a_422_naming_it(client, item, needle):
    task = {"id": 4, "data": {"video": "/data/local-files/?d=clip.mp4"}}
    body = {"tasks": [task], "label_config": CONFIG, "params": {"context": {"result": [item]}}}
    resp = client.post("/predict", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"].startswith("Task 4: Bad video prompt: ")
    assert needle in resp.json()["error"]


def test_an_unreadable_video_fails_its_own_task(client, images_dir):
    (images_dir / "broken.mp4").write_bytes(b"not a video")
    tasks = [{"id": 5, "data": {"video": "/data/local-files/?d=broken.mp4"}},
             {"id": 6, "data": {"video": "/data/local-files/?d=nothing.mp4"}},
             {"id": 7, "data": {"video": "/data/local-files/?d=clip.mp4"}}]  # fmt: skip
    resp = client.post("/predict", json={"tasks": tasks, "label_config": CONFIG})
    assert resp.status_code == 200, resp.text
    broken, missing, good = resp.json()["results"]
    assert "result" not in broken and broken["status"] == 422
    assert broken["error"].startswith("Task 5: Cannot read the video /data/local-files/?d=broken")
    assert missing["error"].startswith("Task 6: Cannot read the video /data/local-files/?d=nothing")
    assert good["result"] and good["result"][0]["type"] == "videorectangle"
