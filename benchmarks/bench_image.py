"""Image concept segmentation: ours vs transformers' Sam3Model, same weights, same run.

Prints medians and, last, `image_1concept_ratio=R1 image_8concepts_ratio=R8
image_8concepts_vs_reused_embeds_ratio=R8r image_1concept_ms=T1 image_8concepts_ms=T8`
(ratios: reference time / our time; T: our medians, image to masks). Both sides go from a
uint8 image and concept strings to thresholded masks at the image size.
Both sides run in the same precision: fp32 on CPU and bf16 on a GPU by default;
`--precision bf16` on a CPU compares both in bf16 there (fast only with AMX: without it bf16 is
no faster than fp32). In bf16 both sides hold bf16 weights (the reference is cast with
`.to(torch.bfloat16)`, as our predictor stores its Linear/Conv weights) and run under autocast.
"8 calls" is measured: the reference called once per concept, encoding the image each time.
The instances each side found are printed, so a reader sees both did the mask work.
Full size on a 2-core CPU takes about 15 minutes: `python benchmarks/bench_image.py`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import median_time, paired_models, peak_gpu, peak_rss_mb
from sam3_core.device import autocast, pick_device
from tests.core.helpers import make_image

CONCEPTS = ["cat", "dog", "yellow school bus", "person", "red car", "tree", "nucleus", "bicycle"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="sam3", help="sam3 (full size) or sam3_tiny (smoke test)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="both sides")
    ap.add_argument(
        "--score-threshold",
        type=float,
        default=0.4,
        help="both sides; low enough that the random weights give instances (printed)",
    )
    args = ap.parse_args()

    from sam3_core.predictor import ImagePredictor
    from tests.reference import hf_processor

    device = pick_device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    torch.set_grad_enabled(False)
    hf, ours, cfg = paired_models(args.config, device)
    if precision == "bf16":
        hf = hf.to(torch.bfloat16)
    proc = hf_processor(cfg, Path(tempfile.mkdtemp()))
    pred = ImagePredictor(ours, device=device, precision=precision)
    image = make_image(768, 1024, seed=0)  # blobs on a gradient: scores vary across queries
    size = [image.shape[:2]]

    def ref_call(texts):
        with autocast(device, precision):
            inputs = proc(images=image, text=texts, return_tensors="pt").to(device)
            inputs["pixel_values"] = inputs["pixel_values"].to(hf.dtype)
            out = hf(**inputs)
            return proc.post_process_instance_segmentation(
                out, args.score_threshold, 0.5, size * len(texts)
            )

    def ref_calls(texts):
        return [ref_call([t])[0] for t in texts]

    def ref_reused(texts):
        found = []
        with autocast(device, precision):
            pix = proc(images=image, return_tensors="pt").to(device)
            vision = hf.get_vision_features(pixel_values=pix["pixel_values"].to(hf.dtype))
            for t in texts:
                ids = proc(text=t, return_tensors="pt").to(device)
                out = hf(vision_embeds=vision, **ids)
                found += proc.post_process_instance_segmentation(
                    out, args.score_threshold, 0.5, size
                )
        return found

    def ours_call(texts):
        pred.clear_text_cache()
        return pred.predict(pred.set_image(image), texts, score_threshold=args.score_threshold)

    ref_found = sum(len(r["scores"]) for r in ref_calls(CONCEPTS))
    our_found = len(ours_call(CONCEPTS).scores)
    print(f"instances over the 8 concepts: reference {ref_found} | ours {our_found}")
    r = args.runs
    ref1 = median_time(lambda: ref_call(["cat"]), r, device)
    our1 = median_time(lambda: ours_call(["cat"]), r, device)
    our8 = median_time(lambda: ours_call(CONCEPTS), r, device)
    ref8 = median_time(lambda: ref_calls(CONCEPTS), max(1, r - 2), device, warmup=0)
    ref8r = median_time(lambda: ref_reused(CONCEPTS), max(1, r - 2), device)
    print(f"device={device} precision={precision} config={args.config} runs={r}")
    print(f"reference 1 concept {ref1:.3f}s | ours {our1:.3f}s")
    print(
        f"reference 8 concepts (8 calls) {ref8:.3f}s | reused embeds {ref8r:.3f}s | ours {our8:.3f}s"
    )
    print(f"peak_rss_mb={peak_rss_mb():.0f}" + peak_gpu(device))
    print(
        f"image_1concept_ratio={ref1 / our1:.2f} image_8concepts_ratio={ref8 / our8:.2f} "
        f"image_8concepts_vs_reused_embeds_ratio={ref8r / our8:.2f} "
        f"image_1concept_ms={our1 * 1000:.1f} image_8concepts_ms={our8 * 1000:.1f}"
    )


if __name__ == "__main__":
    main()
