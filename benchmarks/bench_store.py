"""The embedding store at full size on CPU: first `set_image` vs one read from disk, bytes per
image, and one click end to end in the Label Studio backend on a precomputed vs a cold image.

Random weights (timing only). The click goes through the backend's `/predict` handler in
process (`Backend.predict`: image fetch from local files, `set_image`, the click, brush RLE),
with a fresh backend and a fresh store object on the same folder for each precomputed click
(as after a server restart). Last line:
`store_read_fraction=R ls_click_precomputed_ms=P ls_click_cold_ms=C store_mb_per_image=M`
(R = a disk-hit `set_image` / the backbone's time for that image).
`python benchmarks/bench_store.py` (full size; `--config sam3_tiny` for a smoke test);
`--click-only` times the precomputed clicks alone, in seconds instead of minutes: the entry is
a random trunk and its click levels (no backbone pass, so no read fraction and no cold click;
last line `ls_click_precomputed_ms=P store_mb_per_image=M`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins" / "labelstudio"))

LABEL_CONFIG = """<View><Image name="image" value="$image"/>
<BrushLabels name="brush" toName="image"><Label value="Cell"/></BrushLabels>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="Cell" smart="true"/>
</KeyPointLabels></View>"""


def timed(fn, *args):
    """(result, seconds) of one call `fn(*args)`."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def click_payload(name: str, task_id: int) -> dict:
    """A Label Studio interactive request: one positive smart keypoint on a local image."""
    click = {"type": "keypointlabels", "is_positive": True,
             "value": {"x": 40.0, "y": 55.0, "keypointlabels": ["Cell"]}}  # fmt: skip
    task = {"id": task_id, "data": {"image": f"/data/local-files/?d={name}"}}
    return {
        "tasks": [task],
        "label_config": LABEL_CONFIG,
        "params": {"context": {"result": [click]}},
    }


def backend_for(predictor, folder: Path):
    """The Label Studio backend in process around `predictor`, serving `folder`'s files."""
    from sam3_labelstudio.backend import Backend, Settings
    from sam3_labelstudio.images import ImageFetcher

    return Backend(predictor, "bench", ImageFetcher(local_root=str(folder)), Settings())


def store_synthetic(predictor, path: Path) -> None:
    """Put a precomputed-looking entry for the image at `path` without a backbone pass: a
    random trunk, and the click levels the tracker's neck makes of it (timing only)."""
    from sam3_core.store import entries

    vit = predictor.model.config.vit
    grid = vit.image_size // vit.patch_size
    trunk = torch.randn(1, grid, grid, vit.hidden_size, generator=torch.Generator().manual_seed(0))
    predictor.store.put(predictor.image_key(path), {entries.VIT: trunk})
    predictor.tracker_features(predictor.set_image(path))  # computes and stores the levels


def click_rows(predictor, folder: Path, names: list[str], reads: int, cold: bool):
    """Time `reads` clicks on the precomputed `names[0]` (a fresh predictor and store object
    each, as after a restart) and, with `cold`, one on the unstored `names[1]`; prints the
    rows -> (precomputed seconds, cold seconds or None). `predictor()` -> (predictor, s)."""
    from sam3_core import load_image

    fresh, _ = predictor()
    try:
        backend_for(fresh, folder)
        via = "Label Studio backend (in process)"
    except ImportError as err:
        via = f"ImagePredictor directly (Label Studio backend unavailable: {err})"
    print(f"click timed through the {via}", flush=True)

    def predictor_click(pred, name):  # the predictor's share of a click
        st = pred.set_image(folder / name)
        h, w = st.size
        return pred.predict(st, points=[[0.4 * w, 0.55 * h]], point_labels=[1])

    def click(pred, name, task_id):
        if not via.startswith("Label"):
            return predictor_click(pred, name)
        out = backend_for(pred, folder).predict(click_payload(name, task_id))
        assert out["results"][0]["result"], out
        return out

    click(fresh, names[0], 99)  # untimed: first-call imports and allocations
    share, decode, pre = [], [], []
    for _ in range(reads):
        fresh, _ = predictor()
        # on a model thread as the backend runs it: one OpenMP team, as in the server (a second
        # team on the main thread would spin against the first and inflate both)
        run = backend_for(fresh, folder).run if via.startswith("Label") else (lambda f, *a: f(*a))
        share.append(timed(run, predictor_click, fresh, names[0])[1])
        decode.append(timed(load_image, folder / names[0])[1])
    for k in range(reads):
        fresh, _ = predictor()
        pre.append(timed(click, fresh, names[0], 100 + k)[1])
    again = [timed(click, fresh, names[0], 200 + k)[1] for k in range(reads)]
    cold_s = None
    if cold:
        fresh, _ = predictor()
        _, cold_s = timed(lambda: click(fresh, names[1], 1))
    cold_text = "" if cold_s is None else f", cold {cold_s * 1e3:.0f} ms"
    print(f"click: precomputed {statistics.median(pre) * 1e3:.0f} ms (median of {reads}, "
          f"min {min(pre) * 1e3:.0f}){cold_text}; the next clicks on that image (memory) "
          f"{statistics.median(again) * 1e3:.0f} ms", flush=True)  # fmt: skip
    print(f"  the predictor's share (decode, set_image from disk, click): "
          f"{statistics.median(share) * 1e3:.0f} ms, of which decoding the JPEG "
          f"{statistics.median(decode) * 1e3:.0f} ms; the rest is the backend's own "
          "(request, image fetch, brush RLE)", flush=True)  # fmt: skip
    return pre, cold_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="sam3")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--reads", type=int, default=5, help="disk reads / precomputed clicks timed")
    ap.add_argument(
        "--click-only",
        action="store_true",
        help="only the precomputed clicks, on a synthetic entry (skips the backbone runs)",
    )
    args = ap.parse_args(argv)

    from PIL import Image

    from sam3_core import ImagePredictor
    from sam3_core.build import build_model
    from sam3_core.store import EmbeddingStore
    from tests.core.helpers import make_image

    torch.set_grad_enabled(False)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    (model, build_s) = timed(lambda: build_model(args.config))
    print(f"model built in {build_s:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = []
        for i in range(2):  # camera-sized pictures as Label Studio serves them
            names.append(f"img{i}.jpg")
            Image.fromarray(make_image(1200, 1600, seed=i)).save(tmp / names[-1], quality=95)
        folder = tmp / "store"

        def predictor():
            store = EmbeddingStore(folder, dtype=args.dtype)
            return timed(lambda: ImagePredictor(model, device="cpu", store=store))

        pred, bind_s = predictor()
        print(f"signing the model (weights digest) {bind_s:.2f} s", flush=True)

        path0 = tmp / names[0]
        if args.click_only:
            store_synthetic(pred, path0)
            mb = pred.store.nbytes(pred.image_key(path0)) / 1e6
            print(f"synthetic entry {mb:.1f} MB ({args.dtype}); no backbone run", flush=True)
            pre, _ = click_rows(predictor, tmp, names, args.reads, cold=False)
            pre_ms = statistics.median(pre) * 1e3
            print(f"ls_click_precomputed_ms={pre_ms:.0f} store_mb_per_image={mb:.1f}")
            return 0
        # 1. first set_image (backbone, written), then the click levels (tracker neck, written)
        calls: list[float] = []
        backbone = model.detector_model.vision_encoder.backbone
        hook = backbone.register_forward_pre_hook(lambda *a: calls.append(time.perf_counter()))
        done = backbone.register_forward_hook(lambda *a: calls.append(time.perf_counter()))
        state, first_s = timed(lambda: pred.set_image(path0))
        hook.remove(), done.remove()
        backbone_s = calls[1] - calls[0]
        _, levels_s = timed(lambda: pred.tracker_features(state))
        mb = pred.store.nbytes(state.key) / 1e6
        print(f"first set_image {first_s:.2f} s (backbone {backbone_s:.2f} s); click levels "
              f"{levels_s:.2f} s; entry {mb:.1f} MB ({args.dtype})", flush=True)  # fmt: skip

        # 2. the same image from disk: a fresh store object each time (empty memory)
        def ready(predictor, path):  # the image's features: trunk and click levels
            state = predictor.set_image(path)
            return state.trunk, predictor.tracker_features(state)

        gets, sets = [], []
        for _ in range(args.reads):
            fresh, _ = predictor()
            gets.append(timed(fresh.store.get, state.key)[1])
            fresh, _ = predictor()
            sets.append(timed(ready, fresh, path0)[1])
        get_s, set_s = statistics.median(gets), statistics.median(sets)
        print(f"from disk: store.get {get_s * 1e3:.0f} ms; set_image + click levels "
              f"{set_s * 1e3:.0f} ms (median of {args.reads})", flush=True)  # fmt: skip

        # 3. a click in the Label Studio backend: precomputed (disk) vs cold (not stored)
        pre, cold_s = click_rows(predictor, tmp, names, args.reads, cold=True)
        pre_ms, cold_ms = statistics.median(pre) * 1e3, cold_s * 1e3
        fresh, _ = predictor()
        print(f"stored images: {len(fresh.store)}, {fresh.store.disk_bytes() / 1e6:.1f} MB")
    print(
        f"store_read_fraction={set_s / backbone_s:.4f} ls_click_precomputed_ms={pre_ms:.0f} "
        f"ls_click_cold_ms={cold_ms:.0f} store_mb_per_image={mb:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
