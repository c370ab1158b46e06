"""SAM 3.1's decoupled memory attention: the current frame's features of one bucket attend to
its memory bank, with the image features of the memory frames (shared by all buckets) and the
buckets' own memory maps projected apart and summed into the keys; 2-D RoPE on queries and on
the spatial keys, none on object-pointer tokens.

Layer parameter names keep Meta's (`self_attn_q_proj`, `image_cross_attn_k_proj`, ...); the
norms are renamed `layer_norm*` as in our other modules.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sam3_core.config import MultiplexConfig
from sam3_core.modeling.layers import linear_activation
from sam3_core.modeling.memory import memory_rope, rope_attention


class DecoupledMemoryAttentionLayer(nn.Module):
    """Pre-norm RoPE self-attention, decoupled RoPE cross-attention to the memory, GELU MLP."""

    def __init__(self, hidden_size: int, config: MultiplexConfig) -> None:
        super().__init__()
        d = hidden_size
        self.num_heads = config.memory_attention_num_heads
        for name in ("self_attn", "cross_attn"):
            for proj in ("q", "k", "v", "out"):
                setattr(self, f"{name}_{proj}_proj", nn.Linear(d, d))
        self.image_cross_attn_q_proj = nn.Linear(d, d)
        self.image_cross_attn_k_proj = nn.Linear(d, d)
        self.linear1 = nn.Linear(d, config.memory_attention_mlp_dim)
        self.linear2 = nn.Linear(config.memory_attention_mlp_dim, d)
        self.layer_norm1 = nn.LayerNorm(d)
        self.layer_norm2 = nn.LayerNorm(d)
        self.layer_norm3 = nn.LayerNorm(d)

    def forward(
        self,
        image: Tensor,
        x: Tensor,
        memory_image: Tensor,
        memory_keys: Tensor,
        memory: Tensor,
        rope: Tensor,
        key_rope: Tensor,
    ) -> Tensor:
        """image [1 or B, HW, C] current-frame features; x [1 or B, HW, C] the bucket stream
        (one row while it is the same for every bucket: the first layer's self-attention and
        queries are then computed once); memory_image [1 or B, L, C] memory-frame features
        (zeros at pointer tokens); memory_keys [B, L, C] positional part of the keys;
        memory [B, L, C] -> [B, HW, C]."""
        t = self.layer_norm1(x)
        out = rope_attention(
            self.self_attn_q_proj(t),
            self.self_attn_k_proj(t),
            self.self_attn_v_proj(t),
            self.num_heads,
            rope,
            rope,
        )
        x = x + self.self_attn_out_proj(out)
        t = self.layer_norm2(x)
        q = self.image_cross_attn_q_proj(image) + self.cross_attn_q_proj(t)
        k = self.image_cross_attn_k_proj(memory_image) + self.cross_attn_k_proj(memory)
        q = q.expand(memory.shape[0], -1, -1)
        out = rope_attention(
            q, k + memory_keys, self.cross_attn_v_proj(memory), self.num_heads, rope, key_rope
        )
        x = x + self.cross_attn_out_proj(out)
        return x + self.linear2(linear_activation(self.layer_norm3(x), self.linear1, "gelu"))


class DecoupledMemoryAttention(nn.Module):
    """Conditions B buckets' current-frame features on their memory banks."""

    def __init__(self, hidden_size: int, config: MultiplexConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DecoupledMemoryAttentionLayer(hidden_size, config)
            for _ in range(config.num_memory_attention_layers)
        )
        self.layer_norm = nn.LayerNorm(hidden_size)
        self.head_dim = hidden_size // config.memory_attention_num_heads
        self.rope_theta = config.memory_attention_rope_theta

    def forward(
        self,
        image: Tensor,
        image_pos: Tensor,
        memory_image: Tensor,
        memory_image_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        num_object_pointer_tokens: int = 0,
    ) -> Tensor:
        """Memory-conditioned features [B, C, h, w] of the current frame.

        image/image_pos [1 or B, C, h, w]: the frame's features and their sine encoding;
        memory_image/memory_image_pos [1 or B, S, C]: the memory frames' features and their
        encodings (+ temporal encodings), S = frames x hw; memory/memory_pos [B, S + P, C]:
        the buckets' memory maps then P object-pointer tokens, with their encodings.
        """
        batch = memory.shape[0]
        _, channels, height, width = image.shape
        spatial = memory.shape[1] - num_object_pointer_tokens
        num_maps, rest = divmod(spatial, height * width)
        if rest or num_maps < 0 or memory_image.shape[1] != spatial:
            raise ValueError(
                f"Memory has {spatial} spatial tokens and {memory_image.shape[1]} memory-frame "
                f"feature tokens; both must be whole {height}x{width} maps, with the "
                f"{num_object_pointer_tokens} object-pointer tokens only in memory"
            )
        tokens = image.flatten(2).transpose(1, 2)
        x = tokens + 0.1 * image_pos.flatten(2).transpose(1, 2)  # [1 or B, HW, C]
        if num_object_pointer_tokens:
            ptr_pos = memory_pos[:1, spatial:]
            pad = memory_image.new_zeros(memory_image.shape[0], num_object_pointer_tokens, channels)
            memory_image = torch.cat([memory_image, pad], dim=1)
            ptr_pos = ptr_pos.expand(memory_image_pos.shape[0], -1, -1)
            memory_image_pos = torch.cat([memory_image_pos, ptr_pos], dim=1)
        args = (height, width, self.head_dim, self.rope_theta, image.device)
        rope = memory_rope(*args)
        key_rope = memory_rope(*args, num_maps, num_object_pointer_tokens)
        for layer in self.layers:
            x = layer(tokens, x, memory_image, memory_image_pos, memory, rope, key_rope)
        x = self.layer_norm(x)
        return x.transpose(1, 2).reshape(batch, channels, height, width)
