"""The Ray runner on a real two-node local cluster: same records as the local runner, resume."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sam3_core.jobs import iter_records, run_job
from tests.core.jobs.conftest import BAD, GOOD

pytest.importorskip("ray.data", reason='Ray runner tests need Ray Data: pip install ".[ray]"')

RAY = str(Path(sys.executable).with_name("ray"))


class Stop(Exception):
    """Stands in for the driver going down mid-job."""


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args: str) -> None:
    """Run a `ray` command; a failure names the command and shows Ray's own output."""
    done = subprocess.run([RAY, *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="module")
def cluster():
    """A head node and a second node on 127.0.0.1, one CPU each; `ray stop` at the end.

    Token auth off: Ray 2.60 turns it on for `ray start --head` once any local `ray.init()`
    has written ~/.ray/auth_token, and then the second node cannot join.
    """
    port = free_port()
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray_cli("start", "--head", f"--port={port}", "--include-dashboard=false", *common)
            ray_cli("start", f"--address=127.0.0.1:{port}", *common)
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run([RAY, "stop", "--force"], capture_output=True, check=False)


def shard_ids(out) -> list[str]:
    """Every id in every shard, duplicates kept."""
    shards = (out / "shards").glob("*.parquet")
    return [i for s in shards for i in pq.read_table(s, columns=["id"])["id"].to_pylist()]


def test_ray_job_equals_local_and_resumes(cluster, tmp_path, spec, local_out):
    out = tmp_path / "out"
    seen = []

    def stop_after_first(done, total):
        seen.append(done)
        raise Stop

    with pytest.raises(Stop):
        run_job(
            spec,
            out,
            runner="ray",
            ray_address=cluster,
            workers=2,
            progress=False,
            on_progress=stop_after_first,
        )
    first = set(shard_ids(out))
    assert 0 < len(first) < GOOD + len(BAD)
    summary = run_job(
        spec, out, runner="ray", ray_address=cluster, workers=2, progress=False, exports=("coco",)
    )
    assert summary.skipped == len(first)
    assert summary.processed == GOOD + len(BAD) - len(first) and summary.errors <= len(BAD)
    ids = shard_ids(out)
    assert len(ids) == len(set(ids)) == GOOD + len(BAD)  # every image exactly once
    ref, _ = local_out
    assert list(iter_records(out)) == list(iter_records(ref))  # identical to the local runner's
    assert (out / "annotations.json").read_bytes() == (ref / "annotations.json").read_bytes()
    again = run_job(spec, out, runner="ray", ray_address=cluster, progress=False)
    assert (again.processed, again.skipped) == (0, GOOD + len(BAD))
