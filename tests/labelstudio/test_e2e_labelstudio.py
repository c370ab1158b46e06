"""End to end against a real Label Studio 1.23.2 on loopback (its own venv, `$LS_VENV`).

Label Studio runs as a subprocess; our backend runs in a thread of the test process on the tiny
model. Skips when the `label-studio` binary is absent (a failure under CI=true).
"""

from __future__ import annotations

import numpy as np
import pytest
import requests

from tests.labelstudio import servers

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image"><Label value="RBC" concept="red blood cell"/></BrushLabels>
  <RectangleLabels name="rect" toName="image"><Label value="Cell"/></RectangleLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="RBC" smart="true"/></KeyPointLabels>
</View>"""


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A fresh Label Studio on a loopback port; yields (base URL, personal access token)."""
    with servers.label_studio(tmp_path_factory.mktemp("lsdata")) as ls:
        yield ls


@pytest.fixture(scope="module")
def backend_url(label_studio, tiny_checkpoint):
    """Our backend on another loopback port, in a thread, pointed at that Label Studio."""
    base, pat = label_studio
    argv = ["--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu",
            "--label-studio-url", base, "--label-studio-token", pat, "--score-threshold", "0.0"]  # fmt: skip
    with servers.backend_server(argv, basic_auth="ls:secret") as url:
        yield url


def test_label_studio_round_trip(label_studio, backend_url, tmp_path):
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.converter.brush import decode_rle
    from PIL import Image

    from tests.core.helpers import make_image

    base, pat = label_studio
    ls = LabelStudio(base_url=base, api_key=pat)
    project = ls.projects.create(title="sam3 e2e", label_config=CONFIG)
    auth = servers.access_headers(base, pat)
    Image.fromarray(make_image(90, 120, seed=1)).save(tmp_path / "cells.png")
    with open(tmp_path / "cells.png", "rb") as f:  # an upload: /data/upload/<project>/...
        r = requests.post(f"{base}/api/projects/{project.id}/import", headers=auth, files={"f": f})
    assert r.status_code == 201, r.text
    [task] = list(ls.tasks.list(project=project.id))
    assert task.data["image"].startswith("/data/upload/")

    ml = ls.ml.create(project=project.id, url=backend_url, title="SAM 3", is_interactive=True,
                      auth_method="BASIC_AUTH", basic_auth_user="ls", basic_auth_pass="secret")  # fmt: skip
    assert ml.state == "CO"  # connected: /health and /setup answered

    # batch pre-annotation through the data manager action
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id,
                      selected_items={"all": True, "excluded": []})  # fmt: skip
    [pred] = list(ls.predictions.list(task=task.id))
    assert pred.model_version.startswith("sam3-sam3_tiny")
    kinds = {r["type"] for r in pred.result}
    assert kinds == {"brushlabels", "rectanglelabels"}
    brush = next(r for r in pred.result if r["type"] == "brushlabels")
    assert brush["value"]["brushlabels"] == ["RBC"] and brush["original_width"] == 120
    assert decode_rle(brush["value"]["rle"]).size == 90 * 120 * 4

    # an interactive click (positive) and an Alt-click (negative)
    def kp(x, y, positive):
        return {"type": "keypointlabels", "from_name": "kp", "to_name": "image",
                "original_width": 120, "original_height": 90, "is_positive": positive,
                "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": ["RBC"]}}  # fmt: skip

    context = {"result": [kp(30, 40, True), kp(70, 20, False)]}
    r = requests.post(f"{base}/api/ml/{ml.id}/interactive-annotating", headers=auth,
                      json={"task": task.id, "context": context})  # fmt: skip
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    [region] = r.json()["data"]["result"]
    mask = decode_rle(region["value"]["rle"]).reshape(90, 120, 4)[..., 3] > 0
    assert region["type"] == "brushlabels" and 0 < mask.sum() < mask.size

    # the user accepts the region: Label Studio stores it as an annotation
    ls.annotations.create(id=task.id, result=[region])
    [stored] = list(ls.annotations.list(id=task.id))
    saved = stored.result[0]
    assert (
        saved["value"]["brushlabels"] == ["RBC"] and saved["value"]["rle"] == region["value"]["rle"]
    )
    assert np.array_equal(decode_rle(saved["value"]["rle"]), decode_rle(region["value"]["rle"]))

    # an unknown label comes back as an error, and the backend still answers
    bad = {"result": [dict(kp(30, 40, True), value={"x": 1, "y": 1, "keypointlabels": ["Nope"]})]}
    r = requests.post(f"{base}/api/ml/{ml.id}/interactive-annotating", headers=auth,
                      json={"task": task.id, "context": bad})  # fmt: skip
    assert "422" in str(r.json().get("errors"))
    assert requests.get(backend_url + "/health", auth=("ls", "secret")).status_code == 200

    # a batch where one file is not an image: that task gets no prediction (and the backend says
    # why in its log), the other task of the same request gets its prediction
    Image.fromarray(make_image(64, 80, seed=2)).save(tmp_path / "more.png")
    (tmp_path / "broken.png").write_bytes(b"<html>not an image</html>")
    with open(tmp_path / "more.png", "rb") as good, open(tmp_path / "broken.png", "rb") as bad:
        r = requests.post(f"{base}/api/projects/{project.id}/import", headers=auth,
                          files={"good": good, "bad": bad})  # fmt: skip
    assert r.status_code == 201, r.text
    new = {t.data["image"].rsplit("-", 1)[-1]: t for t in ls.tasks.list(project=project.id)}
    assert {"more.png", "broken.png"} <= set(new)
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id,
                      selected_items={"all": True, "excluded": []})  # fmt: skip
    [more] = list(ls.predictions.list(task=new["more.png"].id))
    assert more.result and more.result[0]["original_width"] == 80
    assert list(ls.predictions.list(task=new["broken.png"].id)) == []


def test_embed_a_project_ahead_of_the_backend(
    label_studio, tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    from label_studio_sdk import LabelStudio
    from PIL import Image
    from sam3_labelstudio.cli import main

    from sam3_core.store import EmbeddingStore
    from tests.core.helpers import make_image

    base, pat = label_studio
    ls = LabelStudio(base_url=base, api_key=pat)
    project = ls.projects.create(title="sam3 embed", label_config=CONFIG)
    auth = servers.access_headers(base, pat)
    for seed in (3, 4):
        Image.fromarray(make_image(70, 90, seed=seed)).save(tmp_path / f"{seed}.png")
    files = {str(s): (f"{s}.png", (tmp_path / f"{s}.png").read_bytes()) for s in (3, 4)}
    r = requests.post(f"{base}/api/projects/{project.id}/import", headers=auth, files=files)
    assert r.status_code == 201, r.text
    monkeypatch.setenv("LABEL_STUDIO_URL", base)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)  # the token from the environment
    store = tmp_path / "store"
    argv = ["embed", "--project", str(project.id), "--embedding-store", str(store),
            "--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert "2 tasks, 2 encoded, 0 already in" in capsys.readouterr().out
    assert len(EmbeddingStore(store)) == 2
    assert main(argv) == 0  # resumable: a second run encodes nothing
    assert "2 tasks, 0 encoded, 2 already in" in capsys.readouterr().out

    video = ls.projects.create(title="sam3 video", label_config=servers.readme_config("Video ("))
    argv[2] = str(video.id)
    assert main(argv) == 2
    assert "labels videos: this command works on Image projects" in capsys.readouterr().err
    argv[2] = "99999"
    assert main(argv) == 2
    assert "Cannot read project 99999" in capsys.readouterr().err


def test_preannotate_a_project_as_a_job(
    label_studio, tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    from label_studio_sdk import LabelStudio
    from PIL import Image
    from sam3_labelstudio.cli import main

    from tests.core.helpers import make_image

    base, pat = label_studio
    ls = LabelStudio(base_url=base, api_key=pat)
    project = ls.projects.create(title="sam3 preannotate", label_config=CONFIG)
    auth = servers.access_headers(base, pat)
    for seed in (5, 6, 7):
        Image.fromarray(make_image(60, 80, seed=seed)).save(tmp_path / f"{seed}.png")
    (tmp_path / "8.png").write_bytes(b"not an image")
    files = {str(s): (f"{s}.png", (tmp_path / f"{s}.png").read_bytes()) for s in (5, 6, 7, 8)}
    r = requests.post(f"{base}/api/projects/{project.id}/import", headers=auth, files=files)
    assert r.status_code == 201, r.text
    tasks = {t.data["image"].rsplit("-", 1)[-1]: t.id for t in ls.tasks.list(project=project.id)}
    mine = [{"id": "mine", "type": "rectanglelabels", "from_name": "rect", "to_name": "image",
             "original_width": 80, "original_height": 60,
             "value": {"x": 1, "y": 2, "width": 3, "height": 4, "rectanglelabels": ["Cell"]}}]  # fmt: skip
    ls.annotations.create(id=tasks["5.png"], result=mine)
    monkeypatch.setenv("LABEL_STUDIO_URL", base)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)
    argv = ["preannotate", "--project", str(project.id), "--out", str(tmp_path / "job"),
            "--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu",
            "--score-threshold", "0"]  # fmt: skip
    assert main(argv) == 1  # 8.png is not an image: named in the log, the others go on
    out = capsys.readouterr().out
    assert "4 tasks, 3 predictions posted (sam3-sam3_tiny-tiny), 0 already had one, 1 failed" in out
    for name in ("5.png", "6.png", "7.png"):
        [pred] = list(ls.predictions.list(task=tasks[name]))
        assert pred.model_version == "sam3-sam3_tiny-tiny"
        assert {r["type"] for r in pred.result} == {"brushlabels", "rectanglelabels"}
    assert list(ls.predictions.list(task=tasks["8.png"])) == []
    [kept] = list(ls.annotations.list(id=tasks["5.png"]))
    assert kept.result == mine  # annotations are never touched

    assert main(argv) == 1  # resumed: nothing posted twice
    out = capsys.readouterr().out
    assert "4 tasks, 0 predictions posted (sam3-sam3_tiny-tiny), 3 already had one, 1 failed" in out
    assert len(list(ls.predictions.list(task=tasks["6.png"]))) == 1


def test_preannotate_on_ray(label_studio, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """`--ray local` (a Ray of its own, started for the job; a bare `--ray` would join any
    cluster running on this machine) gives the same predictions."""
    pytest.importorskip("ray.data", reason='--ray needs Ray Data: pip install ".[ray]"')
    from label_studio_sdk import LabelStudio
    from PIL import Image
    from sam3_labelstudio.cli import main

    from tests.core.helpers import make_image

    base, pat = label_studio
    ls = LabelStudio(base_url=base, api_key=pat)
    project = ls.projects.create(title="sam3 preannotate ray", label_config=CONFIG)
    for seed in (9, 10):
        Image.fromarray(make_image(60, 80, seed=seed)).save(tmp_path / f"{seed}.png")
    files = {str(s): (f"{s}.png", (tmp_path / f"{s}.png").read_bytes()) for s in (9, 10)}
    auth = servers.access_headers(base, pat)
    r = requests.post(f"{base}/api/projects/{project.id}/import", headers=auth, files=files)
    assert r.status_code == 201, r.text
    monkeypatch.setenv("LABEL_STUDIO_URL", base)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)
    argv = ["preannotate", "--project", str(project.id), "--out", str(tmp_path / "job"),
            "--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu",
            "--score-threshold", "0", "--ray", "local", "--workers", "1"]  # fmt: skip
    try:
        assert main(argv) == 0
    finally:
        import ray

        ray.shutdown()
    assert "2 tasks, 2 predictions posted" in capsys.readouterr().out
    for task in ls.tasks.list(project=project.id):
        [pred] = list(ls.predictions.list(task=task.id))
        assert pred.result and pred.model_version == "sam3-sam3_tiny-tiny"
