"""SAM 3.1's multiplex mask decoder: one two-way-transformer pass decodes every object of a
bucket. Per slot it holds an object-score token, an IoU token and three mask tokens (the
released model predicts multimask outputs only, without SAM's single-mask token).

Parameter names follow our `TrackerMaskDecoder` (Meta's `MultiplexMaskDecoder` renamed the
same way), so the key converter shares its rules.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sam3_core.config import TrackerConfig
from sam3_core.modeling.tracker_mask_decoder import (
    LayerNorm2d,
    TrackerMLP,
    TwoWayTransformer,
    as_tokens,
)


class MultiplexMaskDecoder(nn.Module):
    """Masks, IoU and object scores of `multiplex_count` object slots per bucket."""

    def __init__(self, config: TrackerConfig, multiplex_count: int) -> None:
        super().__init__()
        d = config.hidden_size
        self.multiplex_count = multiplex_count
        self.num_masks = config.num_multimask_outputs  # per object
        self.obj_score_token = nn.Embedding(multiplex_count, d)
        self.iou_token = nn.Embedding(multiplex_count, d)
        self.mask_tokens = nn.Embedding(multiplex_count * self.num_masks, d)
        self.transformer = TwoWayTransformer(config)
        self.upscale_conv1 = nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2)
        self.upscale_layer_norm = LayerNorm2d(d // 4)
        self.upscale_conv2 = nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2)
        self.activation = nn.GELU()
        self.conv_s0 = nn.Conv2d(d, d // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(d, d // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            [TrackerMLP(d, d, d // 8, 3) for _ in range(self.num_masks)]
        )
        self.iou_prediction_head = TrackerMLP(
            d,
            config.iou_head_hidden_dim,
            self.num_masks,
            config.iou_head_depth,
            sigmoid_output=config.iou_prediction_use_sigmoid,
        )
        self.pred_obj_score_head = TrackerMLP(d, d, 1, 3)

    def forward(
        self,
        image_embed: Tensor,
        image_pe: Tensor,
        high_res: tuple[Tensor, Tensor],
        slot_embeddings: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Decode B buckets, each a [C, h, w] memory-conditioned embedding.

        image_embed [B, C, h, w]; image_pe [1, C, h, w]; high_res ([B, C/8, 4h, 4w],
        [B, C/4, 2h, 2w]) already through conv_s0/conv_s1; slot_embeddings [B, m, C] added to
        each slot's mask tokens (the valid/invalid-slot embeddings). Returns masks
        [B, m, K, 4h, 4w], IoU [B, m, K], mask tokens [B, m, K, C] and object score logits
        [B, m, 1], with m = multiplex_count and K = num_multimask_outputs.
        """
        batch, channels, height, width = image_embed.shape
        m, k = self.multiplex_count, self.num_masks
        mask_tokens = self.mask_tokens.weight.view(1, m, k, channels).expand(batch, -1, -1, -1)
        if slot_embeddings is not None:
            mask_tokens = mask_tokens + slot_embeddings.unsqueeze(2)
        head = torch.cat([self.obj_score_token.weight, self.iou_token.weight], dim=0)
        tokens = torch.cat([head.expand(batch, -1, -1), mask_tokens.flatten(1, 2)], dim=1)
        tokens, keys = self.transformer(tokens, as_tokens(image_embed), as_tokens(image_pe))
        score_out, iou_out = tokens[:, :m], tokens[:, m : 2 * m]
        mask_out = tokens[:, 2 * m :].reshape(batch, m, k, channels)

        feat_s0, feat_s1 = high_res
        src = keys.transpose(1, 2).reshape(batch, channels, height, width)
        up = self.upscale_layer_norm(self.upscale_conv1(src) + feat_s1)
        up = self.activation(self.upscale_conv2(self.activation(up)) + feat_s0)
        hyper = torch.stack(
            [mlp(mask_out[:, :, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 2
        )
        masks = (hyper.flatten(1, 2) @ up.flatten(2)).view(batch, m, k, *up.shape[-2:])
        iou = self.iou_prediction_head(iou_out).view(batch, m, k)
        return masks, iou, mask_out, self.pred_obj_score_head(score_out)
