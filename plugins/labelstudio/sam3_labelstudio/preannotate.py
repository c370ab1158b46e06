"""`sam3-labelstudio preannotate --project ID`: a project's predictions as a dataset job
(`sam3_core.jobs`, here or on Ray), posted to Label Studio as they are read back.

Resumable twice over: the job skips images it has finished, and tasks that already have a
prediction of this model version are not sent again. Annotations are never touched.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from sam3_labelstudio import convert
from sam3_labelstudio.images import ImageFetchError, local_storage_path
from sam3_labelstudio.labeling import Schema

log = logging.getLogger("sam3_labelstudio")


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
    """A job record's instances as Label Studio results for the batch output tags."""
    from sam3_core.postprocess import rle_to_mask

    instances = record["instances"] or []
    results = []
    for out in schema.batch_outputs():
        for label, concept in out.concepts.items():
            mine = [i for i in instances if i["concept"] == concept]
            if not mine:
                continue
            masks = np.stack([rle_to_mask(i["segmentation"]) for i in mine])
            boxes = np.array([i["box"] for i in mine], np.float32)
            scores = np.array([i["score"] for i in mine], np.float32)
            results += convert.instance_results(masks, boxes, scores, out, label)
    return results


POST_BATCH = 100  # predictions per import request (one HTTP call each)


def post_predictions(ls, project: int, records, paths: dict[str, int], schema: Schema,
                     version: str, done: set[int]) -> dict[str, int]:  # fmt: skip
    """Post one prediction per finished record whose task has none of `version` yet, in
    imports of POST_BATCH predictions (`projects.import_predictions`), not one call per task."""
    counts = {"posted": 0, "already": 0, "failed": 0}
    pending: list[dict] = []

    def flush() -> None:
        if pending:
            ls.projects.import_predictions(id=project, request=pending)
            done.update(p["task"] for p in pending)
            counts["posted"] += len(pending)
            pending.clear()

    for record in records:
        task_id = paths.get(record["id"])
        if task_id is None:
            continue
        if record.get("error"):
            counts["failed"] += 1
            log.error("task %s: %s", task_id, record["error"])
            continue
        if task_id in done:
            counts["already"] += 1
            continue
        results = record_results(record, schema)
        score = float(np.mean([r["score"] for r in results])) if results else 0.0
        pending.append({"task": task_id, "result": results, "score": score,
                        "model_version": version})  # fmt: skip
        if len(pending) >= POST_BATCH:
            flush()
    flush()
    return counts
