"""Label Studio 1.23.2 in headless Chromium, driven as the README tells a user, with our backend.

Image project (the README's interactive config): log in, Retrieve Predictions and see the
regions, the smart click (Auto-Annotation, the click label, Auto-Detect) and a typed concept each
give suggestions. Video project (the README's video config): Retrieve Predictions puts tracks on
the timeline, and a box the user draws, selects and labels comes back as a track.

The image model is the tiny random one (its masks mean nothing; the plumbing is what is tested).
For video, a stand-in tracker that follows the yellow disc of the test clip replaces the model's
tracker, so that the timeline shows a real track (the model's video path is tested in
tests/labelstudio/test_video.py). Screenshots: `$SAM3_ARTIFACTS/labelstudio/` (see conftest).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.browser import lsui
from tests.labelstudio import servers


class DiscTracker:
    """Stands in for `VideoPredictor`: one track, the bounding box of the clip's yellow disc."""

    def start(self, path: str, association=None) -> DiscSession:
        import av

        with av.open(path) as video:
            frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
        return DiscSession(np.stack(frames))


class DiscSession:
    """The session API `sam3_labelstudio.video` uses: prompts, then `propagate`."""

    def __init__(self, frames: np.ndarray) -> None:
        self.video = frames
        self.num_frames, h, w = frames.shape[:3]
        self.size = (h, w)
        self.first, self.names, self.obj = 0, ["object"], 1
        self.frames = self  # `session.frames.close()`

    def close(self) -> None:
        pass

    def add_prompt(self, frame: int, obj_id: int, boxes) -> None:
        self.first, self.obj = frame, obj_id

    def add_concept(self, frame: int, concepts: list[str]) -> None:
        self.first, self.names = frame, list(concepts)

    def propagate(self, max_frames: int):
        from sam3_core.results import Instances

        for t in range(self.first, min(self.num_frames, self.first + max_frames)):
            rgb = self.video[t].astype(int)
            mask = (rgb[..., 0] > 150) & (rgb[..., 1] > 130) & (rgb[..., 2] < 110)
            ys, xs = np.nonzero(mask)
            box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
            yield t, Instances(mask[None], box, np.array([0.9], np.float32), np.zeros(1, int),
                               self.names, np.zeros((1, 1, 1), np.float32),
                               track_ids=np.array([self.obj]))  # fmt: skip


def disc_clip(path, n: int = 30, h: int = 240, w: int = 320, fps: int = 25) -> None:
    """An H.264 clip (Chromium plays it) of a yellow disc crossing a blue-green background."""
    import av

    yy, xx = np.mgrid[:h, :w]
    base = np.zeros((h, w, 3), np.uint8)
    base[..., 1], base[..., 2] = 90 + yy * 60 // h, 140
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
        for t in range(n):
            frame = base.copy()
            cx, cy = 40 + 7 * t, 120 + int(25 * np.sin(t / 5))
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 < 25**2] = (230, 200, 40)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """(base URL, token, API headers) of a fresh Label Studio."""
    with servers.label_studio(tmp_path_factory.mktemp("lsdata")) as (base, token):
        yield base, token, servers.access_headers(base, token)


@pytest.fixture(scope="module")
def backend(studio, tmp_path_factory):
    """Our backend on the tiny model; yields (URL, list of the `params.context` it received)."""
    from tests.core.helpers import save_checkpoint, tiny_model

    ckpt = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(tiny_model(), ckpt)
    base, token, _ = studio
    contexts: list = []

    def tune(b):
        b.video.predictor = DiscTracker()
        predict = b.predict
        b.predict = lambda payload: contexts.append((payload.get("params") or {}).get("context")) \
            or predict(payload)  # fmt: skip

    argv = ["--checkpoint", str(ckpt), "--config", "sam3_tiny", "--device", "cpu",
            "--label-studio-url", base, "--label-studio-token", token, "--score-threshold", "0"]  # fmt: skip
    with servers.backend_server(argv, tune=tune) as url:
        yield url, contexts


def new_project(studio, backend, title: str, config: str, files: dict) -> tuple[int, list[int]]:
    """A project with `config`, `files` {name: path} uploaded, the backend connected
    (interactive); returns (project id, task ids)."""
    base, _, auth = studio
    r = requests.post(
        base + "/api/projects/", headers=auth, json={"title": title, "label_config": config}
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    uploads = {k: (Path(v).name, Path(v).read_bytes()) for k, v in files.items()}
    r = requests.post(f"{base}/api/projects/{pid}/import", headers=auth, files=uploads)
    assert r.status_code == 201, r.text
    r = requests.post(base + "/api/ml/", headers=auth,
                      json={"project": pid, "url": backend[0], "title": "SAM 3", "is_interactive": True})  # fmt: skip
    assert r.status_code == 201 and r.json()["state"] == "CO", r.text
    tasks = requests.get(f"{base}/api/tasks?project={pid}", headers=auth).json()["tasks"]
    return pid, sorted(t["id"] for t in tasks)


def predictions(studio, task: int, timeout: float = 180) -> list:
    """The task's predictions, once Label Studio has stored one."""
    base, _, auth = studio
    deadline = time.time() + timeout
    while time.time() < deadline:
        preds = requests.get(f"{base}/api/predictions?task={task}", headers=auth).json()
        if preds:
            return preds
        time.sleep(1)
    pytest.fail(f"task {task} got no prediction in {timeout:.0f} s")


def prelabel(studio, project: int, on: bool) -> None:
    """Settings > Annotation > "Use predictions to prelabel tasks" (also: fetch on open)."""
    base, _, auth = studio
    r = requests.patch(f"{base}/api/projects/{project}/", headers=auth,
                       json={"show_collab_predictions": on})  # fmt: skip
    assert r.status_code == 200, r.text


def test_image_project_predictions_smart_click_and_concept(
    browser, screenshot, studio, backend, tmp_path
):
    from PIL import Image

    from tests.core.helpers import make_image

    base = studio[0]
    for i in range(2):
        Image.fromarray(make_image(300, 400, seed=11 + i)).save(tmp_path / f"cells{i}.png")
    config = servers.readme_config("Interactive: smart clicks")
    files = {f"f{i}": tmp_path / f"cells{i}.png" for i in range(2)}
    pid, (first, second) = new_project(studio, backend, "SAM 3 cells", config, files)

    lsui.log_in(browser, base, servers.USER, servers.PASSWORD)
    lsui.retrieve_predictions(browser, base, pid, row=0)
    [pred] = predictions(studio, first)
    assert {r["type"] for r in pred["result"]} == {"brushlabels"}  # the README's config
    screenshot("01-retrieve-predictions")
    lsui.open_task(browser, base, pid, first)
    lsui.wait_for(browser, lambda d: lsui.region_labels(d), 60, "no predicted regions shown")
    assert set(lsui.region_labels(browser)) == {"Cell"}
    screenshot("02-predicted-regions")

    # the smart click, the README's way: Auto-Annotation on, the click label, Auto-Detect (M)
    prelabel(studio, pid, False)  # start from a clean image (see the README)
    lsui.open_task(browser, base, pid, second)
    lsui.auto_annotation(browser, True)
    lsui.click_label(browser, 1)  # the KeyPointLabels' "Cell", under the Header
    lsui.press(browser, "m")
    backend[1].clear()
    lsui.click_at(browser, -100, -50)
    assert lsui.suggestions(browser) == 1
    [context] = [c for c in backend[1] if c and c.get("result")]
    [click] = context["result"]
    assert click["type"] == "keypointlabels" and click["value"]["keypointlabels"] == ["Cell"]
    screenshot("03-smart-click")
    lsui.reject_suggestions(browser)

    # a typed concept: every instance as suggestions
    lsui.type_concept(browser, "cell")
    assert lsui.suggestions(browser) >= 1
    assert any(
        c and c["result"][0]["type"] == "textarea" for c in backend[1] if c and c.get("result")
    )
    screenshot("04-typed-concept")


def test_video_tracks_and_a_drawn_box(browser, screenshot, studio, backend, tmp_path):
    base = studio[0]
    for name in ("clip", "mine"):
        disc_clip(tmp_path / f"{name}.mp4")
    config = servers.readme_config("Video (open-source")
    files = {n: tmp_path / f"{n}.mp4" for n in ("clip", "mine")}
    pid, (first, second) = new_project(studio, backend, "SAM 3 video", config, files)
    browser.set_window_size(1440, 1250)  # room for the timeline under the video
    lsui.log_in(browser, base, servers.USER, servers.PASSWORD)

    lsui.retrieve_predictions(browser, base, pid, row=0)
    [pred] = predictions(studio, first)
    [track] = pred["result"]
    seq = track["value"]["sequence"]
    assert track["type"] == "videorectangle" and seq[0]["frame"] == 1 and seq[-1]["frame"] == 30
    assert 2 < len(seq) < 30  # keyframes only where the motion changes
    lsui.open_task(browser, base, pid, first)
    lsui.wait_video(browser)
    lsui.wait_for(browser, lambda d: lsui.timeline_keyframes(d) >= len(seq), 60, "no track shown")
    assert lsui.region_labels(browser) == ["Car"]
    screenshot("05-video-tracks")

    # the user's own box: draw it, select it, click its label -> tracked from there
    prelabel(studio, pid, False)
    lsui.open_task(browser, base, pid, second)
    lsui.wait_video(browser)
    lsui.auto_annotation(browser, True)
    # the 320 x 240 clip is drawn at its size in the middle of the canvas; the disc starts at
    # (40, 120) with radius 25 -> a box from (14, 94) to (66, 146) in clip pixels
    lsui.drag(browser, 14 - 160, 94 - 120, 66 - 160, 146 - 120)
    lsui.wait_for(browser, lambda d: lsui.region_count(d) == 1, 30, "the box was not drawn")
    lsui.click_at(browser, 40 - 160, 0)  # select the box
    backend[1].clear()
    lsui.click_label(browser, 1)  # "Person"
    lsui.wait_for(browser, lambda d: lsui.timeline_keyframes(d) > 2, 120, "the box was not tracked")
    [context] = [c for c in backend[1] if c and c.get("result")]
    assert context["result"][0]["type"] == "videorectangle"
    assert lsui.region_labels(browser) == ["Person"]
    screenshot("06-video-drawn-box-tracked")
