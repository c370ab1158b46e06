"""Device placement on CUDA, checked without a GPU: the model, the predictors and the video
sessions run with CUDA tensors faked by PyTorch's `FakeTensorMode`, which computes shapes,
dtypes and devices but no values. A tensor created on the CPU inside a forward (a factory call
without `device=`, a table cached on the wrong device) and mixed with CUDA tensors raises there,
as it would on a GPU; every output is checked to be on CUDA, and autocast in bf16 to act.

Fake tensors have no values, so data-dependent steps (`.tolist()`, Python branches on tensor
values, numpy) cannot run: the numpy post-processing at the end of a call is replaced by a
recorder that checks what reaches it, and its on-device parts are tested on their own.
Runs unchanged on a GPU machine (the tensors stay fake there too).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

import sam3_core.predictor as image_api
import sam3_core.video.session as video_api
from sam3_core.build import build_model
from sam3_core.config import sam3_1_tiny, sam3_tiny
from sam3_core.large import tiling
from sam3_core.large.tile_merge import tile_grid
from sam3_core.large.tiling import segment_tiled
from sam3_core.modeling import detector
from sam3_core.modeling.layers import clear_device_caches
from sam3_core.modeling.multiplex_state import MultiplexState
from sam3_core.modeling.multiplex_tracker import MemoryFrame
from sam3_core.modeling.tracker import TrackerMemory
from sam3_core.postprocess import masks_to_boxes, upsample_masks
from sam3_core.predictor import ImagePredictor
from sam3_core.video.outputs import any_pixel
from sam3_core.video.predictor import VideoPredictor
from tests.core.helpers import make_image
from tests.device import HAS_CUDA

CUDA = torch.device("cuda")
SIZE = 112  # the tiny models' input side
# the tracker keys a cache on a buffer's data_ptr, which a fake tensor has none of (it warns)
pytestmark = pytest.mark.filterwarnings("ignore:Accessing the data pointer of FakeTensor")


class FakeMode(FakeTensorMode):
    """`FakeTensorMode` that keeps no tensor as a real constant: it would run the ops on small
    tensors (`torch.tensor([t])`) for real, and a real `.to("cuda")` needs a GPU."""

    def may_turn_const(self, t: torch.Tensor) -> bool:
        return False


@contextlib.contextmanager
def fake_cuda() -> Iterator[None]:
    """CUDA tensors without a GPU, without autograd (the predictors run in inference mode).
    Real CPU tensors that enter (the model built outside, numpy inputs) become fake CPU tensors,
    so a CPU tensor reaching a CUDA op still fails. A `ShapeEnv` lets `.item()` on an integer
    tensor give a symbolic size (RoI Align's grid). Device caches are emptied on both sides so
    that no fake tensor outlives the mode."""
    clear_device_caches()
    try:
        with FakeMode(allow_non_fake_inputs=True, shape_env=ShapeEnv()), torch.no_grad():
            yield
    finally:
        clear_device_caches()


@pytest.fixture
def cuda_autocast(monkeypatch):
    """Let `torch.autocast("cuda", bfloat16)` switch on without a GPU (it disables itself when
    CUDA is unavailable): autocast then casts the fake CUDA tensors as on a GPU."""
    if HAS_CUDA:
        return
    monkeypatch.setattr(torch.cuda.amp.common, "amp_definitely_not_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def tensors(obj) -> list[torch.Tensor]:
    """Every tensor inside nested dataclasses, mappings, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [t for f in dataclasses.fields(obj) for t in tensors(getattr(obj, f.name))]
    if isinstance(obj, Mapping):
        return [t for v in obj.values() for t in tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in tensors(v)]
    return []


def assert_on_cuda(obj, at_least: int = 1) -> list[torch.Tensor]:
    """Every tensor in `obj` is on CUDA (and there are some); returns them."""
    found = tensors(obj)
    assert len(found) >= at_least, f"expected tensors in {type(obj).__name__}"
    where = sorted({str(t.device) for t in found})
    assert all(t.device.type == "cuda" for t in found), f"tensors on {where}"
    return found


def assert_on_bf16(obj, at_least: int = 1) -> None:
    """`assert_on_cuda`, and some of the tensors are bf16: autocast acted."""
    found = assert_on_cuda(obj, at_least)
    assert torch.bfloat16 in {t.dtype for t in found}, "no bf16 output: autocast did not act"


class Recorder:
    """Stands in for a numpy post-processing function: records its arguments, returns None."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, *args, **kwargs) -> None:
        self.calls.append(args)


def tiny(config=sam3_tiny, dtype: torch.dtype | None = None):
    """A real CPU tiny model (built outside the fake mode, as `load_model` builds one); `dtype`:
    matmul weights cast first (fake parameters cannot be cast in place)."""
    torch.manual_seed(0)
    model = build_model(config())
    return model if dtype is None else model.cast_matmul_weights_(dtype)


def outputs_of(module: torch.nn.Module) -> list:
    """A list that collects the outputs of every forward of `module`."""
    seen: list = []
    module.register_forward_hook(lambda _module, _args, out: seen.append(out))
    return seen


def video(frames: int = 3) -> np.ndarray:
    """uint8 [T, H, W, 3] frames of a moving scene."""
    return np.stack([make_image(64, 80, seed=t) for t in range(frames)])


# ------------------------------------------------------------------------------ the detector


def detector_inputs(model, rows: int, boxes: int = 0):
    """Image features of one image seen `rows` times, text features and, with `boxes`,
    padded exemplar boxes (the last row one box short), all on CUDA."""
    det = model.detector_model
    image = det.vision_encoder(torch.randn(1, 3, SIZE, SIZE).to(CUDA)).repeat(rows)
    text = det.encode_text(torch.randint(0, 49408, (rows, 32)).to(CUDA))
    valid = (torch.arange(32) < 5).expand(rows, 32).to(CUDA)
    if not boxes:
        return image, text, valid, None, None, None
    xy = torch.rand(rows, boxes, 2) * 0.5 + 0.25
    cxcywh = torch.cat([xy, torch.full((rows, boxes, 2), 0.3)], -1).to(CUDA)
    labels = (torch.arange(boxes) % 2).expand(rows, boxes).to(CUDA)
    box_valid = torch.ones(rows, boxes, dtype=torch.bool)
    box_valid[-1, -1] = False
    return image, text, valid, cxcywh, labels, box_valid.to(CUDA)


@pytest.mark.parametrize("rows, boxes", [(1, 0), (3, 0), (1, 2), (3, 2)])
def test_detector_forward_on_cuda(rows, boxes):
    # text prompts, exemplar boxes (RoI Align, geometry encoder) and several prompts on one image
    model = tiny()
    with fake_cuda():
        model.to(CUDA)
        out = model.detector_model(*detector_inputs(model, rows, boxes))
        assert_on_cuda([out.logits, out.presence, out.boxes, out.masks, out.semantic])
        assert out.masks.shape == (rows, 8, 32, 32) and out.scores.device.type == "cuda"


def test_detector_under_cuda_autocast_with_bf16_weights(cuda_autocast):
    model = tiny(dtype=torch.bfloat16)
    with fake_cuda():
        model.to(CUDA)
        assert model.matmul_dtype == torch.bfloat16
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model.detector_model(*detector_inputs(model, 2, boxes=1))
            masks = out.masks
        assert_on_bf16([out.logits, out.presence, out.boxes, masks, out.semantic])


def test_a_cpu_tensor_in_a_forward_fails_under_fake_cuda(monkeypatch):
    # the check itself: a factory call without device= inside a forward must raise here
    forward = detector.DotProductScoring.forward

    def planted(self, queries, prompt, prompt_valid):
        return forward(self, queries, prompt, prompt_valid) + torch.zeros(queries.shape[1])

    monkeypatch.setattr(detector.DotProductScoring, "forward", planted)
    model = tiny()
    with fake_cuda(), pytest.raises(RuntimeError, match="cpu"):
        model.to(CUDA)
        model.detector_model(*detector_inputs(model, 1))


# ------------------------------------------------------------------------ the image predictor


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_image_predictor_concepts_and_exemplars_on_cuda(monkeypatch, cuda_autocast, precision):
    record = Recorder()
    monkeypatch.setattr(image_api, "detections_to_instances", record)
    model = tiny(dtype=torch.bfloat16 if precision == "bf16" else None)
    with fake_cuda():
        p = ImagePredictor(model, device="cuda", precision=precision)
        states = p.set_images([make_image(), make_image(80, 60, seed=1)])
        p.predict(states[0], ["cat", "dog"])
        p.predict(states[1], "cat", exemplars=[(10, 10, 40, 50), (20, 5, 60, 30, False)])
        p.predict_batch([make_image(seed=2)], ["cat"], exemplars=[(5, 5, 30, 30)])
        assert_on_cuda([s.features for s in states])
        for out, size, names in (c[:3] for c in record.calls):
            assert_on_cuda(out, at_least=5)
            assert out.logits.shape[0] == len(names)
        assert len(record.calls) == 3
        if precision == "bf16":
            assert_on_bf16(record.calls[0][0], at_least=5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_image_predictor_clicks_and_boxes_on_cuda(monkeypatch, cuda_autocast, precision):
    record = Recorder()
    monkeypatch.setattr(image_api, "masks_to_instances", record)
    model = tiny(dtype=torch.bfloat16 if precision == "bf16" else None)
    with fake_cuda():
        p = ImagePredictor(model, device="cuda", precision=precision)
        state = p.set_image(make_image())
        p.predict(state, points=[[30, 40], [60, 20]], point_labels=[1, 0])
        p.predict(state, boxes=[[10, 10, 80, 60], [5, 5, 30, 30]], multimask=False)
        low_res = np.zeros((2, 32, 32), np.float32)
        clicks = {"points": [[[30, 40]], [[60, 20]]], "point_labels": [[1], [1]]}
        p.predict(state, **clicks, mask_input=low_res)
        assert_on_cuda(state.cache["tracker"], at_least=4)
        assert len(record.calls) == 3
        for (low, scores, size), objects in zip(record.calls, [1, 2, 2]):
            assert_on_cuda([low, scores])
            assert low.shape == (objects, 32, 32) and size == (97, 150)


def test_tiles_with_transferred_exemplars_on_cuda(monkeypatch, cuda_autocast):
    # exemplars encoded on their home tiles, then one detector pass for tiles x concepts
    record = Recorder()
    monkeypatch.setattr(tiling, "detections_to_instances", record)
    model = tiny()
    with fake_cuda():
        p = ImagePredictor(model, device="cuda")
        big = make_image(200, 260, seed=3)
        out = segment_tiled(
            p, big, ["cat", "dog"], exemplars=[(150, 120, 190, 170)], tile_size=112, overlap=16
        )
        assert len(out) == 0  # the recorder found nothing
        assert len(record.calls) == len(tile_grid((200, 260), 112, 16)) == 6
        for detections, size, names in (c[:3] for c in record.calls):
            assert_on_cuda(detections, at_least=5)
            assert detections.logits.shape[0] == 2 and names == ["cat", "dog"]


# -------------------------------------------------------------------------------- the tracker


def test_tracker_prompts_memory_encoder_and_memory_attention_on_cuda(cuda_autocast):
    model = tiny()
    with fake_cuda():
        model.to(CUDA)
        tracker, neck = model.tracker_model, model.tracker_neck
        vit = model.detector_model.vision_encoder.backbone(torch.randn(1, 3, SIZE, SIZE).to(CUDA))
        feats = tracker.encode_image(neck, vit.permute(0, 3, 1, 2))
        points = torch.tensor([[[[30.0, 40.0], [60.0, 20.0]]]]).to(CUDA)
        labels = torch.tensor([[[1, 0]]]).to(CUDA)
        boxes = torch.tensor([[[10.0, 10.0, 80.0, 60.0]]]).to(CUDA)
        mask_input = torch.randn(1, 1, 1, 32, 32).to(CUDA)
        out = tracker.predict_masks(feats, points, labels, boxes, mask_input)
        assert_on_cuda(out, at_least=4)
        low, high, pointer = tracker.track_step_output(out)
        assert_on_cuda([low, high, pointer])
        mask = (torch.rand(1, 1, 64, 80) > 0.5).to(CUDA)
        assert_on_cuda(tracker.mask_as_output(feats, mask.float()), at_least=4)
        scores, memories = out.object_score_logits[:, 0], []
        for offset, binarize in enumerate((True, False)):  # a clicked frame, a tracked one
            memory, pos = tracker.encode_memory(feats.image_embed, high, scores, binarize)
            memories.append((offset, memory, pos))
        pointers = torch.stack([pointer[:, 0], pointer[:, 0]])
        bank = tracker.build_memory(memories, pointers, [0, 1], max_pointers=4)
        assert isinstance(bank, TrackerMemory)
        embed = tracker.attend_memory(feats, bank)
        assert_on_cuda([bank.memory, bank.memory_pos, embed])
        again = tracker.predict_masks(feats, image_embed=embed, multimask=False)
        assert_on_cuda(again, at_least=4)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            embed = tracker.attend_memory(feats, bank)
            memory = tracker.encode_memory(feats.image_embed, high, scores, False)
            out = tracker.predict_masks(feats, points, labels, image_embed=embed)
        assert_on_bf16([embed, memory, out], at_least=7)


# -------------------------------------------------------------------------- the video session


@pytest.mark.parametrize("offload_to_cpu", [False, True])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_video_clicks_track_on_cuda(monkeypatch, cuda_autocast, offload_to_cpu, precision):
    # clicks, a box and a mask prompt, then propagation: memory encoder, memory bank (offloaded
    # to the CPU or not), memory attention and decoder on every frame
    record = Recorder()
    monkeypatch.setattr(video_api, "frame_instances", record)
    model = tiny(dtype=torch.bfloat16 if precision == "bf16" else None)
    decoded = outputs_of(model.tracker_model.mask_decoder)
    with fake_cuda():
        vp = VideoPredictor(model, device="cuda", precision=precision)
        session = vp.start(video(4), offload_to_cpu=offload_to_cpu)
        session.add_prompt(0, obj_id=1, points=[[30, 40]], point_labels=[1])
        session.add_prompt(0, obj_id=1, points=[[50, 20]], point_labels=[0], clear_old=False)
        session.add_prompt(1, obj_id=2, boxes=[10, 10, 50, 40])
        session.add_prompt(2, obj_id=3, mask=np.pad(np.ones((20, 20), bool), ((10, 34), (5, 55))))
        assert [t for t, _ in session.propagate()] == [0, 1, 2, 3]
        session.remove_object(2)
        assert [t for t, _ in session.propagate(start=2, direction="both")] == [2, 3, 1, 0]
        assert len(record.calls) == 4 + 4 + 4  # four prompts, two passes over the frames
        for outputs, *_ in record.calls:
            assert_on_cuda([(low, score) for _, low, score in outputs.values()])
        storage = "cpu" if offload_to_cpu else "cuda"
        for obj in session.objects.values():
            kept = obj.memory.records()
            memories = [m.memory for m in kept if m.memory is not None]
            assert memories and all(t.device.type == storage for t in memories)
            assert_on_cuda([m.pointer for m in kept])
        if precision == "bf16":
            assert_on_bf16(decoded, at_least=8)


# ---------------------------------------------------------------------- SAM 3.1 (multiplex)


def test_multiplex_tracker_step_on_cuda(cuda_autocast):
    model = tiny(sam3_1_tiny)
    with fake_cuda():
        model.to(CUDA)
        mux, neck = model.multiplex_tracker, model.propagation_neck
        vit = model.detector_model.vision_encoder.backbone(torch.randn(1, 3, SIZE, SIZE).to(CUDA))
        fpn, pos = neck(vit.permute(0, 3, 1, 2), num_levels=3)
        dec = mux.mask_decoder
        high_res = (dec.conv_s0(fpn[0]), dec.conv_s1(fpn[1]))
        state = MultiplexState.for_objects(5, mux.config.multiplex_count, device=CUDA)
        image = fpn[2].expand(state.num_buckets, -1, -1, -1)
        frame = mux.propagate(image, high_res, state)
        assert_on_cuda(frame, at_least=6)
        memory, memory_pos = mux.encode_memory(
            fpn[2], frame.high_res_masks, frame.object_score_logits, state, conditioning=[0, 3]
        )
        assert_on_cuda([memory, memory_pos])
        frames = [MemoryFrame(d, d == 0, memory, memory_pos, fpn[2], pos[2]) for d in (0, 1)]
        pointers = state.mux(frame.pointers)[None].expand(2, -1, -1, -1)
        bank = mux.build_memory(frames, pointers, [0, 1], max_pointers=4)
        embed = mux.attend_memory(fpn[2], pos[2], bank)
        assert_on_cuda([bank, embed], at_least=5)
        assert_on_cuda(mux.propagate(embed, high_res, state), at_least=6)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            embed = mux.attend_memory(fpn[2], pos[2], bank)
            frame = mux.propagate(embed, high_res, state)
            memory = mux.encode_memory(
                fpn[2], frame.high_res_masks, frame.object_score_logits, state
            )
        assert_on_bf16([embed, frame, memory], at_least=9)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_multiplex_video_clicks_track_on_cuda(monkeypatch, cuda_autocast, precision):
    record = Recorder()
    monkeypatch.setattr(video_api, "frame_instances", record)
    model = tiny(sam3_1_tiny, dtype=torch.bfloat16 if precision == "bf16" else None)
    decoded = outputs_of(model.multiplex_tracker.mask_decoder)
    with fake_cuda():
        session = VideoPredictor(model, device="cuda", precision=precision).start(video(3))
        for i, xy in enumerate([[30, 40], [50, 20], [10, 50], [60, 10], [40, 40]], start=1):
            session.add_prompt(0, obj_id=i, points=[xy], point_labels=[1])
        session.add_prompt(1, obj_id=6, boxes=[10, 10, 50, 40])
        session.add_prompt(2, obj_id=7, mask=np.pad(np.ones((20, 20), bool), ((10, 34), (5, 55))))
        session.add_prompt(2, obj_id=1, points=[[35, 45]], point_labels=[1])  # a tracked object
        assert [t for t, _ in session.propagate()] == [0, 1, 2]
        session.remove_object(2)  # buckets and pointers remapped
        assert [t for t, _ in session.propagate(start=1, direction="both")] == [1, 2, 0]
        assert len(record.calls) == 8 + 3 + 3  # eight prompts, two passes over the frames
        for outputs, *_ in record.calls:
            assert_on_cuda([(low, score) for _, low, score in outputs.values()])
        assert_on_cuda(decoded, at_least=4)  # the multiplex decoder ran (on unprompted frames)
        if precision == "bf16":
            assert_on_bf16(decoded)


# ------------------------------------------------------------- on-device post-processing


def test_postprocess_on_device_stays_on_cuda():
    with fake_cuda():
        logits = torch.randn(3, 32, 32).to(CUDA)
        masks = upsample_masks(logits, (97, 150), 0.5)
        empty = upsample_masks(logits[:0], (97, 150), 0.5)
        assert_on_cuda([masks, empty, masks_to_boxes(masks), any_pixel(masks)])
