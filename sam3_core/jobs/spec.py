"""What a dataset job computes (`JobSpec`), its signature, and the `job.json` kept beside it."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sam3_core.jobs.image_prompts import ImagePrompts, Prompt, as_image_prompts
from sam3_core.large.tile_defaults import TILE_ABOVE, TILE_SIZE
from sam3_core.prompts import PromptError, normalize_concepts, to_exemplar
from sam3_core.results import Exemplar

if TYPE_CHECKING:
    from sam3_core.metrics.thresholds import Thresholds

JOB_FILE = "job.json"
SHARDS_DIR = "shards"
# What a job writes into its output folder; `restart=True` moves exactly these aside.
OWNED_NAMES = (JOB_FILE, SHARDS_DIR, "annotations.json", "labelstudio.json", "overlays")
FINGERPRINT_BYTES = 8 << 20  # head and tail of a weights file hashed into the signature
PRECISIONS = ("fp32", "bf16", "fp16")


class JobSpecError(ValueError):
    """Job settings that cannot run, or that clash with the output folder; says what to do."""


@dataclass(frozen=True)
class JobSpec:
    """A labeling job: inputs, prompts, thresholds and model settings.

    inputs: files, folders, globs, `.txt`/`.parquet` lists of paths or URIs (see `list_inputs`);
    exemplars: (x0, y0, x1, y1[, positive]) pixel boxes joined to every concept, as in
    `ImagePredictor.predict`; thresholds: per-concept score thresholds (a `Thresholds` or the
    path of a thresholds file, see `sam3_core.metrics.thresholds`), which replace
    `score_threshold` when given. Tiling (`segment_tiled`, read lazily where the format
    allows): every image in tiles of `tile` px when set, else images with a side over
    `tile_above` px (None: never) or too large to read at once, in tiles of 1008 px overlapping
    by `tile_overlap`. max_pixels: an image read whole with more pixels becomes an error record
    before it is decoded. store: an embedding store folder (`sam3_core.store`, e.g. filled by
    `sam3 embed`) the workers read image embeddings from, and write new ones to; with an fp32
    store the records are the same as without it.

    image_prompts: per-image prompts, {image path or URI: [concepts]} or a `.jsonl` / `.json` /
    `.parquet` prompts file (see `sam3_core.jobs.image_prompts`); a listed image is segmented
    with its own concepts only (records name each instance by its concept's name), the others
    with `concepts` / `exemplars` (without those, they become error records). With a prompts
    file and no `inputs`, the file's paths are the inputs. relative_boxes: the image_prompts
    boxes are fractions of the image's width and height, scaled on the worker once it is read.
    """

    inputs: tuple[str, ...]
    concepts: tuple[str, ...] = ()
    exemplars: tuple[Exemplar, ...] = ()
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    checkpoint: str | None = None
    config: str | None = None  # None: picked from the checkpoint
    device: str | None = None
    precision: str = "fp32"
    batch_size: int = 4
    max_pixels: int = 1 << 27
    thresholds: Thresholds | None = None
    tile: int | None = None
    tile_above: int | None = TILE_ABOVE
    tile_overlap: int = 128
    store: str | None = None
    image_prompts: ImagePrompts | None = field(default=None, repr=False)
    relative_boxes: bool = False
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        concepts = (self.concepts,) if isinstance(self.concepts, str) else self.concepts
        object.__setattr__(self, "inputs", as_inputs(self.inputs))
        object.__setattr__(self, "concepts", tuple(concepts))
        try:
            object.__setattr__(self, "exemplars", tuple(to_exemplar(e) for e in self.exemplars))
            if self.image_prompts is not None:
                self.read_image_prompts()
            self.names()
        except (PromptError, ValueError) as err:
            raise JobSpecError(str(err)) from None
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", str(self.checkpoint))
        if self.thresholds is not None:
            object.__setattr__(self, "thresholds", as_thresholds(self.thresholds))
        if self.store is not None:
            object.__setattr__(self, "store", str(Path(self.store).expanduser()))
        self.check_tiling()
        if not self.inputs:
            raise JobSpecError(
                "A job needs inputs: image files, folders, globs, a .txt list, or a prompts "
                "file given as image_prompts."
            )
        for name in ("score_threshold", "mask_threshold"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise JobSpecError(f"{name} must lie in [0, 1]; got {value!r}.")
        check_model_settings(self.precision, self.batch_size, self.max_pixels)

    def read_image_prompts(self) -> None:
        """Turn `image_prompts` into an `ImagePrompts`; a prompts file alone is the inputs."""
        given = self.image_prompts
        object.__setattr__(self, "image_prompts", as_image_prompts(given))
        if not self.inputs and isinstance(given, (str, os.PathLike)):
            object.__setattr__(self, "inputs", (str(Path(given).expanduser()),))

    def has_shared_prompts(self) -> bool:
        """Whether the job has prompts for images without prompts of their own."""
        return bool(self.concepts or self.exemplars)

    def prompt(self, image_id: str, size: tuple[int, int]) -> Prompt | None:
        """What the image `image_id` of (H, W) `size` is segmented with (None: no prompt)."""
        if self.image_prompts is not None and image_id in self.image_prompts:
            return self.image_prompts.prompt(image_id, size, self.relative_boxes)
        if not self.has_shared_prompts():
            return None
        return Prompt(list(self.concepts) or None, list(self.exemplars) or None, None)

    def check_tiling(self) -> None:
        """Tile sizes that can run: positive sizes, an overlap smaller than the tile."""
        for name in ("tile", "tile_above"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise JobSpecError(f"{name} must be at least 1 (or None); got {value!r}.")
        if not 0 <= int(self.tile_overlap) < self.tile_size():
            raise JobSpecError(
                f"tile_overlap {self.tile_overlap} must be at least 0 and smaller than the tile "
                f"size {self.tile_size()} (sam3 segment --tile-overlap / --tile)."
            )

    def tile_size(self) -> int:
        """The tile size in px of tiled images."""
        return int(self.tile) if self.tile is not None else TILE_SIZE

    def lowest_threshold(self) -> float:
        """The score threshold to run the predictor at; `thresholds` then pick per concept."""
        return self.thresholds.lowest() if self.thresholds is not None else self.score_threshold

    def names(self) -> list[str]:
        """The category name of each concept, in order (exemplars alone: "exemplar"); then
        the names of the per-image prompts not among them."""
        if self.image_prompts is None or self.has_shared_prompts():
            names = concept_names(self.concepts, self.exemplars)
        elif not self.image_prompts.sets:
            raise PromptError(
                "image_prompts lists no image: give prompts for some images, or concepts."
            )
        else:
            names = []
        extra = self.image_prompts.names if self.image_prompts is not None else ()
        return names + [n for n in extra if n not in names]

    def signature(self) -> dict:
        """What the results depend on: prompts, thresholds, weights, config, precision."""
        return {
            "concepts": list(self.concepts),
            "exemplars": [[*e.box, e.positive] for e in self.exemplars],
            "score_threshold": float(self.score_threshold),
            "mask_threshold": float(self.mask_threshold),
            "weights": weights_fingerprint(self.checkpoint),
            "config": self.config,
            "precision": self.precision,
            "max_pixels": int(self.max_pixels),
            "thresholds": None
            if self.thresholds is None
            else {k: self.thresholds.to_dict()[k] for k in ("default", "concepts")},
            "tiling": {
                "tile": self.tile,
                "tile_above": self.tile_above,
                "tile_overlap": int(self.tile_overlap),
            },
            **self.image_prompts_signature(),
        }

    def image_prompts_signature(self) -> dict:
        """The per-image prompts part of the signature (absent without them, so jobs of
        concepts keep their signature): content digest, image count, names, box units."""
        if self.image_prompts is None:
            return {}
        return {
            "image_prompts": {
                "sha256": self.image_prompts.digest,
                "images": len(self.image_prompts),
                "names": self.names(),
                "relative_boxes": bool(self.relative_boxes),
            }
        }


def as_inputs(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[str, ...]:
    """A job's inputs as a tuple of strings; one path or pattern alone becomes a 1-tuple."""
    many = (inputs,) if isinstance(inputs, (str, os.PathLike)) else inputs
    return tuple(str(i) for i in many)


def check_model_settings(precision: str, batch_size: int, max_pixels: int) -> None:
    """The model settings every job spec has: a known precision, batch_size and max_pixels >= 1
    (JobSpecError naming the bad one otherwise)."""
    if precision not in PRECISIONS:
        raise JobSpecError(f"precision must be one of {PRECISIONS}; got {precision!r}.")
    if int(batch_size) < 1 or int(max_pixels) < 1:
        raise JobSpecError(
            f"batch_size and max_pixels must be at least 1; got {batch_size}, {max_pixels}."
        )


def as_thresholds(value: Thresholds | str | os.PathLike) -> Thresholds:
    """A `Thresholds`, or one read from a thresholds file; JobSpecError for anything else."""
    from sam3_core.metrics.thresholds import Thresholds, ThresholdsError, load_thresholds

    if isinstance(value, Thresholds):
        return value
    if not isinstance(value, (str, os.PathLike)):
        raise JobSpecError(
            "thresholds must be a sam3_core.metrics.thresholds.Thresholds or the path of a "
            f"thresholds file; got {type(value).__name__}."
        )
    try:
        return load_thresholds(value)
    except ThresholdsError as err:
        raise JobSpecError(str(err)) from None


def concept_names(concepts: Sequence[str], exemplars: Sequence) -> list[str]:
    """Category names of a job's prompts, in order; raises PromptError for bad prompts."""
    return normalize_concepts(
        list(concepts) or None, list(exemplars) or None, (1 << 30, 1 << 30)
    ).names


def read_job(out_dir: str | os.PathLike) -> dict:
    """The `job.json` of an output folder (signature and settings)."""
    path = Path(out_dir) / JOB_FILE
    if not path.is_file():
        raise JobSpecError(
            f"{path} not found: pass the output folder of a job (run_job's out_dir)."
        )
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise JobSpecError(
            f"{path} is unreadable ({err}); pass restart=True to move the old output aside."
        ) from None


def weights_fingerprint(checkpoint: str | None) -> dict:
    """A local weights file -> name, size and sha256 of its head and tail; a hub id -> the id."""
    if checkpoint is None or not Path(checkpoint).expanduser().exists():
        from sam3_core.weights.checkpoint import DEFAULT_REPO

        return {"hub": checkpoint or DEFAULT_REPO}
    from sam3_core.weights.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            fh.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            digest.update(fh.read())
    return {"file": path.name, "size": size, "sha256_head_tail": digest.hexdigest()}


def prepare_output(spec: JobSpec, out_dir: str | os.PathLike, restart: bool = False) -> Path:
    """Create or check `out_dir` for `spec`; write `job.json`; returns the folder.

    An output of a job with another signature is refused; `restart` starts over, moving any
    earlier output (never deleting it) into `out_dir/replaced-<time>/`.
    """
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise JobSpecError(f"The output {out} is a file; pass a folder (it is created if missing).")
    out.mkdir(parents=True, exist_ok=True)
    signature = spec.signature()
    job_file = out / JOB_FILE
    has_shards = any((out / SHARDS_DIR).glob("*.parquet"))
    if restart and (job_file.exists() or has_shards):
        move_aside(out)
    old = read_job(out)["signature"] if job_file.is_file() else None
    if (old is not None or has_shards) and old != signature and not restart:
        raise JobSpecError(refusal(out, old, signature))
    if old != signature:
        settings = {"inputs": list(spec.inputs), "batch_size": spec.batch_size}
        record = {"signature": signature, "settings": settings, "created": time.time()}
        job_file.write_text(json.dumps(record, indent=1))
    return out


def refusal(out: Path, old: dict | None, new: dict) -> str:
    """Why a resume is refused, naming the settings that differ, and the ways on."""
    if old is None:
        what = "Parquet shards but no job.json, so what made them is unknown"
    else:
        keys = [k for k in new if old.get(k) != new[k]]
        what = "a job with other " + ", ".join(f"{k} ({old.get(k)!r} there)" for k in keys)
    return (
        f"The output folder {out} holds {what}. Resume with the same settings, choose another "
        "output folder, or pass restart=True (sam3 segment/embed --restart) to move the old output "
        "into a replaced-<time>/ subfolder and start over."
    )


def move_aside(out: Path) -> Path:
    """Move the job-owned entries of `out` into a new `replaced-<time>` subfolder."""
    target = out / time.strftime("replaced-%Y%m%d-%H%M%S")
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
    target.mkdir()
    for name in OWNED_NAMES:
        if (out / name).exists():
            (out / name).rename(target / name)
    return target
