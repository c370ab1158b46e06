"""Label a view by concepts through `sam3_core.jobs` (in this process or on Ray), resumably;
`run_view_job` (and the settings, `JobSettings`) is what `label_from_exemplars` shares.

The view's image paths become a job's inputs; the job writes Parquet shards as batches finish
and each new shard is written back to the dataset at once with one `set_values` call. The job
folder is signed by the prompts, thresholds and weights, so a run stopped at any point resumes
from its shards; it is removed once every record is in the dataset (unless you named it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .convert import record_to_detections
from .job_settings import JobSettings
from .labeling import JobReport, Progress, samples_to_label, write_labels

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection
    from sam3_core.jobs import JobSpec

JOBS_DIR_ENV = "SAM3_FIFTYONE_JOBS"  # where job folders go (default ~/.cache/sam3/fiftyone-jobs)


def label_view(
    samples: SampleCollection, field: str, concepts: Sequence[str], **settings: Any
) -> JobReport:
    """Segment every instance of `concepts` in the images of `samples` into `field`.

    settings: the keywords of `sam3_fiftyone.job_settings.JobSettings` (output,
    score_threshold, mask_threshold, checkpoint, config, device, precision, batch_size,
    overwrite, skip_labeled, ray, workers, job_dir, store, thresholds, progress, choices), with
    its defaults: by default the job runs in this process and an existing `field` is refused.
    """
    job = JobSettings.from_keywords(label_view, settings)
    job.check(samples, field)
    concepts = [c.strip() for c in concepts if c and c.strip()]
    if not concepts:
        raise ValueError("Give at least one concept, e.g. 'person' or 'yellow school bus'.")
    report = JobReport()
    todo, report.skipped = samples_to_label(samples, field, job.skip_labeled)
    ids, paths = todo.values(["id", "filepath"]) if len(todo) else ([], [])
    if not ids:
        return report  # nothing to do: no model is loaded
    check_images(samples, "label_view")
    spec = job.job_spec(concepts=tuple(concepts))
    run_view_job(samples, field, spec, dict(zip(ids, paths)), report, job)
    return report


def check_images(samples: SampleCollection, what: str) -> None:
    """Raise unless `samples` holds images (videos are tracked, not labeled by a job)."""
    if samples.media_type != "image":
        raise ValueError(
            f"{what} segments images; this view holds {samples.media_type} samples "
            "(for videos use track_samples or the 'SAM 3: track in videos' operator)."
        )


def run_view_job(
    samples: SampleCollection,
    field: str,
    spec: JobSpec,
    paths_by_id: dict[str, str],
    report: JobReport,
    job: JobSettings,
) -> None:
    """Run `spec` on the images of `paths_by_id` (sample id -> filepath) where `job` says,
    writing each shard's records into `field` as it lands; the job folder goes at the end
    unless it was named."""
    out = Path(job.job_dir) if job.job_dir else default_job_dir(samples, field, spec)
    out.mkdir(parents=True, exist_ok=True)
    inputs = out / "inputs.txt"
    inputs.write_text("".join(f"{p}\n" for p in sorted(set(paths_by_id.values()))))
    spec = dataclasses.replace(spec, inputs=(str(inputs),))
    writer = ShardImporter(samples, field, paths_by_id, job.output, report)
    run_spec(spec, out, writer, job.ray, job.workers, job.progress)
    if not job.job_dir and writer.complete():
        shutil.rmtree(out, ignore_errors=True)


def run_spec(
    spec: JobSpec,
    out: Path,
    writer: ShardImporter,
    ray: str | None,
    workers: int | None,
    progress: Progress | None,
) -> None:
    """Run the job; write each new shard back as it lands, then whatever is left."""
    from sam3_core.jobs import run_job

    def on_progress(done: int, total: int) -> None:
        writer.poll(out)
        if progress is not None:
            progress(done / max(total, 1), f"SAM 3: {done}/{total} images")

    writer.poll(out)  # shards of an earlier, stopped run of this job
    run_job(
        spec,
        out,
        runner="ray" if ray else "local",
        ray_address=ray if ray else None,
        workers=workers,
        progress=False,
        compact=False,
        on_progress=on_progress,
    )
    writer.poll(out)


def default_job_dir(samples: SampleCollection, field: str, spec: JobSpec) -> Path:
    """`$SAM3_FIFTYONE_JOBS/<dataset id>/<field>-<signature hash>`: one folder per job."""
    root = os.environ.get(JOBS_DIR_ENV) or Path.home() / ".cache" / "sam3" / "fiftyone-jobs"
    digest = hashlib.sha256(json.dumps(spec.signature(), sort_keys=True).encode()).hexdigest()
    return Path(root) / str(samples._dataset._doc.id) / f"{field}-{digest[:16]}"


class ShardImporter:
    """Writes a job's records into `field` of the samples they belong to, shard by shard.

    paths_by_id: the samples to label (id -> filepath); records of other images (a job folder
    shared with an earlier run) are left alone.
    """

    def __init__(
        self,
        samples: SampleCollection,
        field: str,
        paths_by_id: dict[str, str],
        output: str,
        report: JobReport,
    ) -> None:
        self.samples, self.field, self.output, self.report = samples, field, output, report
        self.ids_of: dict[str, list[str]] = {}
        for sample_id, path in paths_by_id.items():
            key = path if "://" in path else os.path.abspath(path)  # as the job lists it
            self.ids_of.setdefault(key, []).append(sample_id)
        self.written: set[str] = set()
        self.seen: set[Path] = set()

    def poll(self, out: Path) -> None:
        """Write the records of every shard not read yet."""
        import pyarrow.parquet as pq

        from sam3_core.jobs.records import list_shards

        for shard in list_shards(out):
            if shard in self.seen:
                continue
            self.seen.add(shard)
            labels = {}
            for record in pq.read_table(shard).to_pylist():
                path = record["id"]
                if path in self.written or path not in self.ids_of:
                    continue
                self.written.add(path)
                if record["error"] is not None:
                    for sample_id in self.ids_of[path]:
                        self.report.fail(sample_id, path, RuntimeError(record["error"]))
                    continue
                dets = record_to_detections(record, self.output)
                labels.update({sample_id: dets.copy() for sample_id in self.ids_of[path]})
            write_labels(self.samples, self.field, labels, self.report)

    def complete(self) -> bool:
        """Whether every image of the job has been written back (or reported as failed)."""
        return len(self.written) == len(self.ids_of)
