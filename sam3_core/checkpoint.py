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
import re
import zipfile
from collections.abc import Callable, Mapping
from math import isqrt
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

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


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, read, recognised or loaded; the message says the fix."""


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
    return _fill_aliases(_convert_official(sd))


def _fill_aliases(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Copy the tracker's shared Fourier-feature matrix to whichever of its two keys is absent."""
    a = "tracker_model.shared_image_embedding.positional_embedding"
    b = "tracker_model.prompt_encoder.shared_embedding.positional_embedding"
    if (a in sd) != (b in sd):
        sd[a if b in sd else b] = sd[b if b in sd else a]
    return sd


# Official prefix -> our prefix; the first match wins.
_PREFIXES = (
    ("detector.backbone.vision_backbone.trunk.", "detector_model.vision_encoder.backbone."),
    ("detector.backbone.vision_backbone.convs.", "detector_model.vision_encoder.neck.fpn_layers."),
    ("detector.backbone.vision_backbone.sam2_convs.", "tracker_neck.fpn_layers."),
    ("detector.backbone.language_backbone.encoder.", "detector_model.text_encoder."),
    ("detector.backbone.language_backbone.resizer.", "detector_model.text_projection."),
    ("detector.geometry_encoder.", "detector_model.geometry_encoder."),
    ("detector.transformer.encoder.", "detector_model.detr_encoder."),
    ("detector.transformer.decoder.", "detector_model.detr_decoder."),
    ("detector.segmentation_head.", "detector_model.mask_decoder."),
    ("detector.dot_prod_scoring.", "detector_model.dot_product_scoring."),
    ("tracker.transformer.encoder.", "tracker_model.memory_attention."),
    ("tracker.maskmem_backbone.", "tracker_model.memory_encoder."),
    ("tracker.sam_prompt_encoder.", "tracker_model.prompt_encoder."),
    ("tracker.sam_mask_decoder.", "tracker_model.mask_decoder."),
    ("tracker.obj_ptr_proj.", "tracker_model.object_pointer_proj."),
    ("tracker.obj_ptr_tpos_proj.", "tracker_model.temporal_positional_encoding_projection_layer."),
    ("tracker.maskmem_tpos_enc", "tracker_model.memory_temporal_positional_encoding"),
    ("tracker.no_mem_embed", "tracker_model.no_memory_embedding"),
    ("tracker.no_mem_pos_enc", "tracker_model.no_memory_positional_encoding"),
    ("tracker.no_obj_ptr", "tracker_model.no_object_pointer"),
    ("tracker.no_obj_embed_spatial", "tracker_model.occlusion_spatial_embedding_parameter"),
    ("tracker.mask_downsample.", "tracker_model.mask_downsample."),
)

# Official tensors with no counterpart: RoPE tables (recomputed) and the geometry encoder's
# point-prompt projections (points go to the tracker, never to the detector).
_DROPPED = re.compile(r"\.attn\.freqs_cis$|^detector\.geometry_encoder\.points_")

_Rule = tuple[str, str | Callable[[re.Match], str]]


def _shifted(template: str) -> Callable[[re.Match], str]:
    """Replacement that renames `layers.<i>` to 1-based `layer<i+1>` (our MLP naming)."""
    return lambda m: template.format(*m.groups()[:-1], int(m.groups()[-1]) + 1)


_MLP3 = ("proj_in", "layers.0", "proj_out")  # SAM 2's 3-layer MLP, layers.0/1/2 renamed
_MLP3_HEADS = r"output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head"


def _mlp3(m: re.Match) -> str:
    """Replacement for `<head>.layers.<i>.` of a 3-layer MLP in our naming."""
    return f"{m.group(1)}.{_MLP3[int(m.group(2))]}."


_ATTN_OUT: _Rule = (r"\.out_proj\.", ".o_proj.")

# Rules per our component prefix, applied in order (every rule, not just the first match).
_RULES: dict[str, tuple[_Rule, ...]] = {
    "detector_model.vision_encoder.backbone.": (
        (r"^pos_embed$", "embeddings.position_embeddings"),
        (r"^patch_embed\.proj\.", "embeddings.patch_embeddings.projection."),
        (r"^ln_pre\.", "layer_norm."),
        (r"^blocks\.(\d+)\.norm([12])\.", r"layers.\1.layer_norm\2."),
        (r"^blocks\.(\d+)\.attn\.proj\.", r"layers.\1.attention.o_proj."),
        (r"^blocks\.(\d+)\.attn\.qkv\.", r"layers.\1.attention.qkv."),
        (r"^blocks\.(\d+)\.mlp\.", r"layers.\1.mlp."),
    ),
    "detector_model.vision_encoder.neck.fpn_layers.": (
        (r"^(\d+)\.(dconv_2x2|dconv_2x2_0)\.", r"\1.scale_layers.0."),
        (r"^(\d+)\.dconv_2x2_1\.", r"\1.scale_layers.2."),
        (r"^(\d+)\.conv_1x1\.", r"\1.proj1."),
        (r"^(\d+)\.conv_3x3\.", r"\1.proj2."),
    ),
    "detector_model.text_encoder.": (
        (r"^token_embedding\.", "text_model.embeddings.token_embedding."),
        (r"^positional_embedding$", "text_model.embeddings.position_embedding.weight"),
        (r"^ln_final\.", "text_model.final_layer_norm."),
        (r"^text_projection$", "text_projection.weight"),
        (r"^transformer\.resblocks\.(\d+)\.attn\.", r"text_model.encoder.layers.\1.self_attn."),
        (
            r"^transformer\.resblocks\.(\d+)\.ln_([12])\.",
            r"text_model.encoder.layers.\1.layer_norm\2.",
        ),
        (r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"text_model.encoder.layers.\1.mlp.fc1."),
        (
            r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.",
            r"text_model.encoder.layers.\1.mlp.fc2.",
        ),
    ),
    "detector_model.geometry_encoder.": (
        (r"^encode\.(\d+)\.", r"layers.\1."),
        (r"^img_pre_norm\.", "vision_layer_norm."),
        (r"^norm\.", "prompt_layer_norm."),
        (r"^encode_norm\.", "output_layer_norm."),
        (r"\.cross_attn_image\.", ".cross_attn."),
        (r"^(layers\.\d+)\.linear([12])\.", r"\1.mlp.fc\2."),
        (r"^(layers\.\d+)\.norm([123])\.", r"\1.layer_norm\2."),
        _ATTN_OUT,
    ),
    "detector_model.detr_encoder.": (
        (r"\.cross_attn_image\.", ".cross_attn."),
        (r"^(layers\.\d+)\.linear([12])\.", r"\1.mlp.fc\2."),
        (r"^(layers\.\d+)\.norm([123])\.", r"\1.layer_norm\2."),
        _ATTN_OUT,
    ),
    "detector_model.detr_decoder.": (
        (r"^(layers\.\d+)\.cross_attn\.", r"\1.vision_cross_attn."),
        (r"^(layers\.\d+)\.ca_text\.", r"\1.text_cross_attn."),
        (r"^(layers\.\d+)\.norm1\.", r"\1.vision_cross_attn_layer_norm."),
        (r"^(layers\.\d+)\.catext_norm\.", r"\1.text_cross_attn_layer_norm."),
        (r"^(layers\.\d+)\.norm2\.", r"\1.self_attn_layer_norm."),
        (r"^(layers\.\d+)\.norm3\.", r"\1.mlp_layer_norm."),
        (r"^(layers\.\d+)\.linear([12])\.", r"\1.mlp.fc\2."),
        (r"^norm\.", "output_layer_norm."),
        (r"^bbox_embed\.layers\.(\d+)\.", _shifted("box_head.layer{}.")),
        (r"^presence_token_head\.layers\.(\d+)\.", _shifted("presence_head.layer{}.")),
        (r"^presence_token_out_norm\.", "presence_layer_norm."),
        (r"^ref_point_head\.layers\.(\d+)\.", _shifted("ref_point_head.layer{}.")),
        (r"^boxRPB_embed_([xy])\.layers\.(\d+)\.", _shifted("box_rpb_embed_{}.layer{}.")),
        _ATTN_OUT,
    ),
    "detector_model.mask_decoder.": (
        (r"^(mask_predictor\.)?mask_embed\.", "mask_embedder."),
        (r"^instance_seg_head\.", "instance_projection."),
        (r"^semantic_seg_head\.", "semantic_projection."),
        (r"^cross_attend_prompt\.", "prompt_cross_attn."),
        (r"^cross_attn_norm\.", "prompt_cross_attn_norm."),
        _ATTN_OUT,
    ),
    "detector_model.dot_product_scoring.": (
        (r"^prompt_mlp\.layers\.(\d+)\.", _shifted("text_mlp.layer{}.")),
        (r"^prompt_mlp\.out_norm\.", "text_mlp_out_norm."),
        (r"^prompt_proj\.", "text_proj."),
        (r"^hs_proj\.", "query_proj."),
    ),
    "tracker_model.memory_attention.": (
        (r"^(layers\.\d+)\.norm([123])\.", r"\1.layer_norm\2."),
        (r"^norm\.", "layer_norm."),
        _ATTN_OUT,
    ),
    "tracker_model.memory_encoder.": (
        (r"^pix_feat_proj\.", "feature_projection."),
        (r"^out_proj\.", "projection."),
        (r"^fuser\.(layers\.\d+)\.gamma$", r"memory_fuser.\1.scale"),
        (r"^fuser\.(layers\.\d+)\.dwconv\.", r"memory_fuser.\1.depthwise_conv."),
        (r"^fuser\.(layers\.\d+)\.pwconv([12])\.", r"memory_fuser.\1.pointwise_conv\2."),
        (r"^fuser\.(layers\.\d+)\.norm\.", r"memory_fuser.\1.layer_norm."),
    ),
    "tracker_model.prompt_encoder.": (
        (
            r"^pe_layer\.positional_encoding_gaussian_matrix$",
            "shared_embedding.positional_embedding",
        ),
        (r"^mask_downscaling\.0\.", "mask_embed.conv1."),
        (r"^mask_downscaling\.1\.", "mask_embed.layer_norm1."),
        (r"^mask_downscaling\.3\.", "mask_embed.conv2."),
        (r"^mask_downscaling\.4\.", "mask_embed.layer_norm2."),
        (r"^mask_downscaling\.6\.", "mask_embed.conv3."),
    ),
    "tracker_model.mask_decoder.": (
        (r"^transformer\.(layers\.\d+)\.norm([1-4])\.", r"transformer.\1.layer_norm\2."),
        (r"^transformer\.(layers\.\d+)\.mlp\.lin1\.", r"transformer.\1.mlp.proj_in."),
        (r"^transformer\.(layers\.\d+)\.mlp\.lin2\.", r"transformer.\1.mlp.proj_out."),
        (r"^transformer\.norm_final_attn\.", "transformer.layer_norm_final_attn."),
        (r"^output_upscaling\.0\.", "upscale_conv1."),
        (r"^output_upscaling\.1\.", "upscale_layer_norm."),
        (r"^output_upscaling\.3\.", "upscale_conv2."),
        (rf"^({_MLP3_HEADS})\.layers\.(\d)\.", _mlp3),
        _ATTN_OUT,
    ),
    "tracker_model.object_pointer_proj.": ((r"^layers\.(\d)\.", lambda m: f"{_MLP3[int(m[1])]}."),),
}
_RULES["tracker_neck.fpn_layers."] = _RULES["detector_model.vision_encoder.neck.fpn_layers."]


def _rename(key: str, downsampler_depth: int) -> str:
    """Map one official key (with `detector.`/`tracker.` prefix) to our key."""
    for old, new in _PREFIXES:
        if key.startswith(old):
            prefix, rest = new, key[len(old) :]
            break
    else:
        return key
    for pattern, repl in _RULES.get(prefix, ()):
        rest = re.sub(pattern, repl, rest)
    if prefix == "tracker_model.memory_encoder.":
        rest = re.sub(
            r"^mask_downsampler\.encoder\.(\d+)\.",
            lambda m: _downsampler_name(int(m.group(1)), downsampler_depth),
            rest,
        )
    return prefix + rest


def _downsampler_name(index: int, depth: int) -> str:
    """Name entry `index` of the official mask downsampler's (conv, norm, act)*depth + conv."""
    stage, part = divmod(index, 3)
    if stage == depth and part == 0:
        return "mask_downsampler.final_conv."
    return f"mask_downsampler.layers.{stage}.{('conv', 'layer_norm')[part]}."


def _official_with_prefixes(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Give a bare official image model (`backbone.*`, `inst_interactive_predictor.model.*`) the
    `detector.`/`tracker.` prefixes of `sam3.pt`."""
    if any(k.startswith(("detector.", "tracker.")) for k in sd):
        return dict(sd)
    inst = "inst_interactive_predictor.model."
    return {
        ("tracker." + k[len(inst) :] if k.startswith(inst) else "detector." + k): v
        for k, v in sd.items()
    }


def _convert_official(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename official keys and reshape the tensors whose layout differs from ours."""
    sd = _official_with_prefixes(sd)
    norms = {m.group(1) for k in sd if (m := re.search(r"mask_downsampler\.encoder\.(\d+)\.", k))}
    depth = sum(int(i) % 3 == 1 for i in norms)
    out: dict[str, Tensor] = {}
    point_embeds: dict[int, Tensor] = {}
    for key, value in sd.items():
        if _DROPPED.search(key):
            continue
        new = _rename(key, depth)
        if m := re.fullmatch(
            r"(tracker_model\.prompt_encoder\.)point_embeddings\.(\d+)\.weight", new
        ):
            point_embeds[int(m.group(2))] = value
        elif new.endswith(("attention.qkv.weight", "attention.qkv.bias")):
            _split_qkv(out, new.replace(".qkv.", ".{}_proj."), value)
        elif new.endswith(("in_proj_weight", "in_proj_bias")):
            _split_qkv(out, new.replace("in_proj_", "{}_proj."), value)
        elif new == "detector_model.vision_encoder.backbone.embeddings.position_embeddings":
            out[new] = _drop_cls_position(value)
        elif new == "detector_model.text_encoder.text_projection.weight":
            out[new] = value.T.contiguous()  # official stores x @ P, nn.Linear wants P.T
        else:
            out[new] = value
    if point_embeds:
        stacked = torch.cat([point_embeds[i] for i in sorted(point_embeds)], dim=0)
        out["tracker_model.prompt_encoder.point_embed.weight"] = stacked
    return out


def _split_qkv(out: dict[str, Tensor], template: str, fused: Tensor) -> None:
    """Split a fused [q; k; v] projection (rows stacked along dim 0) into three entries."""
    if fused.shape[0] % 3:
        raise CheckpointError(
            f"fused projection {template.format('qkv')!r} has {fused.shape[0]} rows, not a "
            "multiple of 3: the checkpoint is damaged or not a SAM 3 checkpoint"
        )
    for name, part in zip("qkv", fused.chunk(3, dim=0), strict=True):
        out[template.format(name)] = part


def _drop_cls_position(pos: Tensor) -> Tensor:
    """Remove the pretraining cls slot from a (1, 1 + n*n, C) ViT position table."""
    n = pos.shape[1]
    if isqrt(n) ** 2 == n:
        return pos
    if isqrt(n - 1) ** 2 == n - 1:
        return pos[:, 1:]
    raise CheckpointError(
        f"ViT pos_embed has {n} positions, neither a square grid nor one plus a square: the "
        "checkpoint is damaged or not a SAM 3 checkpoint"
    )


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
