"""The concept detector: image features + text/exemplar prompt -> scored boxes and masks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sam3_core.config import Sam3Config
from sam3_core.modeling.backbone import ViTBackbone
from sam3_core.modeling.geometry_encoder import GeometryEncoder
from sam3_core.modeling.layers import HeadMLP, cxcywh_to_xyxy
from sam3_core.modeling.mask_head import MaskHead, MaskLogits
from sam3_core.modeling.neck import FPNNeck
from sam3_core.modeling.text_encoder import TextEncoder
from sam3_core.modeling.transformer import DetrDecoder, DetrEncoder


@dataclass
class ImageFeatures:
    """Backbone output cached per image.

    vit: [B, h, w, C_vit] last ViT map (the tracker's neck also reads it);
    fpn / fpn_pos: stride 3.5, 7 and 14 levels, each [B, C, H_i, W_i].
    """

    vit: Tensor
    fpn: list[Tensor]
    fpn_pos: list[Tensor]

    def select(self, index: Tensor) -> ImageFeatures:
        """Gather batch entries (e.g. one per tile of a batch); copies the features."""
        return ImageFeatures(
            self.vit[index], [f[index] for f in self.fpn], [p[index] for p in self.fpn_pos]
        )

    def item(self, i: int) -> ImageFeatures:
        """Batch entry `i` as a batch of one, a view (no copy)."""
        return ImageFeatures(
            self.vit[i : i + 1],
            [f[i : i + 1] for f in self.fpn],
            [p[i : i + 1] for p in self.fpn_pos],
        )

    def repeat(self, n: int) -> ImageFeatures:
        """A batch of one seen n times (one row per prompt), as a broadcast view (no copy)."""

        def grow(t: Tensor) -> Tensor:
            return t.expand(n, *t.shape[1:])

        return ImageFeatures(
            grow(self.vit), [grow(f) for f in self.fpn], [grow(p) for p in self.fpn_pos]
        )


@dataclass
class DetectorOutput:
    """Per prompt row: logits [B, Q], presence [B, 1], boxes [B, Q, 4] normalised xyxy,
    mask logits B x Q x H0 x W0 (H0 = 4 x patch grid, 288 at full size; factored, computed
    for the queries asked), semantic [B, 1, H0, W0]."""

    logits: Tensor
    presence: Tensor
    boxes: Tensor
    mask_logits: MaskLogits
    semantic: Tensor

    @property
    def masks(self) -> Tensor:
        """Every query's mask logits [B, Q, H0, W0]."""
        return self.mask_logits.all()

    @property
    def scores(self) -> Tensor:
        """p(match | present) x p(present), [B, Q]."""
        return self.logits.sigmoid() * self.presence.sigmoid()


class VisionEncoder(nn.Module):
    """ViT backbone + FPN neck."""

    def __init__(self, cfg: Sam3Config) -> None:
        super().__init__()
        self.backbone = ViTBackbone(cfg.vit)
        self.neck = FPNNeck(cfg.vit.hidden_size, cfg.neck)

    def forward(self, pixels: Tensor) -> ImageFeatures:
        vit = self.backbone(pixels)
        fpn, pos = self.neck(vit.permute(0, 3, 1, 2), num_levels=3)
        return ImageFeatures(vit, fpn, pos)


class DotProductScoring(nn.Module):
    """Query-vs-prompt logits: pooled, projected prompt features dotted with projected queries."""

    def __init__(self, cfg: Sam3Config) -> None:
        super().__init__()
        d = cfg.detr_decoder.hidden_size
        self.text_mlp = HeadMLP(d, cfg.detr_decoder.intermediate_size, d, 2)
        self.text_mlp_out_norm = nn.LayerNorm(d)
        self.text_proj = nn.Linear(d, d)
        self.query_proj = nn.Linear(d, d)
        self.scale = d**-0.5

    def forward(self, queries: Tensor, prompt: Tensor, prompt_valid: Tensor) -> Tensor:
        prompt = self.text_mlp_out_norm(prompt + self.text_mlp(prompt))
        valid = prompt_valid.to(prompt.dtype)[..., None]
        pooled = (prompt * valid).sum(1) / valid.sum(1).clamp(min=1.0)
        logits = (self.query_proj(queries) @ self.text_proj(pooled)[..., None]).squeeze(-1)
        return (logits * self.scale).clamp(-12.0, 12.0)


class Sam3Detector(nn.Module):
    """SAM 3's detector; submodule names follow the released checkpoint (transformers layout)."""

    def __init__(self, cfg: Sam3Config) -> None:
        super().__init__()
        self.config = cfg
        self.vision_encoder = VisionEncoder(cfg)
        self.text_encoder = TextEncoder(cfg.text)
        self.text_projection = nn.Linear(cfg.text.hidden_size, cfg.detr_encoder.hidden_size)
        self.geometry_encoder = GeometryEncoder(cfg.geometry)
        self.detr_encoder = DetrEncoder(cfg.detr_encoder)
        self.detr_decoder = DetrDecoder(cfg.detr_decoder)
        self.mask_decoder = MaskHead(cfg.mask_decoder)
        self.dot_product_scoring = DotProductScoring(cfg)

    def encode_text(self, input_ids: Tensor) -> Tensor:
        """token ids [N, L] -> prompt features [N, L, C]."""
        return self.text_projection(self.text_encoder(input_ids))

    def forward(
        self,
        image: ImageFeatures,
        text: Tensor,
        text_valid: Tensor,
        boxes: Tensor | None = None,
        box_labels: Tensor | None = None,
        box_valid: Tensor | None = None,
    ) -> DetectorOutput:
        """One prompt per batch row: image features, text [B, L, C] + mask, optional boxes.

        boxes: [B, N, 4] normalised cxcywh; box_labels [B, N] (1 positive, 0 negative);
        box_valid [B, N] marks real boxes (right-padded).
        """
        feats, pos = image.fpn, image.fpn_pos
        prompt, prompt_valid = text, text_valid
        if boxes is not None and boxes.shape[1] > 0:
            if box_valid is None:
                box_valid = torch.ones(boxes.shape[:2], dtype=torch.bool, device=boxes.device)
            geo, geo_valid = self.geometry_encoder(boxes, box_labels, box_valid, feats[-1], pos[-1])
            prompt = torch.cat([prompt, geo], dim=1)
            prompt_valid = torch.cat([prompt_valid, geo_valid], dim=1)
        top, top_pos = feats[-1], pos[-1]
        size = tuple(top.shape[-2:])
        tokens = self.detr_encoder(
            top.flatten(2).transpose(1, 2), top_pos.flatten(2).transpose(1, 2), prompt, prompt_valid
        )
        queries, boxes_cxcywh, presence = self.detr_decoder(
            tokens, top_pos.flatten(2).transpose(1, 2), size, prompt, prompt_valid
        )
        logits = self.dot_product_scoring(queries, prompt, prompt_valid)
        masks, semantic = self.mask_decoder(queries, feats, tokens, prompt, prompt_valid)
        return DetectorOutput(logits, presence, cxcywh_to_xyxy(boxes_cxcywh), masks, semantic)
