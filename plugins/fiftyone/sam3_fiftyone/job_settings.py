"""The settings `label_view` and `label_from_exemplars` share (output, thresholds, model, safety,
where to run, progress): one `JobSettings` checks the output field, builds the job's `JobSpec`
from the prompts and says where the job runs."""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from .convert import check_output
from .labeling import SDK_CHOICES, Choices, Progress, check_output_field
from .predictors import DEFAULT_CONFIG

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection
    from sam3_core.jobs import JobSpec
    from sam3_core.metrics import Thresholds


@dataclass(frozen=True)
class JobSettings:
    """How a view is labeled as a job. output: "masks" or "boxes"; score_threshold /
    mask_threshold; the model: checkpoint (file or hub id), config (a preset, only for a
    checkpoint saved without one), device, precision, batch_size. An existing output field is
    refused unless `overwrite` (replace its labels on these samples) or `skip_labeled` (label
    only samples where it is empty: resumes a stopped run). ray: None runs in this process;
    "auto" or "host:port" runs on that Ray cluster (`workers` actors). job_dir: keep the job's
    Parquet shards there (default: a folder of its own, removed at the end). store: an embedding
    store folder (`precompute_embeddings`) the workers read before running the backbone.
    thresholds: per-concept score thresholds (a `Thresholds`, its dict as `evaluate_view` keeps
    it in `dataset.info["sam3_thresholds"]`, or a thresholds file), which replace
    `score_threshold`. progress(fraction, text) is called as shards arrive; `choices` words how
    a refusal names the ways on (the SDK's keywords or the form's checkboxes)."""

    output: str = "masks"
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    checkpoint: str | None = None
    config: str | None = None
    device: str | None = None
    precision: str = "fp32"
    batch_size: int = 4
    overwrite: bool = False
    skip_labeled: bool = False
    ray: str | None = None
    workers: int | None = None
    job_dir: str | os.PathLike | None = None
    store: str | os.PathLike | None = None
    thresholds: Thresholds | dict | str | os.PathLike | None = None
    progress: Progress | None = None
    choices: Choices = SDK_CHOICES

    @classmethod
    def from_keywords(cls, caller: Callable[..., Any], keywords: dict[str, Any]) -> JobSettings:
        """The settings `caller` got as keywords (its `**settings`); an unknown keyword is
        refused by name, with the closest of `caller`'s own and these settings, and the list."""
        known = [f.name for f in fields(cls)]
        own = [
            p.name for p in inspect.signature(caller).parameters.values() if p.kind != p.VAR_KEYWORD
        ]
        for name in keywords:
            if name not in known:
                close = difflib.get_close_matches(name, own + known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise TypeError(
                    f"{caller.__name__}() got an unknown keyword '{name}'{hint}: its job settings "
                    f"are {', '.join(known)}."
                )
        return cls(**keywords)

    def check(self, samples: SampleCollection, field: str, protected: tuple = ()) -> None:
        """Raise unless the output kind is known and `field` can take the labels without
        losing anything (`protected`: the prompt fields, never written)."""
        check_output(self.output)
        check_output_field(
            samples, field, self.overwrite, self.skip_labeled, protected, choices=self.choices
        )

    def job_spec(self, **prompts: Any) -> JobSpec:
        """The `JobSpec` of a view's job from its `prompts` (`JobSpec` keywords: concepts or
        image_prompts, ...) and these thresholds and model settings (the plugin's defaults for
        blank ones); its inputs are written into the job folder later."""
        from sam3_core.jobs import JobSpec

        return JobSpec(
            inputs=("inputs.txt",),  # the real list is written into the job folder
            checkpoint=self.checkpoint or None,
            config=self.config or DEFAULT_CONFIG,
            device=self.device or None,
            precision=self.precision,
            batch_size=int(self.batch_size),
            thresholds=as_thresholds(self.thresholds),
            store=str(self.store) if self.store else None,
            score_threshold=float(self.score_threshold),
            mask_threshold=float(self.mask_threshold),
            **prompts,
        )


def as_thresholds(
    thresholds: Thresholds | dict | str | os.PathLike | None,
) -> Thresholds | str | os.PathLike | None:
    """A `Thresholds` from one, from its dict, or from a file path; None stays None."""
    if isinstance(thresholds, dict):
        from sam3_core.metrics import Thresholds

        return Thresholds.from_dict(thresholds, where="the thresholds given to label_view")
    return thresholds
