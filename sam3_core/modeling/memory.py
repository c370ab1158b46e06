"""Video memory of the tracker (SAM 2's design): the memory encoder fuses a frame's embedding with
its predicted mask into a small memory map; memory attention conditions the current frame's
embedding on the memory bank (past memory maps plus object-pointer tokens) with 2-D RoPE.

Parameter names follow transformers' `Sam3TrackerVideoMemoryEncoder` / `...MemoryAttention`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import TrackerConfig
from sam3_core.modeling.layers import (
    apply_rope,
    device_cache,
    linear_activation,
    rope_rotation,
)
from sam3_core.modeling.tracker_mask_decoder import LayerNorm2d


def sine_position_encoding_2d(
    batch: int, height: int, width: int, num_feats: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Normalised 2-D sine/cosine encoding (DETR style, scale 2*pi): [B, 2*num_feats, h, w].

    Cached per size, device and dtype: a read-only view that callers must not modify in place.
    """
    pos = _sine_grid_2d(height, width, num_feats, torch.device(device), dtype)
    return pos.permute(2, 0, 1).unsqueeze(0).expand(batch, -1, -1, -1)


@device_cache(maxsize=16)
def _sine_grid_2d(
    height: int, width: int, num_feats: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """[h, w, 2*num_feats] of `sine_position_encoding_2d`, usable in and out of inference mode."""
    scale, eps = 2 * math.pi, 1e-6
    with torch.inference_mode(False), torch.no_grad():
        y = torch.arange(1, height + 1, device=device, dtype=dtype) / (height + eps) * scale
        x = torch.arange(1, width + 1, device=device, dtype=dtype) / (width + eps) * scale
        dim_t = torch.arange(num_feats, device=device).to(dtype)
        dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)

        def encode(values: Tensor) -> Tensor:
            pos = values[:, None] / dim_t
            return torch.stack((pos[:, 0::2].sin(), pos[:, 1::2].cos()), dim=2).flatten(1)

        pos_y = encode(y)[:, None, :].expand(height, width, num_feats)
        pos_x = encode(x)[None, :, :].expand(height, width, num_feats)
        return torch.cat((pos_y, pos_x), dim=-1)


def sine_position_encoding_1d(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """1-D sine encoding of scalar positions [T] -> [T, dim] (sin half, then cos half)."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=positions.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    pos = positions[:, None] / dim_t
    return torch.cat([pos.sin(), pos.cos()], dim=-1)


class MaskDownSamplerLayer(nn.Module):
    """Strided conv, channel LayerNorm, GELU."""

    def __init__(self, config: TrackerConfig, in_channels: int, out_channels: int) -> None:
        super().__init__()
        kernel = config.mask_downsampler_kernel_size
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=kernel,
            stride=config.mask_downsampler_stride,
            padding=kernel // 2,
        )
        self.layer_norm = LayerNorm2d(out_channels)
        self.activation = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        """[B, Cin, H, W] -> [B, Cout, H/stride, W/stride]."""
        return self.activation(self.layer_norm(self.conv(x)))


class MaskDownSampler(nn.Module):
    """Downsamples a mask by the total stride, growing channels by stride**2 per step.

    `in_channels` mask channels enter (SAM 3: 1; SAM 3.1: 2 per multiplex slot); the first
    step outputs `first_channels * stride**2`.
    """

    def __init__(
        self, config: TrackerConfig, in_channels: int = 1, first_channels: int = 1
    ) -> None:
        super().__init__()
        stride = config.mask_downsampler_stride
        num_layers = round(math.log(config.mask_downsampler_total_stride, stride))
        channels = [in_channels] + [
            first_channels * stride ** (2 * i) for i in range(1, num_layers + 1)
        ]
        self.layers = nn.ModuleList(
            [MaskDownSamplerLayer(config, channels[i], channels[i + 1]) for i in range(num_layers)]
        )
        self.final_conv = nn.Conv2d(channels[-1], config.hidden_size, kernel_size=1)

    def forward(self, masks: Tensor) -> Tensor:
        """[B, in_channels, H, W] -> [B, C, H/total_stride, W/total_stride]."""
        for layer in self.layers:
            masks = layer(masks)
        return self.final_conv(masks)


class MemoryFuserBlock(nn.Module):
    """ConvNeXt block: depthwise conv, LayerNorm, pointwise MLP, layer scale, residual."""

    def __init__(self, config: TrackerConfig) -> None:
        super().__init__()
        d, kernel = config.hidden_size, config.memory_fuser_kernel_size
        self.scale = nn.Parameter(torch.full((d,), 1e-6))
        self.depthwise_conv = nn.Conv2d(d, d, kernel_size=kernel, padding=kernel // 2, groups=d)
        self.layer_norm = LayerNorm2d(d)
        self.pointwise_conv1 = nn.Linear(d, config.memory_fuser_intermediate_dim)
        self.pointwise_conv2 = nn.Linear(config.memory_fuser_intermediate_dim, d)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, h, w] -> [B, C, h, w]."""
        y = self.layer_norm(self.depthwise_conv(x)).permute(0, 2, 3, 1)
        y = self.pointwise_conv2(linear_activation(y, self.pointwise_conv1, "gelu"))
        return x + (self.scale * y).permute(0, 3, 1, 2)


class MemoryFuser(nn.Module):
    """A few ConvNeXt blocks."""

    def __init__(self, config: TrackerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [MemoryFuserBlock(config) for _ in range(config.memory_fuser_num_layers)]
        )

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, h, w] -> [B, C, h, w]."""
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Fuses a frame embedding with its (scaled) mask into a memory map and its encoding.

    The output keeps the full width (no `projection`) when `memory_channels` equals it (SAM 3.1).
    """

    def __init__(
        self, config: TrackerConfig, mask_channels: int = 1, first_channels: int = 1
    ) -> None:
        super().__init__()
        d = config.hidden_size
        self.mask_downsampler = MaskDownSampler(config, mask_channels, first_channels)
        self.feature_projection = nn.Conv2d(d, d, kernel_size=1)
        self.memory_fuser = MemoryFuser(config)
        self.projection = (
            nn.Identity()
            if config.memory_channels == d
            else nn.Conv2d(d, config.memory_channels, kernel_size=1)
        )

    def forward(self, image_embed: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        """image_embed [B, C, h, w], masks [B, mask_channels, 16h, 16w] -> memory and its
        encoding [B, M, h, w]."""
        if image_embed.shape[0] > 1 and image_embed.stride(0) == 0:
            image_embed = image_embed[:1]  # one image expanded to B masks: project it once
        x = self.feature_projection(image_embed) + self.mask_downsampler(masks)
        x = self.projection(self.memory_fuser(x))
        pos = sine_position_encoding_2d(
            x.shape[0], x.shape[2], x.shape[3], x.shape[1] // 2, x.device, x.dtype
        )
        return x, pos


def memory_rope(
    height: int,
    width: int,
    head_dim: int,
    theta: float,
    device: torch.device,
    repeat: int = 1,
    num_unrotated: int = 0,
) -> Tensor:
    """Complex RoPE rotations [repeat * h * w + num_unrotated, head_dim / 2]: the h x w grid's
    table repeated per memory map, then identity rotations (1 + 0j, exact) for the object
    pointer tokens. Cached per arguments: a read-only tensor callers must not modify."""
    return _memory_rope(height, width, head_dim, theta, torch.device(device), repeat, num_unrotated)


@device_cache(maxsize=64)
def _memory_rope(
    height: int,
    width: int,
    head_dim: int,
    theta: float,
    device: torch.device,
    repeat: int,
    num_unrotated: int,
) -> Tensor:
    with torch.inference_mode(False), torch.no_grad():
        if repeat != 1 or num_unrotated:
            grid = _memory_rope(height, width, head_dim, theta, device, 1, 0)
            identity = torch.ones(num_unrotated, grid.shape[1], dtype=grid.dtype, device=device)
            return torch.cat([grid.repeat(repeat, 1), identity])
        return rope_rotation(height, width, head_dim, theta).to(device)


def rope_attention(
    q: Tensor, k: Tensor, v: Tensor, num_heads: int, rope: Tensor, key_rope: Tensor
) -> Tensor:
    """Attention of projected q [B, N, C] over k, v [B, L, C] with RoPE rotations rope [N, D/2]
    and key_rope [L, D/2] (see `memory_rope`) -> [B, N, C]."""

    def heads(x: Tensor) -> Tensor:
        return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)

    q, k = apply_rope(heads(q), rope), apply_rope(heads(k), key_rope)
    out = F.scaled_dot_product_attention(q, k, heads(v))
    return out.transpose(1, 2).flatten(2)


class RoPEAttention(nn.Module):
    """Attention with 2-D RoPE on queries and on the spatial part of the keys."""

    def __init__(self, config: TrackerConfig, kv_in_dim: int | None = None) -> None:
        super().__init__()
        d = config.hidden_size
        internal = d // config.memory_attention_downsample_rate
        self.num_heads = config.memory_attention_num_heads
        kv_in_dim = d if kv_in_dim is None else kv_in_dim
        self.q_proj = nn.Linear(d, internal)
        self.k_proj = nn.Linear(kv_in_dim, internal)
        self.v_proj = nn.Linear(kv_in_dim, internal)
        self.o_proj = nn.Linear(internal, d)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, rope: Tensor, key_rope: Tensor
    ) -> Tensor:
        """query [B, HW, C], key/value [B, L, Ckv] -> [B, HW, C]; rope [HW, D/2] and key_rope
        [L, D/2] complex rotations (see `memory_rope`)."""
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        return self.o_proj(rope_attention(q, k, v, self.num_heads, rope, key_rope))


class MemoryAttentionLayer(nn.Module):
    """Pre-norm self-attention, cross-attention to the memory, ReLU MLP."""

    def __init__(self, config: TrackerConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.self_attn = RoPEAttention(config)
        self.cross_attn_image = RoPEAttention(config, kv_in_dim=config.memory_channels)
        self.linear1 = nn.Linear(d, config.memory_attention_mlp_dim)
        self.linear2 = nn.Linear(config.memory_attention_mlp_dim, d)
        self.layer_norm1 = nn.LayerNorm(d)
        self.layer_norm2 = nn.LayerNorm(d)
        self.layer_norm3 = nn.LayerNorm(d)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        rope: Tensor,
        key_rope: Tensor,
    ) -> Tensor:
        """x [B or 1, HW, C], memory/memory_pos [B, L, M] -> [B, HW, C] (x of one image is
        shared by the B objects up to the cross-attention); rope/key_rope as `RoPEAttention`."""
        q = self.layer_norm1(x)
        x = x + self.self_attn(q, q, q, rope, rope)
        if x.shape[0] != memory.shape[0]:
            x = x.expand(memory.shape[0], -1, -1)
        q = self.layer_norm2(x)
        x = x + self.cross_attn_image(q, memory + memory_pos, memory, rope, key_rope)
        return x + self.linear2(linear_activation(self.layer_norm3(x), self.linear1, "relu"))


class MemoryAttention(nn.Module):
    """Conditions the current frame's embedding on the memory bank."""

    def __init__(self, config: TrackerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [MemoryAttentionLayer(config) for _ in range(config.num_memory_attention_layers)]
        )
        self.layer_norm = nn.LayerNorm(config.hidden_size)
        self.head_dim = (
            config.hidden_size
            // config.memory_attention_downsample_rate
            // config.memory_attention_num_heads
        )
        self.rope_theta = config.memory_attention_rope_theta

    def forward(
        self,
        image_embed: Tensor,
        image_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        num_object_pointer_tokens: int = 0,
    ) -> Tensor:
        """image_embed/image_pos [B, C, h, w], memory/memory_pos [B, L, M] -> [B, C, h, w]."""
        batch, channels, height, width = image_embed.shape
        shared = image_embed.stride(0) == 0 and image_pos.stride(0) == 0
        if batch > 1 and shared and memory.shape[0] == batch and self.layers:
            # one image expanded to B objects: the first self-attention is the same for all
            image_embed, image_pos = image_embed[:1], image_pos[:1]
        x = (image_embed + 0.1 * image_pos).flatten(2).transpose(1, 2)
        num_maps, rest = divmod(memory.shape[1] - num_object_pointer_tokens, height * width)
        if rest or num_maps < 0:
            raise ValueError(
                f"Memory has {memory.shape[1] - num_object_pointer_tokens} spatial tokens, not a "
                f"multiple of the {height * width} image tokens; pass whole memory maps and "
                "count object pointers in num_object_pointer_tokens."
            )
        args = (height, width, self.head_dim, self.rope_theta, image_embed.device)
        rope = memory_rope(*args)
        key_rope = memory_rope(*args, num_maps, num_object_pointer_tokens)
        memory = memory.to(x.dtype)
        memory_pos = memory_pos.to(x.dtype)
        for layer in self.layers:
            x = layer(x, memory, memory_pos, rope, key_rope)
        x = self.layer_norm(x)
        return x.transpose(1, 2).reshape(batch, channels, height, width)
