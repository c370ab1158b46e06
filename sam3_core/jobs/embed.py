"""Embedding jobs: fill an embedding store (`sam3_core.store`) for many images, here or on Ray.

The same runners and resume as labeling jobs (`run_batches`): the job's records (one per
image: its store key and the entry's bytes) live in `STORE/embed-job/`, so a re-run skips
finished images, and images already in the store (by content) are read, not recomputed.
With Ray, every worker must reach the store folder (one machine, or a shared file system).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from sam3_core.jobs.inputs import local_copy
from sam3_core.jobs.records import records_table
from sam3_core.jobs.run import JobSummary, run_batches
from sam3_core.jobs.spec import (
    JobSpecError,
    as_inputs,
    check_model_settings,
    weights_fingerprint,
)
from sam3_core.jobs.worker import decode, error_record, load_predictor

JOB_FOLDER = "embed-job"  # inside the store folder: the job's job.json and shards/
EMBED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("key", pa.string()),
        ("bytes", pa.int64()),
        ("computed", pa.bool_()),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class EmbedSpec:
    """An embedding job: inputs (as `JobSpec.inputs`), the store folder, its storage dtype
    (None: the folder's own, fp32 for a new one) and the model settings."""

    inputs: tuple[str, ...]
    store: str
    dtype: str | None = None
    checkpoint: str | None = None
    config: str | None = None  # None: picked from the checkpoint
    device: str | None = None
    precision: str = "fp32"
    batch_size: int = 4
    max_pixels: int = 1 << 27
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", as_inputs(self.inputs))
        object.__setattr__(self, "store", str(Path(self.store).expanduser()))
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", str(self.checkpoint))
        if not self.inputs:
            raise JobSpecError("An embedding job needs inputs: image files, folders or globs.")
        check_model_settings(self.precision, self.batch_size, self.max_pixels)

    def signature(self) -> dict:
        """What the stored entries depend on (the store checks the model itself too)."""
        return {
            "task": "embed",
            "weights": weights_fingerprint(self.checkpoint),
            "config": self.config,
            "precision": self.precision,
            "max_pixels": int(self.max_pixels),
        }

    def open_store(self, memory_bytes: int = 0):
        """The `EmbeddingStore` of this job (no memory tier by default: a job only writes)."""
        from sam3_core.store import EmbeddingStore

        return EmbeddingStore(self.store, memory_bytes=memory_bytes, dtype=self.dtype)


class EmbedWorker:
    """Loads the model with the store once; `process(paths)` decodes a batch and puts each
    image's embedding in the store (`ImagePredictor.precompute`), one record per image."""

    def __init__(self, spec: EmbedSpec, threads: int | None = None) -> None:
        self.spec = spec
        self.predictor = load_predictor(spec, threads, store=spec.open_store())

    def process(self, paths: Sequence[str]) -> pa.Table:
        """Image ids -> records (id, size, store key, entry bytes, computed; or error)."""
        records, images = [], []
        for path in paths:
            try:
                with local_copy(path) as local:
                    images.append((path, decode(local, self.spec.max_pixels)))
            except Exception as err:  # noqa: BLE001 - any bad input becomes an error record
                records.append(error_record(path, f"{type(err).__name__}: {err}"))
        stored = self.predictor.precompute([im for _, im in images], self.spec.batch_size)
        for (path, image), entry in zip(images, stored):
            records.append(
                {
                    "id": path,
                    "height": image.shape[0],
                    "width": image.shape[1],
                    "key": entry.key,
                    "bytes": entry.nbytes,
                    "computed": entry.computed,
                    "error": None,
                }
            )
        return records_table(records, EMBED_SCHEMA)


def run_embed(
    spec: EmbedSpec,
    *,
    runner: str = "local",
    ray_address: str | None = "auto",
    workers: int | None = None,
    progress: bool = True,
    restart: bool = False,
    retry_errors: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> JobSummary:
    """Put every input image's embedding in `spec.store`; records go to `STORE/embed-job/`.

    Resumable as `run_job` (same keywords): a re-run skips finished images. Another `dtype`
    than the folder's is refused here (`StoreError`); a store made by other weights, config
    or precision when the workers load the model (`StoreMismatchError`), and other settings
    than this job's earlier run by `job.json` (`JobSpecError`; `restart` starts over).
    """
    spec.open_store()  # a dtype clash is refused here, on the driver
    return run_batches(
        EmbedWorker,
        spec,
        Path(spec.store) / JOB_FOLDER,
        schema=EMBED_SCHEMA,
        runner=runner,
        ray_address=ray_address,
        workers=workers,
        progress=progress,
        restart=restart,
        retry_errors=retry_errors,
        on_progress=on_progress,
        desc="sam3 embed",
    )


def store_size(spec: EmbedSpec) -> tuple[int, int]:
    """(entries, bytes on disk) of the job's store."""
    store = spec.open_store()
    return len(store), store.disk_bytes()
