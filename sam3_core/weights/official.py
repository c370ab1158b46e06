"""Meta's official `sam3.pt` layout -> ours: key renames per component and tensor transforms.

The official checkpoint keys start with `detector.` / `tracker.`; ours are transformers'
`Sam3VideoModel` keys. Besides renames: the ViT's fused qkv and attention `in_proj_*` are
split, the CLS slot leaves the ViT position table, the CLIP projection is transposed and the
tracker's point embeddings are stacked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from math import isqrt

import torch
from torch import Tensor

from sam3_core.weights.errors import CheckpointError

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
DROPPED = re.compile(r"\.attn\.freqs_cis$|^detector\.geometry_encoder\.points_")

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


def rename_key(key: str, downsampler_depth: int) -> str:
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


def convert_official(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename official keys and reshape the tensors whose layout differs from ours."""
    sd = _official_with_prefixes(sd)
    norms = {m.group(1) for k in sd if (m := re.search(r"mask_downsampler\.encoder\.(\d+)\.", k))}
    depth = sum(int(i) % 3 == 1 for i in norms)
    out: dict[str, Tensor] = {}
    point_embeds: dict[int, Tensor] = {}
    for key, value in sd.items():
        if DROPPED.search(key):
            continue
        new = rename_key(key, depth)
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
