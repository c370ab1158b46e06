"""`finished_iteration` waits for Ray Data's iteration thread even when closing the iteration
fails, and says so when the thread outlives the wait (a fake dataset: no Ray needed)."""

from __future__ import annotations

import logging
import threading

import pytest

from sam3_core.jobs.ray_runner import RAY_DATA_ITERATION_THREAD, finished_iteration


class FakeDataset:
    """Starts a thread named as Ray Data's, running `work`; its iteration's close raises."""

    def __init__(self, work) -> None:
        self.thread = threading.Thread(target=work, name=RAY_DATA_ITERATION_THREAD, daemon=True)

    def iter_batches(self, **kwargs):
        self.thread.start()
        try:
            yield "table"
        finally:
            raise RuntimeError("close failed")


def test_the_thread_is_joined_when_close_fails():
    release = threading.Event()
    dataset = FakeDataset(lambda: release.wait(0.5))
    stopped = pytest.raises(RuntimeError, match="close failed")
    with stopped, finished_iteration(dataset, timeout=30) as tables:
        assert next(tables) == "table"
    assert not dataset.thread.is_alive()


def test_a_thread_still_running_after_the_wait_is_a_warning(caplog):
    release = threading.Event()
    dataset = FakeDataset(release.wait)
    try:
        logged = caplog.at_level(logging.WARNING, logger="sam3_core.jobs.ray_runner")
        stopped = pytest.raises(RuntimeError, match="close failed")
        with logged, stopped, finished_iteration(dataset, timeout=0.05) as tables:
            next(tables)
        assert dataset.thread.is_alive()
        assert RAY_DATA_ITERATION_THREAD in caplog.text and "still running" in caplog.text
    finally:
        release.set()
