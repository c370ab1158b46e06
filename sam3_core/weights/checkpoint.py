"""Read SAM 3 checkpoints safely, convert them to our state-dict layout, load them by part.

Finding a checkpoint (file, folder, hub id, cache) is `sam3_core.weights.hub`.

Our keys are the transformers `Sam3VideoModel` keys: `detector_model.*` (the image detector),
`tracker_model.*` (the SAM 2-style tracker, without its own vision encoder) and
`tracker_neck.*` (the tracker's FPN on the shared backbone). Four layouts are accepted:

- "ours": the hub's transformers `model.safetensors`; loads as is.
- "hf_detector": a transformers `Sam3Model` file (detector only); gets the `detector_model.`
  prefix.
- "hf_tracker": a transformers `Sam3TrackerModel` / `Sam3TrackerVideoModel` file (tracker and
  ViT, no detector), as `save_pretrained` writes it (`tracker_model.detector_model.*`,
  `tracker_model.tracker_neck.*`, `tracker_model.*`) or as its `state_dict()` (`vision_encoder.*`,
  `prompt_encoder.*`, ...).
- "official": Meta's `sam3.pt` (`detector.*`, `tracker.*`), or a bare official image model;
  renamed, with fused q/k/v projections split, the ViT cls position dropped, the CLIP text
  projection transposed, the tracker's point embeddings stacked, and the precomputed RoPE
  tables and the unused point-prompt projections of the geometry encoder dropped.
- "official_multiplex": Meta's SAM 3.1 `sam3.1_multiplex.pt` (`detector.*`, `tracker.model.*`):
  the detector and interactive head converted like `sam3.pt`, the multiplex tracker into
  `propagation_neck.*` / `multiplex_tracker.*` (see `official_multiplex`).
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

from sam3_core.modeling.sam3 import FULL_CHECKPOINT, PART_CONTENTS, part_of
from sam3_core.weights.errors import CheckpointError
from sam3_core.weights.hub import DEFAULT_REPO, resolve_checkpoint, resolve_local
from sam3_core.weights.official import convert_official
from sam3_core.weights.official_multiplex import convert_official_multiplex, is_multiplex_checkpoint

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

OUR_PREFIXES = (
    "detector_model.",
    "tracker_model.",
    "tracker_neck.",
    "propagation_neck.",
    "multiplex_tracker.",
)
MAX_LISTED = 10

Layout = Literal["ours", "hf_detector", "hf_tracker", "official", "official_multiplex"]
SAVED_TRACKER_PREFIXES = ("tracker_model.detector_model.", "tracker_model.tracker_neck.")


# ---------------------------------------------------------------------------------------------
# Reading tensors safely
# ---------------------------------------------------------------------------------------------


def load_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a .safetensors (or its shard index) or .pt/.pth file to CPU tensors, never code."""
    from safetensors import SafetensorError

    path = resolve_local(Path(path).expanduser())
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
        "a SAM 2 tracker, or a SAM 3 tracker head without its vision encoder (transformers layout)",
        ("prompt_encoder.", "mask_decoder."),
    ),
)
HF_TRACKER_VIT = "vision_encoder.backbone.layers."  # SAM 3's ViT in a tracker's state_dict()


def detect_layout(sd: Mapping[str, Tensor]) -> Layout:
    """Name the key layout of a SAM 3 state dict; other checkpoints raise CheckpointError."""
    keys = list(sd)
    if any(k.startswith(SAVED_TRACKER_PREFIXES) for k in keys):
        return "hf_tracker"
    if any(k.startswith(OUR_PREFIXES) for k in keys):
        return "ours"
    if is_multiplex_checkpoint(sd):
        return "official_multiplex"
    if any(k.startswith(("detector.", "tracker.")) for k in keys):
        return "official"
    if any(
        k.startswith(("backbone.vision_backbone.", "inst_interactive_predictor.")) for k in keys
    ):
        return "official"
    tops = {k.split(".")[0] + "." for k in keys}
    if "detr_decoder." in tops and tops & {"vision_encoder.", "text_encoder."}:
        return "hf_detector"
    if "prompt_encoder." in tops and any(k.startswith(HF_TRACKER_VIT) for k in keys):
        return "hf_tracker"
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
    if layout == "hf_tracker":
        return _fill_aliases({_tracker_key(k): v for k, v in sd.items()})
    if layout == "official_multiplex":
        return _fill_aliases(convert_official_multiplex(sd))
    return _fill_aliases(convert_official(sd))


def _tracker_key(key: str) -> str:
    """Our key for a transformers tracker key, saved (`tracker_model.`-prefixed) or not."""
    if key.startswith(SAVED_TRACKER_PREFIXES):
        return key.removeprefix("tracker_model.")
    if key.startswith("tracker_model."):
        return key
    if key.startswith("vision_encoder.backbone."):
        return "detector_model." + key
    if key.startswith("vision_encoder.neck."):
        return "tracker_neck." + key.removeprefix("vision_encoder.neck.")
    return "tracker_model." + key


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


def load_into(
    model: torch.nn.Module, sd: Mapping[str, Tensor], *, strict: bool = True
) -> frozenset[str]:
    """Check keys and shapes against the model, cast dtypes, load (assigning on meta); return
    the parts (`sam3_core.modeling.sam3.PARTS`) the checkpoint filled.

    A part is loaded whole or not at all: one the checkpoint holds partly is refused by name.
    Parts it lacks entirely are recorded in `model.loaded_parts` (a call that needs one raises
    MissingPartError); a model without that record refuses them. `strict=False` only lets
    checkpoint keys the model does not have pass, with a warning.
    """
    expected = model.state_dict()
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    ]
    keys_of: dict[str, list[str]] = {}
    for k in expected:
        keys_of.setdefault(part_of(k), []).append(k)
    held = frozenset(p for p, ks in keys_of.items() if all(k in sd for k in ks))
    absent = frozenset(p for p, ks in keys_of.items() if not any(k in sd for k in ks))
    partial = [p for p in keys_of if p not in held | absent]
    records = hasattr(model, "loaded_parts")
    refused = [
        k for p in (partial if records else [*partial, *absent]) for k in keys_of[p] if k not in sd
    ]
    if mismatched or refused or (strict and unexpected):
        report = _mismatch_report(refused, unexpected if strict else [], mismatched)
        if partial:
            report += "\n  " + _partial_hint(partial, keys_of, sd)
        raise CheckpointError(report)
    before = getattr(model, "loaded_parts", None) or frozenset()
    usable = held | before
    if "vision encoder" not in usable or not usable & {"detector", "tracker"}:
        raise CheckpointError(
            f"this checkpoint holds {', '.join(sorted(held)) or 'no part of SAM 3'}, but "
            "segmenting needs the ViT image encoder plus the detector (concepts) or the tracker "
            f"(clicks): {FULL_CHECKPOINT}"
        )
    if unexpected:
        logger.warning(
            "loading non-strictly: %d checkpoint keys unused (%s)",
            len(unexpected),
            _listing(unexpected, 3),
        )
    if absent:
        logger.info("this checkpoint holds no %s; calls that need it will raise", sorted(absent))
    cast = {k: _cast(sd[k], expected[k]) for k in expected if k in sd}
    on_meta = any(t.is_meta for t in expected.values())
    if on_meta:  # own, aligned memory (not the file's buffer: kernels would sum differently)
        cast = {k: v.clone(memory_format=torch.contiguous_format) for k, v in cast.items()}
        # never left unallocated: parts not loaded are NaN, and calls refuse them
        nan = float("nan")
        cast |= {
            k: torch.full(v.shape, nan, dtype=v.dtype)
            for k, v in expected.items()
            if k not in cast and v.is_meta and v.is_floating_point()
        }
    model.load_state_dict(cast, strict=False, assign=on_meta)
    if records:
        model.loaded_parts = before | held
    return held


def _partial_hint(partial: list[str], keys_of: dict[str, list[str]], sd) -> str:
    """Explain parts a checkpoint holds only some tensors of."""
    counts = ", ".join(
        f"the {p} ({PART_CONTENTS[p]}): {sum(k in sd for k in keys_of[p])} of "
        f"{len(keys_of[p])} tensors"
        for p in partial
    )
    return (
        f"hint: the checkpoint holds parts incompletely ({counts}); a part is loaded whole or "
        "not at all, never partly at random: the file is damaged or from another SAM 3 "
        "version; download it again"
    )


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
