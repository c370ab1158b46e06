"""MaskFormer-style mask head: pixel decoder, per-query instance masks, semantic map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import MaskDecoderConfig
from sam3_core.modeling.layers import Attention, key_padding_mask


class PixelDecoder(nn.Module):
    """FPN top-down path: coarse-to-fine nearest upsampling, skip sum, conv, GroupNorm, ReLU."""

    def __init__(self, cfg: MaskDecoderConfig) -> None:
        super().__init__()
        d, n = cfg.hidden_size, cfg.num_upsampling_stages
        self.conv_layers = nn.ModuleList(nn.Conv2d(d, d, 3, padding=1) for _ in range(n))
        self.norms = nn.ModuleList(nn.GroupNorm(8, d) for _ in range(n))

    def forward(self, feats: list[Tensor]) -> Tensor:
        """feats: fine-to-coarse [B, C, H_i, W_i] -> [B, C, H_0, W_0]."""
        x = feats[-1]
        for i, skip in enumerate(reversed(feats[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest") + skip
            x = F.relu(self.norms[i](self.conv_layers[i](x)))
        return x


class MaskEmbedder(nn.Module):
    """3-layer ReLU MLP mapping query features to mask embeddings."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(d, d) for _ in range(3))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskHead(nn.Module):
    """queries [B, Q, C] + FPN levels + encoder tokens -> mask logits [B, Q, H0, W0], semantic [B, 1, H0, W0].

    The encoder's image tokens first attend to the prompt, then replace the stride-14 FPN level.
    """

    def __init__(self, cfg: MaskDecoderConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.pixel_decoder = PixelDecoder(cfg)
        self.mask_embedder = MaskEmbedder(d)
        self.instance_projection = nn.Conv2d(d, d, 1)
        self.semantic_projection = nn.Conv2d(d, 1, 1)
        self.prompt_cross_attn = Attention(d, cfg.num_heads)
        self.prompt_cross_attn_norm = nn.LayerNorm(d)

    def forward(
        self,
        queries: Tensor,
        fpn_feats: list[Tensor],
        encoder_tokens: Tensor,
        prompt: Tensor,
        prompt_valid: Tensor,
    ) -> tuple[Tensor, Tensor]:
        h = self.prompt_cross_attn_norm(encoder_tokens)
        tokens = encoder_tokens + self.prompt_cross_attn(
            h, prompt, prompt, key_padding_mask(prompt_valid)
        )
        b, _, height, width = fpn_feats[-1].shape
        coarse = tokens.transpose(1, 2).reshape(b, -1, height, width)
        pixels = self.pixel_decoder([*fpn_feats[:-1], coarse])
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embedder(queries), self.instance_projection(pixels))
        return masks, self.semantic_projection(pixels)
