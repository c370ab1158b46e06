"""Regenerate tests/core/data/multiplex_goldens.npz: SAM 3.1 module outputs from Meta's code.

Meta's modules are built at our `sam3.1_tiny` sizes, their weights perturbed (so outputs depend
on the inputs), run on seeded random inputs in fp32 on the CPU, and saved with the weights (under
their `sam3.1_multiplex.pt` names), inputs and outputs. Weights and inputs are rounded to fp16
precision first and stored as fp16 (exactly, at half the size); outputs are fp32. The tests load those weights through our
own key converter into our modules and compare, so CI never needs Meta's code.

Meta's code: facebookresearch/sam3 at commit 96914d2425f90a64f45ca977c2b5165418099543
(2026-07-30; the fork tatsy/sam3 carries it), put on sys.path, never copied here. It needs
torch and, besides our `.venv`'s packages, `iopath portalocker timm einops psutil
"setuptools<81"` (e.g. `pip install --target DIR`):

    git -C MIRROR archive 96914d2 sam3 | tar -x -C SAM3_CHECKOUT
    PYTHONPATH=.:SAM3_CHECKOUT:DIR:tests/core/weights/data \
        python tools/make_multiplex_goldens.py [OUT_NPZ [MASK_NPZ]]

Sections (key prefixes in the npz): `decoder/` the multiplex mask decoder with the
valid/invalid slot embeddings and the propagation image encoding; `memory_encoder/` the memory
encoder on 2 x multiplex_count mask channels; `memory_attention/` the decoupled memory
attention with object-pointer tokens; `state/` mux/demux and bucket bookkeeping; `tracker/`
Meta's per-frame glue (memory encoding with conditioning channels, the propagation heads with
demux and object pointers, pointer temporal encodings) on the modules of the sections above;
`memory/` Meta's memory conditioning of a frame (which memory frames and pointers, their
temporal encodings, the decoupled attention) from stored frame outputs; `video/` Meta's
`track_step` over 6 frames (clicks on 5 objects in 2 buckets, then propagation), with the
interactive head's weights and Meta's own rounding spread per frame (`video/spread/`: how far
its outputs move when every weight moves by one fp32 rounding step, the largest of 3 draws);
`mask/` (written to a second file, `multiplex_mask_goldens.npz`) Meta's mask-as-output path:
`_use_mask_as_output` on 3 masks (one empty), then `add_new_masks_to_existing_state` adding 2
detections into the free slots of a propagated frame of 5 objects and re-encoding its memory
(how SAM 3.1's video model starts concept tracks). Each holds
`w/<checkpoint key>`, `in/<name>` and `out/<name>`. Not here: the three neck heads, which are
our SAM 3 `FPNNeck` (parity-tested with SAM 3) under 3.1's key names (tested against Meta's full
3.1 key list). Reruns give identical files (seeded) with the same torch version.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from sam3_core.config import sam3_1_tiny
from tests.reference import perturb_, ulp_perturbed

UPSTREAM_COMMIT = "96914d2425f90a64f45ca977c2b5165418099543"
DATA = Path(__file__).resolve().parent.parent / "tests/core/data"
DEFAULT_OUT = DATA / "multiplex_goldens.npz"
DEFAULT_MASK_OUT = DATA / "multiplex_mask_goldens.npz"
TRACKER = "tracker.model."


def _half(x: torch.Tensor) -> torch.Tensor:
    """x rounded to fp16 precision (kept fp32): stored as fp16 without loss, half the bytes."""
    return x.half().float()


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Perturb the weights (informative outputs), rounded to fp16 precision."""
    perturb_(module, seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(_half(p))


def _weights(out: dict, section: str, prefix: str, module: torch.nn.Module) -> None:
    for k, v in module.state_dict().items():
        value = v.detach()
        exact = value.is_floating_point() and torch.equal(_half(value), value)
        out[f"{section}/w/{prefix}{k}"] = (value.half() if exact else value).numpy().copy()


def decoder_case(out: dict, gen: torch.Generator) -> dict[str, torch.nn.Module]:
    """MultiplexMaskDecoder + image_pe_layer + output_valid/invalid_embed, as Meta's
    `_forward_sam_heads` combines them on the propagation path."""
    from sam3.model.multiplex_mask_decoder import MultiplexMaskDecoder
    from sam3.sam.prompt_encoder import PositionEmbeddingRandom
    from sam3.sam.transformer import TwoWayTransformer

    cfg = sam3_1_tiny()
    t, m = cfg.tracker, cfg.multiplex.multiplex_count
    d, grid = t.hidden_size, cfg.vit.image_size // cfg.vit.patch_size
    decoder = MultiplexMaskDecoder(
        multiplex_count=m,
        num_multimask_outputs=t.num_multimask_outputs,
        transformer=TwoWayTransformer(
            depth=t.num_layers, embedding_dim=d, mlp_dim=t.mlp_dim, num_heads=t.num_heads
        ),
        transformer_dim=d,
        iou_head_depth=t.iou_head_depth,
        iou_head_hidden_dim=t.iou_head_hidden_dim,
        use_high_res_features=True,
        iou_prediction_use_sigmoid=False,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        use_multimask_token_for_obj_ptr=True,
        multimask_outputs_only=True,
    ).eval()
    pe_layer = PositionEmbeddingRandom(d // 2)
    embeds = torch.nn.ParameterDict(
        {
            "output_valid_embed": torch.nn.Parameter(torch.zeros(m, d)),
            "output_invalid_embed": torch.nn.Parameter(torch.zeros(m, d)),
        }
    )
    for i, module in enumerate((decoder, pe_layer, embeds)):
        _perturb(module, 100 + i)
    buckets = 2
    image = _half(torch.randn(buckets, d, grid, grid, generator=gen))
    s0 = _half(torch.randn(buckets, d // 8, 4 * grid, 4 * grid, generator=gen))
    s1 = _half(torch.randn(buckets, d // 4, 2 * grid, 2 * grid, generator=gen))
    valid = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0]], dtype=torch.bool)[:, :m]
    with torch.no_grad():
        v = valid.unsqueeze(-1).float()
        extra = (
            v * embeds["output_valid_embed"][None] + (1 - v) * embeds["output_invalid_embed"][None]
        )
        image_pe = pe_layer((grid, grid)).unsqueeze(0)
        res = decoder(
            image_embeddings=image,
            image_pe=image_pe,
            high_res_features=[s0, s1],
            multimask_output=True,
            extra_per_object_embeddings=extra,
        )
    _weights(out, "decoder", TRACKER + "sam_mask_decoder.", decoder)
    _weights(out, "decoder", TRACKER + "image_pe_layer.", pe_layer)
    for name, p in embeds.items():
        out[f"decoder/w/{TRACKER}{name}"] = p.detach().half().numpy()
    for name, x in {"image": image, "s0": s0, "s1": s1, "valid": valid}.items():
        out[f"decoder/in/{name}"] = x.half().numpy() if x.is_floating_point() else x.numpy()
    out["decoder/out/image_pe"] = image_pe.numpy()
    for name in ("masks", "iou_pred", "sam_tokens_out", "object_score_logits"):
        out[f"decoder/out/{name}"] = res[name].numpy()
    return {"sam_mask_decoder": decoder, "image_pe_layer": pe_layer, "embeds": embeds}


def memory_encoder_case(out: dict, gen: torch.Generator) -> dict[str, torch.nn.Module]:
    """SimpleMaskEncoder with the multiplex mask downsampler (as Meta's 3.1 builder makes it)."""
    from sam3.model.memory import CXBlock, SimpleFuser, SimpleMaskDownSampler, SimpleMaskEncoder
    from sam3.model.position_encoding import PositionEmbeddingSine

    cfg = sam3_1_tiny()
    t, mx = cfg.tracker, cfg.multiplex
    d, grid = t.hidden_size, cfg.vit.image_size // cfg.vit.patch_size
    encoder = SimpleMaskEncoder(
        out_dim=d,
        position_encoding=PositionEmbeddingSine(num_pos_feats=d, normalize=True),
        mask_downsampler=SimpleMaskDownSampler(
            embed_dim=d,
            kernel_size=t.mask_downsampler_kernel_size,
            stride=t.mask_downsampler_stride,
            padding=t.mask_downsampler_kernel_size // 2,
            interpol_size=[16 * grid, 16 * grid],
            multiplex_count=mx.multiplex_count,
            starting_out_chan=mx.mask_downsampler_first_channels,
            input_channel_multiplier=mx.mask_input_channel_multiplier,
        ),
        fuser=SimpleFuser(
            CXBlock(dim=d, kernel_size=7, padding=3, layer_scale_init_value=1e-6),
            num_layers=t.memory_fuser_num_layers,
        ),
        in_dim=d,
    ).eval()
    _perturb(encoder, 200)
    channels = mx.multiplex_count * mx.mask_input_channel_multiplier
    image = _half(torch.randn(2, d, grid, grid, generator=gen))
    masks = _half(torch.rand(2, channels, 16 * grid, 16 * grid, generator=gen) * 2 - 1)
    with torch.no_grad():
        res = encoder(image, masks, skip_mask_sigmoid=True)
    _weights(out, "memory_encoder", TRACKER + "maskmem_backbone.", encoder)
    out["memory_encoder/in/image"] = image.half().numpy()
    out["memory_encoder/in/masks"] = masks.half().numpy()
    out["memory_encoder/out/memory"] = res["vision_features"].numpy()
    out["memory_encoder/out/pos"] = res["vision_pos_enc"][0].numpy()
    return {"maskmem_backbone": encoder}


def memory_attention_case(out: dict, gen: torch.Generator) -> dict[str, torch.nn.Module]:
    """TransformerEncoderDecoupledCrossAttention as Meta's 3.1 builder makes it (eval: no
    dropout), called as `_prepare_memory_conditioned_features` calls it."""
    from sam3.model.decoder import (
        DecoupledTransformerDecoderLayerv2,
        SimpleRoPEAttention,
        TransformerEncoderDecoupledCrossAttention,
    )

    cfg = sam3_1_tiny()
    mx, d = cfg.multiplex, cfg.tracker.hidden_size
    grid = cfg.vit.image_size // cfg.vit.patch_size

    def rope(repeat: bool) -> SimpleRoPEAttention:
        return SimpleRoPEAttention(
            d_model=d,
            num_heads=mx.memory_attention_num_heads,
            dropout_p=0.1,
            rope_theta=mx.memory_attention_rope_theta,
            feat_sizes=[grid, grid],
            rope_k_repeat=repeat,
        )

    layer = DecoupledTransformerDecoderLayerv2(
        activation="gelu",
        d_model=d,
        num_heads=mx.memory_attention_num_heads,
        dropout=0.1,
        dim_feedforward=mx.memory_attention_mlp_dim,
        pos_enc_at_attn=False,
        pre_norm=True,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        self_attention_rope=rope(False),
        cross_attention_rope=rope(True),
    )
    encoder = TransformerEncoderDecoupledCrossAttention(
        d_model=d,
        frozen=False,
        pos_enc_at_input=True,
        use_image_in_output=False,
        layer=layer,
        num_layers=mx.num_memory_attention_layers,
        batch_first=True,
    ).eval()
    _perturb(encoder, 300)
    buckets, frames, pointers, hw = 2, 3, 2 * mx.multiplex_count, grid * grid
    image = _half(torch.randn(hw, 1, d, generator=gen))
    image_pos = _half(torch.randn(hw, 1, d, generator=gen))
    memory_image = _half(torch.randn(frames * hw, 1, d, generator=gen))
    memory_image_pos = _half(torch.randn(frames * hw, 1, d, generator=gen))
    memory = _half(torch.randn(frames * hw + pointers, buckets, d, generator=gen))
    memory_pos = _half(torch.randn(frames * hw + pointers, buckets, d, generator=gen))
    with torch.no_grad():
        res = encoder(
            image=image,
            src=image.expand(-1, buckets, -1),
            memory_image=memory_image,
            memory=memory,
            image_pos=image_pos,
            src_pos=image_pos.expand(-1, buckets, -1),
            memory_image_pos=memory_image_pos,
            memory_pos=memory_pos,
            num_obj_ptr_tokens=pointers,
        )
    _weights(out, "memory_attention", TRACKER + "transformer.encoder.", encoder)
    for name, x in {
        "image": image,
        "image_pos": image_pos,
        "memory_image": memory_image,
        "memory_image_pos": memory_image_pos,
        "memory": memory,
        "memory_pos": memory_pos,
    }.items():
        out[f"memory_attention/in/{name}"] = x.half().numpy()  # sequence-first [L, B, C]
    out["memory_attention/in/num_pointers"] = np.array(pointers)
    out["memory_attention/out/memory"] = res["memory"].numpy()  # [hw, B, C]
    return {"transformer.encoder": encoder}


def state_case(out: dict, gen: torch.Generator) -> dict[str, torch.nn.Module]:
    """MultiplexState: mux/demux, valid mask, then adding and removing objects."""
    from sam3.model.multiplex_utils import MultiplexState

    assignments = [[0, 2, -1, 1], [3, -1116, 4, -1]]
    state = MultiplexState([list(b) for b in assignments], torch.device("cpu"), torch.float32, 4)
    x = _half(torch.randn(5, 3, 2, generator=gen))
    out["state/in/assignments"] = np.array(assignments)
    out["state/in/x"] = x.half().numpy()
    out["state/out/mux"] = state.mux(x).numpy()
    out["state/out/demux"] = state.demux(state.mux(x)).numpy()
    out["state/out/valid"] = state.get_valid_object_mask().numpy()
    state.add_objects([5, 6, 7, 8], allow_new_buckets=True)
    out["state/out/after_add"] = np.array(state.assignments)
    state.remove_objects([0, 3, 4])
    out["state/out/after_remove"] = np.array(state.assignments)
    return {}


def meta_tiny_tracker() -> torch.nn.Module:
    """Meta's `VideoTrackingDynamicMultiplex` with the options of its 3.1 builder at our
    `sam3.1_tiny` sizes (the builder hard-codes the SAM heads' full sizes, so the module's
    TwoWayTransformer / decoder names are wrapped to take the tiny ones), no backbone."""
    import sam3.model.video_tracking_multiplex as vtm
    from sam3.model.model_misc import TransformerWrapper
    from sam3.model.multiplex_utils import MultiplexController

    cfg = sam3_1_tiny()
    t, mx = cfg.tracker, cfg.multiplex
    two_way, decoders = vtm.TwoWayTransformer, (vtm.MaskDecoder, vtm.MultiplexMaskDecoder)
    vtm.TwoWayTransformer = lambda **kw: two_way(
        **{**kw, "mlp_dim": t.mlp_dim, "num_heads": t.num_heads}
    )
    vtm.MaskDecoder, vtm.MultiplexMaskDecoder = (
        lambda cls=cls, **kw: cls(**{**kw, "iou_head_hidden_dim": t.iou_head_hidden_dim})
        for cls in decoders
    )
    placeholder = torch.nn.Identity()  # replaced by the modules of the other cases
    try:
        return vtm.VideoTrackingDynamicMultiplex(
            backbone=torch.nn.Module(),
            transformer=TransformerWrapper(
                encoder=placeholder, decoder=None, d_model=t.hidden_size
            ),
            maskmem_backbone=placeholder,
            multiplex_controller=MultiplexController(
                multiplex_count=mx.multiplex_count, eval_multiplex_count=mx.multiplex_count
            ),
            image_size=cfg.vit.image_size,
            backbone_stride=cfg.vit.patch_size,
            num_maskmem=mx.num_memory_frames,
            use_high_res_features_in_sam=True,
            use_obj_ptrs_in_encoder=True,
            max_obj_ptrs_in_encoder=mx.max_object_pointers_in_encoder,
            add_tpos_enc_to_obj_ptrs=True,
            proj_tpos_enc_in_obj_ptrs=True,
            use_mlp_for_obj_ptr_proj=True,
            pred_obj_scores=True,
            pred_obj_scores_mlp=True,
            fixed_no_obj_ptr=True,
            use_no_obj_ptr=True,
            use_linear_no_obj_ptr=True,
            no_obj_embed_spatial=True,
            sincos_tpos_enc=True,
            multimask_output_in_sam=True,
            multimask_output_for_tracking=True,
            multimask_min_pt_num=0,
            multimask_max_pt_num=1,
            use_multimask_token_for_obj_ptr=True,
            num_multimask_outputs=t.num_multimask_outputs,
            apply_sigmoid_to_mask_logits_for_mem_enc=True,
            sigmoid_scale_for_mem_enc=mx.sigmoid_scale_for_mem_enc,
            sigmoid_bias_for_mem_enc=mx.sigmoid_bias_for_mem_enc,
            non_overlap_masks_for_mem_enc=False,
            add_output_suppression_embeddings=True,
            add_object_conditional_embeddings=False,
            condition_as_mask_input=True,
            condition_as_mask_input_fg=1.0,
            condition_as_mask_input_bg=0.0,
            use_maskmem_tpos_v2=True,
            save_image_features=True,
            randomness_fix=True,
            use_mask_input_as_output_without_sam=True,
            directly_add_no_mem_embed=True,
            iou_prediction_use_sigmoid=False,
            forward_backbone_per_frame_for_eval=True,
            offload_output_to_cpu_for_eval=False,
            trim_past_non_cond_mem_for_eval=False,
            max_cond_frames_in_attn=mx.max_cond_frame_num,
            is_dynamic_model=True,
            sam_mask_decoder_extra_args={
                "dynamic_multimask_via_stability": True,
                "dynamic_multimask_stability_delta": 0.05,
                "dynamic_multimask_stability_thresh": 0.98,
            },
            compile_all_components=False,
            use_memory_selection=False,
        ).eval()
    finally:
        vtm.TwoWayTransformer, (vtm.MaskDecoder, vtm.MultiplexMaskDecoder) = two_way, decoders


def tracker_case(out: dict, gen: torch.Generator, modules: dict[str, torch.nn.Module]) -> None:
    """Meta's per-frame glue on the multiplex modules of the cases above: `_encode_new_memory`
    (mask and conditioning channels, mux, no-object embedding), `_forward_sam_heads` on the
    propagation path (demux, gating, best mask, object pointers) and `_get_tpos_enc`. Only the
    small tensors the other sections lack are stored here."""
    from sam3.model.multiplex_utils import MultiplexState

    torch.Tensor.pin_memory = lambda self, *a, **k: self  # `_get_tpos_enc` pins for CUDA
    cfg = sam3_1_tiny()
    d, size = cfg.tracker.hidden_size, cfg.vit.image_size
    grid = size // cfg.vit.patch_size
    tracker = meta_tiny_tracker()
    tracker.sam_mask_decoder = modules["sam_mask_decoder"]
    tracker.image_pe_layer = modules["image_pe_layer"]
    tracker.maskmem_backbone = modules["maskmem_backbone"]
    tracker.transformer.encoder = modules["transformer.encoder"]
    with torch.no_grad():
        for name, p in modules["embeds"].items():
            getattr(tracker, name).copy_(p)
    extra = ("obj_ptr_proj", "no_obj_ptr_linear", "obj_ptr_tpos_proj")
    for i, name in enumerate(extra):
        _perturb(getattr(tracker, name), 500 + i)
    small = torch.nn.ParameterDict(
        {
            "no_obj_embed_spatial": tracker.no_obj_embed_spatial,
            "maskmem_tpos_enc": tracker.maskmem_tpos_enc,
        }
    )
    _perturb(small, 510)
    for name in extra:
        _weights(out, "tracker", f"{TRACKER}{name}.", getattr(tracker, name))
    for name, p in small.items():
        out[f"tracker/w/{TRACKER}{name}"] = p.detach().half().numpy()

    assignments = [[0, 1, 2, 3], [4, -1, -1, -1]]
    state = MultiplexState([list(b) for b in assignments], torch.device("cpu"), torch.float32, 4)
    feat = _half(torch.randn(1, d, grid, grid, generator=gen))
    masks = _half(torch.randn(5, 1, size, size, generator=gen) * 4)
    scores = torch.tensor([[2.0], [-1.5], [0.5], [-0.25], [3.0]])
    conditioning = [0, 3]
    memory, pos = tracker._encode_new_memory(
        image=None,
        current_vision_feats=[feat.flatten(2).permute(2, 0, 1)],
        feat_sizes=[(grid, grid)],
        pred_masks_high_res=masks,
        object_score_logits=scores,
        is_mask_from_pts=False,
        conditioning_objects=set(conditioning),
        multiplex_state=state,
    )
    for _ in range(50):  # inputs under which some objects are present and some absent
        embed = _half(torch.randn(2, d, grid, grid, generator=gen) * 3)
        s0 = _half(torch.randn(2, d // 8, 4 * grid, 4 * grid, generator=gen))
        s1 = _half(torch.randn(2, d // 4, 2 * grid, 2 * grid, generator=gen))
        heads = tracker._forward_sam_heads(
            backbone_features=embed,
            propagation_high_res_features=[s0, s1],
            multimask_output=True,
            multiplex_state=state,
        )
        present = heads["object_score_logits"] > 0
        if present.any() and not present.all():
            break
    else:
        raise RuntimeError("no inputs found with both present and absent objects")
    offsets, window = [0, 1, 3, 6], 7
    tpos = tracker._get_tpos_enc(offsets, device=torch.device("cpu"), max_abs_pos=window)
    inputs = {"assignments": torch.tensor(assignments), "feat": feat, "masks": masks}
    inputs |= {"scores": scores, "conditioning": torch.tensor(conditioning)}
    inputs |= {"embed": embed, "s0": s0, "s1": s1, "offsets": torch.tensor(offsets)}
    inputs |= {"window": torch.tensor(window)}
    for name, x in inputs.items():
        out[f"tracker/in/{name}"] = x.half().numpy() if x.is_floating_point() else x.numpy()
    out["tracker/out/memory"] = memory.numpy()
    out["tracker/out/memory_pos"] = pos[0].numpy()
    for name in ("low_res_multimasks", "ious", "low_res_masks", "high_res_masks", "obj_ptr"):
        out[f"tracker/out/{name}"] = heads[name].numpy()
    out["tracker/out/object_score_logits"] = heads["object_score_logits"].numpy()
    out["tracker/out/tpos"] = tpos.numpy()
    memory_case(out, gen, tracker, state)
    video_case(out, gen, tracker)
    mask_case(out, gen, tracker)


def memory_case(out: dict, gen: torch.Generator, tracker, state) -> None:
    """Meta's `_prepare_memory_conditioned_features` on frame 5 of 10: conditioning frames 0
    and 7 (a later one), earlier frames 1, 3 and 4 (2 missing), their memories, image
    features and muxed object pointers as `track_step` stores them."""
    cfg = sam3_1_tiny()
    d = cfg.tracker.hidden_size
    grid = cfg.vit.image_size // cfg.vit.patch_size
    hw, buckets, slots = grid * grid, state.num_buckets, state.multiplex_count
    cond, recent, frame, num_frames = [0, 7], [1, 3, 4], 5, 10

    def stored(t: int) -> dict:
        seq = lambda: _half(torch.randn(hw, 1, d, generator=gen))
        grid_map = lambda: _half(torch.randn(buckets, d, grid, grid, generator=gen))
        return {
            "maskmem_features": grid_map(),
            "maskmem_pos_enc": [grid_map()],
            "image_features": seq(),
            "image_pos_enc": seq(),
            "obj_ptr": _half(torch.randn(buckets, slots, d, generator=gen)),
        }

    outputs = {t: stored(t) for t in cond + recent}
    feat = _half(torch.randn(hw, 1, d, generator=gen))
    pos = _half(torch.randn(hw, 1, d, generator=gen))
    from tests.core.weights.data.dump_official_sam31_keys import CudaToCpu

    with CudaToCpu():  # Meta moves stored memories with .cuda()
        result = tracker._prepare_memory_conditioned_features(
            frame_idx=frame,
            is_init_cond_frame=False,
            current_vision_feats=[feat],
            current_vision_masks=[None],
            current_vision_pos_embeds=[pos],
            feat_sizes=[(grid, grid)],
            output_dict={
                "cond_frame_outputs": {t: outputs[t] for t in cond},
                "non_cond_frame_outputs": {t: outputs[t] for t in recent},
            },
            num_frames=num_frames,
            multiplex_state=state,
        )
    for t, o in outputs.items():
        for name in ("maskmem_features", "image_features", "image_pos_enc", "obj_ptr"):
            out[f"memory/in/{t}/{name}"] = o[name].half().numpy()
        out[f"memory/in/{t}/maskmem_pos_enc"] = o["maskmem_pos_enc"][0].half().numpy()
    out["memory/in/feat"] = feat.half().numpy()
    out["memory/in/pos"] = pos.half().numpy()
    out["memory/out/conditioned"] = result.numpy()


def video_case(out: dict, gen: torch.Generator, tracker) -> None:
    """Meta's `track_step` over 6 frames: one positive click on each of 5 objects (2 buckets)
    on frame 0, then propagation with memory. Each frame's neck levels are stored at the
    coarsest size only; the finer ones are its nearest-neighbour upsamplings (x2, x4) before
    the decoders' conv_s0/conv_s1, which both sides compute the same way."""
    from sam3.model.multiplex_utils import MultiplexState

    from tests.core.weights.data.dump_official_sam31_keys import CudaToCpu

    cfg = sam3_1_tiny()
    d, size = cfg.tracker.hidden_size, cfg.vit.image_size
    grid = size // cfg.vit.patch_size
    head = ("interactive_sam_prompt_encoder", "interactive_sam_mask_decoder")
    head += ("interactive_obj_ptr_proj",)
    for i, name in enumerate(head):
        _perturb(getattr(tracker, name), 600 + i)
        _weights(out, "video", f"{TRACKER}{name}.", getattr(tracker, name))
    no_mem = torch.nn.ParameterDict(
        {"interactivity_no_mem_embed": tracker.interactivity_no_mem_embed}
    )
    _perturb(no_mem, 610)
    out[f"video/w/{TRACKER}interactivity_no_mem_embed"] = (
        no_mem["interactivity_no_mem_embed"].detach().half().numpy()
    )

    def seq(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).permute(2, 0, 1)

    def levels(top: torch.Tensor, decoder) -> list[torch.Tensor]:
        up = lambda k: torch.nn.functional.interpolate(top, scale_factor=k, mode="nearest")
        return [seq(decoder.conv_s0(up(4))), seq(decoder.conv_s1(up(2))), seq(top)]

    num_frames, num_objects = 6, 5
    sizes = [(4 * grid, 4 * grid), (2 * grid, 2 * grid), (grid, grid)]
    labels = torch.ones(num_objects, 1, dtype=torch.int32)

    def run(clicks, frames, tracker=tracker) -> list[dict]:
        state = MultiplexState(
            [[0, 1, 2, 3], [4, -1, -1, -1]], torch.device("cpu"), torch.float32, 4
        )
        output_dict: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        results = []
        for t, (inter, prop, prop_pos) in enumerate(frames):
            points = {"point_coords": clicks, "point_labels": labels} if t == 0 else None
            with CudaToCpu():
                res = tracker.track_step(
                    frame_idx=t,
                    is_init_cond_frame=t == 0,
                    backbone_features_interactive={
                        "vision_feats": levels(inter, tracker.interactive_sam_mask_decoder),
                        "feat_sizes": sizes,
                    },
                    backbone_features_propagation={
                        "vision_feats": levels(prop, tracker.sam_mask_decoder),
                        "vision_masks": [None] * 3,
                        "vision_pos_embeds": [None, None, seq(prop_pos)],
                        "feat_sizes": sizes,
                    },
                    image=None,
                    point_inputs=points,
                    mask_inputs=None,
                    gt_masks=None,
                    frames_to_add_correction_pt=[],
                    output_dict=output_dict,
                    num_frames=num_frames,
                    multiplex_state=state,
                )
            output_dict["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"][t] = res
            results.append(res)
        return results

    for attempt in range(40):  # inputs under which the propagated objects are often present
        clicks = torch.randint(8, size - 8, (num_objects, 1, 2), generator=gen).float()
        scale = 1.0 + attempt % 4
        frames = [
            tuple(_half(torch.randn(1, d, grid, grid, generator=gen) * k) for k in (1, scale, 1))
            for _ in range(num_frames)
        ]
        results = run(clicks, frames)
        scores = torch.stack([r["object_score_logits"] for r in results[1:]])
        if (scores > 0).sum() >= 10 and (scores <= 0).any() and scores.abs().min() > 0.01:
            break
    else:
        raise RuntimeError("no inputs found with enough present objects")
    for t, (res, inputs) in enumerate(zip(results, frames, strict=True)):
        for name, x in zip(("interactive", "propagation", "propagation_pos"), inputs, strict=True):
            out[f"video/in/{t}/{name}"] = x.half().numpy()
        out[f"video/out/{t}/masks"] = res["pred_masks"].numpy()
        out[f"video/out/{t}/scores"] = res["object_score_logits"].numpy()
        out[f"video/out/{t}/pointers"] = res["obj_ptr"].numpy()  # muxed [B, m, C]
    # Meta's own fp32 rounding spread: the memory recurrence amplifies rounding frame by frame,
    # so a faithful re-implementation (other kernels, other summation order) differs by about
    # as much as Meta's model does from itself with every weight moved by one rounding step.
    keys = {"masks": "pred_masks", "scores": "object_score_logits", "pointers": "obj_ptr"}
    spread = {(t, k): 0.0 for t in range(num_frames) for k in keys}
    for seed in range(3):
        moved = run(clicks, frames, tracker=ulp_perturbed(tracker, seed))
        for t, (a, b) in enumerate(zip(results, moved, strict=True)):
            for k, key in keys.items():
                diff = (a[key] - b[key]).abs().max().item()
                spread[t, k] = max(spread[t, k], diff)
    for (t, k), value in spread.items():
        out[f"video/spread/{t}/{k}"] = np.array(value, dtype=np.float32)
    out["video/in/clicks"] = clicks.numpy()


def _blobs(side: int, gen: torch.Generator) -> torch.Tensor:
    """4 binary masks [4, 1, side, side]: a rectangle, an ellipse, a random-edged blob, empty."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    rect = (yy >= side // 8) & (yy < side // 2) & (xx >= side // 4) & (xx < 3 * side // 4)
    ellipse = ((yy - 0.6 * side) / (0.2 * side)) ** 2 + ((xx - 0.4 * side) / (0.3 * side)) ** 2
    noise = torch.rand(side // 8, side // 8, generator=gen)[None, None]
    blob = torch.nn.functional.interpolate(noise, size=(side, side), mode="bilinear")[0, 0]
    masks = [rect, ellipse <= 1, blob > 0.6, torch.zeros_like(rect)]
    return torch.stack(masks)[:, None]


def mask_case(out: dict, gen: torch.Generator, tracker) -> None:
    """Meta's mask-as-output path on the tracker of the video case: `_use_mask_as_output` for
    3 masks (the last empty: absent), then `add_new_masks_to_existing_state` adding 2 masks as
    new objects to a propagated frame of 5 objects (2 buckets of 4; they take bucket 1's free
    slots) and re-encoding that frame's memory with their conditioning channels."""
    from sam3.model.multiplex_utils import MultiplexState

    cfg = sam3_1_tiny()
    d, size = cfg.tracker.hidden_size, cfg.vit.image_size
    grid = size // cfg.vit.patch_size
    side = tracker.input_mask_size
    assert side == 16 * grid
    _perturb(tracker.interactive_mask_downsample, 620)
    _weights(
        out, "mask", f"{TRACKER}interactive_mask_downsample.", tracker.interactive_mask_downsample
    )

    def seq(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).permute(2, 0, 1)

    decoder = tracker.interactive_sam_mask_decoder
    up = lambda x, k: torch.nn.functional.interpolate(x, scale_factor=k, mode="nearest")
    inter = _half(torch.randn(1, d, grid, grid, generator=gen))
    prop = _half(torch.randn(1, d, grid, grid, generator=gen))
    high = [decoder.conv_s0(up(inter, 4)), decoder.conv_s1(up(inter, 2))]
    sizes = [(4 * grid, 4 * grid), (2 * grid, 2 * grid), (grid, grid)]
    pix = tracker._get_interactive_pix_mem([*map(seq, high), seq(inter)], sizes)
    blobs = _blobs(side, gen).float()
    masks = blobs[[0, 1, 3]]
    state = MultiplexState([[0, 1, 2, -1]], torch.device("cpu"), torch.float32, 4)
    single = tracker._use_mask_as_output(
        backbone_features=pix, high_res_features=high, mask_inputs=masks, multiplex_state=state
    )
    # a propagated frame of 5 objects (outputs rounded to fp16, stored exactly)
    state = MultiplexState([[0, 1, 2, 3], [4, -1, -1, -1]], torch.device("cpu"), torch.float32, 4)
    low = _half(torch.randn(5, 1, 4 * grid, 4 * grid, generator=gen) * 4)
    scores = torch.tensor([[2.0], [-1.5], [0.5], [3.0], [-0.25]])
    pointers = _half(torch.randn(5, d, generator=gen))
    prev = {
        "pred_masks": low,
        "pred_masks_high_res": torch.nn.functional.interpolate(
            low, size=(size, size), mode="bilinear", align_corners=False
        ),
        "object_score_logits": scores,
        "obj_ptr": state.mux(pointers),
        "conditioning_objects": set(),
        "image_features": seq(prop),
        "image_pos_enc": seq(prop),
    }
    new = blobs[[1, 2]]
    tracker.add_new_masks_to_existing_state(
        interactive_pix_feat=pix,
        interactive_high_res_features=high,
        propagation_vision_feats=[seq(prop)],
        propagation_feat_sizes=[(grid, grid)],
        new_masks=new,
        obj_idxs_in_mask=[5, 6],
        obj_ids_in_mask=None,
        prev_output=prev,
        multiplex_state=state,
        add_mask_to_memory=True,
    )
    inputs = {"interactive": inter, "propagation": prop, "low": low, "scores": scores}
    inputs |= {"pointers": pointers}
    for name, x in inputs.items():
        out[f"mask/in/{name}"] = x.half().numpy()
    out["mask/in/blobs"] = blobs.bool().numpy()
    for name in ("low_res_masks", "object_score_logits", "obj_ptr"):
        out[f"mask/out/single/{name}"] = single[name].numpy()
    out["mask/out/assignments"] = np.array(state.assignments)
    out["mask/out/conditioning"] = np.array(sorted(prev["conditioning_objects"]))
    for name in ("pred_masks", "object_score_logits", "obj_ptr", "maskmem_features"):
        out[f"mask/out/{name}"] = prev[name].numpy()
    out["mask/out/maskmem_pos_enc"] = prev["maskmem_pos_enc"][0].numpy()


def main(out_path: str, mask_path: str) -> None:
    """Run every case and write the npz files."""
    torch.cuda.get_device_properties = lambda *_: SimpleNamespace(major=0, minor=0)
    torch.set_grad_enabled(False)
    out: dict[str, np.ndarray] = {
        "upstream_commit": np.array(UPSTREAM_COMMIT),
        "torch_version": np.array(torch.__version__),
    }
    cases = (decoder_case, memory_encoder_case, memory_attention_case, state_case)
    modules: dict[str, torch.nn.Module] = {}
    for i, case in enumerate(cases):
        torch.manual_seed(i)  # the modules' default initialisation, before the perturbation
        modules |= case(out, torch.Generator().manual_seed(i))
    torch.manual_seed(len(cases))
    tracker_case(out, torch.Generator().manual_seed(len(cases)), modules)
    mask = {k: v for k, v in out.items() if k.startswith("mask/")}
    stamp = {k: out[k] for k in ("upstream_commit", "torch_version")}
    for path, arrays in (
        (out_path, {k: v for k, v in out.items() if k not in mask}),
        (mask_path, stamp | mask),
    ):
        np.savez_compressed(path, **arrays)
        size = Path(path).stat().st_size / 2**20
        print(f"wrote {len(arrays)} arrays ({size:.2f} MiB) to {path}")


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_OUT),
        sys.argv[2] if len(sys.argv) > 2 else str(DEFAULT_MASK_OUT),
    )
