"""Per-image prompts of a dataset job: each listed image is segmented with its own concepts.

`ImagePrompts` maps image ids (as `list_inputs` gives them: absolute paths or URIs) to a prompt
set: named concepts, each a text, exemplar boxes (x0, y0, x1, y1[, positive]) or both. Built from
a Python mapping or read from a `.jsonl` / `.json` / `.parquet` file with a path column and a
`prompts` column (the same file can be the job's input list). Identical prompt sets are kept
once, so a job where most images share one set costs one small entry per image.

A prompt set is a list of entries, each one of:
  "a noun phrase"                                   text concept, named by its text
  {"text": ..., "exemplars": [[x0, y0, x1, y1, 1], ...], "name": ...}   name: the label its
                                                    instances get (default: text, else "exemplar")
  sam3_core.Concept(...)                            named like the entry above
An empty list means "nothing to find in this image": its record has no instances.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sam3_core.jobs.inputs import PATH_COLUMNS, InputError, as_id, path_column, read_rows
from sam3_core.prompts import PromptError, to_exemplar
from sam3_core.results import Concept, Exemplar

PROMPT_FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
PROMPTS_COLUMN = "prompts"


class Prompt(NamedTuple):
    """What one image is segmented with: concepts (Concepts, or strings for the job's shared
    prompts), exemplars joined to every concept, the output name of each concept (None: the
    predictor's names), and whether its boxes were given as fractions of the image's size."""

    concepts: list | None
    exemplars: list | None
    names: list[str] | None
    relative: bool = False


@dataclass(frozen=True, eq=False)
class ImagePrompts:
    """Image id -> its named concepts, deduplicated. Build with `as_image_prompts`.

    sets: the distinct prompt sets, each a tuple of (name, Concept); index: id -> set number;
    digest: sha256 of the canonical content (the job's signature holds it); names: every
    concept name, in order of first appearance over sorted ids.
    """

    sets: tuple[tuple[tuple[str, Concept], ...], ...]
    index: dict[str, int] = field(repr=False)
    digest: str = ""
    names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.index)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImagePrompts) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.index

    def ids(self) -> list[str]:
        """The image ids that have prompts, sorted."""
        return sorted(self.index)

    def prompt(self, image_id: str, size: tuple[int, int], relative: bool = False) -> Prompt:
        """The prompt of one image of (H, W) `size`; `relative` boxes are scaled to pixels."""
        entries = self.sets[self.index[image_id]]
        scale = (size[1], size[0]) * 2 if relative else None
        concepts = [scaled(concept, scale) for _, concept in entries]
        return Prompt(concepts, None, [name for name, _ in entries], relative)


def explained(err: PromptError, prompt: Prompt | None) -> PromptError:
    """`err` (a box refused by the predictor), with what relative boxes are when `prompt`'s
    boxes were scaled from fractions: pixel boxes given by mistake then land far outside."""
    if prompt is None or not prompt.relative:
        return err
    return PromptError(
        f"{err} These boxes were read with --relative-boxes (relative_boxes=True) as fractions "
        "in [0, 1] of the image's width and height: give fractions, or drop --relative-boxes "
        "for pixel boxes."
    )


def scaled(concept: Concept, scale: tuple[int, ...] | None) -> Concept:
    """`concept` with its exemplar boxes multiplied by (W, H, W, H) (unchanged for None)."""
    if scale is None or not concept.exemplars:
        return concept
    exemplars = tuple(
        Exemplar(tuple(v * s for v, s in zip(e.box, scale)), e.positive) for e in concept.exemplars
    )
    return Concept(concept.text, exemplars)


def as_image_prompts(
    value: ImagePrompts | Mapping[str, Any] | str | os.PathLike,
) -> ImagePrompts:
    """An `ImagePrompts` from one, from a mapping {image path or URI: prompt set}, or from a
    prompts file (`.jsonl`, `.json` or `.parquet`: a path column and a `prompts` column).

    Raises PromptError naming the image and entry that cannot be a prompt.
    """
    if isinstance(value, ImagePrompts):
        return value
    if isinstance(value, (str, os.PathLike)):
        return build(read_prompt_file(Path(value).expanduser()))
    if isinstance(value, Mapping):
        return build(value.items())
    raise PromptError(
        "image_prompts must be a mapping {image path: [concepts]} or the path of a .jsonl, "
        f".json or .parquet prompts file; got {type(value).__name__}."
    )


def build(items: Iterable[tuple[Any, Any]]) -> ImagePrompts:
    """Normalise (image, prompt set) pairs into an `ImagePrompts` (an id given twice must
    carry the same prompts)."""
    sets: list[tuple[tuple[str, Concept], ...]] = []
    number: dict[str, int] = {}  # canonical JSON of a set -> its number
    index: dict[str, int] = {}
    for image, entries in items:
        image_id = as_id(str(image))
        prompt_set = prompt_set_of(entries, image_id)
        key = canonical(prompt_set)
        if key not in number:
            number[key] = len(sets)
            sets.append(prompt_set)
        if index.setdefault(image_id, number[key]) != number[key]:
            raise PromptError(f"{image_id} is listed twice with different prompts: keep one.")
    digest = hashlib.sha256()
    names: dict[str, None] = {}
    for image_id in sorted(index):
        prompt_set = sets[index[image_id]]
        digest.update(json.dumps([image_id, canonical(prompt_set)]).encode())
        names.update((name, None) for name, _ in prompt_set)
    return ImagePrompts(tuple(sets), index, digest.hexdigest(), tuple(names))


def prompt_set_of(entries: Any, image_id: str) -> tuple[tuple[str, Concept], ...]:
    """One image's entries -> ((name, Concept), ...); PromptError naming the image otherwise."""
    if isinstance(entries, (str, Concept, Mapping)):
        entries = [entries]
    if not isinstance(entries, Sequence):
        raise PromptError(
            f"The prompts of {image_id} must be a list of concepts (text, "
            '{"text": ..., "exemplars": [[x0, y0, x1, y1, 1]], "name": ...} or Concept); got '
            f"{type(entries).__name__}."
        )
    out: dict[str, Concept] = {}
    for entry in entries:
        name, concept = named_concept(entry, image_id)
        if name in out:
            raise PromptError(
                f"The prompts of {image_id} name '{name}' twice: give each concept its own "
                "name (or join their exemplars in one entry)."
            )
        out[name] = concept
    return tuple(out.items())


def named_concept(entry: Any, image_id: str) -> tuple[str, Concept]:
    """One prompt entry -> (its output name, its Concept)."""
    if isinstance(entry, str):
        entry = {"text": entry}
    if isinstance(entry, Concept):
        entry = {"text": entry.text, "exemplars": entry.exemplars}
    if not isinstance(entry, Mapping):
        raise PromptError(
            f"A prompt of {image_id} is {type(entry).__name__}: give a text, a Concept or "
            '{"text": ..., "exemplars": [[x0, y0, x1, y1, 1]], "name": ...}.'
        )
    unknown = set(entry) - {"text", "exemplars", "name"}
    if unknown:
        raise PromptError(
            f"A prompt of {image_id} has unknown keys {sorted(unknown)}: use text, exemplars "
            "and name."
        )
    text = entry.get("text")
    text = text.strip() if isinstance(text, str) and text.strip() else None
    try:
        exemplars = tuple(to_exemplar(e) for e in entry.get("exemplars") or ())
    except (PromptError, TypeError, ValueError) as err:
        raise PromptError(f"A prompt of {image_id}: {err}") from None
    if text is None and not exemplars:
        raise PromptError(
            f"A prompt of {image_id} has neither text nor exemplars: give a noun phrase, "
            "exemplar boxes or both."
        )
    concept = Concept(text, exemplars)
    name = entry.get("name") or concept.name
    return str(name), concept


def canonical(prompt_set: tuple[tuple[str, Concept], ...]) -> str:
    """A prompt set as canonical JSON (what its identity and the job's signature hash)."""
    rows = [
        [name, c.text, [[*map(float, e.box), bool(e.positive)] for e in c.exemplars]]
        for name, c in prompt_set
    ]
    return json.dumps(rows, separators=(",", ":"))


def read_prompt_file(path: Path) -> list[tuple[str, Any]]:
    """(image, prompt set) rows of a `.jsonl` / `.json` / `.parquet` prompts file."""
    if not path.is_file():
        raise InputError(f"The prompts file {path} was not found; check the path.")
    if path.suffix.lower() not in PROMPT_FILE_SUFFIXES:
        raise InputError(
            f"{path}: a prompts file is .jsonl, .json or .parquet, with a path column "
            f"({', '.join(PATH_COLUMNS)}) and a '{PROMPTS_COLUMN}' column."
        )
    return [prompt_row(path, row, number) for number, row in enumerate(read_rows(path), 1)]


def prompt_row(path: Path, row: Mapping[str, Any], number: int) -> tuple[str, Any]:
    """(image, prompt set) of row `number` of a prompts file; InputError naming the file and
    row when it lacks a path or a `prompts` cell, or its prompts are a string but not JSON."""
    where = f"{path} row {number}"
    if PROMPTS_COLUMN not in row:
        raise InputError(
            f"{where} has no '{PROMPTS_COLUMN}' column: give each row a path column "
            f"({', '.join(PATH_COLUMNS)}) and a '{PROMPTS_COLUMN}' column (it has "
            f"{', '.join(map(str, row)) or 'none'})."
        )
    image = row[path_column(path, row, number)]
    if not image:
        raise InputError(f"{where} has an empty path: give the image's path or URI.")
    prompts = row[PROMPTS_COLUMN]
    if isinstance(prompts, str):  # a JSON string column (e.g. Parquet from pandas)
        try:
            prompts = json.loads(prompts)
        except ValueError as err:
            raise InputError(
                f"{where}: its prompts are not valid JSON ({err}); give a JSON list of "
                'concepts, e.g. ["cat", {"text": "dog", "exemplars": [[x0, y0, x1, y1, 1]]}].'
            ) from None
    return str(image), prompts
