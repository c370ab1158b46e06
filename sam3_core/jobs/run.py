"""`run_job`: list inputs, skip finished ids, run a runner, store shards, summarise.

`run_batches` is that loop for any worker class (segmenting `Worker`, `EmbedWorker`);
`run_job` is it with the segmenting worker and the exports.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from sam3_core.jobs.inputs import InputError, list_inputs
from sam3_core.jobs.records import RECORD_SCHEMA, ShardStore, plan_batches
from sam3_core.jobs.spec import JobSpec, JobSpecError, prepare_output

RUNNERS = ("local", "ray")
EXPORTS = ("coco", "labelstudio", "overlays")
MAX_ERRORS_KEPT = 20


@dataclass
class JobSummary:
    """What one run of a job did. total: images listed; skipped: finished before this run;
    processed / errors / instances: this run's records, error records and instances;
    failed: (id, error) of the first error records; exports: files written at the end;
    segments: whether the records hold instances (labeling jobs) or not (embedding jobs)."""

    out_dir: Path
    total: int = 0
    skipped: int = 0
    processed: int = 0
    errors: int = 0
    instances: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)
    exports: dict[str, Path] = field(default_factory=dict)
    segments: bool = True

    @property
    def images_per_s(self) -> float:
        """Images processed per second of this run."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def add(self, table: pa.Table) -> None:
        """Count one stored shard's records."""
        self.processed += len(table)
        if "instances" in table.column_names:
            self.instances += sum(len(i) for i in table["instances"].to_pylist())
        for image_id, error in zip(table["id"].to_pylist(), table["error"].to_pylist()):
            if error is not None:
                self.errors += 1
                if len(self.failed) < MAX_ERRORS_KEPT:
                    self.failed.append((image_id, error))

    def __str__(self) -> str:
        found = f", {self.instances} instances" if self.segments else ""
        return (
            f"{self.processed} images done ({self.errors} errors{found}), {self.skipped} "
            f"already done, of {self.total} -> {self.out_dir} in {self.seconds:.1f} s "
            f"({self.images_per_s:.2f} images/s)"
        )


def inside(image_id: str, folder: Path) -> bool:
    """True when a local image id lies in `folder` (a job's own output is never its input)."""
    return "://" not in image_id and Path(os.path.abspath(image_id)).is_relative_to(folder)


def run_batches(
    worker_cls: type,
    spec,
    out_dir: str | os.PathLike,
    *,
    schema: pa.Schema = RECORD_SCHEMA,
    runner: str = "local",
    ray_address: str | None = "auto",
    workers: int | None = None,
    progress: bool = True,
    restart: bool = False,
    retry_errors: bool = False,
    compact: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    desc: str = "sam3 job",
) -> JobSummary:
    """List `spec.inputs`, skip finished ids, run the rest through `worker_cls(spec)` workers
    (local or Ray) in `spec.batch_size` batches, storing each batch's records (`schema`) in
    `out_dir/shards/` as it finishes. See `run_job` for the keywords.
    """
    if runner not in RUNNERS:
        raise JobSpecError(f"runner must be one of {RUNNERS}; got {runner!r}.")
    out_abs = Path(os.path.abspath(Path(out_dir).expanduser()))
    ids = [i for i in list_inputs(spec.inputs) if not inside(i, out_abs)]
    if not ids:
        raise InputError(f"No images found in {', '.join(spec.inputs)}; check the paths.")
    out = prepare_output(spec, out_dir, restart)
    store = ShardStore(out, retry_errors=retry_errors, schema=schema)
    batches = plan_batches(ids, store.done, spec.batch_size)
    summary = JobSummary(
        out,
        total=len(ids),
        skipped=len(ids) - sum(map(len, batches)),
        segments="instances" in schema.names,
    )
    start = time.perf_counter()
    from tqdm import tqdm

    with tqdm(
        total=len(ids), initial=summary.skipped, unit="img", desc=desc, disable=not progress
    ) as bar:

        def sink(table: pa.Table) -> None:
            stored = store.write(table)
            summary.add(stored)
            bar.update(len(stored))
            if on_progress is not None:
                on_progress(summary.skipped + summary.processed, summary.total)

        if runner == "local":
            from sam3_core.jobs.local import run_local

            run_local(worker_cls, spec, batches, sink)
        else:
            from sam3_core.jobs.ray_runner import run_ray

            run_ray(worker_cls, spec, batches, sink, workers=workers, address=ray_address)
    if compact:
        store.compact()
    else:
        store.drop_superseded()
    summary.seconds = time.perf_counter() - start
    return summary


def run_job(
    spec: JobSpec,
    out_dir: str | os.PathLike,
    *,
    runner: str = "local",
    ray_address: str | None = "auto",
    workers: int | None = None,
    progress: bool = True,
    restart: bool = False,
    retry_errors: bool = False,
    compact: bool = True,
    exports: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
) -> JobSummary:
    """Label every input image; records go to `out_dir/shards/*.parquet` as batches finish.

    Re-running with the same `out_dir` skips finished images; other prompts, thresholds or
    weights are refused unless `restart` (the old output is moved aside, never deleted);
    `retry_errors` segments again the images whose record is an error (the new record
    replaces it). Images inside `out_dir` are never inputs. runner: "local" (in this process)
    or "ray" (`ray_address`: "auto" joins a running cluster or starts a local one, or
    "host:port"; `workers` actors). compact: at the end, merge small shards into shards of
    about 64 MiB. exports, written at the end: "coco" (annotations.json), "labelstudio"
    (labelstudio.json), "overlays" (overlays/, see `write_overlays`). on_progress(done, total)
    is called after each stored batch.
    """
    unknown = [e for e in exports if e not in EXPORTS]
    if unknown:
        raise JobSpecError(f"Unknown export(s) {unknown}; choose from {EXPORTS}.")
    from sam3_core.jobs.worker import Worker

    summary = run_batches(
        Worker,
        spec,
        out_dir,
        runner=runner,
        ray_address=ray_address,
        workers=workers,
        progress=progress,
        restart=restart,
        retry_errors=retry_errors,
        compact=compact,
        on_progress=on_progress,
    )
    summary.exports.update(write_exports(summary.out_dir, exports))
    return summary


def write_exports(out_dir: str | os.PathLike, exports: Sequence[str]) -> dict[str, Path]:
    """Write each named export ("coco", "labelstudio", "overlays") of a job's records."""
    from sam3_core.jobs import overlays, writers

    write = {
        "coco": writers.write_coco,
        "labelstudio": writers.write_labelstudio,
        "overlays": overlays.write_overlays,
    }
    return {name: write[name](out_dir) for name in exports}
