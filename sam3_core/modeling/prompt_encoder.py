"""SAM 2-style prompt encoder of the tracker: clicks and boxes become sparse tokens (random
Fourier position features plus a learned per-label embedding), a low-res mask becomes a dense
map added to the image embedding.

Parameter names follow transformers' `Sam3TrackerVideoPromptEncoder`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import TrackerConfig
from sam3_core.modeling.tracker_mask_decoder import LayerNorm2d

PAD_LABEL = -1
"""Label of a padding / "not a point" click."""
IGNORE_LABEL = -10
"""Label of a click whose embedding is zeroed (transformers' processor padding)."""


class RandomFourierEmbedding(nn.Module):
    """Encodes [0, 1]-normalised (x, y) with a fixed random Gaussian projection (SAM's PE)."""

    def __init__(self, hidden_size: int, scale: float = 1.0) -> None:
        super().__init__()
        table = torch.empty(2, hidden_size // 2)
        if table.device.type != "meta":  # on meta (`load_model`) it is loaded, and randn there
            table = scale * torch.randn(2, hidden_size // 2)  # would import torch._dynamo
        self.register_buffer("positional_embedding", table)

    def forward(self, coords: Tensor) -> Tensor:
        """coords [..., 2] in [0, 1] -> [..., C] (sin and cos halves)."""
        coords = (2 * coords - 1).to(self.positional_embedding.dtype)
        proj = 2 * math.pi * (coords @ self.positional_embedding)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    def grid(self, height: int, width: int) -> Tensor:
        """Encoding of each cell centre of an h x w grid: [1, C, h, w]."""
        ref = self.positional_embedding
        ys = (torch.arange(height, device=ref.device, dtype=ref.dtype) + 0.5) / height
        xs = (torch.arange(width, device=ref.device, dtype=ref.dtype) + 0.5) / width
        coords = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None]), dim=-1)
        return self(coords).permute(2, 0, 1).unsqueeze(0)


class MaskEmbedding(nn.Module):
    """Downsamples a low-res mask by 4 into a dense [C, h, w] prompt."""

    def __init__(self, config: TrackerConfig) -> None:
        super().__init__()
        mid = config.mask_input_channels // 4
        self.conv1 = nn.Conv2d(1, mid, kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(mid, config.mask_input_channels, kernel_size=2, stride=2)
        self.conv3 = nn.Conv2d(config.mask_input_channels, config.hidden_size, kernel_size=1)
        self.layer_norm1 = LayerNorm2d(mid)
        self.layer_norm2 = LayerNorm2d(config.mask_input_channels)
        self.activation = nn.GELU()

    def forward(self, masks: Tensor) -> Tensor:
        """masks [B, 1, 4h, 4w] logits -> [B, C, h, w]."""
        x = self.activation(self.layer_norm1(self.conv1(masks)))
        x = self.activation(self.layer_norm2(self.conv2(x)))
        return self.conv3(x)


class TrackerPromptEncoder(nn.Module):
    """Turns clicks, boxes and mask logits into sparse tokens and a dense embedding."""

    def __init__(self, config: TrackerConfig, image_size: int, patch_size: int) -> None:
        super().__init__()
        self.shared_embedding = RandomFourierEmbedding(config.hidden_size)
        self.mask_embed = MaskEmbedding(config)
        self.no_mask_embed = nn.Embedding(1, config.hidden_size)
        self.point_embed = nn.Embedding(config.num_point_embeddings, config.hidden_size)
        self.not_a_point_embed = nn.Embedding(1, config.hidden_size)
        grid = image_size // patch_size
        self.image_size = image_size
        self.image_embedding_size = (grid, grid)
        self.mask_input_size = (4 * grid, 4 * grid)

    def embed_points(self, points: Tensor, labels: Tensor) -> Tensor:
        """points [B, N, P, 2] pixels, labels [B, N, P] -> tokens [B, N, P, C].

        Labels: 0 negative, 1 positive, 2/3 box corners, -1 padding ("not a point"),
        -10 ignored (zero embedding).
        """
        emb = self.shared_embedding((points + 0.5) / self.image_size)
        labels = labels[..., None]
        emb = torch.where(labels == PAD_LABEL, self.not_a_point_embed.weight.to(emb.dtype), emb)
        emb = torch.where(labels == IGNORE_LABEL, torch.zeros_like(emb), emb)
        label_emb = self.point_embed(labels.squeeze(-1).clamp(min=0)).to(emb.dtype)
        return emb + label_emb * (labels >= 0)

    def forward(
        self,
        points: Tensor | None,
        labels: Tensor | None,
        boxes: Tensor | None,
        batch: int,
        num_prompts: int,
    ) -> Tensor:
        """Sparse tokens [B, N, T, C] for the clicks [B, N, P, 2] and boxes [B, N, 4] (xyxy px).

        Clicks without a box get one padding token appended; a box gives its two corners plus a
        padding token (SAM's layout); no prompt at all gives two padding tokens.
        """
        ref = self.point_embed.weight
        if points is None and boxes is None:
            # two padding tokens: `embed_points` would give exactly the not-a-point embedding
            weight = self.not_a_point_embed.weight
            return weight.expand(batch, num_prompts, 2, weight.shape[-1])
        if boxes is None:
            points = F.pad(points, (0, 0, 0, 1))
            labels = F.pad(labels.long(), (0, 1), value=PAD_LABEL)
        else:
            corners = F.pad(boxes.reshape(batch, num_prompts, 2, 2), (0, 0, 0, 1))
            corner_labels = torch.tensor([2, 3, PAD_LABEL], device=ref.device)
            corner_labels = corner_labels.expand(batch, num_prompts, 3)
            if points is None:
                points, labels = corners, corner_labels
            else:
                points = torch.cat([points.to(corners.dtype), corners], dim=2)
                labels = torch.cat([labels.long(), corner_labels], dim=2)
        return self.embed_points(points.to(ref.dtype), labels)

    def embed_masks(self, masks: Tensor | None, batch: int, num_prompts: int) -> Tensor:
        """Dense prompt: masks [B, N, 1, 4h, 4w] -> [B*N, C, h, w]; None -> [1, C, 1, 1]."""
        if masks is None:
            return self.no_mask_embed.weight.reshape(1, -1, 1, 1)
        masks = masks.reshape(batch * num_prompts, 1, *masks.shape[-2:])
        if masks.shape[-2:] != self.mask_input_size:
            masks = F.interpolate(
                masks.float(),
                size=self.mask_input_size,
                mode="bilinear",
                align_corners=False,
                antialias=True,
            ).to(masks.dtype)
        return self.mask_embed(masks.to(self.point_embed.weight.dtype))
