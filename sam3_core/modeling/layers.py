"""Building blocks shared by the detector's components: attention, MLPs, sine encodings."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Tensor caches keyed by device (positional tables), each an `lru_cache`: see `device_cache`.
DEVICE_CACHES: list[Any] = []


def device_cache(maxsize: int) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """`functools.lru_cache` for functions that build tensors per size, device and dtype,
    registered so that `clear_device_caches` can empty them all."""

    def wrap(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        cached = functools.lru_cache(maxsize=maxsize)(fn)
        DEVICE_CACHES.append(cached)
        return cached

    return wrap


def clear_device_caches() -> None:
    """Drop every `device_cache` entry: frees their device memory, and keeps tensors made
    under a tracing mode (e.g. fake tensors in tests) from being served outside it."""
    for cached in DEVICE_CACHES:
        cached.cache_clear()


def autocast_input(x: Tensor) -> Tensor:
    """x in the autocast dtype while autocast is on, else x: cast once for several matmuls
    that read it (autocast would copy it once per matmul)."""
    device = x.device.type
    if x.is_floating_point() and torch.is_autocast_enabled(device):
        return x.to(torch.get_autocast_dtype(device))
    return x


def key_padding_mask(valid: Tensor | None) -> Tensor | None:
    """[B, Lk] bool (True = valid) -> an SDPA boolean mask [B, 1, 1, Lk]."""
    return None if valid is None else valid[:, None, None, :]


class Attention(nn.Module):
    """Multi-head attention on [B, L, C] tokens through `scaled_dot_product_attention`.

    `mask` is a bool mask (True = attend) or an additive float bias, broadcastable to
    [B, heads, Lq, Lk].
    """

    def __init__(self, hidden_size: int, num_heads: int, out_name: str = "o_proj") -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_name = out_name
        setattr(self, out_name, nn.Linear(hidden_size, hidden_size))

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        query = autocast_input(query)
        key = query if key is query else autocast_input(key)
        value = key if value is key else autocast_input(value)
        q = self._heads(self.q_proj(query))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        if mask is not None and mask.dtype != torch.bool:
            mask = mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return getattr(self, self.out_name)(out.transpose(1, 2).flatten(2))


class MLP(nn.Module):
    """fc1 -> activation -> fc2 (transformer feed-forward)."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {sorted(ACTIVATIONS)}")
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(linear_activation(x, self.fc1, self.activation))


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def linear_activation(x: Tensor, linear: nn.Linear, activation: str) -> Tensor:
    """activation(linear(x)) for "relu" or "gelu" (exact, erf).

    On a CPU with oneDNN this is one kernel with the bias and the activation fused: the hidden
    layer (4.6x the width in the ViT, 8x in the DETR encoder) is written once instead of being
    filled with the bias, multiplied into, then read and written again by the activation.
    Under autocast it computes in the autocast dtype, as `linear` would.
    """
    if x.numel() // x.shape[-1] * linear.out_features < 2**16:
        return ACTIVATIONS[activation](linear(x))  # small outputs: the plain ops' call is cheaper
    cast = autocast_input(x)
    if not _fusable(cast, linear.weight):
        return ACTIVATIONS[activation](linear(x))
    x = cast
    weight, bias = linear.weight.to(x.dtype), linear.bias
    bias = None if bias is None else bias.to(x.dtype)
    algorithm = "none" if activation == "gelu" else ""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], algorithm)


def _fusable(x: Tensor, weight: Tensor) -> bool:
    """Whether oneDNN's fused linear can run here: CPU, fp32 (bf16 only where oneDNN has bf16
    kernels: without them it refuses the primitive), no autograd."""
    dtypes = FUSED_LINEAR_DTYPES
    return (
        x.device.type == "cpu"
        and x.dtype in dtypes
        and weight.dtype in (torch.float32, x.dtype)
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )


def fused_linear_dtypes() -> tuple[torch.dtype, ...]:
    """The dtypes oneDNN's fused linear + activation serves on this CPU; () when it is off.

    `SAM3_FUSED_KERNELS=0` turns the fused CPU kernels off (plain ops everywhere, for checks).
    bf16 needs oneDNN's bf16 support (AVX512-BF16 or AMX): on other CPUs (AVX2-only machines)
    oneDNN cannot create the bf16 primitive, so bf16 takes the plain ops there.
    """
    if os.environ.get("SAM3_FUSED_KERNELS", "1") == "0":
        return ()
    if not (
        torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    ):
        return ()
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return (torch.float32, torch.bfloat16)
    return (torch.float32,)


FUSED_LINEAR_DTYPES = fused_linear_dtypes()


class HeadMLP(nn.Module):
    """A 2- or 3-layer ReLU MLP (`layer1..layer3`) used by the box, presence and RPB heads."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        if num_layers not in (2, 3):
            raise ValueError(f"HeadMLP supports 2 or 3 layers, got {num_layers}")
        self.layer1 = nn.Linear(input_dim, hidden_dim)
        self.layer2 = nn.Linear(hidden_dim, output_dim if num_layers == 2 else hidden_dim)
        self.layer3 = nn.Linear(hidden_dim, output_dim) if num_layers == 3 else None

    def forward(self, x: Tensor) -> Tensor:
        x = linear_activation(x, self.layer1, "relu")
        if self.layer3 is None:
            return self.layer2(x)
        return self.layer3(linear_activation(x, self.layer2, "relu"))


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    """logit(x) with x clamped to [eps, 1 - eps], as DETR box refinement uses it."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """[..., 4] (cx, cy, w, h) -> (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def _frequencies(num_feats: int, temperature: float, device, dtype) -> Tensor:
    dim_t = torch.arange(num_feats, device=device).to(dtype)
    return temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)


def _interleave_sin_cos(pos: Tensor) -> Tensor:
    """[..., F] angles -> [..., F] with sin at even and cos at odd feature slots."""
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_encode_coords(coords: Tensor, num_feats: int, temperature: float = 10000.0) -> Tensor:
    """Encode each scalar in `coords` [..., K] (already scaled) -> [..., K * num_feats]."""
    dim_t = _frequencies(num_feats, temperature, coords.device, coords.dtype)
    return _interleave_sin_cos(coords[..., None] / dim_t).flatten(-2)


def sine_position_map(
    batch: int, height: int, width: int, num_feats: int, device, dtype, normalize: bool = True
) -> Tensor:
    """DETR's 2-D sine position encoding of a feature map -> [B, 2 * num_feats, H, W] (y then x).

    The map is computed once per size, device and dtype and cached: the result is a read-only
    view (expand) that callers must not modify in place.
    """
    pos = _sine_position_grid(height, width, num_feats, torch.device(device), dtype, normalize)
    return pos.permute(2, 0, 1)[None].expand(batch, -1, -1, -1)


@device_cache(maxsize=32)
def _sine_position_grid(
    height: int, width: int, num_feats: int, device: torch.device, dtype, normalize: bool
) -> Tensor:
    """[H, W, 2 * num_feats] of `sine_position_map`; a plain tensor, usable in and out of
    inference mode."""
    with torch.inference_mode(False), torch.no_grad():
        y = torch.arange(1, height + 1, device=device, dtype=dtype)
        x = torch.arange(1, width + 1, device=device, dtype=dtype)
        if normalize:
            eps, scale = 1e-6, 2 * math.pi
            y = y / (y[-1:] + eps) * scale
            x = x / (x[-1:] + eps) * scale
        dim_t = _frequencies(num_feats, 10000.0, device, dtype)
        pos_y = _interleave_sin_cos(y[:, None] / dim_t)  # [H, F]
        pos_x = _interleave_sin_cos(x[:, None] / dim_t)  # [W, F]
        return torch.cat(
            [
                pos_y[:, None, :].expand(height, width, -1),
                pos_x[None, :, :].expand(height, width, -1),
            ],
            dim=-1,
        )


def rope_rotation(
    height: int, width: int, head_dim: int, theta: float, scale: float = 1.0
) -> Tensor:
    """Complex rotations [height * width, head_dim / 2] of 2-D axial RoPE on a row-major grid.

    Channel pairs (2k, 2k + 1) of a head form one complex number; the first half of the pairs
    rotates with the x position (times `scale`), the second half with y.
    """
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim // 2, 2, dtype=torch.float) / (head_dim // 2))
    )
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    x = xs.flatten().float() * scale
    y = ys.flatten().float() * scale
    angles = torch.cat([x[:, None] * inv_freq, y[:, None] * inv_freq], dim=-1)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: Tensor, rotation: Tensor) -> Tensor:
    """Rotate channel pairs of x [..., L, D] by rotation [L, D / 2] (complex), in float32."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)
