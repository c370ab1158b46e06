"""Resolving checkpoints: local paths, the hub, and no network (the cache answers first, and a
miss is reported at once)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import errors as hf_errors

from sam3_core.weights.errors import CheckpointError
from sam3_core.weights.hub import HUB_FILES, resolve_checkpoint
from tests.core.weights.hub_tools import fake_hub_cache, forbid_network

ROOT = Path(__file__).resolve().parents[3]
RESOLVE = """
import time
from sam3_core.weights.hub import resolve_checkpoint
start = time.perf_counter()
try:
    resolve_checkpoint('facebook/sam3')
except Exception as err:
    print(type(err).__name__, err)
print(f"{time.perf_counter() - start:.2f}")
"""


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "http://127.0.0.1:9 did not answer"),
    ],
)
def test_offline_cache_miss_answers_at_once(tmp_path, env, reason):
    # Before: an unreachable endpoint was retried 5 times per file (73 s here).
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    environ = {**clean, "HF_HOME": str(tmp_path), "PYTHONPATH": str(ROOT), **env}
    out = subprocess.run(
        [sys.executable, "-c", RESOLVE],
        check=False,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    message, elapsed = out.stdout.strip().rsplit("\n", 1)
    assert message.startswith("CheckpointError cannot reach the hub"), out.stdout
    assert reason in message and "no weights of 'facebook/sam3' are cached" in message
    assert "pass a local .safetensors/.pt file" in message
    assert float(elapsed) < 8, f"took {elapsed} s"  # the probe waits 5 s at most


def test_cached_weights_are_used_without_the_network(tmp_path, monkeypatch):
    forbid_network(monkeypatch)
    snapshot = fake_hub_cache(tmp_path, "facebook/sam3", {"sam3.pt": b"x"})
    assert resolve_checkpoint("facebook/sam3", cache_dir=tmp_path) == snapshot / "sam3.pt"
    # The preferred file wins when both are cached.
    (snapshot / HUB_FILES[0]).write_bytes(b"y")
    assert resolve_checkpoint("facebook/sam3", cache_dir=tmp_path) == snapshot / HUB_FILES[0]


def test_a_sharded_checkpoint_is_used_from_the_cache_only_when_every_shard_is(tmp_path):
    index = b'{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}'
    files = {"model.safetensors.index.json": index, "model-1.safetensors": b"1"}
    snapshot = fake_hub_cache(tmp_path, "someone/sharded", files)
    from sam3_core.weights.hub import cached_checkpoint

    assert cached_checkpoint("someone/sharded", cache_dir=tmp_path) is None
    (snapshot / "model-2.safetensors").write_bytes(b"2")
    found = cached_checkpoint("someone/sharded", cache_dir=tmp_path)
    assert found == snapshot / "model.safetensors.index.json"


def _http_error(cls, status: int, message: str):
    """A huggingface_hub HTTP error as the hub raises it (its HTTP client differs by version)."""
    http = importlib.import_module(hf_errors.HfHubHTTPError.__mro__[1].__module__.split(".")[0])
    url = "https://huggingface.co/facebook/sam3/resolve/main/model.safetensors"
    response = http.Response(status, request=http.Request("GET", url))
    return cls(message, response=response)


def test_local_files_and_folders_resolve(tmp_path):
    (tmp_path / "sam3.pt").write_bytes(b"")
    assert resolve_checkpoint(tmp_path) == tmp_path / "sam3.pt"
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert resolve_checkpoint(str(tmp_path)) == tmp_path / "model.safetensors"
    assert resolve_checkpoint(tmp_path / "sam3.pt") == tmp_path / "sam3.pt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no weights file"):
        resolve_checkpoint(tmp_path / "empty")


@pytest.mark.parametrize("missing", ["./nowhere/sam3.pt", "weights/sam3.safetensors", "/no/dir"])
def test_missing_local_paths_are_reported(missing):
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(missing)


@pytest.fixture
def online_hub(monkeypatch, tmp_path_factory):
    """An empty huggingface_hub cache and a hub that answers (downloads are faked per test)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hub_cache")))
    monkeypatch.setattr("sam3_core.weights.hub.hub_unreachable", lambda: None)


def test_hub_prefers_safetensors_then_falls_back_to_sam3_pt(monkeypatch, tmp_path, online_hub):
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs["token"], kwargs["revision"]))
        if filename != "sam3.pt":
            raise _http_error(hf_errors.RemoteEntryNotFoundError, 404, f"{filename} not found")
        (tmp_path / filename).write_bytes(b"")
        return str(tmp_path / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    path = resolve_checkpoint(token="hf_x", revision="v1")
    assert path == tmp_path / "sam3.pt"
    assert [c[1] for c in calls] == ["model.safetensors", "model.safetensors.index.json", "sam3.pt"]
    assert calls[0] == ("facebook/sam3", "model.safetensors", "hf_x", "v1")


def test_gated_repo_says_how_to_get_access(monkeypatch, online_hub):
    def gated(repo_id, filename, **kwargs):
        raise _http_error(
            hf_errors.GatedRepoError, 401, "Access to model facebook/sam3 is restricted"
        )

    monkeypatch.setattr("huggingface_hub.hf_hub_download", gated)
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint("facebook/sam3")
    text = str(info.value)
    assert "https://huggingface.co/facebook/sam3" in text
    assert "HF_TOKEN" in text and "hf auth login" in text


def test_unknown_repo_and_offline_cache_miss_are_explained(monkeypatch, online_hub):
    def not_found(repo_id, filename, **kwargs):
        raise _http_error(hf_errors.RepositoryNotFoundError, 404, "Repository Not Found")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", not_found)
    with pytest.raises(CheckpointError, match="'someone/nothing' was not found"):
        resolve_checkpoint("someone/nothing")

    def offline(repo_id, filename, **kwargs):
        raise hf_errors.LocalEntryNotFoundError("not in cache and outgoing traffic is disabled")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    with pytest.raises(CheckpointError, match="pass a\\s+local .safetensors/.pt file"):
        resolve_checkpoint()
