"""`sam3-labelstudio embed --project ID`: encode a project's task images into the embedding
store ahead of time, so that the backend's first click on each task skips the backbone."""

from __future__ import annotations

import logging
import time

from sam3_labelstudio.images import ImageFetchError

log = logging.getLogger("sam3_labelstudio")


def embed_project(predictor, fetcher, tasks, batch_size: int = 4) -> dict[str, int]:
    """Fetch each task image and put its embedding in `predictor.store` (stored ones are only
    hashed); a task whose image fails is logged and counted, the others go on."""
    counts = {"tasks": 0, "computed": 0, "stored": 0, "failed": 0}
    batch: list = []

    def flush() -> None:
        for item in predictor.precompute(batch, batch_size=batch_size):
            counts["computed" if item.computed else "stored"] += 1
        batch.clear()

    start = time.perf_counter()
    for task in tasks:  # sam3_labelstudio.project.ProjectTask
        counts["tasks"] += 1
        try:
            batch.append(fetcher.fetch_image(task.url))
        except ImageFetchError as exc:  # also ImageDataError: name the task, go on
            counts["failed"] += 1
            log.error("task %s: %s", task.id, exc)
            continue
        if len(batch) == batch_size:
            flush()
            log.info("%d tasks, %.1f s", counts["tasks"], time.perf_counter() - start)
    if batch:
        flush()
    return counts
