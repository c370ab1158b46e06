"""A real Label Studio (its own venv, `$LS_VENV`) and our backend on loopback ports, for the end
to end and browser tests. Label Studio runs as a subprocess; the backend in a thread.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]  # the repository
PLUGIN = ROOT / "plugins" / "labelstudio"
try:  # the backend package, also from a plain checkout (as tests/labelstudio/conftest.py)
    import sam3_labelstudio  # noqa: F401
except ImportError:
    import sys

    sys.path.insert(0, str(PLUGIN))

LS_BIN = os.environ.get(
    "LABEL_STUDIO_BIN", str(Path(os.environ.get("LS_VENV", "/opt/ls-venv")) / "bin/label-studio")
)
USER, PASSWORD = "sam3@example.com", "sam3-test-pass"
README = PLUGIN / "README.md"


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen | None, timeout: float, log: Path | None = None):
    """Poll `url` until it answers 200; fail naming the log tail if `proc` exits first."""
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


def readme_config(heading: str) -> str:
    """The first ```xml block after the README line starting with `heading` (the tests use
    the configs the README gives users)."""
    text = README.read_text()
    at = text.find(heading)
    assert at >= 0, f"{heading!r} is not in {README}"
    block = re.search(r"```xml\n(.*?)```", text[at:], re.DOTALL)
    assert block, f"no ```xml block after {heading!r} in {README}"
    return block.group(1)


@contextmanager
def label_studio(data: Path, files_root: Path | None = None) -> Iterator[tuple[str, str]]:
    """A fresh Label Studio storing into `data` (serving Local Storage files under
    `files_root` when given); yields (base URL, personal access token)."""
    if not (shutil.which(LS_BIN) or os.access(LS_BIN, os.X_OK)):
        pytest.skip(f"Label Studio not found at {LS_BIN}: run .ci/run, or set LABEL_STUDIO_BIN")
    port = free_port()
    env = dict(os.environ, ML_BLOCK_LOCAL_IP="false", SSRF_PROTECTION_ENABLED="false",
               LABEL_STUDIO_BASE_DATA_DIR=str(data), LABEL_STUDIO_USERNAME=USER,
               LABEL_STUDIO_PASSWORD=PASSWORD)  # fmt: skip
    if files_root is not None:
        env.update(LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
                   LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(files_root))  # fmt: skip
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


def access_headers(base: str, token: str) -> dict:
    """Authorization headers for Label Studio's REST API from a personal access token."""
    access = requests.post(base + "/api/token/refresh/", json={"refresh": token}).json()["access"]
    return {"Authorization": "Bearer " + access}


@contextmanager
def backend_server(argv: list[str], basic_auth: str | None = None, tune=None) -> Iterator[str]:
    """Our backend (`sam3-labelstudio serve` arguments `argv`, no --port) in a thread on a free
    loopback port; `tune(backend)` may adjust it first. Yields its URL."""
    import uvicorn
    from sam3_labelstudio.cli import build_parser, make_backend
    from sam3_labelstudio.server import create_app

    backend = make_backend(build_parser().parse_args(["serve", *argv]))
    if tune is not None:
        tune(backend)
    port = free_port()
    app = create_app(backend, basic_auth=basic_auth)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
