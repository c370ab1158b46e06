"""DETR fusion encoder and decoder (box refinement, box relative-position bias, presence token)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import DetrDecoderConfig, DetrEncoderConfig
from sam3_core.modeling.layers import (
    MLP,
    Attention,
    HeadMLP,
    autocast_input,
    cxcywh_to_xyxy,
    inverse_sigmoid,
    key_padding_mask,
    sine_encode_coords,
)


class EncoderLayer(nn.Module):
    """Pre-norm: image self-attention (with positions), cross-attention to prompt tokens, MLP."""

    def __init__(self, cfg: DetrEncoderConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.layer_norm1 = nn.LayerNorm(d)
        self.self_attn = Attention(d, cfg.num_heads)
        self.cross_attn = Attention(d, cfg.num_heads)
        self.layer_norm2 = nn.LayerNorm(d)
        self.mlp = MLP(d, cfg.intermediate_size)
        self.layer_norm3 = nn.LayerNorm(d)

    def forward(
        self,
        x: Tensor,
        pos: Tensor,
        prompt: Tensor,
        prompt_mask: Tensor | None,
        shared: bool = False,
    ) -> Tensor:
        """`shared`: every row of x holds the same image tokens, so self-attention runs once."""
        rows = x.shape[0]
        if shared:
            x, pos = x[:1], pos[:1]
        h = self.layer_norm1(x)
        hp = h + pos
        x = x + self.self_attn(hp, hp, h)
        if shared:
            x = x.expand(rows, -1, -1)
        h = self.layer_norm2(x)
        x = x + self.cross_attn(h, prompt, prompt, prompt_mask)
        return x + self.mlp(self.layer_norm3(x))


class DetrEncoder(nn.Module):
    """image tokens [B, HW, C] + prompt tokens [B, P, C] -> prompt-conditioned image tokens."""

    def __init__(self, cfg: DetrEncoderConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))

    def forward(self, x: Tensor, pos: Tensor, prompt: Tensor, prompt_valid: Tensor) -> Tensor:
        """Rows that share one image (an expanded x) share the first layer's self-attention."""
        mask = key_padding_mask(prompt_valid)
        shared = x.shape[0] > 1 and x.stride(0) == 0
        for i, layer in enumerate(self.layers):
            x = layer(x, pos, prompt, mask, shared=shared and i == 0)
        return x


class DecoderLayer(nn.Module):
    """Post-norm: query self-attention, text cross-attention, image cross-attention, MLP."""

    def __init__(self, cfg: DetrDecoderConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.self_attn = Attention(d, cfg.num_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.text_cross_attn = Attention(d, cfg.num_heads)
        self.text_cross_attn_layer_norm = nn.LayerNorm(d)
        self.vision_cross_attn = Attention(d, cfg.num_heads)
        self.vision_cross_attn_layer_norm = nn.LayerNorm(d)
        self.mlp = MLP(d, cfg.intermediate_size)
        self.mlp_layer_norm = nn.LayerNorm(d)

    def forward(
        self,
        x: Tensor,
        query_pos: Tensor,
        prompt: Tensor,
        prompt_mask: Tensor | None,
        image: Tensor,
        image_with_pos: Tensor,
        image_bias: Tensor,
    ) -> Tensor:
        q = x + query_pos
        x = self.self_attn_layer_norm(x + self.self_attn(q, q, x))
        x = self.text_cross_attn_layer_norm(
            x + self.text_cross_attn(x + query_pos, prompt, prompt, prompt_mask)
        )
        x = self.vision_cross_attn_layer_norm(
            x + self.vision_cross_attn(x + query_pos, image_with_pos, image, image_bias)
        )
        return self.mlp_layer_norm(x + self.mlp(x))


def log_scale(d: Tensor) -> Tensor:
    """Signed log2 compression of coordinate deltas used by the box RPB."""
    d = d * 8
    return torch.sign(d) * torch.log2(d.abs() + 1.0) / math.log2(8)


class DetrDecoder(nn.Module):
    """Learned queries + a presence token decode boxes, query features and presence logits.

    Outputs of the last layer only: query features [B, Q, C] (after the output norm), boxes
    [B, Q, 4] (normalised cxcywh) and the presence logit [B, 1].
    """

    def __init__(self, cfg: DetrDecoderConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.output_layer_norm = nn.LayerNorm(d)
        self.box_head = HeadMLP(d, d, 4, 3)
        self.query_embed = nn.Embedding(cfg.num_queries, d)
        self.reference_points = nn.Embedding(cfg.num_queries, 4)
        self.presence_token = nn.Embedding(1, d)
        self.presence_head = HeadMLP(d, d, 1, 3)
        self.presence_layer_norm = nn.LayerNorm(d)
        self.ref_point_head = HeadMLP(2 * d, d, d, 2)
        self.box_rpb_embed_x = HeadMLP(2, d, cfg.num_heads, 2)
        self.box_rpb_embed_y = HeadMLP(2, d, cfg.num_heads, 2)

    def _box_bias(self, boxes: Tensor, height: int, width: int) -> Tensor:
        """Relative position bias [B, heads, 1 + Q, H*W] of image tokens to each query's box
        (row 0, the presence token, is zero), built contiguous in one broadcast add: attention
        reads it as is, without a padded or transposed copy. Boxes shared by every row (an
        expanded batch: the first layer's reference points) give one bias, expanded."""
        if boxes.shape[0] > 1 and boxes.stride(0) == 0:
            return self._box_bias(boxes[:1], height, width).expand(boxes.shape[0], -1, -1, -1)
        xyxy = cxcywh_to_xyxy(boxes)
        ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype) / height
        xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype) / width
        dy = self.box_rpb_embed_y(log_scale(ys[None, None, :, None] - xyxy[:, :, None, 1::2]))
        dx = self.box_rpb_embed_x(log_scale(xs[None, None, :, None] - xyxy[:, :, None, 0::2]))
        b, q = dy.shape[:2]
        dy = dy.permute(0, 3, 1, 2).contiguous()[..., None]  # [B, heads, Q, H, 1]
        dx = dx.permute(0, 3, 1, 2).contiguous()[..., None, :]  # [B, heads, Q, 1, W]
        if torch.is_grad_enabled() and (dy.requires_grad or dx.requires_grad):
            return F.pad((dy + dx).flatten(3), (0, 0, 1, 0))  # out= has no autograd
        bias = dy.new_empty(b, self.num_heads, 1 + q, height, width)
        bias[:, :, 0] = 0.0
        torch.add(dy, dx, out=bias[:, :, 1:])
        return bias.flatten(3)

    def forward(
        self,
        image: Tensor,
        image_pos: Tensor,
        size: tuple[int, int],
        prompt: Tensor,
        prompt_valid: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        b = image.shape[0]
        d = self.query_embed.weight.shape[1]
        x = torch.cat([self.presence_token.weight, self.query_embed.weight])[None].expand(b, -1, -1)
        boxes = self.reference_points.weight.sigmoid()[None].expand(b, -1, -1)
        prompt_mask = key_padding_mask(prompt_valid)
        image_with_pos = autocast_input(image + image_pos)  # read by every layer: cast once
        image = autocast_input(image)
        for layer in self.layers:
            sine = sine_encode_coords(
                boxes[..., [1, 0, 2, 3]] * (2 * math.pi), d // 2
            )  # (y, x, w, h) order
            query_pos = F.pad(self.ref_point_head(sine), (0, 0, 1, 0))
            bias = self._box_bias(boxes, *size)
            x = layer(x, query_pos, prompt, prompt_mask, image, image_with_pos, bias)
            queries = self.output_layer_norm(x[:, 1:])
            boxes = (inverse_sigmoid(boxes) + self.box_head(queries)).sigmoid()
        presence = self.presence_head(self.presence_layer_norm(x[:, :1])).squeeze(-1).clamp(-10, 10)
        return queries, boxes, presence
