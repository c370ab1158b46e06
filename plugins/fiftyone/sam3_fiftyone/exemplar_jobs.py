"""Label a view from exemplar boxes through `sam3_core.jobs` (here or on Ray), resumably.

Each sample's boxes in a Detections field become that image's prompts (`JobSpec.image_prompts`,
boxes relative to the image, scaled on the workers once they read it), built exactly as
`Sam3Model` builds them for `apply_model`, so both give the same labels. Write-back, resume
and the job folder work as in `label_view`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import fiftyone.core.labels as fol

from .convert import build_concepts, split_exemplars
from .dataset_jobs import check_images, run_view_job
from .job_settings import JobSettings
from .labeling import JobReport, samples_to_label

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


def label_from_exemplars(
    samples: SampleCollection,
    field: str,
    exemplar_field: str,
    *,
    concepts: Sequence[str] = (),
    negative_label: str | None = None,
    negative_tag: str | None = None,
    exemplar_ids: Sequence[str] | None = None,
    join_exemplars: bool = True,
    **settings: Any,
) -> JobReport:
    """Segment every instance like each sample's exemplar boxes (`exemplar_field`, a
    Detections field) into `field`, as a dataset job.

    Per image, as `Sam3Model` with `prompt_field=exemplar_field`: each of `concepts` is a text
    concept; a positive box joins every concept (`join_exemplars`; else only the concept named
    like its label), and boxes of other labels prompt their own label (no text). Boxes labelled
    `negative_label` or tagged `negative_tag` are negatives joined to every concept;
    `exemplar_ids` limits the positives to those label ids. A sample with no prompt gets
    empty Detections. settings: the keywords of `JobSettings`, as in `label_view`.
    """
    job = JobSettings.from_keywords(label_from_exemplars, settings)
    job.check(samples, field, (exemplar_field,))
    check_exemplar_field(samples, exemplar_field)
    classes = [c.strip() for c in concepts if c and c.strip()]
    report = JobReport()
    todo, report.skipped = samples_to_label(samples, field, job.skip_labeled)
    if not len(todo):
        return report  # nothing to do: no model is loaded
    check_images(samples, "label_from_exemplars")
    ids, paths, boxes = samples.values(["id", "filepath", exemplar_field])
    options = (negative_label, negative_tag, exemplar_ids, join_exemplars)
    entries = [sample_prompts(label, classes, *options) for label in boxes]
    prompts, owner = {}, {}  # filepath -> prompt set (whole view: a stable signature), sample
    for sample_id, path, prompt in zip(ids, paths, entries):
        if prompts.setdefault(path, prompt) == prompt:
            owner.setdefault(path, sample_id)
    wanted = set(todo.values("id"))
    paths_by_id = {}
    for sample_id, path, prompt in zip(ids, paths, entries):
        if sample_id in wanted and prompts[path] != prompt:
            report.fail(sample_id, path, ValueError(shared_image_message(owner[path])))
        elif sample_id in wanted:
            paths_by_id[sample_id] = path
    if not paths_by_id:
        return report
    spec = job.job_spec(image_prompts=prompts, relative_boxes=True)
    run_view_job(samples, field, spec, paths_by_id, report, job)
    return report


def check_exemplar_field(samples: SampleCollection, exemplar_field: str) -> None:
    """Raise unless `exemplar_field` is a Detections field of the dataset."""
    schema = samples._dataset.get_field_schema()
    doc_type = getattr(schema.get(exemplar_field), "document_type", None)
    if doc_type is not fol.Detections:
        held = "does not exist" if exemplar_field not in schema else f"holds {doc_type}"
        raise ValueError(
            f"The exemplar field '{exemplar_field}' {held}: give a Detections field whose boxes "
            "are the exemplars (clicks in a Keypoints field go through apply_model(Sam3Model))."
        )


def sample_prompts(
    label: fol.Detections | None,
    classes: Sequence[str],
    negative_label: str | None,
    negative_tag: str | None,
    exemplar_ids: Sequence[str] | None,
    join_exemplars: bool,
) -> list[dict]:
    """One sample's prompt set for `JobSpec.image_prompts`: named concepts whose boxes are
    relative (x0, y0, x1, y1, positive), as `Sam3Model` builds them in pixels."""
    positives, negatives = split_exemplars(label, 1, 1, negative_label, negative_tag, exemplar_ids)
    concepts, names = build_concepts(classes, positives, negatives, join_exemplars)
    return [
        {
            "name": name,
            "text": concept.text,
            "exemplars": [[*e.box, e.positive] for e in concept.exemplars],
        }
        for name, concept in zip(names, concepts)
    ]


def shared_image_message(owner: str) -> str:
    """Why a sample is not labeled: its image runs with another sample's exemplars."""
    return (
        f"this image is also the image of sample {owner}, which has other exemplar boxes, and "
        "one job labels an image once: label this sample in a view without that one"
    )
