"""The Ray runner: Ray Data maps planned batches over an actor pool of predictor workers.

Paths travel to the actors, which decode and process them (a worker class: the segmenting
`Worker`, or `EmbedWorker`, wrapped in `RayWorker`); the driver receives
records (masks as RLE, small) as blocks finish and stores them through the same shard store
as the local runner, so output, resume and exactly-once hold the same way. An actor whose
process dies is restarted and its unfinished batches run again (Ray Data's defaults for actor
pools, max_restarts=-1 and max_task_retries=-1; not pinned here, as passing them is deprecated
from Ray 2.60; the worker-kill test holds them); a batch counts as done only once the driver
has stored its shard, so none is lost or written twice.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from sam3_core.jobs.spec import JobSpecError

if TYPE_CHECKING:
    import ray.data

logger = logging.getLogger(__name__)


def import_ray():
    """`ray` with Ray Data, or an error naming the install command."""
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise JobSpecError(
            'The Ray runner needs Ray Data: pip install "sam3-tools[ray]" (or "ray[data]"); '
            "the local runner needs nothing more."
        ) from err
    return ray


CAUSE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")


def cause_line(err: Exception) -> str:
    """The worker's own exception line ("ValueError: ...") from a Ray error's report."""
    lines = [line.strip() for line in str(err).splitlines()]
    found = [line for line in lines if CAUSE.match(line)]
    if not found:
        return lines[0] if lines else type(err).__name__
    own = [line for line in found if not line.startswith("ray.")]  # not Ray's wrappers
    name, sep, message = (own or found)[-1].partition(":")
    return name.rsplit(".", 1)[-1] + sep + message  # "pkg.mod.SomeError: x" -> "SomeError: x"


def connect(address: str | None) -> bool:
    """Join a cluster ("auto": a running one, else start a local one; or an address).

    Returns whether this call connected (and so should disconnect at the end).
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs = {"logging_level": "WARNING", "log_to_driver": False}
    if address in (None, "auto"):
        try:
            ray.init(address="auto", **kwargs)
        except ConnectionError:
            ray.init(**kwargs)
    else:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as err:
            raise JobSpecError(
                f"cannot reach a Ray cluster at {address} ({err}); check the address, or start "
                "one there with `ray start --head`, or pass --ray auto"
            ) from None
    return True


# Ray 2.60 logs its DataContext at DEBUG with a %-format that fails ("--- Logging error ---" on
# stderr; an exception under pytest's log capture); this logger's DEBUG output is left out.
BROKEN_DEBUG_LOGGER = "ray.data._internal.execution.streaming_executor"


@contextlib.contextmanager
def quiet_broken_debug_log() -> Iterator[None]:
    """Keep Ray Data's executor logger above DEBUG while a job runs."""
    log = logging.getLogger(BROKEN_DEBUG_LOGGER)
    level = log.level
    log.setLevel(max(level, logging.INFO))
    try:
        yield
    finally:
        log.setLevel(level)


# The background thread Ray Data (2.60, `iter_threaded` in data/_internal/block_batching/util.py)
# pulls blocks in. On an early stop it is only told to stop, not joined; if it is still inside a Ray
# call when `ray.shutdown()` runs, Ray ends the whole process ("The core worker has already been
# shutdown ... The process will exit"): a FiftyOne App or Label Studio server would die with it.
RAY_DATA_ITERATION_THREAD = "iter_threaded"


@contextlib.contextmanager
def finished_iteration(
    dataset: ray.data.Dataset, timeout: float = 60.0
) -> Iterator[Iterator[pa.Table]]:
    """Iterate a dataset's record tables; on leaving (done, or a sink/interrupt error), close the
    iteration and wait up to `timeout` s for Ray Data's iteration threads to finish (even when
    closing fails), so Ray can be shut down safely; a warning names a thread still running.

    No prefetching: record tables are small, and the prefetch thread would keep calling Ray after
    an early stop."""
    before = set(threading.enumerate())
    tables = iter(dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0))
    try:
        yield tables
    finally:
        try:
            tables.close()  # runs Ray Data's own cleanup: stops the executor, signals its threads
        finally:
            join_iteration_threads(set(threading.enumerate()) - before, timeout)


def join_iteration_threads(threads: set[threading.Thread], timeout: float) -> None:
    """Wait up to `timeout` s in all for those of `threads` named as Ray Data's iteration
    thread; log a warning for one still running (shutting Ray down may then end the process)."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        if thread.name != RAY_DATA_ITERATION_THREAD:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            logger.warning(
                "Ray Data's iteration thread %s is still running %.0f s after the job stopped; "
                "disconnecting from Ray now may end this process.",
                thread.name,
                timeout,
            )


class RayWorker:
    """The Ray Data callable class around a worker: each Arrow row's `paths` column holds one
    planned batch of image ids; returns the records of all of them as one table."""

    def __init__(self, worker_cls: type, spec, threads: int | None = None) -> None:
        self.worker = worker_cls(spec, threads=threads)

    def __call__(self, batch: pa.Table) -> pa.Table:
        tables = [self.worker.process(paths) for paths in batch["paths"].to_pylist()]
        return pa.concat_tables(tables)


def run_ray(
    worker_cls: type,
    spec,
    batches: list[list[str]],
    sink: Callable[[pa.Table], None],
    *,
    workers: int | None = None,
    address: str | None = "auto",
    cpus_per_worker: int = 1,
) -> None:
    """Run the planned batches through `worker_cls(spec, threads=...)` actors on a Ray cluster;
    `sink` stores records as blocks arrive.

    Actors: one per GPU when the cluster has GPUs and `spec.device` allows CUDA; else
    `workers` CPU actors (default: the cluster's CPUs // cpus_per_worker) using
    `cpus_per_worker` threads each.
    """
    if not batches:
        return
    ray = import_ray()
    started = connect(address)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # run_job shows one bar over images
        context.print_on_execution_start = False
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if spec.device in (None, "cuda") else 0
        if gpus:
            size, placement, threads = workers or gpus, {"num_gpus": 1}, None
        else:
            size = workers or max(1, int(resources.get("CPU", 1)) // cpus_per_worker)
            placement, threads = {"num_cpus": cpus_per_worker}, cpus_per_worker
        items = [{"paths": paths} for paths in batches]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            RayWorker,
            fn_constructor_kwargs={"worker_cls": worker_cls, "spec": spec, "threads": threads},
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=min(size, len(batches))),
            **placement,
        )
        with quiet_broken_debug_log(), finished_iteration(dataset) as tables:
            for table in tables:
                sink(table)
    except ray.exceptions.RayError as err:
        raise RuntimeError(f"the Ray job failed on a worker: {cause_line(err)}") from err
    finally:
        if started:
            ray.shutdown()
