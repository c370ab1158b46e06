"""Test helpers for checkpoint layouts: read a pinned key list, build weightless state dicts from
it, and compare a converted state dict with a model's, key by key."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch

Layout = dict[str, tuple[tuple[int, ...], str]]  # key -> (shape, dtype name)


def read_layout(path: Path) -> Layout:
    """Key -> (shape, dtype) from a gzipped JSON key list in `data/` (`layout_dump.py`)."""
    with gzip.open(path, "rt") as f:
        return {k: (tuple(shape), dtype) for k, (shape, dtype) in json.load(f)["keys"].items()}


def meta_state(layout: Mapping[str, tuple[tuple[int, ...], str]]) -> dict[str, torch.Tensor]:
    """Weightless tensors (device "meta") with exactly the given keys, shapes and dtypes."""
    return {
        k: torch.empty(shape, dtype=getattr(torch, dtype.removeprefix("torch.")), device="meta")
        for k, (shape, dtype) in layout.items()
    }


def generic_key(key: str) -> str:
    """A key with its layer indices replaced by N (a tiny model has fewer layers)."""
    return re.sub(r"\d+", "N", key)


def assert_same_layout(
    converted: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]
) -> None:
    """The same keys, each with the same shape, and so the same number of parameters."""
    assert sorted(converted) == sorted(reference)
    wrong = {
        k: (tuple(v.shape), tuple(reference[k].shape))
        for k, v in converted.items()
        if v.shape != reference[k].shape
    }
    assert not wrong
    assert sum(v.numel() for v in converted.values()) == sum(v.numel() for v in reference.values())
