"""`sam3 track` on a tiny generated mp4 with a tiny checkpoint: per-frame JSON and overlay.mp4."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam3_core.cli import main
from sam3_core.postprocess import rle_to_mask
from sam3_core.video.frames import open_frames
from sam3_core.video.predictor import VideoPredictor
from tests.core.helpers import make_image, save_checkpoint, tiny_model, write_mp4

H, W, T = 64, 80, 5


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("track")
    ckpt = root / "tiny.safetensors"
    save_checkpoint(tiny_model(seed=2), ckpt)
    base = make_image(H, W, seed=5)  # the random model finds the clicked object on every frame
    frames = np.stack([np.roll(base, (2 * t, 3 * t), (0, 1)) for t in range(T)])
    write_mp4(root / "clip.mp4", frames)
    return root, ckpt


def _run(root, ckpt, out, *extra):
    return main(
        [
            "track",
            str(root / "clip.mp4"),
            *extra,
            "--checkpoint",
            str(ckpt),
            "--config",
            "sam3_tiny",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )


def _frames(out):
    return [json.loads(p.read_text()) for p in sorted((out / "frames").glob("*.json"))]


def test_track_clicked_object(assets):
    root, ckpt = assets
    out = root / "click"
    assert (
        _run(
            root,
            ckpt,
            out,
            "--point",
            "40,30",
            "--point",
            "10,40,neg",
            "--box",
            "5,5,45,45",
            "--frame",
            "2",
            "--direction",
            "both",
        )
        == 0
    )
    records = _frames(out)
    assert [r["frame"] for r in records] == list(range(T))
    for r in records:
        assert [i["track_id"] for i in r["instances"]] == [1]
        inst = r["instances"][0]
        mask = rle_to_mask(inst["segmentation"])
        assert mask.shape == (H, W) and mask.any()
        assert inst["label"] == "object" and len(inst["box"]) == 4
    meta = json.loads((out / "video.json").read_text())
    assert meta["frames"] == list(range(T)) and (meta["height"], meta["width"]) == (H, W)
    with open_frames(out / "overlay.mp4") as video:
        assert len(video) == T and video.size == (H, W)


def test_track_concept_writes_structure(assets):
    root, ckpt = assets
    out = root / "concept"
    code = _run(
        root,
        ckpt,
        out,
        "--concept",
        "blob",
        "--exemplar",
        "5,5,30,30",
        "--score-threshold",
        "0",
        "--new-track-threshold",
        "0",
        "--no-overlay",
    )
    assert code == 0
    records = _frames(out)
    assert [r["frame"] for r in records] == list(range(T))
    assert json.loads((out / "video.json").read_text())["label_names"] == ["object", "blob"]
    for r in records:
        ids = [i["track_id"] for i in r["instances"]]
        assert ids and len(set(ids)) == len(ids)  # the concept is found on every frame
        assert all(i["label"] == "blob" for i in r["instances"])
        assert all(rle_to_mask(i["segmentation"]).any() for i in r["instances"])
    assert not (out / "overlay.mp4").exists()


def test_track_concept_max_objects(assets, capsys, monkeypatch):
    """--max-objects reaches the session (the cap itself is tested against the reference)."""
    root, ckpt = assets
    sessions = []
    start = VideoPredictor.start

    def spy(self, *args, **kwargs):
        sessions.append(start(self, *args, **kwargs))
        return sessions[-1]

    monkeypatch.setattr(VideoPredictor, "start", spy)
    extra = ["--concept", "blob", "--score-threshold", "0", "--new-track-threshold", "0"]
    assert _run(root, ckpt, root / "capped", *extra, "--max-objects", "1", "--no-overlay") == 0
    assert sessions[-1].association.max_num_objects == 1
    assert len({*sessions[-1].track_states, *sessions[-1].removed_ids}) == 1
    out = root / "bad"
    with pytest.raises(SystemExit):
        _run(root, ckpt, out, "--concept", "blob", "--max-objects", "0")
    assert "at least 1, got '0'" in capsys.readouterr().err


def test_track_unreadable_video_exits_2(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    assert main(["track", str(bad), "--point", "1,1", "--out", str(tmp_path / "o")]) == 2
    assert "broken.mp4" in capsys.readouterr().err
    assert main(["track", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "--concept" in capsys.readouterr().err


def test_track_click_and_concept_together(assets):
    """A clicked object and concept tracks in one run (the frame's detector features are added
    after the click encoded it without them)."""
    root, ckpt = assets
    out = root / "both"
    extra = ["--point", "40,30", "--concept", "blob", "--score-threshold", "0"]
    assert _run(root, ckpt, out, *extra, "--new-track-threshold", "0", "--no-overlay") == 0
    for r in _frames(out):
        labels = {i["track_id"]: i["label"] for i in r["instances"]}
        assert labels[1] == "object" and len(labels) > 1
        assert all(v == "blob" for k, v in labels.items() if k != 1)
