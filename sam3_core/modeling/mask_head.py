"""MaskFormer-style mask head: pixel decoder, per-query instance masks, semantic map."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import MaskDecoderConfig
from sam3_core.modeling.layers import Attention, key_padding_mask


def is_shared(t: Tensor) -> bool:
    """True for a batch that is one entry broadcast (expanded) to several rows."""
    return t.shape[0] > 1 and t.stride(0) == 0


def phase_kernels(weight: Tensor) -> Tensor:
    """3x3 kernels [O, C, 3, 3] -> the 2x2 kernels [4 * O, C, 2, 2] that a 3x3 conv applies to a
    nearest-upsampled (2x) map, one block of O per output phase (row parity, column parity).

    Even output rows see input rows (i - 1, i) with kernel rows (w0, w1 + w2), odd rows
    (i, i + 1) with (w0 + w1, w2); columns alike.
    """

    def fold(w: Tensor, dim: int) -> tuple[Tensor, Tensor]:
        a, b, c = w.unbind(dim)
        return torch.stack([a, b + c], dim), torch.stack([a + b, c], dim)

    return torch.cat([k for rows in fold(weight, 2) for k in fold(rows, 3)])


def upsample2x_conv3x3(x: Tensor, conv: nn.Conv2d, added: Tensor) -> Tensor:
    """conv(nearest_upsample_2x(x)) without conv's bias, plus `added`, on the coarse grid.

    The four output phases run as one 2x2 conv with 4 x C_out channels over the padded input
    (16 taps at h x w instead of 9 at 2h x 2w), then interleave into the fine grid in
    channels-last layout, where each pixel's channels are one contiguous run, while `added` is
    summed in. x [B, C, h, w], added [1 or B, C_out, 2h, 2w] -> [B, C_out, 2h, 2w] channels last.
    """
    b, _, h, w = x.shape
    o = conv.out_channels
    xp = F.pad(x, (1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
    phases = F.conv2d(xp, phase_kernels(conv.weight).to(xp.dtype)).permute(0, 2, 3, 1)
    extra = added.permute(0, 2, 3, 1).reshape(added.shape[0], h, 2, w, 2, o)

    def phase(row: int, col: int) -> Tensor:  # [B, h, w, C_out]
        k = 2 * row + col
        return phases[:, row : row + h, col : col + w, k * o : (k + 1) * o]

    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, conv.weight, added)):
        rows = [
            torch.stack([phase(r, c) + extra[:, :, r, :, c] for c in range(2)], 3) for r in range(2)
        ]
        return torch.stack(rows, 2).view(b, 2 * h, 2 * w, o).permute(0, 3, 1, 2)
    out = x.new_empty(b, 2 * h, 2 * w, o, dtype=torch.promote_types(phases.dtype, added.dtype))
    grid = out.view(b, h, 2, w, 2, o)
    for r in range(2):
        for c in range(2):
            torch.add(phase(r, c), extra[:, :, r, :, c], out=grid[:, :, r, :, c])
    return out.permute(0, 3, 1, 2)


@dataclass
class MaskLogits:
    """Instance mask logits kept factored: embed [B, Q, C] . pixels [B, C, H, W] + bias [B, Q].

    All B x Q maps (200 per prompt, 288 x 288 at full size) are the mask head's largest
    output, and callers usually keep a few queries: `select` computes only those.
    """

    embed: Tensor
    bias: Tensor
    pixels: Tensor

    @classmethod
    def dense(cls, logits: Tensor) -> MaskLogits:
        """Wrap materialised logits [B, Q, H, W] (identity embeddings: `all` returns them)."""
        b, q = logits.shape[:2]
        eye = torch.eye(q, dtype=logits.dtype, device=logits.device).expand(b, q, q)
        return cls(eye, logits.new_zeros(b, q), logits)

    def __getitem__(self, rows: slice) -> MaskLogits:
        return MaskLogits(self.embed[rows], self.bias[rows], self.pixels[rows])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(B, Q, H, W) of the logits `all` returns."""
        return (*self.embed.shape[:2], *self.pixels.shape[-2:])

    def all(self) -> Tensor:
        """Every query's mask logits [B, Q, H, W]."""
        pixels = self.pixels.flatten(2)
        embed, bias = self.embed.to(pixels.dtype), self.bias.to(pixels.dtype)
        return torch.baddbmm(bias[..., None], embed, pixels).unflatten(2, self.pixels.shape[-2:])

    def select(self, rows: Tensor, queries: Tensor) -> Tensor:
        """Mask logits [N, H, W] of the N (row, query) pairs only."""
        h, w = self.pixels.shape[-2:]
        out = self.pixels.new_empty(len(rows), h * w)
        for r in rows.unique().tolist():
            pick = (rows == r).nonzero()[:, 0]
            q = queries[pick]
            embed = self.embed[r, q].to(out.dtype)
            out[pick] = torch.addmm(
                self.bias[r, q, None].to(out.dtype), embed, self.pixels[r].flatten(1)
            )
        return out.view(-1, h, w)


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
        computed once and conv(up(x)) on the coarse grid (output then in channels-last layout).
        """
        x = feats[-1]
        for i, skip in enumerate(reversed(feats[:-1])):
            conv = self.conv_layers[i]
            exact_2x = skip.shape[-2] == 2 * x.shape[-2] and skip.shape[-1] == 2 * x.shape[-1]
            if is_shared(skip) and exact_2x:
                x = upsample2x_conv3x3(x, conv, conv(skip[:1]))
            else:
                x = conv(F.interpolate(x, size=skip.shape[-2:], mode="nearest") + skip)
            x = F.relu_(self.norms[i](x))
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
    """queries [B, Q, C] + FPN levels + encoder tokens -> `MaskLogits` (B x Q x H0 x W0, factored),
    semantic logits [B, 1, H0, W0].

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
    ) -> tuple[MaskLogits, Tensor]:
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
        masks = MaskLogits(embed @ proj.weight[:, :, 0, 0], embed @ proj.bias, pixels)
        return masks, self.semantic_projection(pixels)
