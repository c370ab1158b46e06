"""Builds the transformers reference from our configs, and perturbs random weights.

Device rules: a reference built from one of our models lands on that model's device, one built
from a config on `device` (default cpu); random perturbations are drawn on the CPU and copied
to each weight's device, so the weights are the same numbers on every device. Test-only:
transformers is not a runtime dependency of sam3_core.
"""

from __future__ import annotations

import math

import torch

from sam3_core.config import Sam3Config


def hf_detector_config(cfg: Sam3Config):
    """The transformers `Sam3Config` equal to our config's detector part."""
    from transformers import Sam3Config as HFSam3Config

    t = cfg.text
    sizes = [[s, s] for s in cfg.feature_sizes[:3]]
    return HFSam3Config(
        vision_config={
            "model_type": "sam3_vision_model",
            "backbone_config": hf_vit_config(cfg),
            "fpn_hidden_size": cfg.neck.fpn_hidden_size,
            "scale_factors": list(cfg.neck.scale_factors),
            "backbone_feature_sizes": sizes,
        },
        text_config={
            "model_type": "clip_text_model",
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_layers,
            "num_attention_heads": t.num_heads,
            "max_position_embeddings": t.max_position_embeddings,
            "projection_dim": t.projection_dim,
            "hidden_act": "gelu",
            "layer_norm_eps": t.layer_norm_eps,
        },
        geometry_encoder_config={
            "model_type": "sam3_geometry_encoder",
            "hidden_size": cfg.geometry.hidden_size,
            "num_layers": cfg.geometry.num_layers,
            "num_attention_heads": cfg.geometry.num_heads,
            "intermediate_size": cfg.geometry.intermediate_size,
            "roi_size": cfg.geometry.roi_size,
        },
        detr_encoder_config={
            "model_type": "sam3_detr_encoder",
            "hidden_size": cfg.detr_encoder.hidden_size,
            "num_layers": cfg.detr_encoder.num_layers,
            "num_attention_heads": cfg.detr_encoder.num_heads,
            "intermediate_size": cfg.detr_encoder.intermediate_size,
        },
        detr_decoder_config={
            "model_type": "sam3_detr_decoder",
            "hidden_size": cfg.detr_decoder.hidden_size,
            "num_layers": cfg.detr_decoder.num_layers,
            "num_queries": cfg.detr_decoder.num_queries,
            "num_attention_heads": cfg.detr_decoder.num_heads,
            "intermediate_size": cfg.detr_decoder.intermediate_size,
        },
        mask_decoder_config={
            "model_type": "sam3_mask_decoder",
            "hidden_size": cfg.mask_decoder.hidden_size,
            "num_upsampling_stages": cfg.mask_decoder.num_upsampling_stages,
            "num_attention_heads": cfg.mask_decoder.num_heads,
        },
    )


def hf_vit_config(cfg: Sam3Config) -> dict:
    """transformers' `Sam3ViTConfig` fields for our backbone config."""
    v = cfg.vit
    return {
        "model_type": "sam3_vit_model",
        "hidden_size": v.hidden_size,
        "intermediate_size": v.intermediate_size,
        "num_hidden_layers": v.num_layers,
        "num_attention_heads": v.num_heads,
        "image_size": v.image_size,
        "patch_size": v.patch_size,
        "window_size": v.window_size,
        "global_attn_indexes": list(v.global_attn_indexes),
        "pretrain_image_size": v.pretrain_image_size,
        "layer_norm_eps": v.layer_norm_eps,
        "rope_parameters": {"rope_theta": v.rope_theta, "rope_type": "axial"},
    }


def hf_tracker_config(cfg: Sam3Config, coarsest_level: bool = False):
    """The transformers `Sam3TrackerVideoConfig` equal to our tracker (3 FPN levels, or the
    released 4 with `coarsest_level`: the video model drops the coarsest level itself)."""
    from transformers import Sam3TrackerVideoConfig

    t, v = cfg.tracker, cfg.vit
    grid = v.image_size // v.patch_size
    vision = {
        "model_type": "sam3_vision_model",
        "fpn_hidden_size": cfg.neck.fpn_hidden_size,
        "scale_factors": [4.0, 2.0, 1.0, 0.5] if coarsest_level else [4.0, 2.0, 1.0],
        "backbone_feature_sizes": [[4 * grid] * 2, [2 * grid] * 2, [grid] * 2],
        "backbone_config": hf_vit_config(cfg),
    }
    return Sam3TrackerVideoConfig(
        vision_config=vision,
        prompt_encoder_config={
            "hidden_size": t.hidden_size,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
        },
        mask_decoder_config={
            "hidden_size": t.hidden_size,
            "num_attention_heads": t.num_heads,
            "num_hidden_layers": t.num_layers,
            "mlp_dim": t.mlp_dim,
            "iou_head_hidden_dim": t.iou_head_hidden_dim,
        },
        memory_attention_hidden_size=t.hidden_size,
        memory_encoder_hidden_size=t.hidden_size,
        mask_downsampler_embed_dim=t.hidden_size,
        memory_fuser_embed_dim=t.hidden_size,
        memory_attention_feed_forward_hidden_size=t.memory_attention_mlp_dim,
        memory_fuser_intermediate_dim=t.memory_fuser_intermediate_dim,
        memory_attention_num_layers=t.num_memory_attention_layers,
        memory_encoder_output_channels=t.memory_channels,
        num_maskmem=t.num_memory_frames,
        image_size=v.image_size,
    )


def hf_image_tracker_config(tracker_config):
    """The image-only `Sam3TrackerConfig` sharing a video tracker config's sub-configs."""
    from transformers import Sam3TrackerConfig

    return Sam3TrackerConfig(
        vision_config=tracker_config.vision_config.to_dict(),
        prompt_encoder_config=tracker_config.prompt_encoder_config.to_dict(),
        mask_decoder_config=tracker_config.mask_decoder_config.to_dict(),
    )


def _device_of(model: torch.nn.Module) -> torch.device:
    """The device of `model`'s first parameter (where a reference built from it must run)."""
    return next(model.parameters()).device


def _tracker_weights(model) -> dict:
    """Our backbone, tracker neck and tracker head under transformers' tracker key names."""
    backbone = model.detector_model.vision_encoder.backbone.state_dict()
    sd = {f"vision_encoder.backbone.{k}": v for k, v in backbone.items()}
    sd |= {f"vision_encoder.neck.{k}": v for k, v in model.tracker_neck.state_dict().items()}
    return sd | dict(model.tracker_model.state_dict())


def hf_image_tracker(model):
    """transformers `Sam3TrackerModel` holding our model's backbone, tracker neck and tracker,
    on our model's device."""
    from transformers import Sam3TrackerModel

    hf = Sam3TrackerModel(hf_image_tracker_config(hf_tracker_config(model.config)))
    missing, _ = hf.load_state_dict(_tracker_weights(model), strict=False)  # memory keys unused
    if missing:
        raise RuntimeError(f"reference weights missing: {missing[:5]}")
    return hf.eval().to(_device_of(model))


def hf_released_image_tracker(model):
    """transformers `Sam3TrackerModel` with the released four FPN levels (as the hub's
    `Sam3TrackerModel.from_pretrained("facebook/sam3")` builds it), holding our model's
    backbone, tracker neck and tracker head, on our model's device."""
    from transformers import Sam3TrackerModel

    config = hf_image_tracker_config(hf_tracker_config(model.config, coarsest_level=True))
    hf = Sam3TrackerModel(config)
    missing, _ = hf.load_state_dict(_tracker_weights(model), strict=False)  # memory keys unused
    if missing:
        raise RuntimeError(f"reference weights missing: {missing[:5]}")
    return hf.eval().to(_device_of(model))


def hf_video_tracker(model):
    """transformers `Sam3TrackerVideoModel` (with its vision encoder) holding our weights, on
    our model's device."""
    from transformers import Sam3TrackerVideoModel

    hf = Sam3TrackerVideoModel(hf_tracker_config(model.config, coarsest_level=True))
    missing, unexpected = hf.load_state_dict(_tracker_weights(model), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"reference weights differ: {missing[:5]} {unexpected[:5]}")
    return hf.eval().to(_device_of(model))


def hf_tracker_video_processor(cfg: Sam3Config):
    """transformers' `Sam3TrackerVideoProcessor` for our image size (mean = std = 0.5)."""
    from transformers import Sam2ImageProcessor, Sam2VideoVideoProcessor, Sam3TrackerVideoProcessor

    s, half = cfg.image_size, [0.5, 0.5, 0.5]
    kw = {"size": {"height": s, "width": s}, "image_mean": half, "image_std": half}
    return Sam3TrackerVideoProcessor(
        image_processor=Sam2ImageProcessor(**kw), video_processor=Sam2VideoVideoProcessor(**kw)
    )


def hf_concept_video_model(model, assoc):
    """transformers `Sam3VideoModel` holding our weights, on our model's device, with the
    thresholds of `assoc` (a `sam3_core.video.association.AssociationConfig`)."""
    from transformers import Sam3VideoConfig, Sam3VideoModel

    cfg = Sam3VideoConfig(
        detector_config=hf_detector_config(model.config).to_dict(),
        tracker_config=hf_tracker_config(model.config).to_dict(),
        score_threshold_detection=assoc.score_threshold_detection,
        new_det_thresh=assoc.new_det_thresh,
        det_nms_thresh=assoc.det_nms_thresh,
        recondition_every_nth_frame=assoc.recondition_every_nth_frame,
        recondition_on_trk_masks=assoc.recondition_on_trk_masks,
        high_conf_thresh=assoc.high_conf_thresh,
        high_iou_thresh=assoc.high_iou_thresh,
        fill_hole_area=assoc.fill_hole_area,
        max_num_objects=assoc.max_num_objects,
    )
    hf = Sam3VideoModel(cfg)
    missing, unexpected = hf.load_state_dict(model.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"reference weights differ: {missing[:5]} {unexpected[:5]}")
    return hf.eval().to(_device_of(model))


def hf_concept_video_processor(cfg: Sam3Config, folder):
    """transformers' `Sam3VideoProcessor` for our image size and the shipped vocabulary."""
    from transformers import (
        CLIPTokenizer,
        Sam2VideoVideoProcessor,
        Sam3ImageProcessor,
        Sam3VideoProcessor,
    )

    write_clip_tokenizer_files(folder)
    s, half, m = cfg.image_size, [0.5, 0.5, 0.5], 4 * cfg.image_size // cfg.vit.patch_size
    return Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(
            size={"height": s, "width": s}, mask_size={"height": m, "width": m}
        ),
        video_processor=Sam2VideoVideoProcessor(
            size={"height": s, "width": s}, image_mean=half, image_std=half
        ),
        tokenizer=CLIPTokenizer.from_pretrained(str(folder)),
    )


def hf_detector(cfg: Sam3Config, seed: int = 0, device: torch.device | str = "cpu"):
    """A transformers `Sam3Model` in eval mode with perturbed random weights (built and
    perturbed on the CPU, so the same numbers on every device), on `device`."""
    from transformers import Sam3Model as HFSam3Model

    torch.manual_seed(seed)
    model = HFSam3Model(hf_detector_config(cfg)).eval()
    perturb_(model, seed)
    return model.to(device)


@torch.no_grad()
def perturb_(module: torch.nn.Module, seed: int = 0, on_device: bool = False) -> None:
    """Make random weights informative: 1-D params + N(0, 0.2), matrices N(0, 1.2/sqrt(fan_in)).

    Default initialisations leave SAM 3's outputs nearly constant across inputs, so a wrong
    model could pass a parity test; after this, outputs depend on image, text and boxes. The
    noise is drawn on the CPU, so a module on any device gets the same weights; `on_device`
    draws it on the module's device instead (other values; seconds instead of a minute for a
    full-size model on a GPU: for benchmarks, which need no two devices to agree).
    """
    device = next(module.parameters()).device if on_device else torch.device("cpu")
    gen = torch.Generator(device).manual_seed(seed)
    for _, p in sorted(module.named_parameters()):
        if p.ndim <= 1:
            p.add_((torch.randn(p.shape, generator=gen, device=device) * 0.2).to(p.device))
        else:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=gen, device=device) * (1.2 / math.sqrt(fan_in)))


def ulp_perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of `model` with every weight scaled by (1 + N(0, 2^-24)): one fp32 rounding step.

    How far the reference moves under this is its own sensitivity to fp32 rounding; a faithful
    re-implementation, whose kernels sum in another order, can differ from it by about as much.
    """
    import copy

    model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.mul_((1 + 2**-24 * torch.randn(p.shape, generator=gen)).to(p.device))
    return model


def write_clip_tokenizer_files(folder) -> None:
    """Hub-style vocab.json + merges.txt from the vocabulary that sam3_core ships."""
    import json
    from pathlib import Path

    from sam3_core.modeling.tokenizer import vocab_and_merges_from_bpe_gz

    folder = Path(folder)
    vocab, merges = vocab_and_merges_from_bpe_gz()
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    lines = ["#version: 0.2", *(" ".join(pair) for pair in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def hf_processor(cfg: Sam3Config, folder):
    """transformers' `Sam3Processor` for our config's image size and the shipped vocabulary."""
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3Processor

    write_clip_tokenizer_files(folder)
    tok = CLIPTokenizer.from_pretrained(str(folder))
    size = cfg.image_size
    mask_size = 4 * cfg.image_size // cfg.vit.patch_size
    images = Sam3ImageProcessor(
        size={"height": size, "width": size}, mask_size={"height": mask_size, "width": mask_size}
    )
    return Sam3Processor(image_processor=images, tokenizer=tok)


def mask_iou(a, b) -> float:
    """IoU of two boolean arrays or tensors (on any device) of the same shape (1.0 when both
    are empty)."""
    import numpy as np

    a, b = (x.cpu() if isinstance(x, torch.Tensor) else x for x in (a, b))
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


class CvUtilsKernel:
    """Stand-in for the `kernels-community/cv-utils` hub kernel that transformers' video model
    uses for detection NMS and hole filling (it is downloaded from the hub, so unavailable
    here): `cc_2d` is Meta's own CPU fallback (skimage, 8-connected), `generic_nms` greedy NMS
    over an IoU matrix. Both compute on the CPU and answer on their input's device (transformers
    swallows a kernel's errors and skips the step, so a device mismatch here would pass
    silently). Install with `monkeypatch.setattr(module, "cv_utils_kernel", ...)`."""

    @staticmethod
    def cc_2d(mask: torch.Tensor, get_counts: bool = True):
        """mask [B, 1, H, W] -> (labels, per-pixel component sizes), int32 on mask's device."""
        from skimage.measure import label

        labels = torch.zeros(mask.shape, dtype=torch.int32)
        counts = torch.zeros(mask.shape, dtype=torch.int32)
        for i, m in enumerate(mask[:, 0].cpu().numpy()):
            lab = torch.from_numpy(label(m).astype("int32"))
            sizes = torch.bincount(lab.flatten()).to(torch.int32)
            labels[i, 0], counts[i, 0] = lab, torch.where(lab > 0, sizes[lab], 0)
        return labels.to(mask.device), counts.to(mask.device)

    @staticmethod
    def generic_nms(ious: torch.Tensor, scores: torch.Tensor, threshold: float, use_iou_matrix):
        """Indices kept by greedy NMS (highest score first), long on scores' device."""
        ious_cpu = ious.cpu()
        kept: list[int] = []
        for i in torch.argsort(scores.cpu(), descending=True, stable=True).tolist():
            if all(ious_cpu[i, j] <= threshold for j in kept):
                kept.append(i)
        return torch.tensor(kept, dtype=torch.long, device=scores.device)
