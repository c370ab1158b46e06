"""One click after `set_image`: ours vs transformers' Sam3TrackerModel given precomputed embeddings.

Same weights on both sides; both start from cached image embeddings, pick the best of the
three candidate masks by predicted IoU, and upsample and threshold only that one to the image
size (the same work on both sides). Prints the mask areas (both sides must agree), medians and, last, `click_ms=T click_ratio=R` (R = reference / ours).
`python benchmarks/bench_interactive.py` (full size; `--config sam3_tiny` for a smoke test).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import median_time
from sam3_core.device import autocast, pick_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="sam3")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    from sam3_core.build import build_model
    from sam3_core.config import get_config
    from sam3_core.predictor import ImagePredictor, preprocess
    from tests.reference import hf_image_tracker

    torch.set_grad_enabled(False)
    device = pick_device(args.device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    cfg = get_config(args.config)
    with torch.device(device):  # built where they run: fast on a GPU
        model = build_model(cfg)
        hf = hf_image_tracker(model)
    pred = ImagePredictor(model, device=device, precision=precision)
    image = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    h, w = image.shape[:2]
    s = cfg.image_size
    state = pred.set_image(image)
    pred.tracker_features(state)
    with autocast(device, precision):
        pixels = ((preprocess(image, s).float() / 255 - 0.5) / 0.5)[None].to(device)
        maps = list(hf.get_image_features(pixels).fpn_hidden_states)
        maps[-1] = maps[-1] + hf.no_memory_embedding
        embeds = [
            m.permute(1, 2, 0).view(1, -1, *sz) for m, sz in zip(maps, hf.backbone_feature_sizes)
        ]
    click = [[600.0, 400.0]]
    points = torch.tensor([[[[600.0 * s / w, 400.0 * s / h]]]], device=device)
    labels = torch.tensor([[[1]]], device=device)

    def ours():
        return pred.predict(state, points=click, point_labels=[1])

    def reference():
        with autocast(device, precision):
            out = hf(image_embeddings=embeds, input_points=points, input_labels=labels)
            best = out.iou_scores[0, 0].float().argmax()
            low = out.pred_masks[0, 0, best][None, None].float()
            masks = torch.nn.functional.interpolate(low, (h, w), mode="bilinear") > 0
            return masks[0].cpu()

    ref_area, our_area = int(reference().sum()), int(ours().masks.sum())
    print(f"mask area: reference {ref_area} px | ours {our_area} px")
    t_ref = median_time(reference, args.runs, device, warmup=3)
    t_ours = median_time(ours, args.runs, device, warmup=3)
    print(f"device={device} precision={precision} config={args.config} runs={args.runs}")
    print(f"reference click {t_ref * 1000:.1f} ms | ours {t_ours * 1000:.1f} ms")
    print(f"click_ms={t_ours * 1000:.1f} click_ratio={t_ref / t_ours:.2f}")


if __name__ == "__main__":
    main()
