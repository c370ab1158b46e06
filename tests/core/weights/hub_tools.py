"""Test helpers for hub resolution: a fake huggingface_hub cache, and a hub that must not be
called."""

from __future__ import annotations

from pathlib import Path

import pytest


def fake_hub_cache(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A huggingface_hub cache holding `files` of `repo` at main; returns the snapshot folder."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if resolution downloads or probes the hub (the cache must answer)."""

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was contacted although the cache holds the weights")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_network)
    monkeypatch.setattr("sam3_core.weights.hub.hub_unreachable", no_network)
