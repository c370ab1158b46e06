"""Exemplar encoder: positive/negative boxes -> prompt tokens that attend to the image."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sam3_core.config import GeometryConfig
from sam3_core.modeling.layers import (
    MLP,
    Attention,
    cxcywh_to_xyxy,
    key_padding_mask,
    sine_encode_coords,
)
from sam3_core.modeling.ops import roi_align


class GeometryLayer(nn.Module):
    """Pre-norm block: prompt self-attention, cross-attention to image tokens, MLP."""

    def __init__(self, cfg: GeometryConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.layer_norm1 = nn.LayerNorm(d)
        self.self_attn = Attention(d, cfg.num_heads)
        self.cross_attn = Attention(d, cfg.num_heads)
        self.layer_norm2 = nn.LayerNorm(d)
        self.mlp = MLP(d, cfg.intermediate_size)
        self.layer_norm3 = nn.LayerNorm(d)

    def forward(self, x: Tensor, image: Tensor, image_pos: Tensor, mask: Tensor | None) -> Tensor:
        h = self.layer_norm1(x)
        x = x + self.self_attn(h, h, h, mask)
        x = x + self.cross_attn(self.layer_norm2(x), image + image_pos, image)
        return x + self.mlp(self.layer_norm3(x))


class GeometryEncoder(nn.Module):
    """Boxes [B, N, 4] (normalised cxcywh) + labels [B, N] -> tokens [B, N + 1, C] and mask.

    Each box token sums a linear projection of its coordinates, ROI-pooled image features,
    a sine encoding of its centre and size, and a positive/negative label embedding; a CLS
    token follows the valid boxes.
    """

    def __init__(self, cfg: GeometryConfig) -> None:
        super().__init__()
        d = self.hidden_size = cfg.hidden_size
        self.roi_size = cfg.roi_size
        self.label_embed = nn.Embedding(2, d)
        self.cls_embed = nn.Embedding(1, d)
        self.boxes_direct_project = nn.Linear(4, d)
        self.boxes_pool_project = nn.Conv2d(d, d, cfg.roi_size)
        self.boxes_pos_enc_project = nn.Linear(d + 2, d)
        self.vision_layer_norm = nn.LayerNorm(d)
        self.final_proj = nn.Linear(d, d)
        self.prompt_layer_norm = nn.LayerNorm(d)
        self.layers = nn.ModuleList(GeometryLayer(cfg) for _ in range(cfg.num_layers))
        self.output_layer_norm = nn.LayerNorm(d)

    def _box_tokens(self, boxes: Tensor, labels: Tensor, image: Tensor) -> Tensor:
        b, n = boxes.shape[:2]
        h, w = image.shape[-2:]
        normed = self.vision_layer_norm(image.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        scale = boxes.new_tensor([w, h, w, h])
        pooled = roi_align(normed, list((cxcywh_to_xyxy(boxes) * scale).unbind(0)), self.roi_size)
        pooled = self.boxes_pool_project(pooled).view(b, n, self.hidden_size)
        cx, cy, bw, bh = boxes.unbind(-1)
        num_feats = self.hidden_size // 2
        pos = torch.cat(
            [
                sine_encode_coords(cy[..., None] * 2 * math.pi, num_feats),
                sine_encode_coords(cx[..., None] * 2 * math.pi, num_feats),
                bh[..., None],
                bw[..., None],
            ],
            dim=-1,
        )
        return (
            self.boxes_direct_project(boxes)
            + pooled
            + self.boxes_pos_enc_project(pos)
            + self.label_embed(labels.long())
        )

    def forward(
        self, boxes: Tensor, labels: Tensor, valid: Tensor, image: Tensor, image_pos: Tensor
    ) -> tuple[Tensor, Tensor]:
        """image, image_pos: [B, C, H, W] (the stride-14 FPN level). Returns tokens and valid mask."""
        b, n = boxes.shape[:2]
        tokens = self._box_tokens(boxes, labels, image)
        num_valid = valid.sum(dim=1)
        out = tokens.new_zeros(b, n + 1, self.hidden_size)
        out[:, :n] = tokens
        out[torch.arange(b, device=out.device), num_valid] = self.cls_embed.weight[0].to(out.dtype)
        mask = torch.arange(n + 1, device=out.device)[None] < (num_valid + 1)[:, None]
        x = self.prompt_layer_norm(self.final_proj(out))
        flat = image.flatten(2).transpose(1, 2)
        flat_pos = image_pos.flatten(2).transpose(1, 2)
        attn_mask = key_padding_mask(mask)
        for layer in self.layers:
            x = layer(x, flat, flat_pos, attn_mask)
        return self.output_layer_norm(x), mask
