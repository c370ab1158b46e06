"""Unusable task images through the HTTP app: undecodable, over the size limit, per task."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image
from sam3_labelstudio.cli import build_parser, make_backend
from sam3_labelstudio.server import create_app
from starlette.testclient import TestClient

from tests.core.helpers import make_image

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image"><Label value="RBC" concept="red blood cell"/></BrushLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="RBC" smart="true"/></KeyPointLabels>
</View>"""
LIMIT_MB = 0.002  # 2097 bytes: big.png is over it, small.png under


def png(h: int, w: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(make_image(h, w, seed=seed)).save(buf, "PNG")
    return buf.getvalue()


FILES = {
    "small.png": png(16, 16, 1),
    "big.png": png(32, 48, 2) + bytes(4096),  # a valid PNG, padded past the limit
    "garbage.png": b"<html>not an image</html>",
    "trunc.png": png(90, 120, 3)[:700],
}


def task(tid: int, url: str) -> dict:
    return {"id": tid, "data": {"image": url}}


def local(name: str) -> str:
    return f"/data/local-files/?d={name}"


@pytest.fixture(scope="module")
def http_host():
    """A loopback HTTP server for FILES: /sized/NAME sends Content-Length, /unsized/NAME not."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            _, mode, name = self.path.split("/")
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            if mode == "sized":
                self.send_header("Content-Length", str(len(FILES[name])))
            self.end_headers()  # HTTP/1.0: without a length the body ends at close
            self.wfile.write(FILES[name])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def client(tiny_checkpoint, tmp_path_factory, http_host):
    root = tmp_path_factory.mktemp("task_files")
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    args = build_parser().parse_args(
        ["serve", "--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu",
         "--local-files-root", str(root), "--score-threshold", "0.0", "--allow-host", http_host,
         "--max-image-mb", str(LIMIT_MB)]
    )  # fmt: skip
    with TestClient(create_app(make_backend(args))) as c:
        yield c


def test_undecodable_images_fail_their_own_task_and_the_others_are_served(client, caplog):
    tasks = [
        task(1, local("garbage.png")),
        task(2, local("small.png")),
        task(3, local("trunc.png")),
    ]
    resp = client.post("/predict", json={"tasks": tasks, "label_config": CONFIG})
    assert resp.status_code == 200, resp.text
    garbage, good, trunc = resp.json()["results"]
    assert good["result"] and good["result"][0]["original_width"] == 16
    for entry, tid, name in ((garbage, 1, "garbage.png"), (trunc, 3, "trunc.png")):
        assert "result" not in entry  # Label Studio logs and skips it: no empty prediction
        assert entry["task"] == tid and entry["status"] == 422
        assert entry["error"].startswith(f"Task {tid}: {local(name)} is not a")
    assert (
        "is not an image the backend can read" in garbage["error"]
        and "PNG, JPEG" in garbage["error"]
    )
    assert "truncated" in trunc["error"]
    assert "task 1 skipped" in caplog.text


def test_every_task_failing_is_the_requests_4xx(client):
    tasks = [task(1, local("garbage.png")), task(3, local("trunc.png"))]
    resp = client.post("/predict", json={"tasks": tasks, "label_config": CONFIG})
    assert resp.status_code == 422
    assert "Task 1: " + local("garbage.png") in resp.json()["error"]
    assert "all 2 tasks failed" in resp.json()["error"]


@pytest.mark.parametrize("context", [{}, {"context": {"result": [
    {"type": "keypointlabels", "value": {"x": 50, "y": 50, "keypointlabels": ["RBC"]}}]}}])  # fmt: skip
def test_one_undecodable_image_is_a_422_naming_task_and_url(client, context):
    body = {"tasks": [task(7, local("garbage.png"))], "label_config": CONFIG, "params": context}
    resp = client.post("/predict", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"].startswith("Task 7: /data/local-files/?d=garbage.png is not an")


@pytest.mark.parametrize("where", ["local", "sized", "unsized"])
def test_an_image_over_the_limit_is_refused_by_name(client, http_host, where):
    def url(name):
        return local(name) if where == "local" else f"http://{http_host}/{where}/{name}"

    body = {"tasks": [task(4, url("big.png"))], "label_config": CONFIG}
    resp = client.post("/predict", json=body)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error.startswith(f"Task 4: {url('big.png')} is ")
    assert f"over the backend's {LIMIT_MB:g} MB limit" in error
    assert "--max-image-mb (env SAM3_LS_MAX_IMAGE_MB)" in error
    body = {"tasks": [task(5, url("small.png"))], "label_config": CONFIG}
    small = client.post("/predict", json=body)  # under the limit, from the same source: served
    assert small.status_code == 200, small.text
    assert np.all([r["original_width"] == 16 for r in small.json()["results"][0]["result"]])


def test_the_limit_setting_is_checked(monkeypatch, capsys):
    monkeypatch.setenv("SAM3_LS_MAX_IMAGE_MB", "500")
    assert build_parser().parse_args(["serve"]).max_image_mb == 500
    monkeypatch.setenv("SAM3_LS_MAX_IMAGE_MB", "lots")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve"])
    assert "'lots' is not a size in MB > 0" in capsys.readouterr().err
