"""Resolve a checkpoint source (file, folder, hub repo id) to a local weights file.

Hub files come from the huggingface_hub cache when it holds them, without contacting the hub;
otherwise one quick request tells whether the hub answers before anything is downloaded.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from sam3_core.weights.errors import CheckpointError

DEFAULT_REPO = "facebook/sam3"
HUB_FILES = ("model.safetensors", "model.safetensors.index.json", "sam3.pt", "sam3.1_multiplex.pt")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
ACCESS_HELP = (
    "request access at https://huggingface.co/{}, then set HF_TOKEN or run `hf auth login`"
)
HUB_PROBE_TIMEOUT = 5.0  # seconds the hub has to answer one request before we call it offline


def resolve_checkpoint(
    source: str | os.PathLike | None = None,
    *,
    token: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Return a local weights file for a file, a folder or a hub repo id (default facebook/sam3)."""
    source = DEFAULT_REPO if source is None else source
    if looks_local(source):
        return resolve_local(Path(source).expanduser())
    return _download(str(source), token=token, revision=revision, cache_dir=cache_dir)


def looks_local(source: str | os.PathLike) -> bool:
    """Tell a path from an `owner/name` hub repo id."""
    if isinstance(source, os.PathLike) or Path(source).expanduser().exists():
        return True
    text = str(source)
    return (
        text.startswith(("/", ".", "~"))
        or "\\" in text
        or text.count("/") != 1
        or text.endswith((*WEIGHT_SUFFIXES, ".json"))
    )


def resolve_local(path: Path) -> Path:
    """Pick the weights file of a local path; a folder is searched like a hub repo."""
    if not path.exists():
        raise CheckpointError(
            f"checkpoint path {str(path)!r} does not exist: pass an existing .safetensors/.pt "
            f"file or a folder holding one, or a hub repo id such as {DEFAULT_REPO!r}"
        )
    if path.is_file():
        return path
    for name in HUB_FILES:
        if (path / name).is_file():
            return path / name
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    what = f"several ({', '.join(p.name for p in found)})" if found else "no weights file"
    raise CheckpointError(
        f"folder {str(path)!r} holds {what}: pass the weights file itself "
        f"(expected one of {', '.join(HUB_FILES)})"
    )


def _download(
    repo_id: str, *, token: str | None, revision: str | None, cache_dir: str | os.PathLike | None
) -> Path:
    """The preferred weights file of a hub repo: from the huggingface_hub cache if it holds one
    (no network), else downloaded, unless the hub cannot be reached (then at once an error)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def fetch(filename: str) -> Path:
        return Path(
            hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token)
        )

    cached = cached_checkpoint(repo_id, revision=revision, cache_dir=cache_dir)
    if cached is not None:
        return cached
    unreachable = hub_unreachable()
    if unreachable:
        raise CheckpointError(
            f"cannot reach the hub ({unreachable}) and no weights of {repo_id!r} are cached "
            f"(looked for {', '.join(HUB_FILES)}): connect once to download them, or pass a "
            "local .safetensors/.pt file"
        )
    offline = False
    for filename in HUB_FILES:
        try:
            path = fetch(filename)
            if filename.endswith(".index.json"):
                for shard in sorted(set(json.loads(path.read_text())["weight_map"].values())):
                    fetch(shard)
        except GatedRepoError as err:
            raise CheckpointError(
                f"hub repo {repo_id!r} is gated and this account has no access or no token "
                f"was found: {ACCESS_HELP.format(repo_id)}"
            ) from err
        except RepositoryNotFoundError as err:
            raise CheckpointError(
                f"hub repo {repo_id!r} was not found (or is private and no valid token was "
                f"given): check the repo id, e.g. {DEFAULT_REPO!r}, or pass a local file"
            ) from err
        except RevisionNotFoundError as err:
            raise CheckpointError(
                f"revision {revision!r} does not exist in hub repo {repo_id!r}: pass an "
                "existing branch, tag or commit, or leave revision unset"
            ) from err
        except (LocalEntryNotFoundError, OfflineModeIsEnabled):
            offline = True
            continue
        except EntryNotFoundError:
            continue
        except HfHubHTTPError as err:
            status = getattr(getattr(err, "response", None), "status_code", None)
            if status in (401, 403):
                raise CheckpointError(
                    f"the hub refused access to {repo_id!r} (HTTP {status}): "
                    + ACCESS_HELP.format(repo_id)
                ) from err
            raise CheckpointError(
                f"downloading {filename} from {repo_id!r} failed ({err}): retry, or pass a "
                "local checkpoint file"
            ) from err
        return path
    if offline:
        raise CheckpointError(
            f"cannot reach the hub and no weights of {repo_id!r} are cached "
            f"(looked for {', '.join(HUB_FILES)}): connect once to download them, or pass a "
            "local .safetensors/.pt file"
        )
    raise CheckpointError(
        f"hub repo {repo_id!r} has none of {', '.join(HUB_FILES)}: pass a SAM 3 repo such as "
        f"{DEFAULT_REPO!r} or a local checkpoint file"
    )


def cached_checkpoint(
    repo_id: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None
) -> Path | None:
    """The preferred weights file of a hub repo already in the huggingface_hub cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> Path | None:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
        return Path(found) if isinstance(found, str) else None

    for filename in HUB_FILES:
        path = cached(filename)
        if path is not None and filename.endswith(".index.json"):
            shards = set(json.loads(path.read_text())["weight_map"].values())
            path = path if all(cached(shard) for shard in shards) else None
        if path is not None:
            return path
    return None


def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
    """Why the hub cannot be reached now (offline mode, no connection), or None if it answers.

    One request without retries, so that a machine without network learns it at once (the
    hub client retries a refused connection for over a minute).
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    session = get_session()
    try:
        session.head(constants.ENDPOINT, timeout=timeout)
    except (OSError, OfflineModeIsEnabled, transport_error(session)) as err:
        return f"{constants.ENDPOINT} did not answer: {type(err).__name__}"
    return None


def transport_error(session: object) -> type[Exception]:
    """The connection-error base class of the HTTP client huggingface_hub uses (httpx in
    recent versions; requests in old ones, whose errors are OSErrors)."""
    client = importlib.import_module(type(session).__module__.split(".")[0])
    error = getattr(client, "TransportError", OSError)
    return error if isinstance(error, type) and issubclass(error, Exception) else OSError
