"""Model configurations: one frozen dataclass per component, composed into `Sam3Config`.

`CONFIGS` maps a preset name to a factory: the released models (`"sam3"`, `"sam3.1"`) and
tiny presets that the tests build with random weights. `config_to_dict` / `config_from_dict`
turn a config into plain JSON-able data and back (the record saved beside our checkpoints).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class ViTConfig:
    """Perception Encoder ViT backbone (RoPE, windowed + global attention)."""

    hidden_size: int = 1024
    intermediate_size: int = 4736
    num_layers: int = 32
    num_heads: int = 16
    image_size: int = 1008
    patch_size: int = 14
    window_size: int = 24
    global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    pretrain_image_size: int = 336
    layer_norm_eps: float = 1e-6
    rope_theta: float = 10000.0


@dataclass(frozen=True)
class NeckConfig:
    """Simple FPN neck on the last ViT map: one level per scale factor."""

    fpn_hidden_size: int = 256
    scale_factors: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)


@dataclass(frozen=True)
class TextConfig:
    """CLIP text transformer (causal), its hidden states projected to the detector width."""

    vocab_size: int = 49408
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_layers: int = 24
    num_heads: int = 16
    max_position_embeddings: int = 32
    context_length: int = 32
    projection_dim: int = 512
    layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class GeometryConfig:
    """Exemplar (box) prompt encoder."""

    hidden_size: int = 256
    num_layers: int = 3
    num_heads: int = 8
    intermediate_size: int = 2048
    roi_size: int = 7


@dataclass(frozen=True)
class DetrEncoderConfig:
    """Fusion encoder: image tokens attend to prompt tokens."""

    hidden_size: int = 256
    num_layers: int = 6
    num_heads: int = 8
    intermediate_size: int = 2048


@dataclass(frozen=True)
class DetrDecoderConfig:
    """DETR decoder with box refinement, box relative-position bias and a presence token."""

    hidden_size: int = 256
    num_layers: int = 6
    num_queries: int = 200
    num_heads: int = 8
    intermediate_size: int = 2048


@dataclass(frozen=True)
class MaskDecoderConfig:
    """MaskFormer-style head: pixel decoder, instance masks, semantic map."""

    hidden_size: int = 256
    num_upsampling_stages: int = 3
    num_heads: int = 8


@dataclass(frozen=True)
class TrackerConfig:
    """SAM 2-style interactive/tracking head on the shared backbone."""

    hidden_size: int = 256
    mask_input_channels: int = 16
    num_point_embeddings: int = 4
    num_multimask_outputs: int = 3
    num_heads: int = 8
    num_layers: int = 2
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    memory_channels: int = 64
    num_memory_frames: int = 7
    num_memory_attention_layers: int = 4
    memory_attention_num_heads: int = 1
    memory_attention_mlp_dim: int = 2048
    memory_attention_downsample_rate: int = 1
    memory_attention_rope_theta: float = 10000.0
    mask_downsampler_kernel_size: int = 3
    mask_downsampler_stride: int = 2
    mask_downsampler_total_stride: int = 16
    memory_fuser_num_layers: int = 2
    memory_fuser_intermediate_dim: int = 1024
    memory_fuser_kernel_size: int = 7
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    enable_occlusion_spatial_embedding: bool = True
    enable_temporal_pos_encoding_for_object_pointers: bool = True
    max_object_pointers_in_encoder: int = 16
    max_cond_frame_num: int = 4
    multimask_output_in_sam: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = True
    iou_prediction_use_sigmoid: bool = True


@dataclass(frozen=True)
class MultiplexConfig:
    """SAM 3.1's Object Multiplex tracker: objects in buckets of `multiplex_count` share one
    memory-attention, mask-decoder and memory-encoder pass per frame.

    The mask decoder's two-way transformer and the memory fuser take their sizes from
    `TrackerConfig` (Meta builds both trackers' with the same values); the memory keeps the full
    width (no channel compression).
    """

    multiplex_count: int = 16
    num_memory_frames: int = 7
    num_memory_attention_layers: int = 4
    memory_attention_num_heads: int = 8
    memory_attention_mlp_dim: int = 2048
    memory_attention_rope_theta: float = 10000.0
    mask_input_channel_multiplier: int = 2  # mask + "conditioning frame" channel per slot
    mask_downsampler_first_channels: int = 4
    sigmoid_scale_for_mem_enc: float = 2.0
    sigmoid_bias_for_mem_enc: float = -1.0
    max_object_pointers_in_encoder: int = 16
    max_cond_frame_num: int = 4


@dataclass(frozen=True)
class Sam3Config:
    """The whole model. `image_size` is the square side every image is resized to."""

    vit: ViTConfig = field(default_factory=ViTConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    text: TextConfig = field(default_factory=TextConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    detr_encoder: DetrEncoderConfig = field(default_factory=DetrEncoderConfig)
    detr_decoder: DetrDecoderConfig = field(default_factory=DetrDecoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    multiplex: MultiplexConfig | None = None  # set: SAM 3.1 (interactive head + multiplex)

    @property
    def kind(self) -> str:
        """ "sam3.1" for an Object Multiplex model, else "sam3"."""
        return "sam3" if self.multiplex is None else "sam3.1"

    @property
    def image_size(self) -> int:
        return self.vit.image_size

    @property
    def hidden_size(self) -> int:
        return self.neck.fpn_hidden_size

    @property
    def feature_sizes(self) -> tuple[int, ...]:
        """Side of each FPN level, finest first (e.g. 288, 144, 72, 36)."""
        grid = self.vit.image_size // self.vit.patch_size
        return tuple(int(grid * s) for s in self.neck.scale_factors)


def sam3() -> Sam3Config:
    """The released SAM 3 (about 840M parameters)."""
    return Sam3Config()


def sam3_tiny() -> Sam3Config:
    """A few-million-parameter model with the released layout, for tests on CPU."""
    d = 128  # the tracker's memory path needs a multiple of 64 above 64
    return Sam3Config(
        vit=ViTConfig(
            hidden_size=64,
            intermediate_size=128,
            num_layers=2,
            num_heads=2,
            image_size=112,
            window_size=4,
            global_attn_indexes=(1,),
            pretrain_image_size=56,
        ),
        neck=NeckConfig(fpn_hidden_size=d),
        text=TextConfig(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2),
        geometry=GeometryConfig(hidden_size=d, num_layers=1, num_heads=4, intermediate_size=64),
        detr_encoder=DetrEncoderConfig(
            hidden_size=d, num_layers=1, num_heads=4, intermediate_size=64
        ),
        detr_decoder=DetrDecoderConfig(
            hidden_size=d, num_layers=2, num_queries=8, num_heads=4, intermediate_size=64
        ),
        mask_decoder=MaskDecoderConfig(hidden_size=d, num_heads=4),
        tracker=TrackerConfig(
            hidden_size=d,
            num_heads=4,
            mlp_dim=64,
            iou_head_hidden_dim=d,
            num_memory_attention_layers=2,
            memory_attention_mlp_dim=64,
            memory_fuser_intermediate_dim=64,
        ),
    )


def as_multiplex(config: Sam3Config, multiplex: MultiplexConfig) -> Sam3Config:
    """SAM 3.1's layout on a SAM 3 config: a 3-level neck (scales 4, 2, 1; SAM 3's 0.5 level
    is never read), an interactive head without SAM 3's memory (its IoU head has no sigmoid),
    and the multiplex tracker."""
    return replace(
        config,
        neck=replace(config.neck, scale_factors=config.neck.scale_factors[:3]),
        tracker=replace(config.tracker, iou_prediction_use_sigmoid=False),
        multiplex=multiplex,
    )


def sam3_1() -> Sam3Config:
    """The released SAM 3.1 (`facebook/sam3.1`, `sam3.1_multiplex.pt`)."""
    return as_multiplex(sam3(), MultiplexConfig())


def sam3_1_tiny() -> Sam3Config:
    """`sam3_tiny` with SAM 3.1's layout: buckets of 4 objects, 2 memory-attention layers; the
    memory fuser 4x as wide as the memory (Meta's ConvNeXt block fixes that ratio)."""
    tiny = sam3_tiny()
    fuser = 4 * tiny.tracker.hidden_size
    return as_multiplex(
        replace(tiny, tracker=replace(tiny.tracker, memory_fuser_intermediate_dim=fuser)),
        MultiplexConfig(
            multiplex_count=4,
            num_memory_attention_layers=2,
            memory_attention_num_heads=4,
            memory_attention_mlp_dim=64,
            mask_downsampler_first_channels=1,
        ),
    )


CONFIGS: dict[str, Callable[[], Sam3Config]] = {
    "sam3": sam3,
    "sam3_tiny": sam3_tiny,
    "sam3.1": sam3_1,
    "sam3.1_tiny": sam3_1_tiny,
}


def get_config(name: str) -> Sam3Config:
    """Look up a preset by name; the error lists the known ones."""
    if name not in CONFIGS:
        raise KeyError(f"Unknown model config {name!r}; choose one of {sorted(CONFIGS)}.")
    return CONFIGS[name]()


def config_to_dict(config: Sam3Config) -> dict[str, Any]:
    """The config as plain JSON-able data (nested dicts, lists)."""
    return dataclasses.asdict(config)


def config_from_dict(data: Mapping[str, Any]) -> Sam3Config:
    """Rebuild a config from `config_to_dict`'s data; unknown fields raise ValueError naming
    them (a record from a newer version), a non-mapping raises TypeError; missing fields take
    their defaults."""
    return _build(Sam3Config, data, "config")


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """One dataclass from a mapping, recursing into nested dataclass fields."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{where} must be a mapping of fields, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"{where} has unknown fields {unknown} for {cls.__name__}: the record was written "
            "by another version of sam3-tools; pass the config explicitly"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        nested = next((t for t in options if dataclasses.is_dataclass(t)), None)
        if value is None or nested is None:
            kwargs[name] = tuple(value) if isinstance(value, list) else value
        else:
            kwargs[name] = _build(nested, value, f"{where}.{name}")
    return cls(**kwargs)


__all__ = [
    "CONFIGS",
    "DetrDecoderConfig",
    "DetrEncoderConfig",
    "GeometryConfig",
    "MaskDecoderConfig",
    "MultiplexConfig",
    "NeckConfig",
    "Sam3Config",
    "TextConfig",
    "TrackerConfig",
    "ViTConfig",
    "as_multiplex",
    "config_from_dict",
    "config_to_dict",
    "get_config",
    "replace",
]
