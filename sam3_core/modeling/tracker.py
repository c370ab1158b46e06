"""The SAM 3 tracker: SAM 2's prompt encoder and mask decoder for clicks, boxes and masks on the
shared backbone, and the memory modules that carry objects from frame to frame in a video.

The FPN neck that feeds it lives elsewhere; `prepare_image_features` takes its output once per
image and every `predict_masks` call reuses it. Parameter names (and so `state_dict()` keys)
equal those of transformers' `Sam3TrackerVideoModel(config, remove_vision_encoder=True)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import Sam3Config, TrackerConfig
from sam3_core.modeling.memory import MemoryAttention, MemoryEncoder, sine_position_encoding_1d
from sam3_core.modeling.prompt_encoder import RandomFourierEmbedding, TrackerPromptEncoder
from sam3_core.modeling.tracker_mask_decoder import TrackerMaskDecoder, TrackerMLP

NO_OBJECT_SCORE = -1024.0
"""Mask logit written where the object score says the object is absent."""


@dataclass
class TrackerImageFeatures:
    """Per-image tracker inputs, computed once and reused by every prompt.

    image_embed: [B, C, h, w] stride-`patch` FPN level (no memory / no-memory token added).
    high_res_feats: ([B, C/8, 4h, 4w], [B, C/4, 2h, 2w]) finer FPN levels after conv_s0/conv_s1.
    image_pos: [B, C, h, w] the neck's sine encoding of `image_embed` (used by memory attention).
    no_memory_tokens: [B, hw, C] contiguous `image_embed` + no-memory token, in the decoder's
        token layout (None: computed per `predict_masks` call).
    """

    image_embed: Tensor
    high_res_feats: tuple[Tensor, Tensor]
    image_pos: Tensor
    no_memory_tokens: Tensor | None = None


@dataclass
class TrackerOutput:
    """Result of `predict_masks` for B images x N objects.

    low_res_masks: [B, N, K, 4h, 4w] mask logits (K = 3 with multimask, else 1).
    iou_scores: [B, N, K] predicted IoU of each mask.
    object_score_logits: [B, N, 1] logit that the object is present.
    mask_tokens: [B, N, K, C] decoder output tokens of the returned slots (object pointers).
    """

    low_res_masks: Tensor
    iou_scores: Tensor
    object_score_logits: Tensor
    mask_tokens: Tensor


@dataclass
class TrackerMemory:
    """Memory tokens for `attend_memory`: memory/memory_pos [B, L, M]; the last
    `num_object_pointer_tokens` of the L tokens are object pointers."""

    memory: Tensor
    memory_pos: Tensor
    num_object_pointer_tokens: int


class Sam3Tracker(nn.Module):
    """Interactive segmentation (clicks, boxes, masks) and video memory on FPN features."""

    def __init__(self, config: Sam3Config) -> None:
        super().__init__()
        cfg = config.tracker
        if cfg.hidden_size != config.neck.fpn_hidden_size:
            raise ValueError(
                f"Tracker hidden_size {cfg.hidden_size} differs from the FPN width "
                f"{config.neck.fpn_hidden_size}; set both to the same value."
            )
        if cfg.hidden_size % cfg.memory_channels:
            raise ValueError(
                f"Tracker hidden_size {cfg.hidden_size} is not a multiple of memory_channels "
                f"{cfg.memory_channels}; object pointers are split into memory-width tokens."
            )
        self.config = cfg
        d = cfg.hidden_size
        self.image_size = config.vit.image_size
        self.no_memory_embedding = nn.Parameter(torch.zeros(1, 1, d))
        self.shared_image_embedding = RandomFourierEmbedding(d)
        self.prompt_encoder = TrackerPromptEncoder(
            cfg, config.vit.image_size, config.vit.patch_size
        )
        self.mask_decoder = TrackerMaskDecoder(cfg)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.object_pointer_proj = TrackerMLP(d, d, d, 3)
        # SAM 3's video memory; SAM 3.1 (config.multiplex set) tracks with the multiplex
        # tracker instead, and its interactive head has none of these.
        self.has_memory = config.multiplex is None
        if self.has_memory:
            self._build_memory(cfg)
        self._pe_cache: tuple[tuple, Tensor] | None = None

    def _build_memory(self, cfg: TrackerConfig) -> None:
        """SAM 3's memory attention, memory encoder and memory/pointer embeddings."""
        d, mem = cfg.hidden_size, cfg.memory_channels
        self.no_memory_positional_encoding = nn.Parameter(torch.zeros(1, 1, d))
        self.memory_temporal_positional_encoding = nn.Parameter(
            torch.zeros(cfg.num_memory_frames, 1, 1, mem)
        )
        self.no_object_pointer = nn.Parameter(torch.zeros(1, d))
        self.occlusion_spatial_embedding_parameter = (
            nn.Parameter(torch.zeros(1, mem)) if cfg.enable_occlusion_spatial_embedding else None
        )
        self.memory_attention = MemoryAttention(cfg)
        self.memory_encoder = MemoryEncoder(cfg)
        self.temporal_positional_encoding_projection_layer = (
            nn.Linear(d, mem)
            if cfg.enable_temporal_pos_encoding_for_object_pointers
            else nn.Identity()
        )

    # ----------------------------------------------------------------- image / interactive path

    def prepare_image_features(
        self, fpn_features: Sequence[Tensor], fpn_pos: Sequence[Tensor], projected: bool = False
    ) -> TrackerImageFeatures:
        """Project the two finest FPN levels once per image.

        fpn_features/fpn_pos: finest first, [B, C, 4h, 4w], [B, C, 2h, 2w], [B, C, h, w]
        (a fourth, coarser level is ignored), h = w = image_size / patch_size. `projected`:
        the two finest levels already went through conv_s0/conv_s1 (see `encode_image`).
        """
        if len(fpn_features) < 3 or len(fpn_pos) < 3:
            raise ValueError(
                f"The tracker needs 3 FPN levels (scales 4, 2, 1), got {len(fpn_features)} "
                f"features and {len(fpn_pos)} encodings; pass the neck's full output."
            )
        h, w = self.prompt_encoder.image_embedding_size
        expected = [(4 * h, 4 * w), (2 * h, 2 * w), (h, w)]
        got = [tuple(f.shape[-2:]) for f in fpn_features[:3]]
        if got != expected:
            raise ValueError(
                f"FPN level sizes {got} do not match {expected} for a {self.image_size} px "
                "input; resize images to the model's image_size before the backbone."
            )
        s0, s1 = fpn_features[:2]
        if not projected:
            s0, s1 = self.mask_decoder.conv_s0(s0), self.mask_decoder.conv_s1(s1)
        # channels_last: the decoder adds these to channels-last upsampled features
        cl = torch.channels_last
        return TrackerImageFeatures(
            image_embed=fpn_features[2],
            high_res_feats=(s0.contiguous(memory_format=cl), s1.contiguous(memory_format=cl)),
            image_pos=fpn_pos[2],
            no_memory_tokens=self.no_memory_tokens(fpn_features[2]),
        )

    def encode_image(self, neck: nn.Module, vit: Tensor) -> TrackerImageFeatures:
        """ViT map [B, C_vit, h, w] -> the tracker's image features through its FPN `neck`.

        conv_s0/conv_s1 fold into the neck's 3x3 convs of the two finest levels, which then
        output C/8 and C/4 channels instead of C (8x and 4x less work at the largest maps).
        """
        heads = (self.mask_decoder.conv_s0, self.mask_decoder.conv_s1)
        fpn, pos = neck(vit, num_levels=3, heads=heads)
        return self.prepare_image_features(fpn, pos, projected=True)

    def no_memory_tokens(self, image_embed: Tensor) -> Tensor:
        """image_embed [B, C, h, w] + the no-memory token -> contiguous tokens [B, hw, C]."""
        tokens = image_embed.flatten(2).transpose(1, 2) + self.no_memory_embedding
        return tokens.contiguous()

    def image_positional_encoding(self) -> Tensor:
        """Dense positional encoding of the embedding grid: [1, C, h, w]."""
        return self.shared_image_embedding.grid(*self.prompt_encoder.image_embedding_size)

    def image_positional_tokens(self) -> Tensor:
        """`image_positional_encoding` as contiguous tokens [1, hw, C], cached until the
        Fourier matrix changes (in place, dtype or device)."""
        ref = self.shared_image_embedding.positional_embedding
        key = (ref.data_ptr(), ref._version, ref.device, ref.dtype, ref.shape)
        if self._pe_cache is None or self._pe_cache[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable anywhere
                pe = self.image_positional_encoding().flatten(2).transpose(1, 2).contiguous()
            self._pe_cache = (key, pe)
        return self._pe_cache[1]

    def predict_masks(
        self,
        features: TrackerImageFeatures,
        points: Tensor | None = None,
        point_labels: Tensor | None = None,
        boxes: Tensor | None = None,
        mask_input: Tensor | None = None,
        multimask: bool = True,
        image_embed: Tensor | None = None,
    ) -> TrackerOutput:
        """Masks for N objects on each of B images in one batched decoder pass.

        points [B, N, P, 2] pixel xy at the model input size; point_labels [B, N, P]
        (1 positive, 0 negative, -1 padding, 2/3 box corners); boxes [B, N, 4] xyxy pixels;
        mask_input [B, N, 1, 4h, 4w] low-res logits of an earlier call. `image_embed`
        [B, C, h, w] (or tokens [B, hw, C]) replaces the no-memory image embedding
        (memory-conditioned features).
        """
        batch = features.image_embed.shape[0]
        num = self._check_prompts(batch, points, point_labels, boxes, mask_input)
        if image_embed is None:
            image_embed = features.no_memory_tokens
            if image_embed is None:
                image_embed = self.no_memory_tokens(features.image_embed)
        sparse = self.prompt_encoder(points, point_labels, boxes, batch, num)
        dense = self.prompt_encoder.embed_masks(mask_input, batch, num)
        masks, iou, tokens, obj = self.mask_decoder(
            image_embed,
            self.image_positional_tokens(),
            sparse.to(image_embed.dtype),
            dense.to(image_embed.dtype),
            features.high_res_feats,
            multimask,
        )
        return TrackerOutput(masks, iou, obj, tokens)

    @staticmethod
    def _check_prompts(
        batch: int,
        points: Tensor | None,
        labels: Tensor | None,
        boxes: Tensor | None,
        mask_input: Tensor | None,
    ) -> int:
        """Validate prompt shapes against B images and return N, the number of objects."""
        sizes = []
        if points is not None:
            if labels is None:
                raise ValueError("points were given without point_labels; pass both.")
            if points.ndim != 4 or points.shape[-1] != 2 or labels.shape != points.shape[:-1]:
                raise ValueError(
                    f"points {tuple(points.shape)} and point_labels {tuple(labels.shape)} must be "
                    "[B, N, P, 2] and [B, N, P]."
                )
            sizes.append(points.shape[:2])
        elif labels is not None:
            raise ValueError("point_labels were given without points; pass both.")
        if boxes is not None:
            if boxes.ndim != 3 or boxes.shape[-1] != 4:
                raise ValueError(f"boxes {tuple(boxes.shape)} must be [B, N, 4] xyxy.")
            sizes.append(boxes.shape[:2])
        if mask_input is not None:
            if mask_input.ndim != 5 or mask_input.shape[2] != 1:
                raise ValueError(
                    f"mask_input {tuple(mask_input.shape)} must be [B, N, 1, H, W] logits."
                )
            sizes.append(mask_input.shape[:2])
        sizes = [tuple(s) for s in sizes] or [(batch, 1)]
        if any(s != sizes[0] for s in sizes) or sizes[0][0] != batch:
            raise ValueError(
                f"Prompt batch sizes {sizes} disagree with each other or with the {batch} "
                "image(s); give every prompt tensor the same leading [B, N]."
            )
        return sizes[0][1]

    # ----------------------------------------------------------------------- video / memory path

    @staticmethod
    def select_best(output: TrackerOutput) -> tuple[Tensor, Tensor]:
        """Best mask by predicted IoU and its token: ([B, N, 4h, 4w], [B, N, C])."""
        best = output.iou_scores.argmax(dim=-1)
        masks = torch.gather(
            output.low_res_masks,
            2,
            best[:, :, None, None, None].expand(-1, -1, 1, *output.low_res_masks.shape[-2:]),
        ).squeeze(2)
        if output.mask_tokens.shape[2] == 1:
            return masks, output.mask_tokens[:, :, 0]
        tokens = torch.gather(
            output.mask_tokens,
            2,
            best[:, :, None, None].expand(-1, -1, 1, output.mask_tokens.shape[-1]),
        ).squeeze(2)
        return masks, tokens

    def object_pointer(self, mask_token: Tensor, object_score_logits: Tensor) -> Tensor:
        """Object pointer from the chosen mask token [..., C] and score [..., 1]: [..., C].

        Absent objects (score <= 0) get the learned no-object pointer.
        """
        present = (object_score_logits > 0).to(mask_token.dtype)
        pointer = self.object_pointer_proj(mask_token)
        return present * pointer + (1 - present) * self.no_object_pointer

    def track_step_output(self, output: TrackerOutput) -> tuple[Tensor, Tensor, Tensor]:
        """Video-frame result of a decoder call: best low-res mask [B, N, 4h, 4w] (NO_OBJECT_SCORE
        where the object is absent), its upsampled logits [B, N, S, S] (S = image size) and the
        object pointer [B, N, C]."""
        present = output.object_score_logits > 0
        masks = torch.where(present[..., None, None], output.low_res_masks, NO_OBJECT_SCORE)
        gated = TrackerOutput(
            masks, output.iou_scores, output.object_score_logits, output.mask_tokens
        )
        low_res, token = self.select_best(gated)
        high_res = F.interpolate(
            low_res.float(),
            size=(self.image_size, self.image_size),
            mode="bilinear",
            align_corners=False,
        ).to(low_res.dtype)
        return low_res, high_res, self.object_pointer(token, output.object_score_logits)

    def mask_as_output(
        self, features: TrackerImageFeatures, masks: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Use a given binary mask [B, 1, H, W] as the frame's output (SAM 2 mask prompts).

        Returns low-res logits [B, 1, 4h, 4w], high-res logits [B, 1, S, S], object score
        logits [B, 1] and the object pointer [B, C] decoded from the mask.
        """
        dtype = features.image_embed.dtype
        mask = masks.to(dtype)
        if mask.shape[-2:] != (self.image_size, self.image_size):
            mask = F.interpolate(
                mask.float(),
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            ).to(dtype)
        high_res = mask * 20.0 - 10.0
        low_res = F.interpolate(
            high_res.float(),
            size=self.prompt_encoder.mask_input_size,
            mode="bilinear",
            align_corners=False,
            antialias=True,
        ).to(dtype)
        out = self.predict_masks(
            features,
            mask_input=self.mask_downsample(mask)[:, None],
            multimask=True,
            image_embed=features.image_embed,
        )
        _, _, pointer = self.track_step_output(out)
        present = (masks.flatten(1) > 0).any(dim=1, keepdim=True).to(dtype)
        pointer = present * pointer[:, 0] + (1 - present) * self.no_object_pointer
        return low_res, high_res, present * 20.0 - 10.0, pointer

    def encode_memory(
        self,
        image_embed: Tensor,
        high_res_masks: Tensor,
        object_score_logits: Tensor,
        binarize: bool,
    ) -> tuple[Tensor, Tensor]:
        """Memory of one frame per object.

        image_embed [B, C, h, w] (raw FPN level, no no-memory token); high_res_masks [B, 1, H, W]
        logits; object_score_logits [B, 1]; `binarize` thresholds the mask (clicked frames)
        instead of a sigmoid. Returns memory and its spatial encoding, both [B, M, h, w].
        """
        cfg = self.config
        h, w = image_embed.shape[-2:]
        size = (16 * h, 16 * w)
        if high_res_masks.shape[-2:] != size:
            high_res_masks = F.interpolate(
                high_res_masks.float(),
                size=size,
                mode="bilinear",
                align_corners=False,
                antialias=True,
            ).to(high_res_masks.dtype)
        if binarize and not self.training:
            mask = (high_res_masks > 0).to(high_res_masks.dtype)
        else:
            mask = torch.sigmoid(high_res_masks)
        mask = mask * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
        memory, pos = self.memory_encoder(image_embed, mask.to(image_embed.dtype))
        if self.occlusion_spatial_embedding_parameter is not None:
            absent = (object_score_logits.reshape(-1, 1, 1, 1) <= 0).to(memory.dtype)
            memory = memory + absent * self.occlusion_spatial_embedding_parameter.view(1, -1, 1, 1)
        return memory, pos

    def build_memory(
        self,
        spatial: Sequence[tuple[int, Tensor, Tensor]],
        pointers: Tensor | None = None,
        pointer_offsets: Sequence[int] = (),
        max_pointers: int | None = None,
    ) -> TrackerMemory:
        """Concatenate a memory bank into attention tokens.

        spatial: (temporal offset, memory [B, M, h, w], encoding [B, M, h, w]) per memory frame;
        offset 0 marks a prompted (conditioning) frame, 1..num_memory_frames-1 the frames back.
        pointers [T, B, C] with their frame offsets [T]; `max_pointers` normalises the offsets.
        """
        tpe = self.memory_temporal_positional_encoding
        memories = [m.flatten(2).transpose(1, 2) for _, m, _ in spatial]
        positions = [
            p.flatten(2).transpose(1, 2) + tpe[offset - 1].view(1, 1, -1)
            for offset, _, p in spatial
        ]
        num_pointer_tokens = 0
        if pointers is not None and pointers.shape[0] > 0:
            tokens, pos = self.object_pointer_tokens(pointers, pointer_offsets, max_pointers)
            memories.append(tokens)
            positions.append(pos)
            num_pointer_tokens = tokens.shape[1]
        if not memories:
            raise ValueError(
                "The memory bank is empty; use predict_masks without image_embed for frames "
                "that have no memory yet."
            )
        return TrackerMemory(torch.cat(memories, 1), torch.cat(positions, 1), num_pointer_tokens)

    def object_pointer_tokens(
        self, pointers: Tensor, offsets: Sequence[int], max_pointers: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Object pointers [T, B, C] -> memory tokens and encodings [B, T * C / M, M]."""
        num, batch, channels = pointers.shape
        mem = self.config.memory_channels
        if len(offsets) != num:
            raise ValueError(f"{num} object pointers but {len(offsets)} offsets; give one each.")
        if self.config.enable_temporal_pos_encoding_for_object_pointers:
            max_pointers = max_pointers or self.config.max_object_pointers_in_encoder
            t = torch.tensor(list(offsets), device=pointers.device, dtype=torch.float32)
            sine = sine_position_encoding_1d(t / float(max_pointers - 1), channels)
            pos = self.temporal_positional_encoding_projection_layer(sine.to(pointers.dtype))
            pos = pos[:, None].expand(num, batch, mem)
        else:
            pos = pointers.new_zeros(num, batch, mem)
        splits = channels // mem
        tokens = pointers.reshape(num, batch, splits, mem).permute(1, 0, 2, 3).flatten(1, 2)
        pos = pos.transpose(0, 1).repeat_interleave(splits, dim=1)
        return tokens, pos

    def attend_memory(self, features: TrackerImageFeatures, memory: TrackerMemory) -> Tensor:
        """Memory-conditioned image embedding [B, C, h, w] for `predict_masks(image_embed=...)`."""
        return self.memory_attention(
            features.image_embed,
            features.image_pos,
            memory.memory,
            memory.memory_pos,
            memory.num_object_pointer_tokens,
        )

    def use_multimask(self, is_init_cond_frame: bool, num_points: int) -> bool:
        """SAM 2's rule for multimask output on a video frame with `num_points` clicks."""
        cfg = self.config
        return (
            cfg.multimask_output_in_sam
            and (is_init_cond_frame or cfg.multimask_output_for_tracking)
            and cfg.multimask_min_pt_num <= num_points <= cfg.multimask_max_pt_num
        )
