"""Run a `Sam3Model` over a view safely: refuse to clobber fields, resume, report bad files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import fiftyone.core.labels as fol

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


class Choices(NamedTuple):
    """How a refusal tells the user to allow overwriting or resuming (SDK words or form words)."""

    overwrite: str
    skip_labeled: str


SDK_CHOICES = Choices("set overwrite=True", "skip_labeled=True")


@dataclass
class JobReport:
    """What a labeling run did: samples labeled, skipped (already labeled) and failed."""

    labeled: int = 0
    skipped: int = 0
    failed: int = 0
    detections: int = 0
    first_error: str | None = None

    def fail(self, sample_id: str, filepath: str, error: Exception) -> None:
        """Count a failed sample; keep and log the first error."""
        self.failed += 1
        msg = f"{filepath}: {error}"
        if self.first_error is None:
            self.first_error = msg
        logger.warning("SAM 3 skipped sample %s (%s)", sample_id, msg)

    def as_dict(self) -> dict:
        """Plain dict, for an operator result (`first_error` only when there was one)."""
        out = asdict(self)
        if out["first_error"] is None:
            del out["first_error"]
        return out


def check_output_field(
    samples,
    field: str,
    overwrite: bool,
    skip_labeled: bool,
    protected: tuple = (),
    frames: bool = False,
    choices: Choices = SDK_CHOICES,
) -> None:
    """Raise unless `field` can receive Detections without losing anything the user has;
    `choices` words the ways on (the SDK's arguments or the form's checkboxes)."""
    if not field or not field.replace("_", "a").isalnum() or field[0].isdigit():
        raise ValueError(f"'{field}' is not a valid field name: use letters, digits and '_'.")
    if field in protected:
        raise ValueError(
            f"The output field '{field}' is also the prompt field: choose another output field."
        )
    ds = samples._dataset
    schema = (ds.get_frame_field_schema() if frames else ds.get_field_schema()) or {}
    if field not in schema:
        return
    doc_type = getattr(schema[field], "document_type", None)
    if doc_type is not fol.Detections:
        held = doc_type or type(schema[field]).__name__
        raise ValueError(
            f"The field '{field}' already exists and holds {held}, not Detections: choose "
            "another output field."
        )
    if not (overwrite or skip_labeled):
        raise ValueError(
            f"The field '{field}' already exists on dataset '{samples._dataset.name}': choose "
            f"another output field, {choices.overwrite} to replace its labels on these samples, "
            f"or {choices.skip_labeled} to label only samples where it is empty."
        )


def label_samples(
    samples,
    model,
    field: str,
    batch_size: int = 4,
    overwrite: bool = False,
    skip_labeled: bool = False,
    progress: Progress | None = None,
    choices: Choices = SDK_CHOICES,
) -> JobReport:
    """Label `samples` into `field` with a `Sam3Model`, batch by batch, saving as it goes, in
    this process (any prompts, clicks too; concepts and exemplar boxes at dataset scale go
    through `label_view` / `label_from_exemplars` and their jobs).

    A sample whose image cannot be read (or whose prompts are invalid) is counted, logged and
    skipped; the run goes on. With `skip_labeled`, samples whose `field` is set are left as is,
    so an interrupted run resumes where it stopped.
    """
    from sam3_core import load_image

    prompt_field = model.needs_fields.get("prompt_field")
    check_output_field(samples, field, overwrite, skip_labeled, (prompt_field,), choices=choices)
    report = JobReport()
    todo, report.skipped = samples_to_label(samples, field, skip_labeled)
    ids = todo.values("id")
    fields = [f for f in (prompt_field, field) if f and samples._dataset.has_sample_field(f)]
    for start in range(0, len(ids), max(1, int(batch_size))):
        batch = list(
            todo.select(ids[start : start + batch_size], ordered=True).select_fields(fields)
        )
        images, ready = [], []
        for sample in batch:
            try:
                images.append(load_image(sample.filepath))
                ready.append(sample)
            except Exception as e:  # noqa: BLE001 (unreadable or missing file: report, go on)
                report.fail(sample.id, sample.filepath, e)
        labels = {sample.id: dets for sample, dets in _predict(model, images, ready, report)}
        write_labels(samples, field, labels, report)
        if progress is not None:
            done = min(start + batch_size, len(ids))
            progress(done / max(len(ids), 1), f"SAM 3: {done}/{len(ids)} samples")
    return report


def samples_to_label(samples, field: str, skip_labeled: bool):
    """(the samples to label, how many are skipped): with `skip_labeled`, those where `field`
    is unset."""
    if skip_labeled and samples._dataset.has_sample_field(field):
        todo = samples.exists(field, False)
        return todo, len(samples) - len(todo)
    return samples, 0


def write_labels(samples, field: str, labels: dict, report: JobReport) -> None:
    """Write {sample id: Detections} into `field` in one `set_values` call; count them."""
    if not labels:
        return
    samples._dataset.set_values(field, labels, key_field="id")
    report.labeled += len(labels)
    report.detections += sum(len(d.detections) for d in labels.values())


def _predict(model, images: list, samples: list, report: JobReport):
    """(sample, Detections) pairs; a failing batch is retried one sample at a time."""
    if not samples:
        return []
    try:
        return list(zip(samples, model.predict_all(images, samples=samples)))
    except Exception as e:  # noqa: BLE001 (reported; the job goes on)
        if len(samples) == 1:
            report.fail(samples[0].id, samples[0].filepath, e)
            return []
    out = []
    for image, sample in zip(images, samples):
        try:
            out.append((sample, model.predict(image, sample=sample)))
        except Exception as e:  # noqa: BLE001 (reported; the job goes on)
            report.fail(sample.id, sample.filepath, e)
    return out
