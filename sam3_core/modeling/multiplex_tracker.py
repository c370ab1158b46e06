"""SAM 3.1's Object Multiplex tracker: the modules and learned embeddings that track buckets of
`multiplex_count` objects together (Meta's `VideoTrackingMultiplex` without its interactive
head, which is our `Sam3Tracker`, and without its backbone, which is shared).

Per bucket and frame: memory attention (`DecoupledMemoryAttention`), one mask-decoder pass
(`MultiplexMaskDecoder`) and one memory-encoder pass whose input holds, per slot, the mask and a
"conditioning frame" channel. Slot-wise embeddings are [multiplex_count, C].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sam3_core.config import Sam3Config, replace
from sam3_core.modeling.memory import MemoryEncoder, sine_position_encoding_1d
from sam3_core.modeling.multiplex_mask_decoder import MultiplexMaskDecoder
from sam3_core.modeling.multiplex_memory_attention import DecoupledMemoryAttention
from sam3_core.modeling.multiplex_state import MultiplexState
from sam3_core.modeling.prompt_encoder import RandomFourierEmbedding
from sam3_core.modeling.tracker import NO_OBJECT_SCORE
from sam3_core.modeling.tracker_mask_decoder import TrackerMLP


@dataclass
class MultiplexFrameOutput:
    """One propagated frame for N objects, in object order.

    low_res_masks: [N, 1, 4h, 4w] best mask logits (NO_OBJECT_SCORE where absent).
    high_res_masks: [N, 1, S, S] the same at the model's image size S.
    low_res_multimasks: [N, K, 4h, 4w] every candidate, gated the same way.
    iou_scores: [N, K]; object_score_logits: [N, 1]; pointers: [N, C] object pointers.
    """

    low_res_masks: Tensor
    high_res_masks: Tensor
    low_res_multimasks: Tensor
    iou_scores: Tensor
    object_score_logits: Tensor
    pointers: Tensor


@dataclass
class MultiplexMemory:
    """Memory tokens for `MultiplexTracker.attend_memory`, S spatial and P pointer tokens.

    memory_image / memory_image_pos: [1, S, C] the memory frames' image features and their
        encodings plus temporal encodings (shared by the buckets).
    memory / memory_pos: [B, S + P, C] the buckets' memory maps, then the object pointers
        (frame by frame, slot by slot), with their encodings.
    """

    memory_image: Tensor
    memory_image_pos: Tensor
    memory: Tensor
    memory_pos: Tensor
    num_pointer_tokens: int


@dataclass
class MemoryFrame:
    """One memory frame for `MultiplexTracker.build_memory`.

    distance: frames from the current one (negative: a later frame, when tracking forward);
    cond: a conditioning (prompted) frame; memory / memory_pos [B, C, h, w] from
    `encode_memory`; image / image_pos [1, C, h, w] that frame's propagation-neck level.
    """

    distance: int
    cond: bool
    memory: Tensor
    memory_pos: Tensor
    image: Tensor
    image_pos: Tensor


class MultiplexTracker(nn.Module):
    """Mask decoder, memory encoder, memory attention and embeddings of the multiplex tracker."""

    def __init__(self, config: Sam3Config) -> None:
        super().__init__()
        if config.multiplex is None:
            raise ValueError("MultiplexTracker needs a SAM 3.1 config (config.multiplex set)")
        mcfg, tcfg = config.multiplex, config.tracker
        d, m = tcfg.hidden_size, mcfg.multiplex_count
        self.config = mcfg
        self.image_size = config.vit.image_size
        self.grid = config.vit.image_size // config.vit.patch_size
        self.mask_decoder = MultiplexMaskDecoder(tcfg, m)
        self.memory_encoder = MemoryEncoder(
            replace(tcfg, memory_channels=d),  # SAM 3.1 keeps memories at full width
            mask_channels=m * mcfg.mask_input_channel_multiplier,
            first_channels=mcfg.mask_downsampler_first_channels,
        )
        self.memory_attention = DecoupledMemoryAttention(d, mcfg)
        self.object_pointer_proj = TrackerMLP(d, d, d, 3)
        self.no_object_pointer_linear = nn.Linear(d, d)
        self.temporal_positional_encoding_projection_layer = nn.Linear(d, d)
        self.memory_temporal_positional_encoding = nn.Parameter(
            torch.zeros(mcfg.num_memory_frames, 1, 1, d)
        )
        self.occlusion_spatial_embedding_parameter = nn.Parameter(torch.zeros(m, d))
        self.output_valid_embedding = nn.Parameter(torch.zeros(m, d))
        self.output_invalid_embedding = nn.Parameter(torch.zeros(m, d))
        self.image_positional_embedding = RandomFourierEmbedding(d)

    def image_positional_encoding(self) -> Tensor:
        """Dense positional encoding of the embedding grid for the mask decoder: [1, C, h, w]."""
        return self.image_positional_embedding.grid(self.grid, self.grid)

    def slot_embeddings(self, valid: Tensor) -> Tensor:
        """valid [B, m] (live slots) -> [B, m, C]: the valid- or invalid-slot embedding."""
        v = valid.to(self.output_valid_embedding.dtype)[..., None]
        return v * self.output_valid_embedding + (1 - v) * self.output_invalid_embedding

    def decode(
        self, image_embed: Tensor, high_res: tuple[Tensor, Tensor], valid: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Decode B buckets: image_embed [B, C, h, w] (memory-conditioned), high_res from the
        propagation neck through conv_s0/conv_s1, valid [B, m]; see `MultiplexMaskDecoder`."""
        pe = self.image_positional_encoding().to(image_embed.dtype)
        return self.mask_decoder(image_embed, pe, high_res, self.slot_embeddings(valid))

    def propagate(
        self, image_embed: Tensor, high_res: tuple[Tensor, Tensor], state: MultiplexState
    ) -> MultiplexFrameOutput:
        """Decode every object of `state` from its bucket's memory-conditioned embedding
        [B, C, h, w]: demux, gate absent objects, keep the best of the K masks, make pointers."""
        masks, iou, tokens, scores = self.decode(image_embed, high_res, state.valid_mask())
        masks, iou, tokens, scores = (state.demux(x) for x in (masks, iou, tokens, scores))
        return self.frame_output(masks, iou, tokens, scores, self.object_pointer_proj)

    def frame_output(
        self, masks: Tensor, iou: Tensor, tokens: Tensor, scores: Tensor, projection: nn.Module
    ) -> MultiplexFrameOutput:
        """A frame's result from N objects' decoder outputs (masks [N, K, 4h, 4w], iou [N, K],
        tokens [N, K, C], scores [N, 1]): absent objects' masks set to NO_OBJECT_SCORE, the
        best mask by IoU, and pointers through `projection` (`object_pointer_proj` when
        propagating; the interactive head's `Sam3Tracker.object_pointer_proj` for clicks)."""
        present = scores > 0
        masks = torch.where(present[..., None, None], masks, NO_OBJECT_SCORE).float()
        rows = torch.arange(masks.shape[0], device=masks.device)
        best = iou.argmax(dim=-1)
        low = masks[rows, best].unsqueeze(1)
        high = F.interpolate(
            low, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        pointers = self.pointer(projection(tokens[rows, best]), scores)
        return MultiplexFrameOutput(low, high, masks, iou, scores, pointers)

    def pointer(self, projected: Tensor, object_score_logits: Tensor) -> Tensor:
        """Object pointers [N, C] from projected mask tokens [N, C] (the propagation projection
        here, the interactive head's for clicked frames): absent objects (score <= 0) get
        `no_object_pointer_linear` of their projection."""
        present = (object_score_logits > 0).to(projected.dtype)
        return present * projected + (1 - present) * self.no_object_pointer_linear(projected)

    def pointer_positions(self, offsets: Sequence[int], max_offset: int) -> Tensor:
        """Temporal encodings [T, C] of object pointers `offsets` frames away, normalised by
        `max_offset - 1` (the pointer window: min(num_frames, max_object_pointers))."""
        device = self.temporal_positional_encoding_projection_layer.weight.device
        t = torch.tensor(list(offsets), device=device, dtype=torch.float32)
        scale = max(max_offset - 1, 1)  # a one-frame window has only offset 0
        d = self.temporal_positional_encoding_projection_layer.in_features
        sine = sine_position_encoding_1d(t / scale, d)
        return self.temporal_positional_encoding_projection_layer(sine)

    def encode_memory(
        self,
        image_embed: Tensor,
        high_res_masks: Tensor,
        object_score_logits: Tensor,
        state: MultiplexState,
        conditioning: Sequence[int] = (),
    ) -> tuple[Tensor, Tensor]:
        """Memory of one frame per bucket: image_embed [1, C, h, w] (the propagation neck's
        level), high_res_masks [N, 1, H, W] logits and object_score_logits [N, 1] in object
        order; `conditioning` lists the objects prompted on this frame. Returns memory and its
        encoding, both [B, C, h, w]."""
        grid, dtype = image_embed.shape[-2:], image_embed.dtype
        x = self.memory_encoder_input(high_res_masks, state, conditioning, grid, dtype)
        memory, pos = self.memory_encoder(image_embed, x)
        # absent objects and empty slots (their muxed score is 0) add the no-object embedding
        absent = 1.0 - (state.mux(object_score_logits) > 0).to(memory.dtype)  # [B, m, 1]
        no_object = (absent * self.occlusion_spatial_embedding_parameter).sum(dim=1)
        return memory + no_object[..., None, None], pos

    def memory_encoder_input(
        self,
        high_res_masks: Tensor,
        state: MultiplexState,
        conditioning: Sequence[int],
        grid: Sequence[int],
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """The memory encoder's input [B, 2m, 16h, 16w] (in `dtype`, default float32) for a
        grid (h, w): per slot the mask (sigmoid, scaled and shifted; 0 in empty slots) resized
        to 16x the grid, then the conditioning channels (1 for the `conditioning` objects).

        Equal to Meta's (mux by selection matrices, then an antialiased resize of all 2m
        channels) up to float rounding: the masks are muxed by index before the elementwise
        sigmoid, the constant conditioning channels are built at the target size, and an
        enlargement uses plain bilinear (antialiasing changes only a reduction). Channels-last,
        which the strided convolutions of the mask downsampler read several times faster."""
        cfg = self.config
        size = (16 * grid[0], 16 * grid[1])
        x = state.mux(high_res_masks[:, 0].float())  # [B, m, H, W], a fresh tensor
        x.sigmoid_().mul_(cfg.sigmoid_scale_for_mem_enc).add_(cfg.sigmoid_bias_for_mem_enc)
        x.flatten(0, 1).index_fill_(0, state.empty_slots.to(x.device), 0.0)
        if x.shape[-2:] != size:
            shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        cond = torch.zeros(state.num_objects, device=x.device, dtype=x.dtype)
        cond[list(conditioning)] = 1.0
        m = state.multiplex_count
        shape, cl = (state.num_buckets, 2 * m, *size), torch.channels_last
        out = torch.empty(shape, device=x.device, dtype=dtype or x.dtype, memory_format=cl)
        out[:, :m] = x
        out[:, m:] = state.mux(cond)[..., None, None]
        return out

    def memory_time_index(self, distance: int, cond: bool) -> int:
        """Row of `memory_temporal_positional_encoding` for a memory frame (Meta's "v2" rule):
        a frame `distance` back uses row distance - 1; a conditioning frame 1..n-1 back uses
        row n - 1 - distance, any other (the current, a later or a far one) row n - 1."""
        n = self.config.num_memory_frames
        if cond:
            return n - 1 - distance if 0 < distance < n else n - 1
        if not 0 < distance < n:
            raise ValueError(f"a non-conditioning memory frame is 1..{n - 1} back, not {distance}")
        return distance - 1

    def build_memory(
        self,
        frames: Sequence[MemoryFrame],
        pointers: Tensor | None = None,
        pointer_offsets: Sequence[int] = (),
        max_pointers: int = 1,
    ) -> MultiplexMemory:
        """Concatenate a memory bank into attention tokens: conditioning frames, then earlier
        frames, as the caller orders them; pointers [T, B, m, C] in bucket order with their
        frame offsets [T] (normalised by `max_pointers` - 1, see `pointer_positions`)."""
        if not frames:
            raise ValueError("the memory bank is empty: decode a frame without memory first")
        tpe = self.memory_temporal_positional_encoding
        images, image_pos, memory, memory_pos = [], [], [], []
        for f in frames:
            t = tpe[self.memory_time_index(f.distance, f.cond)].view(1, 1, -1)
            images.append(f.image.flatten(2).transpose(1, 2))
            image_pos.append(f.image_pos.flatten(2).transpose(1, 2) + t)
            memory.append(f.memory.flatten(2).transpose(1, 2))
            memory_pos.append(f.memory_pos.flatten(2).transpose(1, 2) + t)
        num_pointer_tokens = 0
        if pointers is not None and pointers.shape[0]:
            num, buckets, slots, channels = pointers.shape
            if len(pointer_offsets) != num:
                raise ValueError(f"{num} pointer frames but {len(pointer_offsets)} offsets")
            pos = self.pointer_positions(pointer_offsets, max_pointers).to(pointers.dtype)
            memory.append(pointers.transpose(0, 1).reshape(buckets, num * slots, channels))
            memory_pos.append(pos.repeat_interleave(slots, dim=0).expand(buckets, -1, -1))
            num_pointer_tokens = num * slots
        buckets = memory[0].shape[0]
        return MultiplexMemory(
            torch.cat(images, 1),
            torch.cat(image_pos, 1),
            torch.cat(memory, 1),
            torch.cat([p.expand(buckets, -1, -1) for p in memory_pos], 1),
            num_pointer_tokens,
        )

    def attend_memory(self, image: Tensor, image_pos: Tensor, memory: MultiplexMemory) -> Tensor:
        """Memory-conditioned embeddings [B, C, h, w] of the current frame's propagation-neck
        level image / image_pos [1, C, h, w] for the B buckets of `memory`."""
        return self.memory_attention(
            image,
            image_pos,
            memory.memory_image,
            memory.memory_image_pos,
            memory.memory,
            memory.memory_pos,
            memory.num_pointer_tokens,
        )
