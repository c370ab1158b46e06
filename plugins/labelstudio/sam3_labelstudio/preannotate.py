"""`sam3-labelstudio preannotate --project ID`: a project's predictions as a dataset job
(`sam3_core.jobs`, here or on Ray), posted to Label Studio in imports while the job runs.

Resumable twice over: the job skips images it has finished, and tasks that already have a
prediction of this model version are not sent again. Annotations are never touched.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from sam3_labelstudio import convert
from sam3_labelstudio.images import ImageFetchError, local_storage_path
from sam3_labelstudio.labeling import Schema

log = logging.getLogger("sam3_labelstudio")

POST_BATCH = 100  # predictions per import request (one HTTP call each)
POST_EVERY_S = 30.0  # a slow job still posts what it has at least this often


class PostError(RuntimeError):
    """Label Studio did not take an import of predictions; the message says how to resume."""


def task_inputs(tasks, fetcher, folder: Path) -> dict[str, int]:
    """{image path: task id}: Local Storage files in place, others downloaded once into
    `folder` (kept, so that a resumed run reads the same files)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for task in tasks:
        local = local_storage_path(task.url, fetcher.local_root)
        if local is None:
            suffix = Path(task.url.split("?")[0]).suffix or ".img"
            local = str(folder / f"task-{task.id}{suffix}")
            if not os.path.exists(local):
                try:
                    data = fetcher.fetch_bytes(task.url)
                except ImageFetchError as exc:  # the job never sees this task
                    log.error("task %s: %s", task.id, exc)
                    continue
                Path(local + ".part").write_bytes(data)
                os.replace(local + ".part", local)
        paths[os.path.abspath(local)] = task.id
    return paths


def record_results(record: dict, schema: Schema) -> list[dict]:
    """A job record's instances as Label Studio results for the batch output tags (the
    conversion /predict uses, `convert.outputs_results`)."""
    from sam3_core.postprocess import rle_to_mask

    instances = record["instances"] or []
    if not instances:
        return []
    outputs = schema.batch_outputs()
    concepts = schema.concepts(outputs)
    labels = [concepts.index(i["concept"]) if i["concept"] in concepts else -1 for i in instances]
    masks = np.stack([rle_to_mask(i["segmentation"]) for i in instances])
    boxes = np.array([i["box"] for i in instances], np.float32)
    scores = np.array([i["score"] for i in instances], np.float32)
    return convert.outputs_results(outputs, concepts, labels, masks, boxes, scores)


class PredictionPoster:
    """Turns finished job records into one prediction per task and imports them into the
    project, `batch` per request (`projects.import_predictions`), each task at most once."""

    def __init__(self, ls, project: int, paths: dict[str, int], schema: Schema, version: str,
                 batch: int = POST_BATCH) -> None:  # fmt: skip
        self.ls, self.project, self.paths = ls, project, paths
        self.schema, self.version, self.batch = schema, version, batch
        self.counts = {"posted": 0, "failed": 0}
        self.handled: set[int] = set()  # tasks posted, queued or failed by this run
        self.pending: list[dict] = []
        self.shards_read: set[str] = set()
        self.last_post = time.monotonic()

    def add(self, record: dict) -> None:
        """Queue the prediction of one job record (records of other tasks, or of tasks
        already handled, are ignored); posts when a batch is full or has waited too long."""
        task_id = self.paths.get(record["id"])
        if task_id is None or task_id in self.handled:
            return
        self.handled.add(task_id)
        if record.get("error"):
            self.counts["failed"] += 1
            log.error("task %s: %s", task_id, record["error"])
            return
        results = record_results(record, self.schema)
        self.pending.append(convert.prediction(results, self.version) | {"task": task_id})
        waited = time.monotonic() - self.last_post
        if len(self.pending) >= self.batch or waited >= POST_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Import the queued predictions in one request."""
        if not self.pending:
            return
        try:
            self.ls.projects.import_predictions(id=self.project, request=self.pending)
        except Exception as exc:  # the SDK raises ApiError, httpx errors, ...
            raise PostError(
                f"Label Studio did not take {len(self.pending)} predictions for project "
                f"{self.project} ({exc}). The job's records are kept: run the same command "
                "again to post them (finished images are not segmented again)."
            ) from exc
        self.counts["posted"] += len(self.pending)
        self.pending.clear()
        self.last_post = time.monotonic()

    def read_new_shards(self, job_dir: Path) -> None:
        """Queue the records of the job's shards not read yet: called as batches finish, and
        once after the job for an earlier run's shards (ids first: a shard whose tasks are
        all handled, such as the merged shards at the end of a job, is not read whole)."""
        import pyarrow.parquet as pq

        from sam3_core.jobs.records import list_shards

        for shard in list_shards(job_dir):
            if shard.name in self.shards_read:
                continue
            self.shards_read.add(shard.name)
            ids = pq.read_table(shard, columns=["id"])["id"].to_pylist()
            tasks = {self.paths[i] for i in ids if i in self.paths}
            if tasks - self.handled:
                for record in pq.read_table(shard).to_pylist():
                    self.add(record)
