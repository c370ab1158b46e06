"""Video tracking: ours vs transformers (Sam3TrackerVideoModel for clicks, Sam3VideoModel for
a concept) on the same weights and clip, and our memory.

Clicks: two clicked objects on frame 0, then propagation with masks at the video size, timed
after a warm-up run (CPU fp32, GPU bf16); median of `--runs` interleaved runs. Both sides are
timed from decoded frames to per-frame masks: session start (the reference preprocesses the
whole clip there; ours decodes and resizes each frame when it is reached), both clicks, then
propagation. Concept: the same with a text prompt on frame 0 instead of clicks, thresholds
lowered so that the random detector starts tracks (the tracks shown are printed, to show that
both sides did the same work); its ratio is printed on its own line. Then our resident
memory (RSS) after 50 and after 400 frames of a lazily generated video with the tiny config,
once tracking the two clicked objects and once tracking a concept (every query detected, so
that tracks start and end all along). Then strong detections over `--recondition-frames`
(1,000) frames: the tiny weights adjusted so that detections and tracks score ~1 with
full-frame masks (one track, re-conditioned every 16th frame as released), ms/frame and RSS
at the start and the end, with re-conditioned frames capped (default 4) and kept (as the
released model). Last line:
`video_fps_ratio=R video_rss_growth_mb_per_100_frames=G video_fps=F concept_fps_ratio=C` (R = ours
/ reference fps for the clicks, F ours; G the larger growth of the two memory runs; C ours /
reference fps for the concept).
`python benchmarks/bench_video.py [--config sam3 | --size full]` (default: sam3 on a GPU,
sam3_tiny on CPU).

`--multiplex`: only SAM 3's tracker vs SAM 3.1's Object Multiplex on the same frames, ms per
propagated frame (CPU time on a CPU) for 1, 16, 64, 128 objects clicked on frame 0 (the
config's SAM 3.1 layout with buckets of `--bucket`, 16 as released). Both models' ViT trunks
read one cache (each distinct frame computed once, before timing): the ms are the trackers'
work (necks, memory, decoders, masks at the video size); the trunk's ms/frame is printed with
the speedups it would give if added to both sides. Also the ms of clicking all the objects
(one click each; SAM 3.1 encodes a clicked frame's memory when propagation first reads it, so
that work is in the first propagated frame). `--size full` (the released sizes, 1008 px):
3 propagated frames of a still video (one trunk pass) and one run, so that it ends on a CPU.
Last line `multiplex_speedup_16=.. multiplex_speedup_128=..` (SAM 3 ms/frame / SAM 3.1 ms/frame,
tracking only).

`--tracking`: ours end to end, as a user runs it, for each of `--objects` clicked objects: SAM 3
and its SAM 3.1 layout, one click per object on frame 0, then `--frames` propagated frames of a
drifting `--width`x`--height` video (every frame through the ViT, masks at the video size),
frames/s after a warm-up run; and the memory held (GPU memory allocated on a GPU, RSS on a CPU)
a quarter of the way in and at the end, as MB of growth per 100 frames. After each row, the
figures so far: `video_fps_1=.. ... video31_fps_1=.. ... video_mem_growth_mb_per_100_frames=..`
(the largest growth), so that a run stopped at a time limit keeps what it measured.
`benchmarks/gpu.sh` runs `--tracking --objects 1,16,64` at full size in bf16.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import sync
from sam3_core.device import autocast, pick_device
from sam3_core.video.frames import FrameSource

if TYPE_CHECKING:
    from sam3_core.video.predictor import VideoPredictor

CLICKS = {1: ([[0.3, 0.3]], [1]), 2: ([[0.7, 0.6], [0.2, 0.8]], [1, 0])}
"""Object id -> (points as fractions of W, H; labels)."""
CONCEPT = "texture"


class SyntheticFrames(FrameSource):
    """A drifting random texture, generated on demand (nothing held but one base image)."""

    name = "synthetic video"

    def __init__(self, n: int, h: int, w: int, still: bool = False) -> None:
        """`still`: every frame the same (the texture does not drift)."""
        rng = np.random.default_rng(0)
        small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        self.base = np.kron(small, np.ones((8, 8, 1), np.uint8))[:h, :w]
        self.n, self._size, self.still = n, (h, w), still

    def __len__(self) -> int:
        return self.n

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def _get(self, index: int) -> np.ndarray:
        return self.base if self.still else np.roll(self.base, (index, 2 * index), (0, 1))


def pixel_clicks(h: int, w: int) -> dict[int, tuple[list, list]]:
    return {i: ([[x * w, y * h] for x, y in pts], lbl) for i, (pts, lbl) in CLICKS.items()}


def run_ours(vp, frames, n: int) -> float:
    """Seconds to start a session, click both objects on frame 0 and propagate `n` frames."""
    sync(vp.device)
    t0 = time.perf_counter()
    session = vp.start(frames)
    for obj_id, (pts, lbl) in pixel_clicks(*frames.size).items():
        session.add_prompt(0, obj_id=obj_id, points=pts, point_labels=lbl)
    for _ in session.propagate(start=0, max_frames=n):
        pass
    sync(vp.device)
    return time.perf_counter() - t0


def run_reference(hf, proc, frames, n: int, device, precision: str) -> float:
    """Seconds the reference takes for the same work: session start (it preprocesses the whole
    clip there), the same clicks, then propagation with masks at the video size."""
    h, w = frames.size
    video = [frames[t] for t in range(n)]  # decoded frames, as ours reads them
    sync(device)
    t0 = time.perf_counter()
    session = proc.init_video_session(video=video, inference_device=device)
    with torch.inference_mode(), autocast(device, precision):
        for obj_id, (pts, lbl) in pixel_clicks(h, w).items():
            proc.add_inputs_to_inference_session(
                session, frame_idx=0, obj_ids=obj_id, input_points=[[pts]], input_labels=[[lbl]]
            )
            hf(inference_session=session, frame_idx=0)
        for out in hf.propagate_in_video_iterator(session, start_frame_idx=0):
            proc.post_process_masks([out.pred_masks], original_sizes=[[h, w]], binarize=True)
        sync(device)
    return time.perf_counter() - t0


def concept_association():
    """Thresholds low enough for random weights to start tracks; NMS and hole filling off (the
    reference skips both without its hub kernel) and lost tracks kept, as the reference."""
    from sam3_core.video.association import AssociationConfig

    return AssociationConfig(
        score_threshold_detection=0.2,
        new_det_thresh=0.3,
        det_nms_thresh=0.0,
        fill_hole_area=0,
        end_lost_after=0,
    )


def run_ours_concept(vp, frames, n: int) -> tuple[float, int]:
    """Seconds to start a session, add the concept on frame 0 and propagate `n` frames; and
    the number of tracks shown, summed over frames."""
    sync(vp.device)
    t0 = time.perf_counter()
    session = vp.start(frames, association=concept_association())
    session.add_concept(0, CONCEPT)
    shown = sum(len(inst.track_ids) for _, inst in session.propagate(start=0, max_frames=n))
    sync(vp.device)
    return time.perf_counter() - t0, shown


def run_reference_concept(hf, proc, frames, n: int, device, precision: str) -> tuple[float, int]:
    """The same for transformers' Sam3VideoModel, to its post-processed per-frame outputs."""
    video = [frames[t] for t in range(n)]
    sync(device)
    t0 = time.perf_counter()
    session = proc.init_video_session(video=video, inference_device=device)
    proc.add_text_prompt(session, CONCEPT)
    shown = 0
    with torch.inference_mode(), autocast(device, precision):
        for out in hf.propagate_in_video_iterator(session, start_frame_idx=0):
            shown += len(proc.postprocess_outputs(session, out)["object_ids"])
        sync(device)
    return time.perf_counter() - t0, shown


def rss_mb() -> float:
    """Current resident memory of this process, MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def memory_run(device, frames: int, size: tuple[int, int], concept: bool) -> tuple[float, ...]:
    """(RSS after 50 frames, RSS after `frames`, session bytes) with the tiny config, tracking
    the clicked objects or a concept."""
    from sam3_core.build import build_model
    from sam3_core.video.association import AssociationConfig
    from sam3_core.video.predictor import VideoPredictor

    torch.manual_seed(0)  # the random detector's behaviour depends on its weights
    vp = VideoPredictor(build_model("sam3_tiny"), device=device)
    video = SyntheticFrames(frames, *size)
    if concept:
        every_query = AssociationConfig(0.0, new_det_thresh=0.0, det_nms_thresh=0.0)
        session = vp.start(video, association=every_query)
        session.add_concept(0, CONCEPT)
    else:
        session = vp.start(video)
        for obj_id, (pts, lbl) in pixel_clicks(*size).items():
            session.add_prompt(0, obj_id=obj_id, points=pts, point_labels=lbl)
    rss50 = 0.0
    for t, _ in session.propagate(start=0):
        if t + 1 == 50:
            gc.collect()
            rss50 = rss_mb()
    gc.collect()
    return rss50, rss_mb(), session.memory_bytes()


def strong_detections(model) -> None:
    """Adjust random weights in place so that every detection and track is strong: detector
    scores ~1 with full-frame masks, tracker object scores ~1 with full-frame masks (so that
    tracks match their detections by IoU 1 and pass the re-conditioning thresholds)."""
    det, trk = model.detector_model, model.tracker_model.mask_decoder
    with torch.no_grad():
        for lin in (det.dot_product_scoring.text_proj, det.dot_product_scoring.query_proj):
            lin.weight.zero_()
            lin.bias.fill_(2.0)  # query . prompt logits clamp at 12
        det.detr_decoder.presence_head.layer3.bias.fill_(10.0)
        det.mask_decoder.instance_projection.weight.zero_()
        det.mask_decoder.instance_projection.bias.fill_(1.0)
        det.mask_decoder.mask_embedder.layers[-1].weight.zero_()
        det.mask_decoder.mask_embedder.layers[-1].bias.fill_(1.0)  # mask logits = d > 0
        for mlp in trk.output_hypernetworks_mlps:
            mlp.proj_out.weight.zero_()
            mlp.proj_out.bias.fill_(1.0)
        trk.upscale_conv2.bias.fill_(10.0)  # per-pixel features > 0: mask logits > 0
        trk.pred_obj_score_head.proj_out.bias.fill_(10.0)


def recondition_run(device, frames: int, size, keep: int | None) -> dict[str, float]:
    """Track a concept with strong detections over `frames` frames (tiny config); ms/frame
    and RSS over the first and last 100 frames, conditioning frames and pointers per track."""
    from sam3_core.build import build_model
    from sam3_core.video.association import AssociationConfig
    from sam3_core.video.predictor import VideoPredictor

    torch.manual_seed(0)
    model = build_model("sam3_tiny")
    strong_detections(model)
    vp = VideoPredictor(model, device=device)
    assoc = AssociationConfig(max_reconditioned_frames=keep)
    session = vp.start(SyntheticFrames(frames, *size), association=assoc)
    session.add_concept(0, CONCEPT)
    stamps, rss, shown = {}, {}, set()
    for t, inst in session.propagate(start=0):
        shown.update(inst.track_ids.tolist())
        if t in (0, 100, frames - 101, frames - 1):
            sync(device)
            gc.collect()
            stamps[t], rss[t] = time.perf_counter(), rss_mb()
    memories = [o.memory for o in session.objects.values()]
    last = frames - 1
    pointers = [len(session.bank.query(m, last, False).pointer_offsets) for m in memories]
    return {
        "ms_start": (stamps[100] - stamps[0]) * 10,
        "ms_end": (stamps[last] - stamps[frames - 101]) * 10,
        "rss_start": rss[100],
        "rss_end": rss[last],
        "tracks": len(shown),
        "cond": max((len(m.cond) for m in memories), default=0),
        "pointers": max(pointers, default=0),
    }


def clock_for(device: torch.device):
    """This process's CPU time on a CPU (other processes' load does not count), else wall
    time (after a sync)."""
    return time.process_time if device.type == "cpu" else time.perf_counter


class CachedTrunk(torch.nn.Module):
    """A ViT trunk whose outputs are kept per distinct input in a cache that several models
    (with the same trunk shape) share: the first model to see a frame computes it, the others
    read it. `seconds`: the time this trunk spent computing, `computed`: how many frames."""

    def __init__(self, trunk: torch.nn.Module, cache: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.trunk, self.cache = trunk, cache
        self.seconds, self.computed = 0.0, 0

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        key = hashlib.sha1(pixels.detach().float().cpu().numpy().tobytes()).hexdigest()
        if key not in self.cache:
            clock = clock_for(pixels.device)
            sync(pixels.device)
            t0 = clock()
            self.cache[key] = self.trunk(pixels)
            sync(pixels.device)
            self.seconds += clock() - t0
            self.computed += 1
        return self.cache[key]


def click_objects(session, num_objects: int) -> None:
    """Objects 1..`num_objects`, one positive click each on frame 0, at random points (seeded by
    the count, so every model gets the same clicks)."""
    rng = np.random.default_rng(num_objects)
    h, w = session.size
    for obj_id in range(1, num_objects + 1):
        xy = [[float(rng.uniform(0, w - 1)), float(rng.uniform(0, h - 1))]]
        session.add_prompt(0, obj_id=obj_id, points=xy, point_labels=[1])


def multiplex_ms_per_frame(vp, frames, num_objects: int, n: int) -> tuple[float, float]:
    """ms for clicking `num_objects` objects on frame 0 (one click each, all of them) and ms
    per propagated frame over `n` frames after it, by `clock_for` the device."""
    session = vp.start(frames)
    clock = clock_for(vp.device)
    sync(vp.device)
    t0 = clock()
    click_objects(session, num_objects)
    sync(vp.device)
    t1 = clock()
    for _ in session.propagate(start=0, max_frames=n + 1):
        pass
    sync(vp.device)
    return 1000 * (t1 - t0), 1000 * (clock() - t1) / n


def multiplex_predictors(device, base: str, bucket: int, precision: str) -> dict:
    """SAM 3 (`base`) and its SAM 3.1 layout (buckets of `bucket`) on random weights, their ViT
    trunks reading one `CachedTrunk` cache."""
    from sam3_core.build import build_model
    from sam3_core.config import get_config, replace
    from sam3_core.video.predictor import VideoPredictor

    multi = get_config(base.replace("sam3", "sam3.1", 1))
    multi = replace(multi, multiplex=replace(multi.multiplex, multiplex_count=bucket))
    cache: dict[str, torch.Tensor] = {}
    vps = {}
    for name, cfg in (("sam3", get_config(base)), ("sam3.1", multi)):
        torch.manual_seed(0)
        with torch.device(device):
            model = build_model(cfg).eval()
        vision = model.detector_model.vision_encoder
        vision.backbone = CachedTrunk(vision.backbone, cache)
        vps[name] = VideoPredictor(model, device, precision)
        gc.collect()
    return vps


def print_multiplex(
    device, config: str | None, counts: list[int], n: int, bucket: int, runs: int, still: bool
) -> None:
    """SAM 3's per-object tracker vs SAM 3.1's multiplex one on the same frames: ms/frame
    for each number of clicked objects, median of `runs` interleaved runs (random weights:
    the cost, not the masks); `still`: a video of one repeated frame."""
    base = config or ("sam3" if device.type == "cuda" else "sam3_tiny")
    precision = "bf16" if device.type == "cuda" else "fp32"
    vps = multiplex_predictors(device, base, bucket, precision)
    frames = SyntheticFrames(n + 1, 240, 320, still=still)
    for vp in vps.values():  # warm-up; fills the trunk cache with every frame (SAM 3 computes)
        multiplex_ms_per_frame(vp, frames, 1, 1 if still else n)
    trunk = vps["sam3"].model.detector_model.vision_encoder.backbone
    trunk_ms = 1000 * trunk.seconds / max(trunk.computed, 1)
    clock = "CPU" if device.type == "cpu" else "wall"
    print(
        f"device={device} precision={precision} config={base} vs its SAM 3.1 layout, buckets "
        f"of {bucket}; {n} propagated frames 320x240{' (a still video)' if still else ''}, "
        f"objects clicked on frame 0, median of {runs} run(s); {clock} ms, ViT trunk cached"
    )
    print(
        f"{'objects':>8} {'sam3 ms/frame':>14} {'sam3.1 ms/frame':>16} {'speedup':>8} "
        f"{'sam3 clicks ms':>15} {'sam3.1 clicks ms':>17}"
    )
    ms: dict[int, dict[str, float]] = {}
    for count in counts:
        taken: dict[str, list[tuple[float, float]]] = {k: [] for k in vps}
        for _ in range(runs):  # interleaved, so load from other processes hits both alike
            for k, vp in vps.items():
                taken[k].append(multiplex_ms_per_frame(vp, frames, count, n))
        ms[count] = {k: statistics.median(f for _, f in v) for k, v in taken.items()}
        clicks = {k: statistics.median(c for c, _ in v) for k, v in taken.items()}
        sam3, sam31 = ms[count]["sam3"], ms[count]["sam3.1"]
        print(
            f"{count:>8} {sam3:>14.1f} {sam31:>16.1f} {sam3 / sam31:>7.2f}x "
            f"{clicks['sam3']:>15.1f} {clicks['sam3.1']:>17.1f}",
            flush=True,
        )
    shown = [c for c in (16, 128) if c in ms]
    with_trunk = " ".join(
        f"speedup_{c}={(ms[c]['sam3'] + trunk_ms) / (ms[c]['sam3.1'] + trunk_ms):.2f}"
        for c in shown
    )
    print(f"ViT trunk {trunk_ms:.1f} {clock} ms/frame (not in the ms above); with it: {with_trunk}")
    print(" ".join(f"multiplex_speedup_{c}={ms[c]['sam3'] / ms[c]['sam3.1']:.2f}" for c in shown))


def device_mb(device: torch.device) -> float:
    """Memory this process holds on `device`, MiB: allocated GPU memory, or RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return rss_mb()


def tracking_run(
    vp: VideoPredictor, frames: FrameSource, num_objects: int
) -> tuple[float, float, float]:
    """(frames/s over the propagated frames, MiB held a quarter of the way in, MiB held at the
    end) for `num_objects` objects clicked once each on frame 0 of `frames`, then propagated."""
    n = len(frames) - 1
    session = vp.start(frames)
    click_objects(session, num_objects)
    quarter = 0.0
    sync(vp.device)
    t0 = time.perf_counter()
    for t, _ in session.propagate(start=0):
        if t == 0:  # the clicked frame: its output, then the propagation is timed
            sync(vp.device)
            t0 = time.perf_counter()
        elif t == max(1, n // 4):
            quarter = device_mb(vp.device)
    sync(vp.device)
    fps = n / (time.perf_counter() - t0)
    gc.collect()
    end = device_mb(vp.device)
    return fps, quarter, end


def print_tracking(
    device: torch.device, config: str, counts: list[int], n: int, h: int, w: int
) -> None:
    """SAM 3 and its SAM 3.1 layout end to end (ViT on every frame): frames/s and memory growth
    for each number of clicked objects (random weights: the cost, not the masks)."""
    from sam3_core.build import build_model
    from sam3_core.config import get_config
    from sam3_core.video.predictor import VideoPredictor

    precision = "bf16" if device.type == "cuda" else "fp32"
    frames = SyntheticFrames(n + 1, h, w)
    print(
        f"device={device} precision={precision} config={config} and its SAM 3.1 layout; "
        f"{n} propagated frames {w}x{h}, objects clicked on frame 0"
    )
    print(f"{'model':>7} {'objects':>8} {'fps':>8} {'MB at n/4':>10} {'MB at end':>10}")
    line, growth = [], 0.0
    for name, key in (("sam3", "video"), ("sam3.1", "video31")):
        torch.manual_seed(0)
        model = build_model(get_config(config.replace("sam3", name, 1)), device=device)
        vp = VideoPredictor(model, device=device, precision=precision)
        tracking_run(vp, SyntheticFrames(4, h, w), 1)  # warm-up (kernels, allocator)
        for count in counts:
            fps, quarter, end = tracking_run(vp, frames, count)
            growth = max(growth, (end - quarter) * 100 / (n - max(1, n // 4)))
            print(f"{name:>7} {count:>8} {fps:>8.2f} {quarter:>10.1f} {end:>10.1f}", flush=True)
            line.append(f"{key}_fps_{count}={fps:.2f}")
            # the figures so far, each time: a run stopped at its time limit keeps them
            print(" ".join(line) + f" video_mem_growth_mb_per_100_frames={growth:.2f}", flush=True)
        del vp, model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default=None, help="default: sam3 on a GPU, sam3_tiny on CPU")
    ap.add_argument(
        "--frames", type=int, help="frames timed per run (32; --multiplex: 8, full size 3)"
    )
    ap.add_argument(
        "--runs", type=int, help="timed runs per side, median (5; --multiplex: 3, full size 1)"
    )
    ap.add_argument(
        "--size",
        choices=("tiny", "full"),
        help="--multiplex on sam3_tiny or the released sizes (sam3): shorthand for --config",
    )
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--device", default=None)
    ap.add_argument("--memory-frames", type=int, default=400, help="> 50, or 0: no memory runs")
    ap.add_argument(
        "--recondition-frames", type=int, default=1000, help=">= 202, or 0: no strong-detection run"
    )
    ap.add_argument("--only-recondition", action="store_true", help="only the strong-detection run")
    ap.add_argument(
        "--multiplex",
        action="store_true",
        help="only SAM 3 vs SAM 3.1 (Object Multiplex) ms/frame for --objects clicked objects",
    )
    ap.add_argument(
        "--tracking",
        action="store_true",
        help="only ours end to end (SAM 3 and 3.1): fps and memory for --objects clicked objects",
    )
    ap.add_argument(
        "--objects", default="1,16,64,128", help="object counts for --multiplex / --tracking"
    )
    ap.add_argument("--bucket", type=int, default=16, help="SAM 3.1 bucket size (released: 16)")
    args = ap.parse_args()
    if args.multiplex:
        torch.set_grad_enabled(False)
        counts = [int(c) for c in args.objects.split(",")]
        full = args.size == "full" or args.config == "sam3"
        config = {"tiny": "sam3_tiny", "full": "sam3"}.get(args.size, args.config)
        return print_multiplex(
            pick_device(args.device),
            config,
            counts,
            args.frames or (3 if full else 8),
            args.bucket,
            args.runs or (1 if full else 3),
            still=full,
        )
    if args.tracking:
        torch.set_grad_enabled(False)
        device = pick_device(args.device)
        config = args.config or ("sam3" if device.type == "cuda" else "sam3_tiny")
        counts = [int(c) for c in args.objects.split(",")]
        return print_tracking(device, config, counts, args.frames or 32, args.height, args.width)
    args.frames, args.runs = args.frames or 32, args.runs or 5

    from sam3_core.build import build_model
    from sam3_core.config import get_config
    from sam3_core.video.predictor import VideoPredictor
    from tests.reference import hf_tracker_video_processor, hf_video_tracker

    torch.set_grad_enabled(False)
    device = pick_device(args.device)
    if args.only_recondition:
        return print_recondition(device, args.recondition_frames)
    precision = "bf16" if device.type == "cuda" else "fp32"
    config = args.config or ("sam3" if device.type == "cuda" else "sam3_tiny")
    cfg = get_config(config)
    torch.manual_seed(0)
    with torch.device(device):  # built where they run: fast on a GPU
        model = build_model(cfg)
        hf = hf_video_tracker(model)
    proc = hf_tracker_video_processor(cfg)
    vp = VideoPredictor(model, device=device, precision=precision)
    frames = SyntheticFrames(args.frames, args.height, args.width)

    run_reference(hf, proc, SyntheticFrames(4, args.height, args.width), 4, device, precision)
    run_ours(vp, SyntheticFrames(4, args.height, args.width), 4)
    ref, ours = [], []
    for _ in range(args.runs):  # interleaved, so load from other processes hits both alike
        ref.append(args.frames / run_reference(hf, proc, frames, args.frames, device, precision))
        ours.append(args.frames / run_ours(vp, frames, args.frames))
    fps_ref, fps_ours = statistics.median(ref), statistics.median(ours)
    del hf
    gc.collect()

    import tempfile

    from tests.reference import hf_concept_video_model, hf_concept_video_processor

    with torch.device(device):
        hf_c = hf_concept_video_model(model, concept_association())
    with tempfile.TemporaryDirectory() as folder:
        proc_c = hf_concept_video_processor(cfg, folder)
    run_reference_concept(
        hf_c, proc_c, SyntheticFrames(4, args.height, args.width), 4, device, precision
    )
    run_ours_concept(vp, SyntheticFrames(4, args.height, args.width), 4)
    ref_c, ours_c, shown = [], [], set()
    for _ in range(args.runs):
        took, n_ref = run_reference_concept(hf_c, proc_c, frames, args.frames, device, precision)
        ref_c.append(args.frames / took)
        took, n_ours = run_ours_concept(vp, frames, args.frames)
        ours_c.append(args.frames / took)
        shown.add((n_ref, n_ours))
    fps_ref_c, fps_ours_c = statistics.median(ref_c), statistics.median(ours_c)
    del hf_c, vp, model
    gc.collect()

    print(
        f"device={device} precision={precision} config={config} clip={args.frames} frames "
        f"{args.width}x{args.height} objects={len(CLICKS)} runs={args.runs} (median fps)"
    )
    print(f"reference {fps_ref:.2f} fps | ours {fps_ours:.2f} fps")
    print(
        f"concept '{CONCEPT}' (tracks shown over the clip, reference/ours: {sorted(shown)}): "
        f"reference {fps_ref_c:.2f} fps | ours {fps_ours_c:.2f} fps | "
        f"concept_fps_ratio={fps_ours_c / fps_ref_c:.2f}"
    )
    growth = 0.0
    for concept in (False, True) if args.memory_frames else ():
        rss50, rss_end, held = memory_run(device, args.memory_frames, (64, 80), concept)
        growth = max(growth, (rss_end - rss50) / ((args.memory_frames - 50) / 100))
        print(
            f"memory (sam3_tiny, 80x64, {'a concept' if concept else 'two clicked objects'}): "
            f"rss@50 {rss50:.1f} MiB, rss@{args.memory_frames} {rss_end:.1f} MiB, "
            f"session tensors {held / 2**20:.2f} MiB"
        )
    if args.recondition_frames:
        print_recondition(device, args.recondition_frames)
    print(
        f"video_fps_ratio={fps_ours / fps_ref:.2f} video_rss_growth_mb_per_100_frames={growth:.2f}"
        f" video_fps={fps_ours:.2f} concept_fps_ratio={fps_ours_c / fps_ref_c:.2f}"
    )


def print_recondition(device, frames: int) -> None:
    """The strong-detection run, capped (default) and keeping every re-conditioned frame."""
    for keep in (4, None):
        r = recondition_run(device, frames, (64, 80), keep)
        print(
            f"strong detections (sam3_tiny, 80x64, {frames} frames, re-conditioned frames kept: "
            f"{keep or 'all'}): {r['tracks']} track(s); ms/frame {r['ms_start']:.1f} (frames "
            f"0-100) -> {r['ms_end']:.1f} (last 100); rss {r['rss_start']:.1f} -> "
            f"{r['rss_end']:.1f} MiB; conditioning frames {r['cond']}, pointers attended "
            f"{r['pointers']} per track at the end"
        )


if __name__ == "__main__":
    main()
