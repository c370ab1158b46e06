"""The embedded runner: one worker in this process, batch after batch."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa


def run_local(
    worker_cls: type, spec, batches: list[list[str]], sink: Callable[[pa.Table], None]
) -> None:
    """Run each planned batch through one `worker_cls(spec)` (loaded once); `sink` stores each
    batch's records as it finishes. A worker: `process(paths) -> pa.Table` of records."""
    if not batches:
        return
    worker = worker_cls(spec)
    for paths in batches:
        sink(worker.process(paths))
