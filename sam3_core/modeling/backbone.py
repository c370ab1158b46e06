"""Perception Encoder ViT: patch embedding, 2-D axial RoPE, windowed and global attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import ViTConfig
from sam3_core.modeling.layers import MLP, apply_rope, autocast_input, rope_rotation


class RopeAttention(nn.Module):
    """Self-attention over a square token grid [B, S, S, C] with 2-D RoPE on queries and keys."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.o_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: Tensor, rotation: Tensor) -> Tensor:
        b, h, w, c = x.shape
        x = autocast_input(x)
        q, k, v = (
            p(x).view(b, h * w, self.num_heads, self.head_dim).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        out = F.scaled_dot_product_attention(apply_rope(q, rotation), apply_rope(k, rotation), v)
        return self.o_proj(out.transpose(1, 2).reshape(b, h, w, c))


def window_partition(x: Tensor, window: int) -> tuple[Tensor, tuple[int, int]]:
    """[B, H, W, C] -> [B * nW, window, window, C], zero-padding H and W up to the window."""
    b, h, w, c = x.shape
    ph, pw = (window - h % window) % window, (window - w % window) % window
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    x: Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> Tensor:
    """Inverse of `window_partition` -> [B, H, W, C]."""
    hp, wp = padded
    b = x.shape[0] // (hp * wp // window // window)
    x = x.view(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, : size[0], : size[1]]


class ViTLayer(nn.Module):
    """Pre-norm transformer block; windowed when `window_size > 0`, else global."""

    def __init__(self, cfg: ViTConfig, window_size: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attention = RopeAttention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size, activation="gelu")
        grid = window_size if window_size > 0 else cfg.image_size // cfg.patch_size
        self._rope_args = (
            grid,
            cfg.hidden_size // cfg.num_heads,
            cfg.rope_theta,
            cfg.window_size / grid,
        )
        self.register_buffer("rope", torch.empty(0, dtype=torch.complex64), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """(Re)compute the RoPE tables; also after building on the meta device."""
        device = self.layer_norm1.weight.device
        grid, head_dim, theta, scale = self._rope_args
        if device.type == "meta":  # `load_model` builds on meta and calls this again after
            # loading: computing here would run `arange` on meta, whose first use imports
            # torch._dynamo (about 2.5 s in every process that loads a model)
            self.rope = torch.empty(grid * grid, head_dim // 2, dtype=torch.complex64)
            return
        self.rope = rope_rotation(grid, grid, head_dim, theta, scale).to(device)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.layer_norm1(x)
        if self.window_size > 0:
            size = x.shape[1:3]
            x, padded = window_partition(x, self.window_size)
            x = self.attention(x, self.rope)
            x = window_unpartition(x, self.window_size, padded, size)
        else:
            x = self.attention(x, self.rope)
        x = shortcut + x
        return x + self.mlp(self.layer_norm2(x))


class PatchEmbeddings(nn.Module):
    """Non-overlapping patch projection (no bias)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, cfg.hidden_size, cfg.patch_size, cfg.patch_size, bias=False)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.projection(pixels)


class Embeddings(nn.Module):
    """Patch embeddings plus the pretraining position table, tiled (not interpolated) to the grid."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.patch_embeddings = PatchEmbeddings(cfg)
        n = (cfg.pretrain_image_size // cfg.patch_size) ** 2
        self.position_embeddings = nn.Parameter(torch.zeros(1, n, cfg.hidden_size))

    def forward(self, pixels: Tensor) -> Tensor:
        x = self.patch_embeddings(pixels).permute(0, 2, 3, 1)  # [B, H, W, C]
        h, w = x.shape[1:3]
        side = int(self.position_embeddings.shape[1] ** 0.5)
        pos = self.position_embeddings.view(1, side, side, -1)
        if (side, side) != (h, w):
            pos = pos.tile(1, h // side + 1, w // side + 1, 1)[:, :h, :w]
        return x + pos


class ViTBackbone(nn.Module):
    """pixels [B, 3, S, S] -> last hidden state [B, S/14, S/14, C] (channels last)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(
            ViTLayer(cfg, 0 if i in cfg.global_attn_indexes else cfg.window_size)
            for i in range(cfg.num_layers)
        )

    def forward(self, pixels: Tensor) -> Tensor:
        x = self.layer_norm(self.embeddings(pixels))
        for layer in self.layers:
            x = layer(x)
        return x
