"""CLIP text transformer: token ids -> per-token features projected to the detector width."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import TextConfig
from sam3_core.modeling.layers import MLP


class CausalSelfAttention(nn.Module):
    """CLIP self-attention with a causal mask (`out_proj` names the output projection)."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (
            p(x).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class TextLayer(nn.Module):
    """Pre-norm CLIP block."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.self_attn = CausalSelfAttention(cfg.hidden_size, cfg.num_heads)
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size, activation="gelu")
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class TextEmbeddings(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)

    def forward(self, input_ids: Tensor) -> Tensor:
        n = input_ids.shape[-1]
        return self.token_embedding(input_ids) + self.position_embedding.weight[:n]


class TextEncoderBlocks(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TextLayer(cfg) for _ in range(cfg.num_layers))


class TextModel(nn.Module):
    """input_ids [N, L] -> last hidden state [N, L, hidden] after the final layer norm.

    Padding needs no mask here: attention is causal and padding comes last, so valid tokens
    never see it; downstream consumers mask padded positions.
    """

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.embeddings = TextEmbeddings(cfg)
        self.encoder = TextEncoderBlocks(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: Tensor) -> Tensor:
        x = self.embeddings(input_ids)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.final_layer_norm(x)


class TextEncoder(nn.Module):
    """CLIP text tower. `text_projection` (CLIP's pooled projection) is loaded but unused by SAM 3."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.text_model = TextModel(cfg)
        self.text_projection = nn.Linear(cfg.hidden_size, cfg.projection_dim, bias=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.text_model(input_ids)
