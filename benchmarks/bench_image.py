"""Image concept segmentation: ours vs transformers' Sam3Model, same weights, same run.

Prints medians and, last, `image_1concept_ratio=R1 image_8concepts_ratio=R8
image_8concepts_vs_reused_embeds_ratio=R8r` (reference time / our time). Both sides go from a
uint8 image and concept strings to thresholded masks at the image size.
Both sides run in the same precision: fp32 on CPU and bf16 autocast on a GPU by default;
`--precision bf16` on a CPU with bf16 units (AMX) compares both in bf16 there.
Full size on a 2-core CPU takes about 15 minutes: `python benchmarks/bench_image.py`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import median_time, paired_models, peak_rss_mb
from sam3_core.device import autocast, pick_device

CONCEPTS = ["cat", "dog", "yellow school bus", "person", "red car", "tree", "nucleus", "bicycle"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="sam3", help="sam3 (full size) or sam3_tiny (smoke test)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="both sides")
    args = ap.parse_args()

    from sam3_core.predictor import ImagePredictor
    from tests.reference import hf_processor

    device = pick_device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    torch.set_grad_enabled(False)
    hf, ours, cfg = paired_models(args.config, device)
    proc = hf_processor(cfg, Path(tempfile.mkdtemp()))
    pred = ImagePredictor(ours, device=device, precision=precision)
    image = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    size = [image.shape[:2]]

    def ref_call(texts):
        with autocast(device, precision):
            inputs = proc(images=image, text=texts, return_tensors="pt").to(device)
            out = hf(**inputs)
            return proc.post_process_instance_segmentation(out, 0.5, 0.5, size * len(texts))

    def ref_reused(texts):
        with autocast(device, precision):
            pix = proc(images=image, return_tensors="pt").to(device)
            vision = hf.get_vision_features(pixel_values=pix["pixel_values"])
            for t in texts:
                ids = proc(text=t, return_tensors="pt").to(device)
                out = hf(vision_embeds=vision, **ids)
                proc.post_process_instance_segmentation(out, 0.5, 0.5, size)

    def ours_call(texts):
        pred._text_cache.clear()
        return pred.predict(pred.set_image(image), texts, score_threshold=0.5)

    r = args.runs
    ref1 = median_time(lambda: ref_call(["cat"]), r, device)
    our1 = median_time(lambda: ours_call(["cat"]), r, device)
    our8 = median_time(lambda: ours_call(CONCEPTS), r, device)
    ref8r = median_time(lambda: ref_reused(CONCEPTS), max(1, r - 2), device)
    print(f"device={device} precision={precision} config={args.config} runs={r}")
    print(f"reference 1 concept {ref1:.3f}s | ours {our1:.3f}s")
    print(
        f"reference 8 concepts (8 calls) {8 * ref1:.3f}s | reused embeds {ref8r:.3f}s | ours {our8:.3f}s"
    )
    print(f"peak_rss_mb={peak_rss_mb():.0f}")
    print(
        f"image_1concept_ratio={ref1 / our1:.2f} image_8concepts_ratio={8 * ref1 / our8:.2f} "
        f"image_8concepts_vs_reused_embeds_ratio={ref8r / our8:.2f}"
    )


if __name__ == "__main__":
    main()
