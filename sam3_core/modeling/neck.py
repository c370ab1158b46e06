"""Simple FPN neck: ViT map -> multi-scale feature maps with sine position encodings."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import NeckConfig
from sam3_core.modeling.layers import sine_position_map


class FPNLevel(nn.Module):
    """Resample the ViT map by `scale` (4, 2, 1 or 0.5), then 1x1 and 3x3 projections."""

    def __init__(self, in_channels: int, out_channels: int, scale: float) -> None:
        super().__init__()
        c = in_channels
        self.scale_layers = nn.ModuleList()
        if scale == 4.0:
            self.scale_layers.extend(
                [
                    nn.ConvTranspose2d(c, c // 2, 2, 2),
                    nn.GELU(),
                    nn.ConvTranspose2d(c // 2, c // 4, 2, 2),
                ]
            )
            mid = c // 4
        elif scale == 2.0:
            self.scale_layers.append(nn.ConvTranspose2d(c, c // 2, 2, 2))
            mid = c // 2
        elif scale == 1.0:
            mid = c
        elif scale == 0.5:
            self.scale_layers.append(nn.MaxPool2d(2, 2))
            mid = c
        else:
            raise ValueError(f"FPN scale {scale} is not supported (use 4, 2, 1 or 0.5)")
        self.proj1 = nn.Conv2d(mid, out_channels, 1)
        self.proj2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor, head: nn.Conv2d | None = None) -> Tensor:
        """x [B, C_vit, h, w] -> [B, C, h*s, w*s], or [B, C_head, h*s, w*s] through `head`.

        `head`, a 1x1 conv that the caller applies next, is folded into the 3x3 projection
        (two linear maps in a row are one, exact up to rounding): one 3x3 conv straight to
        C_head channels instead of a 3x3 conv to C channels and then the 1x1.
        """
        for layer in self.scale_layers:
            x = layer(x)
        x = self.proj1(x)
        if head is None:
            return self.proj2(x)
        w = head.weight.flatten(1)  # [C_head, C]
        kernel = (w @ self.proj2.weight.flatten(1)).view(-1, *self.proj2.weight.shape[1:])
        return F.conv2d(x, kernel, w @ self.proj2.bias + head.bias, padding=1)


class FPNNeck(nn.Module):
    """[B, C_vit, h, w] -> (features, positions), one [B, C, h*s, w*s] pair per scale s.

    `num_levels` limits the output to the first levels: SAM 3's heads never read the 0.5 level,
    so computing it would be wasted work.
    """

    def __init__(self, in_channels: int, cfg: NeckConfig) -> None:
        super().__init__()
        self.hidden_size = cfg.fpn_hidden_size
        self.fpn_layers = nn.ModuleList(
            FPNLevel(in_channels, cfg.fpn_hidden_size, s) for s in cfg.scale_factors
        )

    def forward(
        self, x: Tensor, num_levels: int | None = None, heads: Sequence[nn.Conv2d | None] = ()
    ) -> tuple[list[Tensor], list[Tensor]]:
        """`heads[i]`, when given, is a 1x1 conv folded into level i (see `FPNLevel.forward`);
        the positions keep the neck's width."""
        feats, pos = [], []
        for i, level in enumerate(self.fpn_layers[:num_levels]):
            f = level(x, heads[i] if i < len(heads) else None)
            feats.append(f)
            b, _, h, w = f.shape
            pos.append(sine_position_map(b, h, w, self.hidden_size // 2, f.device, f.dtype))
        return feats, pos
