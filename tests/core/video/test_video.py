"""Frame sources, video session errors, bounded memory and concept tracking (forced detections)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from sam3_core.modeling.detector import DetectorOutput
from sam3_core.modeling.mask_head import MaskLogits
from sam3_core.prompts import PromptError
from sam3_core.video.association import (
    AssociationConfig,
    TrackState,
    associate,
    limit_new_tracks,
    lost_tracks,
    mask_iou,
    nms_masks,
    update_tracks,
)
from sam3_core.video.frames import VideoReadError, open_frames
from sam3_core.video.masklets import FILLED, REMOVED, fill_small_regions, small_regions
from sam3_core.video.predictor import VideoPredictor
from sam3_core.video.session import VideoSession
from tests.core.helpers import save_checkpoint, tiny_model, write_mp4
from tests.core.video.multiplex_tools import moving_video


def ramp(n=12, h=48, w=64):
    return np.stack([np.full((h, w, 3), 10 * t, np.uint8) for t in range(n)])


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mov"])
def test_video_file_random_access(tmp_path, suffix):
    write_mp4(tmp_path / f"a{suffix}", ramp())
    with open_frames(tmp_path / f"a{suffix}") as src:
        assert len(src) == 12 and src.size == (48, 64)
        for t in (0, 1, 2, 9, 3, 11, 5, 4):
            frame = src[t]
            assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
            assert abs(float(frame.mean()) - 10 * t) < 3
        with pytest.raises(IndexError, match="out of range"):
            src[12]


def test_folder_array_and_tiff(tmp_path):
    for t, f in enumerate(ramp(3)):
        Image.fromarray(f).save(tmp_path / f"f{t:02d}.png")
    src = open_frames(tmp_path)
    assert len(src) == 3 and src[2].mean() == 20
    gray = np.arange(4 * 20 * 30, dtype=np.uint16).reshape(4, 20, 30)
    arr = open_frames(gray)
    assert arr.size == (20, 30) and arr[1].shape == (20, 30, 3)
    tifffile.imwrite(tmp_path / "s.tif", gray)
    stack = open_frames(tmp_path / "s.tif")
    assert len(stack) == 4 and stack[3].shape == (20, 30, 3)


def test_unreadable_video_errors(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(VideoReadError, match="broken.mp4.*MP4"):
        open_frames(bad)
    with pytest.raises(VideoReadError, match="not found"):
        open_frames(tmp_path / "missing.mp4")
    with pytest.raises(VideoReadError, match=r"\[T, H, W\]"):
        open_frames(np.zeros((5, 5)))


@pytest.fixture(scope="module")
def vp():
    return VideoPredictor(tiny_model(seed=2), device="cpu")


def test_session_errors(vp):
    s = vp.start(moving_video(3))
    with pytest.raises(PromptError, match="Nothing to track"):
        next(s.propagate())
    with pytest.raises(IndexError, match="3 frames"):
        s.add_prompt(5, obj_id=1, points=[[5, 5]], point_labels=[1])
    with pytest.raises(PromptError, match="outside"):
        s.add_prompt(0, obj_id=1, points=[[500, 5]], point_labels=[1])
    with pytest.raises(ValueError, match="direction"):
        next(s.propagate(direction="sideways"))


def test_memory_stays_flat(vp):
    s = vp.start(moving_video(32, 28, 28), offload_to_cpu=True)
    s.add_prompt(0, obj_id=1, points=[[10, 10]], point_labels=[1])
    s.add_prompt(0, obj_id=2, boxes=[2, 2, 20, 20])
    sizes = []
    for t, inst in s.propagate():
        assert list(inst.track_ids) == [1, 2] and inst.masks.shape == (2, 28, 28)
        sizes.append(s.memory_bytes())
    window = vp.model.tracker_model.config.max_object_pointers_in_encoder
    assert sizes[-1] == sizes[window + 1] and max(sizes) == sizes[-1]
    assert all(len(o.memory.recent) <= window + 1 for o in s.objects.values())


def test_backward_and_mask_prompt(vp):
    s = vp.start(moving_video(6))
    mask = np.zeros((64, 80), bool)
    mask[10:40, 20:50] = True
    s.add_prompt(3, obj_id=7, mask=mask)
    seen = [t for t, inst in s.propagate(direction="both")]
    assert seen == [3, 4, 5, 2, 1, 0]


# ------------------------------------------------------------------ association + concepts


def blob(h, w, cy, cx, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return torch.from_numpy(((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.float32) * 20 - 10)


def test_association_on_synthetic_masks():
    cfg = AssociationConfig()
    det = torch.stack([blob(32, 32, 10, 10, 5), blob(32, 32, 25, 25, 4), blob(32, 32, 10, 11, 5)])
    keep = nms_masks(torch.tensor([0.9, 0.8, 0.6]), det, 0.5, 0.1)
    assert keep.tolist() == [True, True, False]
    keep = nms_masks(torch.tensor([0.9, 0.8, 0.6]), det, 0.5, 0.1, torch.tensor([0, 0, 1]))
    assert keep.tolist() == [True, True, True]  # another concept's detection is not suppressed
    trk = torch.stack([blob(32, 32, 10, 12, 5)])
    a = associate(det[:2], torch.tensor([0.9, 0.8]), trk, [4], cfg)
    assert a.new == [1] and a.matched == {4: [0]} and a.unmatched == []
    assert mask_iou(det[:1] > 0, det[:1] > 0).item() == 1.0
    states = {4: TrackState(0, 2)}
    for t in range(1, 9):
        gone = update_tracks(
            states, associate(det[1:2], torch.tensor([0.9]), trk, [4], cfg), t, cfg
        )
    assert gone == [4]  # unmatched for 8 frames within the hot-start window: a false start


def test_small_holes_filled_and_specks_removed():
    logits = torch.full((2, 20, 20), -5.0)
    logits[0, 2:12, 2:12] = 5.0  # a 100-pixel object ...
    logits[0, 5:7, 5:7] = -5.0  # ... with a 4-pixel hole
    logits[0, 3:11, 9] = -5.0  # ... and an 8-pixel slit, too big to fill
    logits[0, 15, 15] = logits[0, 16, 16] = 5.0  # a 2-pixel speck, diagonally connected
    logits[1, 9:11, 9:11] = 5.0  # a 4-pixel object on its own is kept: <= half its area
    out = fill_small_regions(logits, max_area=4)
    assert (out[0, 5:7, 5:7] == FILLED).all()
    assert (out[0, 15, 15] == REMOVED) and (out[0, 16, 16] == REMOVED)
    changed = (out != logits).sum().item()
    assert changed == 6  # the hole and the speck, nothing else
    assert torch.equal(out[1], logits[1])
    assert fill_small_regions(logits, max_area=0) is logits
    assert (fill_small_regions(logits, max_area=1)[0, 5:7, 5:7] < 0).all()  # hole too big


def test_small_regions_per_mask_limits():
    masks = torch.zeros(4, 6, 6, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True  # 4 pixels
    masks[2, 0, 0] = masks[2, 1, 1] = True  # 2 pixels, diagonal: one region
    masks[2, 4:6, 3:6] = True  # 6 pixels
    masks[3, 3, 3] = True  # 1 pixel
    small = small_regions(masks, torch.tensor([3, 9, 2, 1]))  # mask 1 is empty
    assert small[0].sum() == 0 and small[1].sum() == 0
    assert small[2].sum() == 2 and small[2, 0, 0] and small[2, 1, 1]
    assert small[3].sum() == 1
    assert small_regions(masks, torch.tensor([4, 0, 6, 0]))[[0, 2]].sum() == 4 + 8


def test_new_tracks_capped_best_first(caplog):
    scores = torch.tensor([0.5, 0.9, 0.7, 0.8])
    assert limit_new_tracks([0, 2, 3], scores, n_tracks=1, max_tracks=10) == [0, 2, 3]
    assert "dropped" not in caplog.text
    assert limit_new_tracks([0, 2, 3], scores, n_tracks=8, max_tracks=10) == [3, 2]
    assert "max_num_objects=10 reached: 1 of 3 new detections dropped" in caplog.text
    assert limit_new_tracks([0, 2, 3], scores, n_tracks=10, max_tracks=10) == []
    assert "max_num_objects=10 reached: 3 of 3 new detections dropped" in caplog.text
    with pytest.raises(ValueError, match="max_num_objects must be at least 1"):
        AssociationConfig(max_num_objects=0)


def test_concept_tracking_with_forced_detections(vp, monkeypatch):
    """The random model detects nothing useful, so the detector output is forced: one object
    moves right on every frame, a second appears on frame 4. Ids must stay stable."""
    h, w, n = 64, 80, 8
    side = vp.model.tracker_model.prompt_encoder.mask_input_size[0]
    calls = {"t": 0}

    def fake_detect(state, batch):
        t = calls["t"]
        masks = torch.full((1, 8, side, side), -10.0)
        scores = torch.full((1, 8), -10.0)
        masks[0, 0] = blob(side, side, 12, 6 + t, 5)
        scores[0, 0] = 10.0
        if t >= 4:
            masks[0, 1] = blob(side, side, 24, 24, 5)
            scores[0, 1] = 10.0
        calls["t"] += 1
        z = torch.zeros(1, 8, 4)
        return DetectorOutput(
            scores, torch.full((1, 1), 10.0), z, MaskLogits.dense(masks), masks[:, :1]
        )

    monkeypatch.setattr(vp.image, "detect_concepts", fake_detect)
    s = vp.start(moving_video(n, h, w))
    first = s.add_concept(0, concepts="blob")
    assert list(first.track_ids) == [1] and first.names() == ["blob"]
    ids = {}
    for t, inst in s.propagate(start=1):
        ids[t] = sorted(inst.track_ids.tolist())
    assert all(1 in v for v in ids.values())
    assert 2 in ids[4] and 2 in ids[7] and len(ids[7]) >= 2
    assert all(len(set(v)) == len(v) for v in ids.values())


def test_lost_tracks_counted_in_a_row():
    cfg = AssociationConfig(end_lost_after=3)
    states = {1: TrackState(0, 30), 2: TrackState(0, 30)}
    for empty in ([True, True], [True, False]):
        assert lost_tracks(states, [1, 2], empty, cfg) == []
    assert lost_tracks(states, [1, 2], [True, True], cfg) == [1]  # 2 was seen on frame 1
    never = AssociationConfig(end_lost_after=0)
    assert lost_tracks(states, [1, 2], [True, True], never) == []
    with pytest.raises(ValueError, match="end_lost_after must be 0"):
        AssociationConfig(end_lost_after=-1)


@pytest.mark.parametrize("hotstart_delay", [0, 15])
def test_lost_concept_track_ends_and_frees_memory(vp, monkeypatch, hotstart_delay):
    """An object detected on frames 0-2 then gone, back on frame 8. The random tracker cannot
    follow it, so its masks are forced: the blob, then empty from frame 3. The track ends
    after `end_lost_after` = 3 empty frames, its memory freed; the object returns as a new
    track."""
    side = vp.model.tracker_model.prompt_encoder.mask_input_size[0]
    calls = {"t": 0}

    def fake_detect(state, batch):
        t = calls["t"]
        calls["t"] += 1
        masks = torch.full((1, 8, side, side), -10.0)
        scores = torch.full((1, 8), -10.0)
        if t < 3 or t >= 8:
            masks[0, 0], scores[0, 0] = blob(side, side, 12, 12, 5), 10.0
        z = torch.zeros(1, 8, 4)
        return DetectorOutput(
            scores, torch.full((1, 1), 10.0), z, MaskLogits.dense(masks), masks[:, :1]
        )

    track = VideoSession._track

    def tracker_loses_it(self, objs, t, reverse, feats):
        out = track(self, objs, t, reverse, feats)
        for _, r in out:
            there = t < 3 or t >= 8
            r.low_res = blob(side, side, 12, 12, 5)[None] if there else r.low_res.clamp(max=-10)
        return out

    monkeypatch.setattr(vp.image, "detect_concepts", fake_detect)
    monkeypatch.setattr(VideoSession, "_track", tracker_loses_it)
    # with a hot start, outputs are held back 15 frames (here: to the end), yet frames
    # 0-2 keep the lost track (only false starts and duplicates are hidden there)
    assoc = AssociationConfig(end_lost_after=3, hotstart_delay=hotstart_delay)
    s = vp.start(moving_video(10), association=assoc)
    s.add_concept(0, concepts="blob")
    held = {}
    for t, inst in s.propagate():
        held[t] = (inst.track_ids.tolist(), s.memory_bytes(), sorted(s.objects))
    assert [held[t][0] for t in range(3)] == [[1], [1], [1]]
    assert all(held[t][0] == [] for t in range(3, 8))
    assert held[8][0] == held[9][0] == [2]  # back: a new track
    assert s.lost_ids == {1} and not s.removed_ids and sorted(s.objects) == [2]
    if not hotstart_delay:  # each frame seen as it is tracked
        assert held[4][2] == [1] and held[5][2] == []  # empty on frames 3, 4, 5: ended on 5
        assert held[5][1] < held[4][1] and held[5][1] == held[6][1]


def force_detections(monkeypatch, vp, found):
    """Replace the detector: `found(call, texts)` gives (concept row, blob mask) pairs for one
    frame, each detected with score ~1 (the random detector finds nothing useful)."""
    side = vp.model.tracker_model.prompt_encoder.mask_input_size[0]
    calls = {"n": 0}

    def fake_detect(state, batch):
        n = len(batch.texts)
        masks, scores = torch.full((n, 8, side, side), -10.0), torch.full((n, 8), -10.0)
        for q, (row, mask) in enumerate(found(calls["n"], batch.texts)):
            masks[row, q], scores[row, q] = mask, 10.0
        calls["n"] += 1
        return DetectorOutput(
            scores,
            torch.full((n, 1), 10.0),
            torch.zeros(n, 8, 4),
            MaskLogits.dense(masks),
            masks[:, :1],
        )

    monkeypatch.setattr(vp.image, "detect_concepts", fake_detect)


def force_tracker(monkeypatch, masks_at):
    """Replace the tracker's masks: object `i` of a batch gets `masks_at(t)[i]`, present
    (object score logit 10), so tracks match their detections."""
    track = VideoSession._track

    def tracker_follows(self, objs, t, reverse, feats):
        out = track(self, objs, t, reverse, feats)
        for i, (_, r) in enumerate(out):
            r.low_res, r.score = masks_at(t)[i][None], torch.full_like(r.score, 10.0)
        return out

    monkeypatch.setattr(VideoSession, "_track", tracker_follows)


def test_reconditioned_frames_capped(vp, monkeypatch):
    """A strong track re-conditioned every 2nd frame of 40 keeps its first (prompted) frame
    and the newest `max_reconditioned_frames` re-conditioned ones; the conditioning frames,
    pointers it attends to and the session's memory stay flat."""
    side = vp.model.tracker_model.prompt_encoder.mask_input_size[0]
    there = blob(side, side, 12, 12, 5)
    force_detections(monkeypatch, vp, lambda t, texts: [(0, there)])
    force_tracker(monkeypatch, lambda t: [there])
    assoc = AssociationConfig(recondition_every_nth_frame=2, hotstart_delay=0)
    s = vp.start(moving_video(40, 28, 28), association=assoc)
    s.add_concept(0, concepts="blob")
    conds, pointers, sizes = [], [], []
    for t, inst in s.propagate():
        assert inst.track_ids.tolist() == [1]
        memory = s.objects[1].memory
        conds.append(sorted(memory.cond))
        pointers.append(len(s.bank.query(memory, t + 1, False).pointer_offsets))
        sizes.append(s.memory_bytes())
    assert conds[-1] == [0, 32, 34, 36, 38]  # prompted + the newest 4 re-conditioned
    assert max(map(len, conds)) == 5 and max(pointers) == pointers[-1] == pointers[-11]
    assert max(pointers) <= 5 + vp.model.tracker_model.config.max_object_pointers_in_encoder
    assert sizes[-1] == sizes[-11] and max(sizes[20:]) <= sizes[-1]
    keep_all = AssociationConfig(recondition_every_nth_frame=2, max_reconditioned_frames=None)
    assert keep_all.max_reconditioned_frames is None
    with pytest.raises(ValueError, match="max_reconditioned_frames must be at least 1"):
        AssociationConfig(max_reconditioned_frames=0)


def test_second_concept_keeps_earlier_labels(vp, monkeypatch):
    """add_concept("car") after "person" adds cars: the person track keeps its label, on the
    frame of the second call (tracked there, not found again) and while propagating."""
    side = vp.model.tracker_model.prompt_encoder.mask_input_size[0]
    person, car = blob(side, side, 12, 12, 5), blob(side, side, 20, 22, 4)
    shapes = {"person": person, "car": car}
    force_detections(
        monkeypatch, vp, lambda t, texts: [(i, shapes[c]) for i, c in enumerate(texts)]
    )
    force_tracker(monkeypatch, lambda t: [person, car])
    s = vp.start(moving_video(8, 28, 28), association=AssociationConfig(hotstart_delay=0))
    first = s.add_concept(0, concepts="person")
    assert first.track_ids.tolist() == [1] and first.names() == ["person"]
    assert [sorted(i.track_ids.tolist()) for _, i in s.propagate()] == [[1]] * 8
    second = s.add_concept(5, concepts=["car", "person"])  # "person" again: not repeated
    assert s.label_names == ["object", "person", "car"]
    named = dict(zip(second.track_ids.tolist(), second.names()))
    assert named == {1: "person", 2: "car"}
    for _, inst in s.propagate(start=5):
        assert dict(zip(inst.track_ids.tolist(), inst.names())) == named


def test_propagating_into_a_concept_frame_keeps_earlier_tracks(vp, monkeypatch):
    """add_concept(3), then propagate from 0: a track started on frame 0 (an object the
    detector found on frames 0-2 but not on 3) is tracked on frame 3 too, beside the tracks
    found there, and is not found there again as a new track."""
    side = vp.model.tracker_model.prompt_encoder.mask_input_size[0]
    a, b = blob(side, side, 12, 12, 5), blob(side, side, 22, 22, 4)
    # detector calls: 0 = add_concept's frame 3, then frames 0, 1, 2, 3, 4, ...
    force_detections(monkeypatch, vp, lambda n, texts: [(0, a)] + [(0, b)] * (n in (1, 2, 3)))
    track = VideoSession._track

    def tracker_follows(self, objs, t, reverse, feats):  # track 1 follows a, track 2 b
        out = track(self, objs, t, reverse, feats)
        for o, r in out:
            r.low_res, r.score = {1: a, 2: b}[o.obj_id][None], torch.full_like(r.score, 10.0)
        return out

    monkeypatch.setattr(VideoSession, "_track", tracker_follows)
    s = vp.start(moving_video(6, 28, 28), association=AssociationConfig(hotstart_delay=0))
    assert s.add_concept(3, concepts="person").track_ids.tolist() == [1]
    ids = {t: sorted(inst.track_ids.tolist()) for t, inst in s.propagate(start=0)}
    assert ids == {0: [1, 2], 1: [1, 2], 2: [1, 2], 3: [1, 2], 4: [1, 2], 5: [1, 2]}
    assert 3 in s.objects[2].memory.recent  # its memory of frame 3 was written


def test_video_predictor_from_an_image_predictor_or_a_checkpoint(vp, tmp_path):
    """from_image_predictor shares the loaded model (nothing loaded or copied) and never
    writes video frames into the image predictor's store; from_pretrained (through
    ImagePredictor.from_pretrained) tracks as the predictor built on the same weights."""
    from sam3_core.predictor import ImagePredictor
    from sam3_core.store import EmbeddingStore

    store = EmbeddingStore()
    image = ImagePredictor(vp.model, device="cpu", store=store)
    shared = VideoPredictor.from_image_predictor(image)
    assert shared.model is image.model is vp.model and shared.image.tokenizer is image.tokenizer
    assert (shared.device, shared.precision) == (image.device, image.precision)
    ckpt = save_checkpoint(vp.model, tmp_path / "tiny.safetensors")
    loaded = VideoPredictor.from_pretrained(str(ckpt), config="sam3_tiny", device="cpu")
    assert loaded.model is not vp.model
    runs = []
    for p in (vp, shared, loaded):
        s = p.start(moving_video(3, 28, 28))
        s.add_prompt(0, obj_id=1, points=[[10, 10]], point_labels=[1])
        s.add_concept(0, concepts="person")
        runs.append([(t, i.track_ids.tolist(), i.masks) for t, i in s.propagate()])
    assert len(store) == 0
    for other in runs[1:]:
        assert [r[:2] for r in other] == [r[:2] for r in runs[0]]
        assert all(np.array_equal(a[2], b[2]) for a, b in zip(other, runs[0]))
