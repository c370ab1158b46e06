"""Shared fixtures and the skip policy.

Full-size tests are opt-in (SAM3_SLOW=1). Under CI=true every skip is a failure, except for
tests marked `gpu` on a machine without one: a missing package, display or server must not
let a whole suite pass by skipping (`.ci/run` installs and starts everything and sets
SAM3_SLOW=1).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pytest_configure(config):
    """Register the `gpu` marker."""
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skips itself cleanly without one")


def pytest_collection_modifyitems(config, items):
    """Skip the `slow` (full-size) tests unless SAM3_SLOW=1."""
    if os.environ.get("SAM3_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="full-size test: set SAM3_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real two-node local Ray cluster for one test module (`tests.core.jobs.ray_cluster`),
    shared by the jobs and the FiftyOne Ray tests; stopped when the module ends."""
    from tests.core.jobs.ray_cluster import local_cluster

    with local_cluster(tmp_path_factory.mktemp("ray")) as running:
        yield running


def strict_skips() -> bool:
    """Whether a skip fails the run (CI=true)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _fail_skip(report, where: str) -> None:
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = "failed"
    report.longrepr = (
        f"{where} skipped under CI=true, which allows only GPU-only skips: {reason}. "
        "Install or start what it needs (see .ci/run)."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true, turn a test's skip into a failure unless it is GPU-only."""
    outcome = yield
    report = outcome.get_result()
    gpu_only = "gpu" in item.keywords
    if strict_skips() and report.skipped and not gpu_only and not hasattr(report, "wasxfail"):
        _fail_skip(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Under CI=true, turn a skipped module (e.g. importorskip) into a failure."""
    outcome = yield
    report = outcome.get_result()
    if strict_skips() and report.skipped:
        _fail_skip(report, str(collector.nodeid))
