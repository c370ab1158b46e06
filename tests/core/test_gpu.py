"""Code paths that exist only on a CUDA GPU; every test is `gpu_only` (skips cleanly without one)
and runs on "cuda" whatever `SAM3_TEST_DEVICE` says (the CPU side of a comparison on "cpu").

- CUDA autocast: bf16 and fp16 predictors store their Linear/Conv weights in that dtype on the
  GPU (norms stay fp32), and their concept + exemplar and click results agree with fp32 on the
  GPU and with fp32 on the CPU within the bf16 bounds of `tests/core/test_precision.py` (bf16
  keeps 8 significant bits; fp16 keeps 11, so the same bounds hold for it with room to spare).
  fp32 on the GPU agrees with fp32 on the CPU within the parity bounds of
  `tests/core/modeling/test_detector_parity.py` (scores 1e-4, mask logits 1e-3; click logits
  1e-3): TF32 is off here, so the two differ only by the order of fp32 sums. A one-ulp change
  of every weight moves them by 3e-7, 7e-5 and 2e-5 on the CPU: the bounds leave 14-300x.
- Video memory offload (`offload_to_cpu=True`): the memory bank's spatial memories live on the
  CPU (bf16, as on the GPU without offload), tracks are those of a session without offload (the
  bank stores bf16 either way and the round trip to the CPU is exact, so they should be bit for
  bit the same), the GPU holds less by the bank's spatial memories, and the GPU memory held after
  a frame and the peak during one stay flat from an early to a late frame of a longer clip.
- SAM 3.1 (Object Multiplex) click tracking in bf16 on the GPU: the same ids as fp32, masks and
  object scores within the bf16 bounds.
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from sam3_core.device import precision_dtype
from sam3_core.predictor import ImagePredictor
from sam3_core.prompts import normalize_concepts
from sam3_core.results import Instances
from sam3_core.video.predictor import VideoPredictor
from sam3_core.video.session import VideoSession
from tests.core.helpers import make_image, tiny_model
from tests.core.test_precision import (
    CONCEPT_IMAGE_SEED,
    CONCEPTS,
    EXEMPLARS,
    SCORE_ATOL,
    assert_clicks_agree,
    assert_concepts_agree,
    click_result,
    concept_result,
)
from tests.core.video.multiplex_tools import moving_video, multiplex_predictor
from tests.device import gpu_only
from tests.reference import mask_iou

GPU = torch.device("cuda")
LOW_PRECISIONS = ("bf16", "fp16")
MATMUL_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)  # what the cast stores in low precision
NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm)  # what stays fp32
# the offload clip: the tiny tracker reads 6 recent frames and 15 frames of pointers, so from
# EARLY on its bank holds a fixed number of records; OBJECTS: (x, y) clicks, one per object
CLIP_FRAMES, EARLY = 40, 20
OBJECTS = {1: [[15, 15]], 2: [[60, 20]], 3: [[35, 50]]}
# GPU bytes a late frame may hold beyond an early one: none is expected (the same tensors each
# frame); an uncapped bank would add 1.5 KiB of pointers (offload) or 72 KiB (no offload) a frame
HELD_SLACK = 4096
PEAK_SLACK = 64 * 1024  # a frame's peak: an uncapped bank would load 72 KiB more each frame


@pytest.fixture(autouse=True)
def fp32_without_tf32() -> Iterator[None]:
    """fp32 on the GPU is fp32: TF32 off (cuDNN convolutions default to it), as `tests.device`
    does for SAM3_TEST_DEVICE=cuda; restored afterwards."""
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    saved = [f.allow_tf32 for f in flags]
    for f in flags:
        f.allow_tf32 = False
    yield
    for f, value in zip(flags, saved):
        f.allow_tf32 = value


@pytest.fixture(scope="module")
def predictors() -> dict[tuple[str, str], ImagePredictor]:
    """(device, precision) -> an ImagePredictor on its own copy of one tiny model."""
    model = tiny_model(4)
    combos = [("cpu", "fp32"), ("cuda", "fp32"), *(("cuda", p) for p in LOW_PRECISIONS)]
    return {(d, p): ImagePredictor(copy.deepcopy(model), device=d, precision=p) for d, p in combos}


# ---------------------------------------------------------------------- autocast on CUDA
@gpu_only
@pytest.mark.parametrize("precision", LOW_PRECISIONS)
def test_cuda_low_precision_stores_matmul_weights_on_the_gpu(predictors, precision):
    model = predictors["cuda", precision].model
    matmul = [m for m in model.modules() if isinstance(m, MATMUL_LAYERS)]
    norms = [m for m in model.modules() if isinstance(m, NORM_LAYERS)]
    assert matmul and norms
    assert all(p.dtype == precision_dtype(precision) for m in matmul for p in m.parameters())
    assert all(p.dtype == torch.float32 for m in norms for p in m.parameters())
    assert all(t.device.type == "cuda" for t in (*model.parameters(), *model.buffers()))
    assert model.matmul_dtype == precision_dtype(precision)


@gpu_only
@pytest.mark.parametrize("precision", LOW_PRECISIONS)
def test_cuda_autocast_agrees_with_fp32_on_gpu_and_cpu(predictors, precision):
    low = predictors["cuda", precision]
    assert low.set_image(make_image(seed=CONCEPT_IMAGE_SEED)).features.vit.device.type == "cuda"
    concepts, click = concept_result(low), click_result(low)
    for device in ("cuda", "cpu"):
        ref = predictors[device, "fp32"]
        ref_concepts = concept_result(ref)
        assert_concepts_agree(ref_concepts, concepts)
        assert_clicks_agree(click_result(ref), click)
        # autocast ran: low precision is not fp32 bit for bit
        assert not np.array_equal(np.sort(ref_concepts.scores), np.sort(concepts.scores))


@gpu_only
def test_cuda_fp32_agrees_with_cpu_fp32(predictors):
    detections, clicks = [], []
    for device in ("cpu", "cuda"):
        pred = predictors[device, "fp32"]
        state = pred.set_image(make_image(seed=CONCEPT_IMAGE_SEED))
        batch = normalize_concepts(CONCEPTS, EXEMPLARS, state.size)
        out = pred.detect_concepts(state, batch)
        assert out.logits.device.type == device
        detections.append(
            {"scores": out.scores, "boxes": out.boxes, "masks": out.masks, "presence": out.presence}
        )
        clicks.append(click_result(pred))
    cpu, gpu = ({k: v.float().cpu() for k, v in d.items()} for d in detections)
    assert cpu["scores"].std() > 0.01  # scores that depend on the query: the check can fail
    for key, atol in (("scores", 1e-4), ("boxes", 1e-4), ("presence", 1e-4), ("masks", 1e-3)):
        assert (cpu[key] - gpu[key]).abs().max() < atol, key
    # binary masks: a pixel flips only where its logit is within rounding of 0
    assert ((cpu["masks"] > 0) != (gpu["masks"] > 0)).float().mean() <= 1e-3
    a, b = clicks
    assert np.abs(a.low_res_logits - b.low_res_logits).max() < 1e-3
    assert np.abs(a.scores - b.scores).max() < 1e-4 and mask_iou(a.masks[0], b.masks[0]) >= 0.99


# ---------------------------------------------------------------------- video memory offload
def _spatial_records(session: VideoSession) -> list:
    """Every FrameMemory of the session's objects that still holds a spatial memory."""
    records = [m for obj in session.objects.values() for m in obj.memory.records()]
    return [m for m in records if m.memory is not None]


def _track_measuring_gpu(
    vp: VideoPredictor, video: np.ndarray, offload_to_cpu: bool
) -> tuple[VideoSession, dict[int, Instances], list[int], list[int], list[int]]:
    """Click OBJECTS on frame 0 and propagate; per frame: the GPU bytes held after it and its
    peak (both above what was held before the session started), and `memory_bytes()`."""
    gc.collect()
    gc.freeze()  # gc.collect() below then only scans what tracking allocates: fast
    try:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        session = vp.start(video, offload_to_cpu=offload_to_cpu)
        for obj_id, points in OBJECTS.items():
            session.add_prompt(0, obj_id=obj_id, points=points, point_labels=[1])
        frames, held, peak, bank = {}, [], [], []
        torch.cuda.reset_peak_memory_stats()
        for t, instances in session.propagate():
            gc.collect()  # only live tensors count, whenever cycles happen to be freed
            torch.cuda.synchronize()
            frames[t] = instances
            held.append(torch.cuda.memory_allocated() - base)
            peak.append(torch.cuda.max_memory_allocated() - base)
            bank.append(session.memory_bytes())
            torch.cuda.reset_peak_memory_stats()
    finally:
        gc.unfreeze()
    return session, frames, held, peak, bank


@gpu_only
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_video_offload_keeps_memory_on_cpu_and_gpu_memory_flat(precision):
    vp = VideoPredictor(tiny_model(seed=2), device=GPU, precision=precision)
    video = moving_video(CLIP_FRAMES)
    on_gpu, tracks, on_held, on_peak, on_bank = _track_measuring_gpu(vp, video, False)
    offloaded, off_tracks, off_held, off_peak, off_bank = _track_measuring_gpu(vp, video, True)
    assert offloaded.bank.storage.type == "cpu" and on_gpu.bank.storage.type == "cuda"
    # where the memories live: on the CPU with offload, bf16 (as the bank stores them) either way
    for session, device in ((on_gpu, "cuda"), (offloaded, "cpu")):
        records = _spatial_records(session)
        assert len(records) >= len(OBJECTS) * 2  # the prompted frame and recent ones
        assert all(m.memory.device.type == device for m in records)
        assert all(m.memory_pos.device.type == device for m in records)
        assert all(m.memory.dtype == torch.bfloat16 for m in records)
    # the same tracks: ids on every frame, logits equal up to kernel choice (bit for bit expected)
    assert sorted(tracks) == sorted(off_tracks) == list(range(CLIP_FRAMES))
    for t in range(CLIP_FRAMES):
        a, b = tracks[t], off_tracks[t]
        assert a.track_ids.tolist() == b.track_ids.tolist() == list(OBJECTS)
        assert np.abs(a.low_res_logits - b.low_res_logits).max() <= 1e-3, t
        assert all(mask_iou(x, y) >= 0.999 for x, y in zip(a.masks, b.masks)), t
    late = tracks[CLIP_FRAMES - 1]
    assert any(m.any() for m in late.masks) and not np.array_equal(late.masks, tracks[0].masks)
    # offload changes where the bank is, not what it holds; it is capped either way
    assert on_bank == off_bank and on_bank[-1] == on_bank[EARLY]
    # the GPU no longer holds the spatial memories...
    spatial = sum(m.memory.nbytes + m.memory_pos.nbytes for m in _spatial_records(on_gpu))
    assert on_held[-1] - off_held[-1] >= spatial > 0
    # ... and what it holds after a frame, and its peak during one, do not grow with the video
    for held, peak in ((off_held, off_peak), (on_held, on_peak)):
        assert held[-1] - held[EARLY] <= HELD_SLACK, held
        assert peak[-1] - peak[EARLY] <= PEAK_SLACK, peak
    assert max(off_held[EARLY:]) - min(off_held[EARLY:]) <= HELD_SLACK


# ---------------------------------------------------------------------- SAM 3.1 in bf16
MULTIPLEX_CLICKS = {1: [10, 10], 2: [50, 20], 3: [30, 40], 4: [60, 50], 5: [20, 55]}


@gpu_only
def test_sam31_click_tracking_in_bf16_on_cuda_matches_fp32():
    """Five objects (two buckets of the tiny model's 4) clicked on frame 0 and tracked: bf16 on
    the GPU gives fp32's ids on every frame, its prompted masks (IoU > 0.9) and object scores
    within the bf16 bound (measured on the CPU: masks 0.97, scores 4e-3)."""
    fp32 = multiplex_predictor(GPU)
    bf16 = VideoPredictor(copy.deepcopy(fp32.model), device=GPU, precision="bf16")
    assert bf16.model.matmul_dtype == torch.bfloat16 and fp32.model.matmul_dtype == torch.float32
    video = moving_video(8)
    runs, sessions = [], []
    for vp in (fp32, bf16):
        session = vp.start(video)
        for obj_id, point in MULTIPLEX_CLICKS.items():
            session.add_prompt(0, obj_id=obj_id, points=[point], point_labels=[1])
        runs.append(dict(session.propagate()))
        sessions.append(session)
    records = sessions[1].multiplex.bank.records.values()
    assert records and all(r.pointers.device.type == "cuda" for r in records)
    assert sessions[1].multiplex.state.num_buckets == 2
    ref, low = runs
    assert sorted(ref) == sorted(low) == list(range(8))
    for t in range(8):
        assert ref[t].track_ids.tolist() == low[t].track_ids.tolist() == list(MULTIPLEX_CLICKS)
        assert all(mask_iou(a, b) > 0.9 for a, b in zip(ref[t].masks, low[t].masks)), t
        np.testing.assert_allclose(ref[t].scores, low[t].scores, atol=SCORE_ATOL)
    # informative: the prompted frame's masks are objects, and the scores move over the clip
    assert all(0 < m.mean() < 0.5 for m in ref[0].masks)
    assert np.abs(ref[0].scores - ref[7].scores).min() > 0.1
