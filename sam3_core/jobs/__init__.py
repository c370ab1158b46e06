"""Dataset jobs: label many images by concept, in this process or on a Ray cluster, resumable.

`run_job(JobSpec(...), out_dir)` (concepts for every image, and/or `image_prompts` per image)
writes per-image records to `out_dir/shards/*.parquet` as batches finish; `write_coco` /
`write_labelstudio` turn them into import files and `write_overlays` draws them over their
images. `run_embed(EmbedSpec(...))` fills an embedding
store on the same runners (`run_batches` drives any worker class).
"""

from sam3_core.jobs.embed import EmbedSpec, EmbedWorker, run_embed
from sam3_core.jobs.image_prompts import ImagePrompts, as_image_prompts
from sam3_core.jobs.inputs import InputError, list_inputs
from sam3_core.jobs.overlays import overlay_names, write_overlays
from sam3_core.jobs.records import RECORD_SCHEMA, iter_records
from sam3_core.jobs.run import JobSummary, run_batches, run_job
from sam3_core.jobs.spec import JobSpec, JobSpecError
from sam3_core.jobs.worker import Worker
from sam3_core.jobs.writers import labeling_config, write_coco, write_labelstudio

__all__ = [
    "RECORD_SCHEMA",
    "EmbedSpec",
    "EmbedWorker",
    "ImagePrompts",
    "InputError",
    "JobSpec",
    "JobSpecError",
    "JobSummary",
    "Worker",
    "as_image_prompts",
    "iter_records",
    "labeling_config",
    "list_inputs",
    "overlay_names",
    "run_batches",
    "run_embed",
    "run_job",
    "write_coco",
    "write_labelstudio",
    "write_overlays",
]
