"""Meta's SAM 3.1 `sam3.1_multiplex.pt` layout -> ours.

Its keys are `detector.*` (SAM 3's detector; the neck has three heads: `convs`,
`interactive_convs`, `propagation_convs`) and `tracker.model.*` (an interactive head shaped like
SAM 3's tracker, `interactive_*`, plus the multiplex tracker). Older files use the prefixes
`sam3_model.` / `sam2_predictor.`, renamed as Meta's loader does.

Every 3.1 tensor whose module SAM 3 also has is first renamed to its SAM 3 `sam3.pt` name, so
`convert_official` applies the same renames and value transforms: the detector and the
interactive head land where SAM 3's do (`detector_model.*`, `tracker_neck.*`,
`tracker_model.*`); the multiplex tracker's tensors are converted in a second batch and moved
to `propagation_neck.*` / `multiplex_tracker.*`. The few tensors without a SAM 3 counterpart
are renamed directly.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from sam3_core.weights.errors import CheckpointError
from sam3_core.weights.official import convert_official

NECK = "detector.backbone.vision_backbone."
TRACKER = "tracker.model."
LEGACY_PREFIXES = (("sam3_model.", "detector."), ("sam2_predictor.", "tracker."))
MARKERS = (TRACKER, NECK + "interactive_convs.", NECK + "propagation_convs.")

# 3.1 prefix -> its SAM 3 name: the interactive head (lands where SAM 3's tracker does).
INTERACTIVE = (
    (NECK + "interactive_convs.", NECK + "sam2_convs."),
    (TRACKER + "interactive_sam_prompt_encoder.", "tracker.sam_prompt_encoder."),
    (TRACKER + "interactive_sam_mask_decoder.", "tracker.sam_mask_decoder."),
    (TRACKER + "interactive_obj_ptr_proj.", "tracker.obj_ptr_proj."),
    (TRACKER + "interactive_mask_downsample.", "tracker.mask_downsample."),
    (TRACKER + "interactivity_no_mem_embed", "tracker.no_mem_embed"),
)
# 3.1 prefix -> its SAM 3 name: the multiplex tracker (moved by MOVED after conversion).
MULTIPLEX = (
    (NECK + "propagation_convs.", NECK + "sam2_convs."),
    (TRACKER + "sam_mask_decoder.", "tracker.sam_mask_decoder."),
    (TRACKER + "maskmem_backbone.", "tracker.maskmem_backbone."),
    (TRACKER + "transformer.encoder.", "tracker.transformer.encoder."),
    (TRACKER + "obj_ptr_proj.", "tracker.obj_ptr_proj."),
    (TRACKER + "obj_ptr_tpos_proj.", "tracker.obj_ptr_tpos_proj."),
    (TRACKER + "maskmem_tpos_enc", "tracker.maskmem_tpos_enc"),
    (TRACKER + "no_obj_embed_spatial", "tracker.no_obj_embed_spatial"),
)
MOVED = (("tracker_neck.", "propagation_neck."), ("tracker_model.", "multiplex_tracker."))
# 3.1 tensors SAM 3 has no counterpart for: 3.1 prefix -> ours.
DIRECT = (
    (TRACKER + "no_obj_ptr_linear.", "multiplex_tracker.no_object_pointer_linear."),
    (TRACKER + "output_valid_embed", "multiplex_tracker.output_valid_embedding"),
    (TRACKER + "output_invalid_embed", "multiplex_tracker.output_invalid_embedding"),
    (
        TRACKER + "image_pe_layer.positional_encoding_gaussian_matrix",
        "multiplex_tracker.image_positional_embedding.positional_embedding",
    ),
)


def is_multiplex_checkpoint(sd: Mapping[str, Tensor]) -> bool:
    """Whether an official-layout state dict is SAM 3.1's (multiplex) rather than SAM 3's."""
    return any((_renamed(k, LEGACY_PREFIXES) or k).startswith(MARKERS) for k in sd)


def _renamed(key: str, table: tuple[tuple[str, str], ...]) -> str | None:
    """`key` with the first matching prefix of `table` replaced, or None if none matches."""
    for old, new in table:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def convert_official_multiplex(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a `sam3.1_multiplex.pt` state dict to our keys and tensor layouts."""
    image: dict[str, Tensor] = {}
    multiplex: dict[str, Tensor] = {}
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in sd.items():
        key = _renamed(key, LEGACY_PREFIXES) or key
        if (new := _renamed(key, DIRECT)) is not None:
            out[new] = value
        elif (new := _renamed(key, MULTIPLEX)) is not None:
            multiplex[new] = value
        elif (new := _renamed(key, INTERACTIVE)) is not None:
            image[new] = value
        elif key.startswith("detector."):
            image[key] = value
        else:
            unknown.append(key)
    if unknown:
        more = f", ... and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        shown = ", ".join(unknown[:10]) + more
        raise CheckpointError(
            f"this SAM 3.1 checkpoint holds {len(unknown)} tensors no module of ours takes "
            f"({shown}): it is from a newer SAM 3.1 release than this version supports"
        )
    out.update(convert_official(image))
    for key, value in convert_official(multiplex).items():
        out[_renamed(key, MOVED) or key] = value
    return out
