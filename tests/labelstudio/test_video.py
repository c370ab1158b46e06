"""Video tasks: concepts tracked into videorectangle sequences; a drawn box tracked forward."""

from __future__ import annotations

import numpy as np
import pytest
from sam3_labelstudio.cli import build_parser, make_backend
from sam3_labelstudio.keyframes import track_sequence
from sam3_labelstudio.labeling import OutputTag, parse_config
from sam3_labelstudio.server import create_app
from sam3_labelstudio.tracker_options import association
from sam3_labelstudio.video import drawn_boxes, videorectangle_result
from starlette.testclient import TestClient

from sam3_core.video.association import AssociationConfig

CONFIG = """<View>
  <Video name="video" value="$video" frameRate="10"/>
  <Labels name="labels" toName="video"><Label value="Car" concept="car"/><Label value="Bus"/></Labels>
  <VideoRectangle name="box" toName="video"/>
</View>"""


def test_track_sequence_closes_spans_and_counts_frames_from_one():
    boxes = {t: np.array([10, 20, 30, 60], np.float32) for t in (0, 1, 2, 5)}
    seq = track_sequence(boxes, width=100, height=200, fps=10, tolerance=0)
    assert [s["frame"] for s in seq] == [1, 2, 3, 6]
    assert [s["enabled"] for s in seq] == [True, True, False, False]
    # Label Studio writes time = frame / frameRate, frames counted from 1
    assert seq[0] == {"frame": 1, "x": 10.0, "y": 10.0, "width": 20.0, "height": 20.0,
                      "rotation": 0, "enabled": True, "time": 0.1}  # fmt: skip
    assert (seq[1]["x"], seq[1]["y"], seq[1]["width"]) == (10, 10, 20)
    assert seq[3]["time"] == 0.6
    out = OutputTag("box", "video", "VideoRectangle", {"Car": "car"})
    res = videorectangle_result(seq, out, "Car", frames=8, fps=10, score=0.7)
    assert res["type"] == "videorectangle" and res["value"]["labels"] == ["Car"]
    assert res["value"]["framesCount"] == 8 and res["value"]["duration"] == 0.8
    item = {"id": "r1", "type": "videorectangle", "value": {"labels": ["Bus"], "sequence": seq}}
    assert drawn_boxes([item], 100, 200) == []  # a closed track is left alone
    seq[-1]["enabled"] = True  # a box added after the track's end: tracked from there
    [d] = drawn_boxes([item], 100, 200)
    assert (d.rid, d.frame, d.labels) == ("r1", 5, ["Bus"]) and np.allclose(d.box, (10, 20, 30, 60))
    assert d.kept == seq[:-1]


def interpolate(seq: list[dict], frame: int, width: int, height: int) -> np.ndarray:
    """Label Studio's box on `frame` (from 1): linear between the keyframes around it, in px."""
    prev = max((k for k in seq if k["frame"] <= frame), key=lambda k: k["frame"])
    nxt = min((k for k in seq if k["frame"] >= frame), key=lambda k: k["frame"])
    r = 0.0 if nxt is prev else (frame - prev["frame"]) / (nxt["frame"] - prev["frame"])
    xywh = [prev[p] + (nxt[p] - prev[p]) * r for p in ("x", "y", "width", "height")]
    return np.array(xywh) * [width / 100, height / 100, width / 100, height / 100]


def test_keyframes_only_where_the_motion_changes_within_the_tolerance():
    # 60 frames: still, then moving right at 3 px/frame, then down at 2 px/frame, with jitter
    rng = np.random.default_rng(0)
    boxes = {}
    for t in range(60):
        x = 10 + 3 * min(max(t - 10, 0), 20)
        y = 20 + 2 * max(t - 30, 0)
        boxes[t] = np.array([x, y, x + 40, y + 30], np.float32) + rng.uniform(-0.4, 0.4, 4)
    seq = track_sequence(boxes, width=200, height=150, fps=25, tolerance=2.0)
    assert 4 <= len(seq) <= 8, [k["frame"] for k in seq]  # not one per frame (60)
    assert seq[0]["frame"] == 1 and seq[-1]["frame"] == 60 and not seq[-1]["enabled"]
    for t, box in boxes.items():
        xywh = np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]])
        assert np.abs(interpolate(seq, t + 1, 200, 150) - xywh).max() <= 2.0 + 1e-6
    every = track_sequence(boxes, width=200, height=150, fps=25, tolerance=0)
    assert len(every) == 60


def test_video_config():
    schema = parse_config(CONFIG)
    assert schema.media_tag == "Video" and schema.frame_rate == 10
    assert schema.outputs[0].tag == "VideoRectangle"
    assert schema.outputs[0].concepts == {"Car": "car", "Bus": "Bus"}


@pytest.fixture(scope="module")
def client(tiny_checkpoint, images_dir):
    from tests.core.helpers import make_image, write_mp4

    frames = np.stack([np.roll(make_image(64, 80, seed=3), 2 * t, axis=1) for t in range(5)])
    write_mp4(images_dir / "clip.mp4", frames)
    args = build_parser().parse_args(
        ["serve", "--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu",
         "--local-files-root", str(images_dir), "--score-threshold", "0.0"]
    )  # fmt: skip
    backend = make_backend(args)
    # random tiny weights score every detection low: let them all start tracks
    assert backend.video.association.score_threshold_detection == 0.0  # --score-threshold
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


def keyframe(frame: int, x: float, enabled: bool = True) -> dict:
    return {"frame": frame, "x": x, "y": 20, "width": 30, "height": 40, "rotation": 0,
            "enabled": enabled, "time": frame / 10}  # fmt: skip


def test_an_existing_track_with_a_new_box_keeps_its_earlier_frames(client):
    """Label Studio sends every region of the label: a track extended by a box after its end is
    tracked from that box with its earlier keyframes kept; a closed track is not touched."""
    task = {"id": 2, "data": {"video": "/data/local-files/?d=clip.mp4"}}
    earlier = [keyframe(1, 10), keyframe(2, 12, enabled=False)]
    extended = {"id": "trk", "type": "videorectangle", "from_name": "box", "to_name": "video",
                "value": {"labels": ["Bus"], "sequence": earlier + [keyframe(4, 18)]}}  # fmt: skip
    closed = {"id": "old", "type": "videorectangle", "from_name": "box", "to_name": "video",
              "value": {"labels": ["Bus"], "sequence": [keyframe(1, 50, enabled=False)]}}  # fmt: skip
    body = {"tasks": [task], "label_config": CONFIG,
            "params": {"context": {"result": [closed, extended]}}}  # fmt: skip
    resp = client.post("/predict", json=body)
    assert resp.status_code == 200, resp.text
    [region] = resp.json()["results"][0]["result"]
    seq = region["value"]["sequence"]
    assert region["id"] == "trk" and region["value"]["labels"] == ["Bus"]
    assert seq[:2] == earlier  # kept exactly as the user had them
    assert seq[2]["frame"] == 4 and abs(seq[2]["x"] - 18) < 1e-4  # the new box, as drawn
    assert all(k["frame"] >= 4 for k in seq[2:]) and seq[-1]["frame"] <= 5
    assert all(abs(k["time"] - k["frame"] / 10) < 1e-9 for k in seq)
    only_closed = dict(body, params={"context": {"result": [closed]}})
    resp = client.post("/predict", json=only_closed)
    assert resp.status_code == 200 and resp.json()["results"][0]["result"] == []


def test_video_thresholds_come_from_the_command_line(tiny_checkpoint):
    base = ["serve", "--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny"]
    args = build_parser().parse_args(base + ["--score-threshold", "0.3"])
    assoc = association(args)
    assert assoc.score_threshold_detection == 0.3 and assoc.new_det_thresh == 0.7
    args = build_parser().parse_args(
        base + ["--score-threshold", "0.9", "--tracker-option", "assoc_iou_thresh=0.25",
                "--tracker-option", "max_reconditioned_frames=none"]
    )  # fmt: skip
    assoc = association(args)
    assert assoc.new_det_thresh == 0.9 and assoc.assoc_iou_thresh == 0.25
    assert assoc.max_reconditioned_frames is None
    args = build_parser().parse_args(base + ["--new-track-threshold", "0.2"])
    assert association(args).new_det_thresh == 0.2
    for bad, needle in [("nope=1", "KEY one of"), ("end_lost_after=x", "expected int"),
                        ("end_lost_after=-1", "end_lost_after must be")]:  # fmt: skip
        args = build_parser().parse_args(base + ["--tracker-option", bad])
        with pytest.raises(SystemExit, match=needle):
            association(args)
    with pytest.raises(SystemExit):
        build_parser().parse_args(base + ["--score-threshold", "2"])


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
