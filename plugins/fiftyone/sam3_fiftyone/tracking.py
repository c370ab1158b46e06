"""Track concepts (and boxes drawn on one frame) through videos into a frame-level field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fiftyone.core.labels as fol

from .labeling import SDK_CHOICES, Choices, JobReport, Progress, check_output_field


def track_samples(
    samples,
    predictor: Any | Callable[[], Any],
    field: str,
    concepts: list[str],
    prompt_field: str | None = None,
    prompt_frame: int = 1,
    output: str = "masks",
    overwrite: bool = False,
    skip_labeled: bool = False,
    score_threshold: float | None = None,
    progress: Progress | None = None,
    choices: Choices = SDK_CHOICES,
) -> JobReport:
    """Track in each video; frames get `fo.Detections` with the track id in `index`.

    predictor: a sam3_core `VideoPredictor`, or a function returning one (called only once a
    video needs labeling, so a run that skips every video loads no model).
    concepts: tracked from `prompt_frame` (1-based, FiftyOne's frame numbers); prompt_field: a
    frame-level Detections field whose boxes on `prompt_frame` each start one object, labelled
    like the box; on that frame each keeps a detection (its box, without a mask) even where its
    mask is empty, as Label Studio keeps the user's box. score_threshold: the concept detector's
    threshold (new tracks also need the predictor's default new-track score, if higher). With
    `overwrite`, the field is cleared on frames before `prompt_frame`. A video that cannot be
    read is counted and logged; the job goes on.
    """
    check_output_field(
        samples, field, overwrite, skip_labeled, (prompt_field,), frames=True, choices=choices
    )
    if prompt_field and not samples._dataset.has_frame_field(prompt_field):
        raise ValueError(
            f"The dataset has no frame-level field '{prompt_field}': give a frame field holding "
            "Detections (boxes drawn on the prompt frame), or leave prompt_field empty."
        )
    association = None
    if score_threshold is not None:
        from sam3_core.video.association import AssociationConfig

        new_track = max(float(score_threshold), AssociationConfig.new_det_thresh)
        association = AssociationConfig(float(score_threshold), new_det_thresh=new_track)
    report = JobReport()
    ids = samples.values("id")
    for i, sample in enumerate(samples.select(ids, ordered=True)):
        if progress is not None:
            progress(i / len(ids), f"SAM 3: {i}/{len(ids)} videos")
        if skip_labeled and any(frame_label(f, field) is not None for f in sample.frames.values()):
            report.skipped += 1
            continue
        if callable(predictor):
            predictor = predictor()
        try:
            frames = _track_one(
                predictor, sample, concepts, prompt_field, prompt_frame, output, association
            )
        except Exception as e:  # noqa: BLE001 (reported; the job goes on)
            report.fail(sample.id, sample.filepath, e)
            continue
        for number, frame in sample.frames.items():  # stale labels of an earlier run go
            if number not in frames and frame_label(frame, field) is not None:
                frame[field] = None
        for number, dets in frames.items():
            sample.frames[number][field] = dets
            report.detections += len(dets.detections)
        sample.save()
        report.labeled += 1
    if progress is not None and ids:
        progress(1.0, f"SAM 3: {len(ids)}/{len(ids)} videos")
    return report


def keep_prompt_boxes(dets, names: dict, boxes: dict, width: int, height: int) -> None:
    """On the prompt frame, add the user's box for each boxed object that has no detection
    there (its mask came out empty), so no prompt vanishes from its own frame."""
    from . import convert

    found = {d.index for d in dets.detections}
    for track, box in boxes.items():
        if track not in found:
            relative = convert.pixel_to_relative_box(box, width, height)
            dets.detections.append(
                fol.Detection(label=names[track], bounding_box=relative, index=track)
            )


def frame_label(frame, field: str):
    """The frame's value of `field`, None where unset or not yet in the dataset's schema."""
    return frame[field] if frame.has_field(field) else None


def _track_one(predictor, sample, concepts, prompt_field, prompt_frame, output, association):
    """{frame number: fo.Detections} of one video, from `prompt_frame` to its end."""
    from . import convert

    session = predictor.start(sample.filepath, association=association)
    try:
        h, w = session.size
        names: dict[int, str] = {}
        boxes: dict[int, tuple] = {}
        if prompt_field and prompt_frame in sample.frames:
            prompts = convert.detections_to_boxes(sample.frames[prompt_frame][prompt_field], w, h)
            for label, box in prompts:
                obj = session.add_prompt(prompt_frame - 1, boxes=list(box))
                track = int(obj.track_ids[0])
                names[track], boxes[track] = label or "object", box
        if not names and not concepts:
            raise ValueError(
                f"no boxes in '{prompt_field}' on frame {prompt_frame} and no concepts: draw a "
                "box on that frame or give concepts to track."
            )
        if concepts:
            session.add_concept(prompt_frame - 1, concepts=concepts)
        frames = {}
        for t, inst in session.propagate(start=prompt_frame - 1):
            dets = convert.instances_to_detections(inst, output)
            for d in dets.detections:  # clicked objects keep their box's label
                d.label = names.get(d.index, d.label)
            frames[t + 1] = dets
        keep_prompt_boxes(frames.setdefault(prompt_frame, fol.Detections()), names, boxes, w, h)
        return frames
    finally:
        session.frames.close()  # the video file stays open otherwise
