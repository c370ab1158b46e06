"""Tests for sam3_core.weights.checkpoint: resolving, safe reading, layout conversion and loading.

Our model's keys equal transformers' `Sam3VideoModel` keys by design, so transformers' model
stands in for ours here. The official layout is pinned by `data/official_sam3_keys.json.gz`
(every key, shape and dtype of Meta's `build_sam3_video_model()`, made by
`data/dump_official_keys.py`), so the mapping is checked on the real `sam3.pt` layout.
"""

import re

import pytest
import torch
from safetensors.torch import save_file

from sam3_core.weights.checkpoint import (
    CheckpointError,
    detect_layout,
    load_into,
    load_state_dict,
    load_weights,
    to_our_layout,
)
from tests.core.weights.layout_tools import assert_same_layout, meta_state
from tests.core.weights.official_layout import official_layout

transformers = pytest.importorskip("transformers")


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


def _tiny_video_config():
    """A Sam3VideoConfig of about 8M parameters that builds in a fraction of a second."""
    vit = {
        "model_type": "sam3_vit_model",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 112,
        "patch_size": 14,
        "window_size": 4,
        "global_attn_indexes": [1],
        "pretrain_image_size": 56,
    }
    vision = {
        "model_type": "sam3_vision_model",
        "backbone_config": vit,
        "fpn_hidden_size": 128,
        "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
    }
    d = 128
    head = {"hidden_size": d, "num_attention_heads": 4, "intermediate_size": 256}
    detector = {
        "model_type": "sam3",
        "vision_config": vision,
        "text_config": {
            "model_type": "clip_text_model",
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 128,
            "max_position_embeddings": 32,
        },
        "geometry_encoder_config": {"model_type": "sam3_geometry_encoder", "num_layers": 1, **head},
        "detr_encoder_config": {"model_type": "sam3_detr_encoder", "num_layers": 1, **head},
        "detr_decoder_config": {
            "model_type": "sam3_detr_decoder",
            "num_layers": 2,
            "num_queries": 8,
            **head,
        },
        "mask_decoder_config": {
            "model_type": "sam3_mask_decoder",
            "hidden_size": d,
            "num_attention_heads": 4,
        },
    }
    tracker = {
        "model_type": "sam3_tracker_video",
        "vision_config": vision,
        "image_size": 112,
        "prompt_encoder_config": {
            "model_type": "sam3_tracker_video_prompt_encoder",
            "hidden_size": d,
            "image_size": 112,
        },
        "mask_decoder_config": {
            "model_type": "sam3_tracker_video_mask_decoder",
            "hidden_size": d,
            "mlp_dim": 256,
            "num_attention_heads": 4,
            "iou_head_hidden_dim": d,
        },
        "memory_attention_hidden_size": d,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 256,
        "memory_attention_rope_feat_sizes": [8, 8],
        "memory_encoder_hidden_size": d,
        "memory_encoder_output_channels": 64,
        "mask_downsampler_embed_dim": d,
        "memory_fuser_embed_dim": d,
        "memory_fuser_intermediate_dim": 256,
        "memory_fuser_num_layers": 1,
    }
    return transformers.Sam3VideoConfig(detector_config=detector, tracker_config=tracker)


@pytest.fixture(scope="module")
def tiny_model():
    """Stand-in for our model: a tiny transformers Sam3VideoModel with random weights."""
    torch.manual_seed(0)
    return transformers.Sam3VideoModel(_tiny_video_config()).eval()


# ---------------------------------------------------------------------------------------------
# The official layout, at full size, without weights
# ---------------------------------------------------------------------------------------------


def test_official_layout_converts_to_exactly_the_transformers_video_keys():
    with torch.device("meta"):
        reference = transformers.Sam3VideoModel(transformers.Sam3VideoConfig()).state_dict()
    sd = meta_state(official_layout())
    assert detect_layout(sd) == "official"
    converted = to_our_layout(sd)
    assert_same_layout(converted, reference)
    assert {v.dtype for v in converted.values()} == {torch.float32}


def test_bare_official_image_model_converts_like_sam3_pt():
    # build_sam3_image_model(enable_inst_interactivity=True) saves the detector without its
    # prefix and the tracker under inst_interactive_predictor.model.
    full = meta_state(official_layout())
    bare = {
        (
            "inst_interactive_predictor.model." + k.removeprefix("tracker.")
            if k.startswith("tracker.")
            else k.removeprefix("detector.")
        ): v
        for k, v in full.items()
    }
    assert detect_layout(bare) == "official"
    assert sorted(to_our_layout(bare)) == sorted(to_our_layout(full))


# ---------------------------------------------------------------------------------------------
# Value-level transforms on small synthetic tensors
# ---------------------------------------------------------------------------------------------


def _arange(*shape: int) -> torch.Tensor:
    return torch.arange(torch.Size(shape).numel(), dtype=torch.float32).reshape(shape)


def test_vision_qkv_is_split_into_q_k_v_in_row_order():
    qkv_w, qkv_b = _arange(12, 4), _arange(12)
    out = to_our_layout(
        {
            "detector.backbone.vision_backbone.trunk.blocks.3.attn.qkv.weight": qkv_w,
            "detector.backbone.vision_backbone.trunk.blocks.3.attn.qkv.bias": qkv_b,
        }
    )
    base = "detector_model.vision_encoder.backbone.layers.3.attention."
    for i, name in enumerate("qkv"):
        assert torch.equal(out[f"{base}{name}_proj.weight"], qkv_w[4 * i : 4 * (i + 1)])
        assert torch.equal(out[f"{base}{name}_proj.bias"], qkv_b[4 * i : 4 * (i + 1)])
    assert len(out) == 6


@pytest.mark.parametrize(
    ("official", "ours"),
    [
        (
            "detector.backbone.language_backbone.encoder.transformer.resblocks.1.attn.",
            "detector_model.text_encoder.text_model.encoder.layers.1.self_attn.",
        ),
        (
            "detector.transformer.decoder.layers.0.ca_text.",
            "detector_model.detr_decoder.layers.0.text_cross_attn.",
        ),
        (
            "detector.geometry_encoder.encode.2.cross_attn_image.",
            "detector_model.geometry_encoder.layers.2.cross_attn.",
        ),
        (
            "detector.segmentation_head.cross_attend_prompt.",
            "detector_model.mask_decoder.prompt_cross_attn.",
        ),
    ],
)
def test_fused_in_proj_is_split_and_out_proj_renamed(official, ours):
    w, b, o = _arange(6, 2), _arange(6), _arange(2, 2)
    out = to_our_layout(
        {
            official + "in_proj_weight": w,
            official + "in_proj_bias": b,
            official + "out_proj.weight": o,
        }
    )
    for i, name in enumerate("qkv"):
        assert torch.equal(out[f"{ours}{name}_proj.weight"], w[2 * i : 2 * (i + 1)])
        assert torch.equal(out[f"{ours}{name}_proj.bias"], b[2 * i : 2 * (i + 1)])
    out_name = "out_proj" if ".text_encoder." in ours else "o_proj"  # CLIP keeps its name
    assert torch.equal(out[f"{ours}{out_name}.weight"], o)


def test_pos_embed_loses_its_cls_slot():
    pos = _arange(1, 1 + 9, 3)
    key = "detector.backbone.vision_backbone.trunk.pos_embed"
    out = to_our_layout({key: pos})
    ours = out["detector_model.vision_encoder.backbone.embeddings.position_embeddings"]
    assert torch.equal(ours, pos[:, 1:])
    assert torch.equal(to_our_layout({key: pos[:, 1:]})[next(iter(out))], pos[:, 1:])
    with pytest.raises(CheckpointError, match="pos_embed has 7 positions"):
        to_our_layout({key: pos[:, :7]})


def test_clip_text_projection_is_transposed():
    proj = _arange(4, 2)  # official: (width, embed_dim), used as x @ proj
    out = to_our_layout({"detector.backbone.language_backbone.encoder.text_projection": proj})
    weight = out["detector_model.text_encoder.text_projection.weight"]
    assert torch.equal(weight, proj.T)
    x = torch.randn(3, 4)
    assert torch.allclose(torch.nn.functional.linear(x, weight), x @ proj)


def test_tracker_prompt_embeddings_are_stacked_and_shared():
    points = {i: torch.full((1, 3), float(i)) for i in (2, 0, 3, 1)}  # any order in the file
    gauss = _arange(2, 4)
    sd = {f"tracker.sam_prompt_encoder.point_embeddings.{i}.weight": t for i, t in points.items()}
    sd["tracker.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = gauss
    out = to_our_layout(sd)
    stacked = out["tracker_model.prompt_encoder.point_embed.weight"]
    assert torch.equal(stacked[:, 0], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    assert torch.equal(
        out["tracker_model.prompt_encoder.shared_embedding.positional_embedding"], gauss
    )
    assert torch.equal(out["tracker_model.shared_image_embedding.positional_embedding"], gauss)


def test_renames_that_reindex_layers():
    t = torch.zeros(1)
    sd = {
        "detector.transformer.decoder.bbox_embed.layers.2.weight": t,
        "detector.transformer.decoder.boxRPB_embed_y.layers.0.bias": t,
        "detector.dot_prod_scoring.prompt_mlp.layers.1.weight": t,
        "detector.backbone.vision_backbone.convs.0.dconv_2x2_1.weight": t,
        "detector.backbone.vision_backbone.sam2_convs.3.conv_3x3.bias": t,
        "tracker.maskmem_backbone.mask_downsampler.encoder.0.weight": t,
        "tracker.maskmem_backbone.mask_downsampler.encoder.1.weight": t,
        "tracker.maskmem_backbone.mask_downsampler.encoder.12.weight": t,
        "tracker.sam_mask_decoder.output_hypernetworks_mlps.3.layers.1.weight": t,
        "tracker.sam_mask_decoder.output_upscaling.3.bias": t,
        "tracker.obj_ptr_proj.layers.2.bias": t,
        "tracker.no_obj_embed_spatial": t,
        "tracker.maskmem_backbone.fuser.layers.0.gamma": t,
    }
    # The downsampler depth comes from the checkpoint: declare the norms of stages 0-3.
    sd.update(
        {f"tracker.maskmem_backbone.mask_downsampler.encoder.{i}.bias": t for i in (4, 7, 10)}
    )
    out = set(to_our_layout(sd))
    assert {
        "detector_model.detr_decoder.box_head.layer3.weight",
        "detector_model.detr_decoder.box_rpb_embed_y.layer1.bias",
        "detector_model.dot_product_scoring.text_mlp.layer2.weight",
        "detector_model.vision_encoder.neck.fpn_layers.0.scale_layers.2.weight",
        "tracker_neck.fpn_layers.3.proj2.bias",
        "tracker_model.memory_encoder.mask_downsampler.layers.0.conv.weight",
        "tracker_model.memory_encoder.mask_downsampler.layers.0.layer_norm.weight",
        "tracker_model.memory_encoder.mask_downsampler.final_conv.weight",
        "tracker_model.mask_decoder.output_hypernetworks_mlps.3.layers.0.weight",
        "tracker_model.mask_decoder.upscale_conv2.bias",
        "tracker_model.object_pointer_proj.proj_out.bias",
        "tracker_model.occlusion_spatial_embedding_parameter",
        "tracker_model.memory_encoder.memory_fuser.layers.0.scale",
    } <= out


def test_rope_tables_and_detector_point_projections_are_dropped():
    sd = {
        "detector.backbone.vision_backbone.trunk.blocks.0.attn.freqs_cis": torch.zeros(
            4, 2, dtype=torch.complex64
        ),
        "detector.geometry_encoder.points_direct_project.weight": torch.zeros(2, 2),
        "detector.geometry_encoder.label_embed.weight": torch.zeros(2, 2),
    }
    assert list(to_our_layout(sd)) == ["detector_model.geometry_encoder.label_embed.weight"]


# ---------------------------------------------------------------------------------------------
# Layout detection and the transformers layouts
# ---------------------------------------------------------------------------------------------


def test_our_layout_is_kept_and_bare_detector_gets_its_prefix(tiny_model):
    ours = tiny_model.state_dict()
    assert detect_layout(ours) == "ours"
    assert to_our_layout(ours).keys() == ours.keys()

    bare = tiny_model.detector_model.state_dict()
    assert detect_layout(bare) == "hf_detector"
    converted = to_our_layout(bare)
    assert set(converted) == {k for k in ours if k.startswith("detector_model.")}
    key = "detector_model.detr_decoder.query_embed.weight"
    assert torch.equal(converted[key], ours[key])


def test_missing_alias_of_the_tracker_fourier_matrix_is_filled(tiny_model):
    sd = dict(tiny_model.state_dict())
    del sd["tracker_model.shared_image_embedding.positional_embedding"]
    out = to_our_layout(sd)
    kept = sd["tracker_model.prompt_encoder.shared_embedding.positional_embedding"]
    assert torch.equal(out["tracker_model.shared_image_embedding.positional_embedding"], kept)


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        (
            [
                "image_encoder.trunk.blocks.0.attn.qkv.weight",
                "memory_attention.layers.0.norm1.weight",
                "sam_mask_decoder.iou_token.weight",
            ],
            "SAM 2 checkpoint",
        ),
        (
            [
                "image_encoder.blocks.0.attn.qkv.weight",
                "prompt_encoder.no_mask_embed.weight",
                "mask_decoder.iou_token.weight",
            ],
            "SAM 1 checkpoint",
        ),
        (
            [
                "shared_image_embedding.positional_embedding",
                "vision_encoder.layers.0.attn.qkv.weight",
                "prompt_encoder.no_mask_embed.weight",
            ],
            r"SAM 1 checkpoint \(transformers",
        ),
        (["encoder.layer.0.weight", "pooler.dense.bias"], "unrecognised checkpoint"),
        ([], "looks like nothing"),
    ],
)
def test_other_models_are_named_and_refused(keys, named):
    with pytest.raises(CheckpointError, match=named) as info:
        detect_layout(dict.fromkeys(keys, torch.zeros(1)))
    assert "SAM 3 checkpoint is expected" in str(info.value)


def test_tracker_head_without_vision_encoder_is_refused(tiny_model):
    with pytest.raises(CheckpointError, match="tracker head without its vision encoder"):
        to_our_layout(tiny_model.tracker_model.state_dict())


# ---------------------------------------------------------------------------------------------
# load_into
# ---------------------------------------------------------------------------------------------


def test_load_into_loads_every_tensor_and_casts_dtype(tiny_model):
    source = {
        k: v.half() if v.is_floating_point() else v for k, v in tiny_model.state_dict().items()
    }
    target = transformers.Sam3VideoModel(_tiny_video_config())
    load_into(target, source)
    for key, value in target.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, source[key].float()), key


def test_load_into_assigns_weights_to_a_meta_model(tiny_model):
    with torch.device("meta"):
        target = transformers.Sam3VideoModel(_tiny_video_config())
    load_into(target, tiny_model.state_dict())
    assert not any(p.is_meta for p in target.parameters())
    key = "tracker_model.mask_decoder.iou_token.weight"
    assert torch.equal(target.state_dict()[key], tiny_model.state_dict()[key])


def test_load_into_reports_missing_unexpected_and_mismatched_keys(tiny_model):
    sd = dict(tiny_model.state_dict())
    for key in [k for k in sd if k.startswith("tracker_model.memory_encoder.")][:12]:
        del sd[key]
    sd["detector_model.extra.weight"] = torch.zeros(1)
    pos = "detector_model.vision_encoder.backbone.embeddings.position_embeddings"
    sd[pos] = torch.zeros(1, 17, 64)
    with pytest.raises(CheckpointError) as info:
        load_into(tiny_model, sd)
    text = str(info.value)
    assert "12 missing from the checkpoint" in text and "... and 2 more" in text
    assert "video memory" in text and "loaded whole or not at all" in text
    assert "1 unexpected in the checkpoint: detector_model.extra.weight" in text
    assert f"{pos}: checkpoint (1, 17, 64) vs model (1, 16, 64)" in text
    assert len(re.findall(r"tracker_model\.memory_encoder\.", text)) == 10


def test_load_into_points_at_conversion_for_unconverted_keys(tiny_model):
    with pytest.raises(CheckpointError, match=r"to_our_layout"):
        load_into(tiny_model, tiny_model.detector_model.state_dict())


def test_parts_missing_from_a_model_that_cannot_record_them_are_refused(tiny_model):
    # transformers' model has no `loaded_parts`, so nothing would stop a call from using the
    # random tracker: a detector-only file is refused, strict or not (ours records it instead:
    # see test_partial_checkpoints.py).
    detector = to_our_layout(tiny_model.detector_model.state_dict())
    target = transformers.Sam3VideoModel(_tiny_video_config())
    for strict in (True, False):
        with pytest.raises(CheckpointError, match="missing from the checkpoint.*tracker_"):
            load_into(target, detector, strict=strict)


def test_shape_mismatch_fails_even_when_not_strict(tiny_model):
    sd = dict(tiny_model.state_dict())
    sd["detector_model.detr_decoder.query_embed.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match="1 shape mismatches"):
        load_into(tiny_model, sd, strict=False)


# ---------------------------------------------------------------------------------------------
# Reading files safely
# ---------------------------------------------------------------------------------------------


def test_safetensors_and_pt_files_read_back(tmp_path):
    sd = {"detector_model.a.weight": torch.randn(2, 3), "tracker_model.b": torch.arange(4)}
    save_file(sd, tmp_path / "model.safetensors")
    torch.save({"model": sd, "epoch": 3}, tmp_path / "wrapped.pt")
    torch.save({"state_dict": sd}, tmp_path / "lightning.pth")
    torch.save(sd, tmp_path / "flat.pt")
    for name in ("model.safetensors", "wrapped.pt", "lightning.pth", "flat.pt"):
        loaded = load_state_dict(tmp_path / name)
        assert loaded.keys() == sd.keys(), name
        assert all(torch.equal(loaded[k], sd[k]) for k in sd), name


class _Payload:
    """A class that a pickled file would have to import and construct."""


def test_pickles_that_need_code_are_refused(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "extra": _Payload()}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="never do"):
        load_state_dict(tmp_path / "code.pt")


def test_non_state_dict_files_are_refused(tmp_path):
    torch.save({"w": torch.zeros(1), "step": 3}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="non-tensor entries.*step"):
        load_state_dict(tmp_path / "mixed.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="download it again"):
        load_state_dict(tmp_path / "broken.safetensors")


def test_load_weights_runs_the_whole_chain(tmp_path, tiny_model):
    sd = dict(tiny_model.state_dict())
    sd["detector_model.extra.weight"] = torch.zeros(1)  # passes only when not strict
    save_file(sd, tmp_path / "model.safetensors")
    target = transformers.Sam3VideoModel(_tiny_video_config())
    with pytest.raises(CheckpointError, match="1 unexpected in the checkpoint"):
        load_weights(target, tmp_path)
    assert load_weights(target, tmp_path, strict=False) == tmp_path / "model.safetensors"
    key = "detector_model.mask_decoder.semantic_projection.weight"
    assert torch.equal(target.state_dict()[key], tiny_model.state_dict()[key])
