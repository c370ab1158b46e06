"""Per-concept score thresholds: the small JSON file `sam3 eval --calibrate` writes and every
command and host reads (`--thresholds FILE`), and applying it to results.

File (version 1):
    {"version": 1, "default": 0.5, "concepts": {"person": 0.42, "car": 0.61},
     "metric": "cgF1", "source": {...}}
`default` is used for concepts the file does not name; `metric` says what the thresholds
maximise ("cgF1", "F1", or null when written by hand); `source` is free-form provenance
(e.g. the files and image count it was calibrated on) and is not read back.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam3_core.results import Instances

VERSION = 1
METRICS = ("cgF1", "F1")


class ThresholdsError(ValueError):
    """A thresholds file or value that cannot be used; the message names the problem and fix."""


def check_fraction(value: Any, what: str) -> float:
    """`value` as a float in [0, 1], or ThresholdsError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ThresholdsError(f"{what} must be a number in [0, 1]; got {value!r}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ThresholdsError(f"{what} must be a number in [0, 1]; got {value!r}")
    return float(value)


def concept_key(name: str) -> str:
    """How concept names are compared: case and surrounding spaces do not matter."""
    return " ".join(name.split()).lower()


@dataclass(frozen=True)
class Thresholds:
    """Score thresholds per concept; an instance is kept when score >= its concept's threshold.

    default: for concepts not in `concepts`; concepts: name -> threshold (names compare
    without case or surrounding spaces); metric: what they maximise ("cgF1", "F1", None);
    source: provenance, free-form JSON.
    """

    default: float = 0.5
    concepts: Mapping[str, float] = field(default_factory=dict)
    metric: str | None = None
    source: Any = None

    def __post_init__(self) -> None:
        check_fraction(self.default, "default")
        seen: dict[str, str] = {}
        for name, value in self.concepts.items():
            if not isinstance(name, str) or not name.strip():
                raise ThresholdsError(f"concept names must be non-empty strings; got {name!r}")
            check_fraction(value, f"the threshold of concept {name!r}")
            key = concept_key(name)
            if key in seen:
                raise ThresholdsError(
                    f"concepts {seen[key]!r} and {name!r} are the same concept (names compare "
                    "without case or spaces); keep one"
                )
            seen[key] = name
        if self.metric is not None and self.metric not in METRICS:
            raise ThresholdsError(f"metric must be one of {METRICS} or null; got {self.metric!r}")
        lookup = {concept_key(n): float(v) for n, v in self.concepts.items()}
        object.__setattr__(self, "lookup", lookup)

    @classmethod
    def uniform(cls, value: float) -> Thresholds:
        """One threshold for every concept (what `--score-threshold` means)."""
        return cls(default=check_fraction(value, "the score threshold"))

    def for_concept(self, name: str) -> float:
        """The threshold of concept `name` (the default when the file does not name it)."""
        return self.lookup.get(concept_key(name), self.default)

    def lowest(self) -> float:
        """The smallest threshold in use: run the predictor at this score threshold, then
        `apply_thresholds`, so that no concept loses instances it should keep."""
        return min([self.default, *self.lookup.values()])

    def to_dict(self) -> dict:
        """The file's JSON object (concepts sorted by name, so equal thresholds give equal
        JSON: usable in a job's signature)."""
        return {
            "version": VERSION,
            "default": float(self.default),
            "concepts": {n: float(self.concepts[n]) for n in sorted(self.concepts)},
            "metric": self.metric,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "thresholds") -> Thresholds:
        """Check and read the file's JSON object; ThresholdsError names `where` and the fix."""
        if not isinstance(data, dict):
            raise ThresholdsError(
                f"{where}: expected a JSON object like "
                '{"version": 1, "default": 0.5, "concepts": {"person": 0.4}}; '
                f"got {type(data).__name__}"
            )
        version = data.get("version")
        if version != VERSION:
            raise ThresholdsError(
                f"{where}: unsupported version {version!r}; this sam3 reads version {VERSION} "
                '(add "version": 1, or re-create the file with `sam3 eval --calibrate`)'
            )
        concepts = data.get("concepts", {})
        if not isinstance(concepts, dict):
            raise ThresholdsError(
                f'{where}: "concepts" must map concept names to thresholds, e.g. '
                f'{{"person": 0.4}}; got {type(concepts).__name__}'
            )
        try:
            return cls(
                default=data.get("default", 0.5),
                concepts=dict(concepts),
                metric=data.get("metric"),
                source=data.get("source"),
            )
        except ThresholdsError as err:
            raise ThresholdsError(f"{where}: {err}") from None


def load_thresholds(path: str | os.PathLike) -> Thresholds:
    """Read a thresholds file; ThresholdsError (a ValueError) names the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ThresholdsError(
            f"thresholds file {path} does not exist (write one with "
            "`sam3 eval --calibrate --thresholds-out FILE`)"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ThresholdsError(f"cannot read thresholds file {path}: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ThresholdsError(f"thresholds file {path} is not valid JSON: {err}") from None
    return Thresholds.from_dict(data, where=f"thresholds file {path}")


def save_thresholds(thresholds: Thresholds, path: str | os.PathLike) -> Path:
    """Write `thresholds` as JSON (temporary name, then rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(thresholds.to_dict(), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def keep_mask(names: Sequence[str], scores: Sequence[float], thresholds: Thresholds) -> np.ndarray:
    """bool [N]: which of N results (concept name, score) pass their concept's threshold."""
    limits = np.array([thresholds.for_concept(n) for n in names], dtype=np.float64)
    return np.asarray(scores, dtype=np.float64).reshape(-1) >= limits.reshape(-1)


def apply_thresholds(instances: Instances, thresholds: Thresholds) -> Instances:
    """The instances whose score >= their concept's threshold (a new Instances)."""
    return instances[keep_mask(instances.names(), instances.scores, thresholds)]
