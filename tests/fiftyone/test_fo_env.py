"""The test database: a mongod of the test process's own, stopped before its folder goes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytest.importorskip("fiftyone")

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import os, sys
sys.path.insert(0, sys.argv[1])
from tests.fiftyone.env import configure
root = configure()
import fiftyone as fo
fo.Dataset("kept").add_sample(fo.Sample(filepath="/x.png"))
print(root, os.environ["FIFTYONE_DATABASE_URI"], flush=True)
"""


def mongods_on(folder: str) -> list[psutil.Process]:
    """Running processes whose command line names `folder` (a mongod serving it)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(folder in arg for arg in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_own_database_stopped_then_removed_at_exit():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIFTYONE_", "SAM3_TEST"))}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    root, uri = out.stdout.split()[-2:]
    assert uri.startswith("mongodb://127.0.0.1:")  # its own mongod, not a shared service
    assert root != os.environ["SAM3_TEST_FIFTYONE_ROOT"]  # not this process's database
    assert not Path(root).exists()  # removed at exit ...
    assert not mongods_on(root)  # ... after its mongod had stopped
