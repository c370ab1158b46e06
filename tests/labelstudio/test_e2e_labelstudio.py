"""End to end against a real Label Studio 1.23.2 on loopback (its own venv, `$LS_VENV`).

Label Studio runs as a subprocess; our backend runs in a thread of the test process on the tiny
model. Skips when the `label-studio` binary is absent (a failure under CI=true).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

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
def files_root(tmp_path_factory):
    """The folder Label Studio serves Local Storage files from (its document root)."""
    return tmp_path_factory.mktemp("lsfiles")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory, files_root):
    """A fresh Label Studio on a loopback port; yields (base URL, personal access token)."""
    with servers.label_studio(tmp_path_factory.mktemp("lsdata"), files_root) as ls:
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


def upload_images(base: str, pat: str, project: int, folder, seeds, size=(40, 56)) -> dict:
    """Upload one small image per seed into a project; returns {file name: task id}."""
    from label_studio_sdk import LabelStudio
    from PIL import Image

    from tests.core.helpers import make_image

    files = {}
    for seed in seeds:
        Image.fromarray(make_image(*size, seed=seed)).save(folder / f"{seed}.png")
        files[str(seed)] = (f"{seed}.png", (folder / f"{seed}.png").read_bytes())
    auth = servers.access_headers(base, pat)
    r = requests.post(f"{base}/api/projects/{project}/import", headers=auth, files=files)
    assert r.status_code == 201, r.text
    ls = LabelStudio(base_url=base, api_key=pat)
    return {t.data["image"].rsplit("-", 1)[-1]: t.id for t in ls.tasks.list(project=project)}


def test_preannotate_killed_mid_job_then_resumed(
    label_studio, tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    """A ~30-task project: the command is SIGKILLed once some imports reached Label Studio, then
    run again: each task ends with exactly one prediction of ours, finished images are not
    segmented again, a user's annotation and another model's prediction stay as they were."""
    from label_studio_sdk import LabelStudio
    from sam3_labelstudio.cli import main

    from tests.core.jobs.job_tools import shard_ids

    base, pat = label_studio
    ls = LabelStudio(base_url=base, api_key=pat)
    project = ls.projects.create(title="sam3 preannotate resume", label_config=CONFIG).id
    tasks = upload_images(base, pat, project, tmp_path, range(100, 130))
    assert len(tasks) == 30
    mine = [{"id": "mine", "type": "rectanglelabels", "from_name": "rect", "to_name": "image",
             "original_width": 56, "original_height": 40,
             "value": {"x": 1, "y": 2, "width": 3, "height": 4, "rectanglelabels": ["Cell"]}}]  # fmt: skip
    ls.annotations.create(id=tasks["100.png"], result=mine)
    ls.predictions.create(task=tasks["101.png"], result=mine, model_version="other-model")
    out = tmp_path / "run"
    argv = ["preannotate", "--project", str(project), "--out", str(out), "--post-batch", "6",
            "--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu",
            "--score-threshold", "0", "--batch-size", "2"]  # fmt: skip

    def ours() -> int:
        return sum(p.model_version != "other-model" for p in ls.predictions.list(project=project))

    # the first run, in its own process, killed as soon as Label Studio holds some predictions
    env = dict(os.environ, LABEL_STUDIO_URL=base, LABEL_STUDIO_API_KEY=pat, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(servers.ROOT), str(servers.PLUGIN)]))  # fmt: skip
    code = "import sys; from sam3_labelstudio.cli import main; sys.exit(main(sys.argv[1:]))"
    log = tmp_path / "first-run.log"
    with open(log, "w") as fh:
        first = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stdout=fh,
                                 stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        # killed when an import has reached Label Studio and a later batch is stored, not posted
        while not 0 < ours() < len(set(shard_ids(out / "job"))):
            assert first.poll() is None, f"the first run ended before the kill:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"nothing posted in 300 s:\n{log.read_text()}"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL, log.read_text()
    time.sleep(1)  # an import in flight at the kill is finished by Label Studio, or dropped
    posted = ours()
    stored = len(set(shard_ids(out / "job")))  # images with a record at the kill
    assert 0 < posted < 30, f"the kill came too late to interrupt the job ({posted} posted)"
    assert posted < stored < 30

    # the same command again, resumed
    monkeypatch.setenv("LABEL_STUDIO_URL", base)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)
    assert main(argv) == 0
    text = capsys.readouterr().out
    job = re.search(r"(\d+) images done \(0 errors.*?\), (\d+) already done, of (\d+)", text)
    assert job, text
    done, skipped, listed = map(int, job.groups())
    assert listed == 30 - posted  # tasks with our prediction are not listed again
    assert skipped == stored - posted > 0  # stored at the kill but not yet posted: read, not rerun
    assert done + stored == 30  # every image segmented exactly once over both runs
    summary = f"30 tasks, {30 - posted} predictions posted (sam3-sam3_tiny-tiny), {posted} already"
    assert summary in text

    for name, task in tasks.items():
        preds = list(ls.predictions.list(task=task))
        versions = sorted(p.model_version for p in preds)
        expected = ["other-model"] if name == "101.png" else []
        assert versions == sorted(expected + ["sam3-sam3_tiny-tiny"]), (name, versions)
        [pred] = [p for p in preds if p.model_version == "sam3-sam3_tiny-tiny"]
        assert {r["type"] for r in pred.result} == {"brushlabels", "rectanglelabels"}
        assert pred.result[0]["original_width"] == 56
    [kept] = list(ls.annotations.list(id=tasks["100.png"]))
    assert kept.result == mine  # annotations are never touched
    [other] = [
        p
        for p in ls.predictions.list(task=tasks["101.png"])
        if p.model_version != "sam3-sam3_tiny-tiny"
    ]
    assert other.result == mine

    assert main(argv) == 0  # a third run has nothing left to do
    assert (
        "30 tasks, 0 predictions posted (sam3-sam3_tiny-tiny), 30 already"
        in capsys.readouterr().out
    )


def test_import_a_segment_job_into_projects(
    label_studio, files_root, tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    """`sam3 segment --format labelstudio` output, imported as the README says: the tasks show
    their images (Local Storage) and the job's masks, under the project's own labels."""
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.converter.brush import decode_rle
    from PIL import Image
    from sam3_labelstudio.cli import main

    from sam3_core.cli import main as sam3
    from tests.core.helpers import make_image

    base, pat = label_studio
    ls = LabelStudio(base_url=base, api_key=pat)
    images = files_root / "job images"  # a space: the Local Storage URL is quoted
    (images / "sub").mkdir(parents=True)
    for name, seed in (("a.png", 1), ("b.png", 2), ("sub/c.png", 3)):
        Image.fromarray(make_image(48, 64, seed=seed)).save(images / name)
    out = tmp_path / "labels"
    assert sam3(["segment", str(images), "--concept", "red blood cell", "--format", "labelstudio",
                 "--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu",
                 "--score-threshold", "0", "--no-overlays", "--out", str(out)]) == 0  # fmt: skip
    exported = {
        Path(t["data"]["image"]).name: t for t in json.loads((out / "labelstudio.json").read_text())
    }
    assert set(exported) == {"a.png", "b.png", "c.png"}
    monkeypatch.setenv("LABEL_STUDIO_URL", base)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)
    auth = servers.access_headers(base, pat)

    # into an existing project whose label "RBC" has the concept: regions go to its brush tag
    project = ls.projects.create(title="sam3 import", label_config=CONFIG).id
    argv = ["import", str(out / "labelstudio.json"), "--local-files-root", str(files_root)]
    assert main([*argv, "--project", str(project)]) == 0
    assert f"project {project}: 3 tasks imported" in capsys.readouterr().out
    tasks = list(ls.tasks.list(project=project))
    assert len(tasks) == 3
    for task in tasks:
        url = task.data["image"]
        assert url.startswith("/data/local-files/?d=job%20images/")
        name = url.rsplit("/", 1)[-1]
        served = requests.get(base + url, headers=auth)
        assert (
            served.status_code == 200
            and served.content == (images / ("sub/" if name == "c.png" else "") / name).read_bytes()
        )
        [pred] = list(ls.predictions.list(task=task.id))
        [want] = exported[name]["predictions"]
        assert pred.model_version == "sam3" and len(pred.result) == len(want["result"]) > 0
        for got, region in zip(pred.result, want["result"]):
            assert got["type"] == "brushlabels" and got["from_name"] == "brush"
            assert got["value"]["brushlabels"] == ["RBC"]
            assert (got["original_width"], got["original_height"]) == (64, 48)
            assert np.array_equal(
                decode_rle(got["value"]["rle"]), decode_rle(region["value"]["rle"])
            )
    [storage] = list(ls.import_storage.local.list(project=project))  # serves the images
    assert Path(storage.path) == images

    # into a new project (--title): a label per concept
    assert main([*argv, "--title", "sam3 job"]) == 0
    new = int(re.search(r"project (\d+): 3 tasks", capsys.readouterr().out).group(1))
    [task] = [t for t in ls.tasks.list(project=new) if t.data["image"].endswith("a.png")]
    [pred] = list(ls.predictions.list(task=task.id))
    assert {(r["from_name"], r["value"]["brushlabels"][0]) for r in pred.result} == {
        ("label", "red blood cell")
    }

    # preannotate reads the imported tasks' images back through Label Studio's Local Storage
    pre = ["preannotate", "--project", str(new), "--out", str(tmp_path / "pre"), "--checkpoint",
           str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu", "--score-threshold", "0"]  # fmt: skip
    assert main(pre) == 0
    assert "3 tasks, 3 predictions posted (sam3-sam3_tiny-tiny)" in capsys.readouterr().out
    versions = {p.model_version for p in ls.predictions.list(task=task.id)}
    assert versions == {"sam3", "sam3-sam3_tiny-tiny"}

    # a project without the concept, or images outside Label Studio's root: nothing imported
    other = ls.projects.create(
        title="sam3 dogs", label_config=CONFIG.replace('concept="red blood cell"', "")
    ).id
    assert main([*argv, "--project", str(other)]) == 2
    assert "no label for ['red blood cell']" in capsys.readouterr().err
    assert (
        main(
            [
                "import",
                str(out / "labelstudio.json"),
                "--local-files-root",
                str(images / "sub"),
                "--project",
                str(project),
            ]
        )
        == 2
    )
    assert "is not under --local-files-root" in capsys.readouterr().err
    assert (
        list(ls.tasks.list(project=other)) == [] and len(list(ls.tasks.list(project=project))) == 3
    )


def test_import_images_in_several_folders_of_the_root(label_studio, files_root, tmp_path, capsys):
    """Images in two folders of Label Studio's document root (their common folder is the root,
    which Label Studio refuses as a storage) get a storage per folder and are served; an image
    directly in the root is refused before any project is made."""
    from label_studio_sdk import LabelStudio
    from PIL import Image
    from sam3_labelstudio.cli import main

    from sam3_core.formats.labelstudio_rle import mask2rle
    from tests.core.helpers import make_image

    base, pat = label_studio
    ls = LabelStudio(base_url=base, api_key=pat)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:20, 10:30] = 255
    region = {"type": "brushlabels", "from_name": "label", "to_name": "image",
              "original_width": 64, "original_height": 48,
              "value": {"format": "rle", "rle": mask2rle(mask), "brushlabels": ["cell"]}}  # fmt: skip
    paths = [files_root / "root a" / "x.png", files_root / "root b" / "deep" / "y.png"]
    for seed, path in enumerate(paths):
        path.parent.mkdir(parents=True)
        Image.fromarray(make_image(48, 64, seed=seed)).save(path)
    job = tmp_path / "labelstudio.json"

    def write(images: list[Path]) -> None:
        tasks = [{"data": {"image": str(p)}, "predictions": [{"model_version": "sam3",
                  "result": [region]}]} for p in images]  # fmt: skip
        job.write_text(json.dumps(tasks))

    env = ["--label-studio-url", base, "--label-studio-token", pat]
    argv = ["import", str(job), "--local-files-root", str(files_root), *env]
    write(paths)
    assert main([*argv, "--title", "two folders"]) == 0, capsys.readouterr().err
    project = int(re.search(r"project (\d+): 2 tasks", capsys.readouterr().out).group(1))
    storages = {Path(s.path) for s in ls.import_storage.local.list(project=project)}
    assert storages == {files_root / "root a", files_root / "root b"}
    auth = servers.access_headers(base, pat)
    tasks = list(ls.tasks.list(project=project))
    assert len(tasks) == 2
    for task in tasks:
        served = requests.get(base + task.data["image"], headers=auth)
        [path] = [p for p in paths if task.data["image"].endswith(p.name)]
        assert served.status_code == 200 and served.content == path.read_bytes()
        assert len(list(ls.predictions.list(task=task.id))) == 1

    before = {p.id for p in ls.projects.list()}
    Image.fromarray(make_image(48, 64, seed=5)).save(files_root / "top.png")
    write([paths[0], files_root / "top.png"])
    assert main([*argv, "--title", "in the root"]) == 2
    assert "top.png sits directly in --local-files-root" in capsys.readouterr().err
    assert {p.id for p in ls.projects.list()} == before  # no empty project left
