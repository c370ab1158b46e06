"""Regenerate official_sam31_keys.json.gz: key -> shape/dtype of Meta's SAM 3.1 multiplex model.

The fixture pins the exact `sam3.1_multiplex.pt` layout: the state dict of the model that
Meta's `build_sam3_multiplex_video_predictor` loads (`detector.*`, `tracker.model.*`), without
any weights. Meta's code is read from a checkout of facebookresearch/sam3 at commit
96914d2425f90a64f45ca977c2b5165418099543 (2026-07-30; the fork tatsy/sam3 carries it), put on
sys.path, never copied here (e.g. `git -C MIRROR archive 96914d2 sam3 | tar -x -C DIR`). It needs torch, torchvision and, besides our `.venv`'s packages,
`iopath portalocker timm einops psutil "setuptools<81"` (e.g. `pip install --target DIR`):

    PYTHONPATH=SAM3_CHECKOUT:DIR python tests/core/weights/data/dump_official_sam31_keys.py \
        BPE_VOCAB_GZ [OUT_JSON_GZ]

Meta's code hard-codes "cuda" (and reads the GPU's properties at import), so the model is
built on the CPU (about 3.5 GB of memory; the meta device fails on its `.item()` calls) with a
torch function mode that rewrites device arguments; it is never run.
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from layout_dump import CudaToCpu, write_layout  # the sibling module (run as a script)

UPSTREAM_COMMIT = "96914d2425f90a64f45ca977c2b5165418099543"


def build_demo_model(bpe_path: str) -> torch.nn.Module:
    """Meta's SAM 3.1 demo model (detector + multiplex tracker) as its predictor builder
    assembles it, on the CPU, without loading a checkpoint."""
    torch.cuda.get_device_properties = lambda *_: SimpleNamespace(major=0, minor=0)
    import sam3.model_builder as builder
    from sam3.model.sam3_multiplex_base import Sam3MultiplexPredictorWrapper
    from sam3.model.sam3_multiplex_detector import Sam3MultiplexDetector
    from sam3.model.sam3_multiplex_tracking import Sam3MultiplexTrackingWithInteractivity

    with CudaToCpu():
        tracker = builder.build_sam3_multiplex_video_model(
            load_from_HF=False, strict_state_dict_loading=False, device="cpu"
        )
        del tracker.backbone
        tracker.backbone = None
        wrapper = Sam3MultiplexPredictorWrapper(
            model=tracker,
            per_obj_inference=False,
            fill_hole_area=0,
            is_multiplex=True,
            is_multiplex_dynamic=True,
        )
        tri_neck = builder._create_multiplex_tri_backbone()
        text = builder._create_text_encoder(bpe_path)
        backbone = builder.SAM3VLBackboneTri(scalp=0, visual=tri_neck, text=text)
        detector = Sam3MultiplexDetector(
            num_feature_levels=1,
            backbone=backbone,
            transformer=builder._create_sam3_transformer(),
            segmentation_head=builder._create_segmentation_head(),
            semantic_segmentation_head=None,
            input_geometry_encoder=builder._create_geometry_encoder(),
            use_early_fusion=True,
            use_dot_prod_scoring=True,
            dot_prod_scoring=builder._create_dot_product_scoring(),
            supervise_joint_box_scores=True,
            is_multiplex=True,
        )
        return Sam3MultiplexTrackingWithInteractivity(
            tracker=wrapper, detector=detector, is_multiplex=True, image_size=1008
        )


def main(bpe_path: str, out_path: str) -> None:
    """Build the official 3.1 model and write its key layout."""
    model = build_demo_model(bpe_path)
    source = (
        f"facebookresearch/sam3@{UPSTREAM_COMMIT} "
        "build_sam3_multiplex_video_predictor()'s model .state_dict()"
    )
    write_layout(model, source, out_path)


if __name__ == "__main__":
    default_out = Path(__file__).with_name("official_sam31_keys.json.gz")
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else str(default_out))
