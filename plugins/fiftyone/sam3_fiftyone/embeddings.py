"""Embeddings computed once per image: fill a `sam3_core.store` folder for a view's images.

Every labeling path here then reads that folder instead of running the backbone again: the
`Sam3Model` (apply_model, exemplars, clicks) and `label_view` take `store=FOLDER`. The folder
belongs to one model (weights, config, precision); another model is refused by the store.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from sam3_core.store import STORE_ENV

from .labeling import Progress
from .predictors import DEFAULT_CONFIG


@dataclass
class EmbedReport:
    """What a precompute run did: images stored by this run (read, not recomputed, where the
    store held the same picture already), skipped (done by an earlier run of this job), failed;
    the store's entries and megabytes per entry."""

    stored: int = 0
    skipped: int = 0
    failed: int = 0
    entries: int = 0
    mb_per_image: float = 0.0
    first_error: str | None = None

    def as_dict(self) -> dict:
        """Plain dict, for an operator result (`first_error` only when there was one)."""
        out = asdict(self)
        if out["first_error"] is None:
            del out["first_error"]
        return out


def default_store(samples) -> Path:
    """$SAM3_EMBEDDING_STORE, else `~/.cache/sam3/fiftyone-embeddings/<dataset name>`."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV]).expanduser()
    root = Path.home() / ".cache" / "sam3" / "fiftyone-embeddings"
    return root / samples._dataset.name


def precompute_embeddings(
    samples,
    store: str | os.PathLike,
    *,
    checkpoint: str | None = None,
    config: str | None = None,
    device: str | None = None,
    precision: str = "fp32",
    batch_size: int = 4,
    ray: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> EmbedReport:
    """Put the embedding of every image of `samples` in the store folder `store`, as a
    resumable `sam3_core.jobs` embedding job (here, or on the Ray cluster `ray` with
    `workers` actors, which must all reach the folder). Images already stored are skipped."""
    from sam3_core.jobs import EmbedSpec, run_embed
    from sam3_core.jobs.embed import store_size

    if samples.media_type != "image":
        raise ValueError(
            f"Embeddings are stored for images; this view holds {samples.media_type} samples."
        )
    report = EmbedReport()
    paths = sorted(set(samples.values("filepath")))
    if not paths:
        return report
    with tempfile.TemporaryDirectory(prefix="sam3-embed-") as tmp:
        listing = Path(tmp) / "inputs.txt"
        listing.write_text("".join(f"{p}\n" for p in paths))
        spec = EmbedSpec(
            inputs=(str(listing),),
            store=str(store),
            checkpoint=checkpoint or None,
            config=config or DEFAULT_CONFIG,
            device=device or None,
            precision=precision,
            batch_size=int(batch_size),
        )

        def on_progress(done: int, total: int) -> None:
            if progress is not None:
                progress(done / max(total, 1), f"SAM 3 embeddings: {done}/{total} images")

        summary = run_embed(
            spec,
            runner="ray" if ray else "local",
            ray_address=ray or None,
            workers=workers,
            progress=False,
            on_progress=on_progress,
        )
    entries, nbytes = store_size(spec)
    report.failed = summary.errors
    report.stored = summary.processed - summary.errors
    report.skipped = summary.skipped
    report.entries = entries
    report.mb_per_image = round(nbytes / max(entries, 1) / 2**20, 2)
    if summary.failed:
        path, error = summary.failed[0]
        report.first_error = f"{path}: {error}"
    return report
