"""The embedded runner: one worker in this process, batch after batch."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from sam3_core.jobs.spec import JobSpec
from sam3_core.jobs.worker import Worker


def run_local(spec: JobSpec, batches: list[list[str]], sink: Callable[[pa.Table], None]) -> None:
    """Segment each planned batch in turn; `sink` stores each batch's records as it finishes."""
    if not batches:
        return
    worker = Worker(spec)
    for paths in batches:
        sink(worker.process(paths))
