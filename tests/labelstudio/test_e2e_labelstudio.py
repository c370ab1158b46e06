"""End to end against a real Label Studio 1.23.2 on loopback (its own venv, `$LS_VENV`).

Label Studio runs as a subprocess; our backend runs in a thread of the test process on the tiny
model. Skips when the `label-studio` binary is absent, unless SAM3_REQUIRE_LABEL_STUDIO=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

LS_BIN = os.environ.get(
    "LABEL_STUDIO_BIN", str(Path(os.environ.get("LS_VENV", "/opt/ls-venv")) / "bin/label-studio")
)
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image"><Label value="RBC" concept="red blood cell"/></BrushLabels>
  <RectangleLabels name="rect" toName="image"><Label value="Cell"/></RectangleLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="RBC" smart="true"/></KeyPointLabels>
</View>"""
USER, PASSWORD = "sam3@example.com", "sam3-test-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen | None, timeout: float, log: Path | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log else ""
            pytest.fail(f"{url} exited with {proc.returncode} before answering:\n{tail}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    pytest.fail(f"{url} did not come up in {timeout:.0f} s")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A fresh Label Studio on a loopback port; yields (base URL, personal access token)."""
    if not (shutil.which(LS_BIN) or os.access(LS_BIN, os.X_OK)):
        if os.environ.get("SAM3_REQUIRE_LABEL_STUDIO") == "1":
            pytest.fail(f"Label Studio not found at {LS_BIN}: run .ci/run or set LABEL_STUDIO_BIN")
        pytest.skip(f"Label Studio not found at {LS_BIN} (set LABEL_STUDIO_BIN or LS_VENV)")
    data = tmp_path_factory.mktemp("lsdata")
    port = free_port()
    env = dict(os.environ, ML_BLOCK_LOCAL_IP="false", SSRF_PROTECTION_ENABLED="false",
               LABEL_STUDIO_BASE_DATA_DIR=str(data), LABEL_STUDIO_USERNAME=USER,
               LABEL_STUDIO_PASSWORD=PASSWORD)  # fmt: skip
    log = data / "ls.log"
    cmd = [LS_BIN, "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(base + "/health", proc, 300, log)
        s = requests.Session()
        s.get(base + "/user/login/")
        login = {"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": s.cookies["csrftoken"]}
        s.post(base + "/user/login/", data=login, allow_redirects=False)
        r = s.post(base + "/api/token/", headers={"X-CSRFToken": s.cookies["csrftoken"]})
        assert r.status_code == 201, r.text
        yield base, r.json()["token"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def backend_url(label_studio, tiny_checkpoint):
    """Our backend on another loopback port, in a thread, pointed at that Label Studio."""
    import uvicorn
    from sam3_labelstudio.cli import build_parser, make_backend
    from sam3_labelstudio.server import create_app

    base, pat = label_studio
    port = free_port()
    args = build_parser().parse_args(
        ["serve", "--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu",
         "--label-studio-url", base, "--label-studio-token", pat, "--score-threshold", "0.0"]
    )  # fmt: skip
    app = create_app(make_backend(args), basic_auth="ls:secret")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(10)


def test_label_studio_round_trip(label_studio, backend_url, tmp_path):
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.converter.brush import decode_rle
    from PIL import Image

    from tests.core.helpers import make_image

    base, pat = label_studio
    ls = LabelStudio(base_url=base, api_key=pat)
    project = ls.projects.create(title="sam3 e2e", label_config=CONFIG)
    access = requests.post(base + "/api/token/refresh/", json={"refresh": pat}).json()["access"]
    auth = {"Authorization": "Bearer " + access}
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
