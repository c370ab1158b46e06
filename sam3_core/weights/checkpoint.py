"""Find, read and convert SAM 3 checkpoints into our state-dict layout.

Our keys are the transformers `Sam3VideoModel` keys: `detector_model.*` (the image detector),
`tracker_model.*` (the SAM 2-style tracker, without its own vision encoder) and
`tracker_neck.*` (the tracker's FPN on the shared backbone). Three layouts are accepted:

- "ours": the hub's transformers `model.safetensors`; loads as is.
- "hf_detector": a bare transformers `Sam3Model` file; gets the `detector_model.` prefix.
- "official": Meta's `sam3.pt` (`detector.*`, `tracker.*`), or a bare official image model;
  renamed, with fused q/k/v projections split, the ViT cls position dropped, the CLIP text
  projection transposed, the tracker's point embeddings stacked, and the precomputed RoPE
  tables and the unused point-prompt projections of the geometry encoder dropped.
"""

import json
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from sam3_core.weights.errors import CheckpointError
from sam3_core.weights.official import convert_official

__all__ = [
    "DEFAULT_REPO",
    "CheckpointError",
    "detect_layout",
    "load_into",
    "load_state_dict",
    "load_weights",
    "resolve_checkpoint",
    "to_our_layout",
]

logger = logging.getLogger(__name__)

DEFAULT_REPO = "facebook/sam3"
HUB_FILES = ("model.safetensors", "model.safetensors.index.json", "sam3.pt")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
ACCESS_HELP = (
    "request access at https://huggingface.co/{}, then set HF_TOKEN or run `hf auth login`"
)
OUR_PREFIXES = ("detector_model.", "tracker_model.", "tracker_neck.")
MAX_LISTED = 10

Layout = Literal["ours", "hf_detector", "official"]


# ---------------------------------------------------------------------------------------------
# Resolving a source to a local file
# ---------------------------------------------------------------------------------------------


def resolve_checkpoint(
    source: str | os.PathLike | None = None,
    *,
    token: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Return a local weights file for a file, a folder or a hub repo id (default facebook/sam3)."""
    source = DEFAULT_REPO if source is None else source
    if _looks_local(source):
        return _resolve_local(Path(source).expanduser())
    return _download(str(source), token=token, revision=revision, cache_dir=cache_dir)


def _looks_local(source: str | os.PathLike) -> bool:
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


def _resolve_local(path: Path) -> Path:
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
    """Fetch the preferred weights file of a hub repo through the huggingface_hub cache."""
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


# ---------------------------------------------------------------------------------------------
# Reading tensors safely
# ---------------------------------------------------------------------------------------------


def load_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a .safetensors (or its shard index) or .pt/.pth file to CPU tensors, never code."""
    from safetensors import SafetensorError

    path = _resolve_local(Path(path).expanduser())
    try:
        if path.name.endswith(".safetensors.index.json"):
            return _load_sharded(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(
            f"could not read {str(path)!r} ({err}): the file may be incomplete; download it again"
        ) from err
    if path.suffix not in (".pt", ".pth", ".bin"):
        raise CheckpointError(
            f"{str(path)!r} is not a weights file: pass a .safetensors, .pt or .pth file"
        )
    return _load_pickled(path)


def _load_sharded(index: Path) -> dict[str, Tensor]:
    """Read every shard named by a `model.safetensors.index.json`."""
    from safetensors.torch import load_file

    state: dict[str, Tensor] = {}
    for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        state.update(load_file(index.parent / shard, device="cpu"))
    return state


def _load_pickled(path: Path) -> dict[str, Tensor]:
    """Read a torch.save file with `weights_only=True` and unwrap a `model`/`state_dict` entry."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{str(path)!r} holds pickled Python objects besides tensors (a training state or a "
            "whole model), and loading it would run code from the file, which we never do: "
            "re-save it with torch.save(model.state_dict(), ...) or as .safetensors"
        ) from err
    except (OSError, RuntimeError, EOFError) as err:
        raise CheckpointError(
            f"could not read {str(path)!r} ({err}): the file may be incomplete; download it again"
        ) from err
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(
            f"{str(path)!r} does not hold a state dict (found {type(obj).__name__}): pass a "
            "file saved from model.state_dict()"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{str(path)!r} mixes non-tensor entries into its state dict ({_listing(bad)}): "
            "pass a file saved from model.state_dict()"
        )
    return obj


# ---------------------------------------------------------------------------------------------
# Recognising and converting layouts
# ---------------------------------------------------------------------------------------------

_FOREIGN = (  # (description, every prefix that must occur); the first match names it
    ("a SAM 2 checkpoint (official layout)", ("image_encoder.trunk.", "sam_mask_decoder.")),
    ("a SAM 1 checkpoint (official layout)", ("image_encoder.blocks.", "mask_decoder.")),
    ("a SAM 1 checkpoint (transformers layout)", ("vision_encoder.layers.", "prompt_encoder.")),
    (
        "a SAM 2 or SAM 3 tracker checkpoint without the concept detector (transformers layout)",
        ("prompt_encoder.", "mask_decoder."),
    ),
)


def detect_layout(sd: Mapping[str, Tensor]) -> Layout:
    """Name the key layout of a SAM 3 state dict; other checkpoints raise CheckpointError."""
    keys = list(sd)
    if any(k.startswith(OUR_PREFIXES) for k in keys):
        return "ours"
    if any(k.startswith(("detector.", "tracker.")) for k in keys):
        return "official"
    if any(
        k.startswith(("backbone.vision_backbone.", "inst_interactive_predictor.")) for k in keys
    ):
        return "official"
    tops = {k.split(".")[0] + "." for k in keys}
    if "detr_decoder." in tops and tops & {"vision_encoder.", "text_encoder."}:
        return "hf_detector"
    what = next(
        (
            name
            for name, needs in _FOREIGN
            if all(any(k.startswith(p) for k in keys) for p in needs)
        ),
        f"an unrecognised checkpoint (first keys: {_listing(keys, 5)})" if keys else "nothing",
    )
    raise CheckpointError(
        f"this checkpoint looks like {what}; a SAM 3 checkpoint is expected "
        f"(e.g. model.safetensors or sam3.pt from {DEFAULT_REPO})"
    )


def to_our_layout(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Return the state dict with our keys and tensor layouts, whatever SAM 3 layout it came in."""
    layout = detect_layout(sd)
    if layout == "ours":
        return _fill_aliases(dict(sd))
    if layout == "hf_detector":
        return {"detector_model." + k: v for k, v in sd.items()}
    return _fill_aliases(convert_official(sd))


def _fill_aliases(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Copy the tracker's shared Fourier-feature matrix to whichever of its two keys is absent."""
    a = "tracker_model.shared_image_embedding.positional_embedding"
    b = "tracker_model.prompt_encoder.shared_embedding.positional_embedding"
    if (a in sd) != (b in sd):
        sd[a if b in sd else b] = sd[b if b in sd else a]
    return sd


# ---------------------------------------------------------------------------------------------
# Loading into a model
# ---------------------------------------------------------------------------------------------


def load_into(model: torch.nn.Module, sd: Mapping[str, Tensor], *, strict: bool = True) -> None:
    """Check keys and shapes against the model, cast dtypes, then load (assigning on meta)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if mismatched or (strict and (missing or unexpected)):
        raise CheckpointError(_mismatch_report(missing, unexpected, mismatched))
    if missing or unexpected:
        logger.warning(
            "loading non-strictly: %d model keys missing from the checkpoint (%s), %d checkpoint "
            "keys unused (%s)",
            len(missing),
            _listing(missing, 3),
            len(unexpected),
            _listing(unexpected, 3),
        )
    cast = {k: _cast(sd[k], expected[k]) for k in expected if k in sd}
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(cast, strict=strict, assign=on_meta)


def _cast(value: Tensor, target: Tensor) -> Tensor:
    """Cast a floating-point checkpoint tensor to the model's dtype; leave other kinds alone."""
    if value.is_floating_point() and target.is_floating_point() and value.dtype != target.dtype:
        return value.to(target.dtype)
    return value


def _mismatch_report(missing: list[str], unexpected: list[str], mismatched: list[str]) -> str:
    """Explain why a checkpoint does not fit the model, with a hint at the likely fix."""
    parts = ["checkpoint does not match the model:"]
    for title, items in (
        ("missing from the checkpoint", missing),
        ("unexpected in the checkpoint", unexpected),
        ("shape mismatches", mismatched),
    ):
        if items:
            parts.append(f"{len(items)} {title}: {_listing(items)}")
    if unexpected and not any(k.startswith(OUR_PREFIXES) for k in unexpected[:MAX_LISTED]):
        parts.append(
            "hint: pass the state dict through to_our_layout() first; if it was, the checkpoint "
            "is a SAM 3 variant this version does not support"
        )
    elif missing and all(k.startswith(("tracker_model.", "tracker_neck.")) for k in missing):
        parts.append("hint: it holds the image detector only; pass strict=False to load it")
    elif mismatched:
        parts.append(
            "hint: the model config differs from the checkpoint's; build the model "
            "with the config that matches the checkpoint"
        )
    return "\n  ".join(parts)


def _listing(items: list[str], limit: int = MAX_LISTED) -> str:
    """Join up to `limit` items, saying how many more were left out."""
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


def load_weights(
    model: torch.nn.Module,
    source: str | os.PathLike | None = None,
    *,
    strict: bool = True,
    token: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Resolve, read, convert and load a checkpoint into `model`; return the file used."""
    path = resolve_checkpoint(source, token=token, revision=revision, cache_dir=cache_dir)
    load_into(model, to_our_layout(load_state_dict(path)), strict=strict)
    return path
