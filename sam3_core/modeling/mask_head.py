"""MaskFormer-style mask head: pixel decoder, per-query instance masks, semantic map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import MaskDecoderConfig
from sam3_core.modeling.layers import Attention, key_padding_mask


def is_shared(t: Tensor) -> bool:
    """True for a batch that is one entry broadcast (expanded) to several rows."""
    return t.shape[0] > 1 and t.stride(0) == 0


def upsample2x_conv3x3(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """conv(nearest_upsample_2x(x)) without the bias, computed on the coarse grid.

    Each of the four output phases (row/column parity) sees a 2x2 input neighbourhood, so the
    3x3 kernel folds into four 2x2 kernels: 16 taps at H x W instead of 9 taps at 2H x 2W.
    x: [B, C, H, W] -> [B, C_out, 2H, 2W].
    """
    w = conv.weight
    fold = (  # (rows used for phase 0, phase 1) as sums of kernel taps
        (w[:, :, :1], w[:, :, 1:].sum(2, keepdim=True)),
        (w[:, :, :2].sum(2, keepdim=True), w[:, :, 2:]),
    )
    b, _, h, wd = x.shape
    xp = F.pad(x, (1, 1, 1, 1))
    phases = []
    for a in range(2):
        rows = torch.cat(fold[a], dim=2)  # [O, C, 2, 3]
        cols = (
            (rows[..., :1], rows[..., 1:].sum(3, keepdim=True)),
            (rows[..., :2].sum(3, keepdim=True), rows[..., 2:]),
        )
        for c in range(2):
            kernel = torch.cat(cols[c], dim=3)  # [O, C, 2, 2]
            phases.append(F.conv2d(xp[:, :, a : a + h + 1, c : c + wd + 1], kernel)[:, :, :h, :wd])
    out = torch.stack(phases, 2).view(b, -1, 2, 2, h, wd)  # [B, O, a, c, H, W]
    return out.permute(0, 1, 4, 2, 5, 3).reshape(b, -1, 2 * h, 2 * wd)


class PixelDecoder(nn.Module):
    """FPN top-down path: coarse-to-fine nearest upsampling, skip sum, conv, GroupNorm, ReLU."""

    def __init__(self, cfg: MaskDecoderConfig) -> None:
        super().__init__()
        d, n = cfg.hidden_size, cfg.num_upsampling_stages
        self.conv_layers = nn.ModuleList(nn.Conv2d(d, d, 3, padding=1) for _ in range(n))
        self.norms = nn.ModuleList(nn.GroupNorm(8, d) for _ in range(n))

    def forward(self, feats: list[Tensor]) -> Tensor:
        """feats: fine-to-coarse [B, C, H_i, W_i] -> [B, C, H_0, W_0].

        When a skip level is one image shared by every row (several prompts on one image), the
        conv splits by linearity: conv(up(x) + skip) = conv(up(x)) + conv(skip), with conv(skip)
        computed once and conv(up(x)) on the coarse grid.
        """
        x = feats[-1]
        for i, skip in enumerate(reversed(feats[:-1])):
            conv = self.conv_layers[i]
            exact_2x = skip.shape[-2] == 2 * x.shape[-2] and skip.shape[-1] == 2 * x.shape[-1]
            if is_shared(skip) and exact_2x:
                shared = conv(skip[:1])
                x = upsample2x_conv3x3(x, conv) + shared
            else:
                x = conv(F.interpolate(x, size=skip.shape[-2:], mode="nearest") + skip)
            x = F.relu(self.norms[i](x))
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
        # instance_projection (1x1 conv) folded into the query side: e.(Wp + b) = (W^T e).p + e.b
        embed = self.mask_embedder(queries)
        proj = self.instance_projection
        weight = proj.weight[:, :, 0, 0]
        masks = (
            torch.einsum("bqc,bchw->bqhw", embed @ weight, pixels)
            + (embed @ proj.bias)[..., None, None]
        )
        return masks, self.semantic_projection(pixels)
