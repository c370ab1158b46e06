"""SAM 2-style mask decoder of the tracker: a two-way transformer between prompt tokens and the
image embedding, then a hypernetwork that turns mask tokens into mask logits at 4x the embedding
resolution, plus IoU and object-score heads.

Parameter names follow transformers' `Sam3TrackerVideoMaskDecoder` so its checkpoint loads as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import TrackerConfig


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of a [B, C, H, W] map (parameters named like nn.LayerNorm)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, H, W], normalised per pixel over C."""
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TrackerMLP(nn.Module):
    """Plain MLP `proj_in -> layers -> proj_out` with an activation between layers."""

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int,
        activation: str = "relu",
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        self.proj_in = nn.Linear(in_dim, hidden_dim)
        self.proj_out = nn.Linear(hidden_dim, out_dim)
        self.layers = nn.ModuleList(
            [nn.Linear(hidden_dim, hidden_dim) for _ in range(num_layers - 2)]
        )
        self.activation = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: Tensor) -> Tensor:
        """[..., in_dim] -> [..., out_dim]."""
        x = self.activation(self.proj_in(x))
        for layer in self.layers:
            x = self.activation(layer(x))
        x = self.proj_out(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


class TrackerAttention(nn.Module):
    """Multi-head attention whose inner width is `hidden / downsample_rate` (SAM's decoder)."""

    def __init__(self, hidden_size: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        internal_dim = hidden_size // downsample_rate
        if internal_dim % num_heads:
            raise ValueError(
                f"Tracker attention width {internal_dim} is not divisible by {num_heads} heads; "
                "choose hidden_size / attention_downsample_rate as a multiple of num_heads."
            )
        self.num_heads = num_heads
        self.q_proj = nn.Linear(hidden_size, internal_dim)
        self.k_proj = nn.Linear(hidden_size, internal_dim)
        self.v_proj = nn.Linear(hidden_size, internal_dim)
        self.o_proj = nn.Linear(internal_dim, hidden_size)

    def _heads(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """query [B, Lq, C], key/value [B, Lk, C] -> [B, Lq, C] via SDPA."""
        q = self._heads(self.q_proj(query))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).flatten(2)
        return self.o_proj(out)


class TwoWayAttentionBlock(nn.Module):
    """Tokens self-attend, attend to the image, pass an MLP; then the image attends to tokens."""

    def __init__(self, config: TrackerConfig, skip_first_layer_pe: bool) -> None:
        super().__init__()
        d, heads, rate = config.hidden_size, config.num_heads, config.attention_downsample_rate
        self.self_attn = TrackerAttention(d, heads, downsample_rate=1)
        self.layer_norm1 = nn.LayerNorm(d)
        self.cross_attn_token_to_image = TrackerAttention(d, heads, rate)
        self.layer_norm2 = nn.LayerNorm(d)
        self.mlp = TrackerMLP(d, config.mlp_dim, d, num_layers=config.num_layers)
        self.layer_norm3 = nn.LayerNorm(d)
        self.layer_norm4 = nn.LayerNorm(d)
        self.cross_attn_image_to_token = TrackerAttention(d, heads, rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        """queries [B, T, C], keys [B, HW, C] (+ encodings [B, T, C], [1 or B, HW, C]) ->
        updated (queries, keys)."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.layer_norm1(queries)

        k = keys + key_pe  # the keys change only at the end: one sum serves both attentions
        q = queries + query_pe
        queries = self.layer_norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.layer_norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.layer_norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Stack of two-way blocks and a final token-to-image attention."""

    def __init__(self, config: TrackerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                TwoWayAttentionBlock(config, skip_first_layer_pe=i == 0)
                for i in range(config.num_layers)
            ]
        )
        d = config.hidden_size
        self.final_attn_token_to_image = TrackerAttention(
            d, config.num_heads, config.attention_downsample_rate
        )
        self.layer_norm_final_attn = nn.LayerNorm(d)

    def forward(self, tokens: Tensor, keys: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor]:
        """tokens [B, T, C], image tokens keys [B, hw, C] and their encoding key_pe [1 or B, hw, C]
        -> (tokens [B, T, C], image tokens [B, hw, C])."""
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q, k = queries + tokens, keys + key_pe
        queries = self.layer_norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys


class TrackerMaskDecoder(nn.Module):
    """Predicts mask logits, IoU scores and an object score from prompt and image embeddings."""

    def __init__(self, config: TrackerConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.num_mask_tokens = config.num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, d)
        self.transformer = TwoWayTransformer(config)
        self.upscale_conv1 = nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2)
        self.upscale_conv2 = nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2)
        self.upscale_layer_norm = LayerNorm2d(d // 4)
        self.activation = nn.GELU()
        self.output_hypernetworks_mlps = nn.ModuleList(
            [TrackerMLP(d, d, d // 8, 3) for _ in range(self.num_mask_tokens)]
        )
        self.iou_prediction_head = TrackerMLP(
            d,
            config.iou_head_hidden_dim,
            self.num_mask_tokens,
            config.iou_head_depth,
            sigmoid_output=config.iou_prediction_use_sigmoid,
        )
        self.conv_s0 = nn.Conv2d(d, d // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(d, d // 4, kernel_size=1)
        self.obj_score_token = nn.Embedding(1, d)
        self.pred_obj_score_head = TrackerMLP(d, d, 1, 3)
        self.dynamic_multimask_via_stability = config.dynamic_multimask_via_stability
        self.stability_delta = config.dynamic_multimask_stability_delta
        self.stability_thresh = config.dynamic_multimask_stability_thresh

    def forward(
        self,
        image_embed: Tensor,
        image_pe: Tensor,
        sparse: Tensor,
        dense: Tensor,
        high_res: tuple[Tensor, Tensor],
        multimask: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Decode B images x N prompts in one pass.

        image_embed [B, C, h, w] or tokens [B, hw, C]; image_pe [1 or B, C, h, w] or tokens
        [1 or B, hw, C]; sparse [B, N, T, C]; dense [B*N or 1, C, h or 1, w or 1];
        high_res ([B, C/8, 4h, 4w], [B, C/4, 2h, 2w]), fastest in channels_last memory format.
        Returns masks [B, N, K, 4h, 4w], iou [B, N, K], mask tokens [B, N, K, C],
        object score logits [B, N, 1]; K = 3 if multimask else 1.
        """
        batch, num_prompts = sparse.shape[:2]
        output_tokens = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0
        )
        output_tokens = output_tokens.to(sparse.dtype).expand(batch * num_prompts, -1, -1)
        tokens = torch.cat([output_tokens, sparse.flatten(0, 1)], dim=1)

        keys, key_pe = as_tokens(image_embed), as_tokens(image_pe)
        dense = as_tokens(dense).unflatten(0, (-1, num_prompts) if dense.shape[0] > 1 else (1, 1))
        # [B, N (expanded), hw, C] + [B or 1, N or 1, hw or 1, C]: one sum, no repeat copy
        keys = keys[:, None].expand(-1, num_prompts, -1, -1) + dense
        keys = keys.flatten(0, 1).contiguous()
        tokens, keys = self.transformer(tokens, keys, key_pe)
        tokens = tokens.view(batch, num_prompts, *tokens.shape[1:])
        iou_token_out = tokens[:, :, 1]
        mask_tokens_out = tokens[:, :, 2 : 2 + self.num_mask_tokens]

        up = self._upscale(keys.view(batch, num_prompts, *keys.shape[1:]), high_res)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, :, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=2,
        )
        height, width = up.shape[2:4]
        masks = hyper_in @ up.flatten(2, 3).transpose(-1, -2)
        masks = masks.unflatten(3, (height, width))

        iou_pred = self.iou_prediction_head(iou_token_out)
        object_score_logits = self.pred_obj_score_head(tokens[:, :, 0])

        if multimask:
            mask_slice = slice(1, None)
            masks, iou_pred = masks[:, :, mask_slice], iou_pred[:, :, mask_slice]
        elif self.dynamic_multimask_via_stability and not self.training:
            mask_slice = slice(0, 1)
            masks, iou_pred = self._dynamic_multimask_via_stability(masks, iou_pred)
        else:
            mask_slice = slice(0, 1)
            masks, iou_pred = masks[:, :, mask_slice], iou_pred[:, :, mask_slice]
        return masks, iou_pred, mask_tokens_out[:, :, mask_slice], object_score_logits

    def _upscale(self, keys: Tensor, high_res: tuple[Tensor, Tensor]) -> Tensor:
        """Image tokens [B, N, hw, C] -> per-pixel features [B, N, 4h, 4w, C/8] (channels last).

        Each stride-2, kernel-2 transposed convolution is one matmul on channels-last pixels
        (every output pixel has a single input pixel), interleaved into the finer grid while
        the FPN skip connection is added.
        """
        feat_s0, feat_s1 = high_res
        height, width = feat_s1.shape[-2] // 2, feat_s1.shape[-1] // 2
        up = _transposed_conv2x2(self.upscale_conv1, keys.unflatten(2, (height, width)), feat_s1)
        ln = self.upscale_layer_norm
        up = self.activation(F.layer_norm(up, ln.normalized_shape, ln.weight, ln.bias, ln.eps))
        return self.activation(_transposed_conv2x2(self.upscale_conv2, up, feat_s0))

    def _stability_scores(self, mask_logits: Tensor) -> Tensor:
        """IoU between the masks thresholded at +delta and -delta: [..., H, W] -> [...]."""
        flat = mask_logits.flatten(-2)
        area_i = (flat > self.stability_delta).sum(-1).float()
        area_u = (flat > -self.stability_delta).sum(-1).float()
        return torch.where(area_u > 0, area_i / area_u, 1.0)

    def _dynamic_multimask_via_stability(self, masks: Tensor, iou: Tensor) -> tuple[Tensor, Tensor]:
        """Keep the single-mask output where it is stable, else the best of the three others.

        masks [B, N, 4, H, W], iou [B, N, 4] -> ([B, N, 1, H, W], [B, N, 1]).
        """
        multi_masks, multi_iou = masks[:, :, 1:], iou[:, :, 1:]
        best = multi_iou.argmax(dim=-1, keepdim=True)
        best_masks = torch.gather(
            multi_masks, 2, best[..., None, None].expand(-1, -1, 1, *masks.shape[-2:])
        )
        best_iou = torch.gather(multi_iou, 2, best)
        single_masks, single_iou = masks[:, :, :1], iou[:, :, :1]
        stable = self._stability_scores(single_masks) >= self.stability_thresh
        out_masks = torch.where(stable[..., None, None], single_masks, best_masks)
        out_iou = torch.where(stable, single_iou, best_iou)
        return out_masks, out_iou


def as_tokens(x: Tensor) -> Tensor:
    """[B, C, h, w] map -> [B, hw, C] tokens (a view); [B, L, C] tokens pass through."""
    return x.flatten(2).transpose(1, 2) if x.ndim == 4 else x


def _transposed_conv2x2(conv: nn.ConvTranspose2d, x: Tensor, skip: Tensor) -> Tensor:
    """`conv(x) + skip` in channels-last layout for a kernel-2, stride-2 `conv`.

    x [B, N, h, w, Cin]; skip [B, Cout, 2h, 2w] -> [B, N, 2h, 2w, Cout] (contiguous).
    """
    batch, num, height, width, _ = x.shape
    cout = conv.out_channels
    weight = conv.weight.permute(0, 2, 3, 1).flatten(1)  # [Cin, (di, dj, Cout)]
    bias = conv.bias.repeat(4)
    y = torch.addmm(bias.to(x.dtype), x.reshape(-1, x.shape[-1]), weight.to(x.dtype))
    y = y.view(batch, num, height, width, 2, 2 * cout).transpose(3, 4)  # [.., h, di, w, (dj, C)]
    skip = skip.permute(0, 2, 3, 1).reshape(batch, 1, height, 2, width, 2 * cout)
    out = torch.empty(
        (batch, num, height, 2, width, 2 * cout),
        dtype=torch.promote_types(y.dtype, skip.dtype),
        device=y.device,
    )
    torch.add(y, skip, out=out)
    return out.view(batch, num, 2 * height, 2 * width, cout)
