"""A real two-node local Ray cluster for the tests (`local_cluster`; the `cluster` fixture in
tests/conftest.py wraps it): started with `ray start --block`, stopped node by node."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

RAY = str(Path(sys.executable).with_name("ray"))
READY = "block forever"  # what `ray start --block` prints once its node is up


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    """A running test cluster: its address and the `ray start --block` process of each node."""

    address: str
    nodes: list[subprocess.Popen]

    def actor_pids(self) -> list[int]:
        """Pids of this cluster's Ray Data map actors (our Worker), found under its nodes."""
        pids = []
        for node in self.nodes:
            for proc in psutil.Process(node.pid).children(recursive=True):
                try:
                    if " ".join(proc.cmdline()).startswith("ray::MapWorker"):
                        pids.append(proc.pid)
                except psutil.Error:
                    continue
        return pids


def start_node(log: Path, *args: str) -> subprocess.Popen:
    """`ray start --block ARGS` in the background, once its node is up (else an error with
    Ray's output). Ending that process stops the node and everything it started."""
    with open(log, "w") as fh:
        node = subprocess.Popen([RAY, "start", "--block", *args], stdout=fh, stderr=fh)
    deadline = time.monotonic() + 120
    while READY not in log.read_text():
        if node.poll() is not None or time.monotonic() > deadline:
            stop_node(node)
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{log.read_text()}")
        time.sleep(0.2)
    return node


def stop_node(node: subprocess.Popen) -> None:
    """SIGTERM a `ray start --block` process (it stops its node), SIGKILL if it hangs; then
    SIGKILL whatever the node started that is still running."""
    try:
        started = psutil.Process(node.pid).children(recursive=True)
    except psutil.Error:
        started = []
    if node.poll() is None:
        node.terminate()
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
    for proc in started:
        try:
            proc.kill()  # this pid was checked to be the same process when listed
        except psutil.Error:
            continue


def disconnect_driver() -> None:
    """Leave the cluster if this process is still connected (a job that did not disconnect):
    a driver left on a stopped cluster ends its own process once Ray gives up reconnecting."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def local_cluster(logs: Path) -> Iterator[Cluster]:
    """A head node and a second node on 127.0.0.1, one CPU each, stopped at the end (only
    these two: no machine-wide `ray stop`). Their own temp dir (short: it holds sockets), so
    no session logs or `ray_current_cluster` address file are left in /tmp/ray.

    Token auth off: Ray 2.60 turns it on for `ray start --head` once any local `ray.init()`
    has written ~/.ray/auth_token, and then the second node cannot join. No drain on stop
    (Ray 2.60 waits up to 30 s for a SIGTERMed node to drain). The nodes' output goes to
    `logs/head.log` and `logs/node.log`.
    """
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    common = [
        "--num-cpus=1",
        "--node-ip-address=127.0.0.1",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    nodes: list[subprocess.Popen] = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        env.setenv("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
        try:
            head = ["--head", f"--port={port}", "--include-dashboard=false"]
            nodes.append(start_node(logs / "head.log", *head, *common))
            nodes.append(start_node(logs / "node.log", f"--address=127.0.0.1:{port}", *common))
            yield Cluster(f"127.0.0.1:{port}", nodes)
        finally:
            disconnect_driver()
            for node in reversed(nodes):
                stop_node(node)
            # removed when the test process ends, not now: Ray Data keeps a file handler on the
            # first session's ray-data.log in the driver process, and a later job (another
            # cluster, or `--ray local`) in this process would fail to reopen it
            atexit.register(shutil.rmtree, temp, True)
