"""Simple FPN neck: ViT map -> multi-scale feature maps with sine position encodings."""

from __future__ import annotations

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

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.scale_layers:
            x = layer(x)
        return self.proj2(self.proj1(x))


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
        self, x: Tensor, num_levels: int | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        feats, pos = [], []
        for level in self.fpn_layers[:num_levels]:
            f = level(x)
            feats.append(f)
            b, _, h, w = f.shape
            pos.append(sine_position_map(b, h, w, self.hidden_size // 2, f.device, f.dtype))
        return feats, pos
