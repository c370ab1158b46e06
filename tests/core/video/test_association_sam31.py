"""Meta's SAM 3.1 video heuristics as `AssociationConfig` options (`SAM31_ASSOCIATION` turns
them on; the defaults keep SAM 3's behaviour): NMS and association by intersection over the
smaller mask, ambiguous matches dropped, detections near the border dropped, masklet
confirmation, the unmatched-track suppression option, re-conditioning from the detection's
logits. Rules read from tatsy/sam3@96914d2 (`sam3_multiplex_base.py`, `sam3_video_base.py`).
Each test fails with the option off."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from sam3_core.modeling.detector import DetectorOutput
from sam3_core.modeling.mask_head import MaskLogits
from sam3_core.video.association import (
    AssociationConfig,
    TrackState,
    associate,
    away_from_border,
    mask_iom,
    mask_iou,
    nms_masks,
    suppressed_tracks,
    update_confirmation,
)
from sam3_core.video.concepts import detect, recondition_logits
from sam3_core.video.multiplex_backend import MultiplexVideo
from sam3_core.video.multiplex_concepts import SAM31_ASSOCIATION
from tests.core.video.multiplex_tools import moving_video
from tests.core.video.test_video import blob
from tests.core.video.test_video_multiplex_concepts import (  # noqa: F401 (fixture)
    force_detections,
    force_tracker,
    side,
    vp,
)

SAM3 = AssociationConfig()
BIG, SMALL = blob(32, 32, 16, 16, 8), blob(32, 32, 16, 16, 2)  # SMALL lies inside BIG


def test_sam31_turns_the_options_on_and_sam3_leaves_them_off():
    on = SAM31_ASSOCIATION
    assert on.det_nms_use_iom and on.use_iom_association and on.drop_ambiguous_matches
    assert (on.high_iou_thresh, on.border_margin, on.masklet_confirmation) == (0.5, 0.025, 3)
    assert on.recondition_from_logits and on.suppress_unmatched_only_within_hotstart
    off = SAM3
    assert not (off.det_nms_use_iom or off.use_iom_association or off.drop_ambiguous_matches)
    assert (off.border_margin, off.masklet_confirmation, off.recondition_from_logits) == (0, 0, 0)
    with pytest.raises(ValueError, match="border_margin"):
        AssociationConfig(border_margin=0.6)
    with pytest.raises(ValueError, match="masklet_confirmation"):
        AssociationConfig(masklet_confirmation=-1)


def test_iom_is_intersection_over_the_smaller_mask():
    a, b = BIG[None] > 0, SMALL[None] > 0
    assert float(mask_iom(a, b)) == 1.0 and float(mask_iou(a, b)) < 0.1
    assert float(mask_iom(a, torch.zeros_like(b))) == 0.0


def test_nms_by_iom_drops_a_detection_inside_a_better_one():
    scores, masks = torch.tensor([0.9, 0.8]), torch.stack([BIG, SMALL])
    assert nms_masks(scores, masks, 0.4, 0.1).tolist() == [True, True]  # IoU ~0.06
    assert nms_masks(scores, masks, 0.4, 0.1, use_iom=True).tolist() == [True, False]


def fake_host(cfg: AssociationConfig, masks: torch.Tensor, scores: list[float], boxes):
    """A ConceptHost stand-in whose detector returns `masks` [Q, h, w] with `scores` and
    normalised xyxy `boxes` [Q, 4] for one concept."""
    logits = torch.tensor(scores).logit()[None]
    out = DetectorOutput(
        logits, torch.full((1, 1), 20.0), torch.tensor(boxes, dtype=torch.float32)[None],
        MaskLogits.dense(masks[None]), masks[None, :1],
    )  # fmt: skip
    return SimpleNamespace(association=cfg, detect_concepts=lambda image: out)


def test_detect_uses_iom_nms_and_drops_detections_near_the_border():
    corner = blob(32, 32, 0, 0, 3)
    masks = torch.stack([BIG, SMALL, corner])
    boxes = [[0.25, 0.25, 0.75, 0.75], [0.44, 0.44, 0.56, 0.56], [0.0, 0.0, 0.04, 0.04]]
    host = fake_host(SAM31_ASSOCIATION, masks, [0.9, 0.8, 0.7], boxes)
    scores, kept, labels = detect(host, SimpleNamespace(image=None))
    assert len(scores) == 1 and torch.equal(kept[0], BIG) and labels.tolist() == [1]
    # SAM 3: all three pass NMS by IoU, and the border is not checked
    host3 = fake_host(SAM3, masks, [0.9, 0.8, 0.7], boxes)
    assert len(detect(host3, SimpleNamespace(image=None))[0]) == 3


def test_away_from_border_uses_the_box_centre():
    boxes = torch.tensor([[0.0, 0.0, 0.04, 0.04], [0.0, 0.4, 0.2, 0.6], [0.97, 0.4, 1.0, 0.6]])
    assert away_from_border(boxes, 0.025).tolist() == [False, True, False]


def test_iom_association_matches_and_reconditions_a_detection_inside_its_track():
    """A strong detection covering part of a track: by IoU (SAM 3) it is a new object; by IoM
    (SAM 3.1) it matches the track, confirms it and re-conditions it (IoM 1 >= 0.5)."""
    det, trk = SMALL[None], BIG[None]
    sam3 = associate(det, torch.tensor([0.9]), trk, [7], SAM3)
    assert sam3.new == [0] and sam3.unmatched == [7] and not sam3.recondition
    sam31 = associate(det, torch.tensor([0.9]), trk, [7], SAM31_ASSOCIATION)
    assert sam31.new == [] and sam31.matched == {7: [0]} and sam31.unmatched == []
    assert sam31.recondition == {7: 0}


def test_ambiguous_matches_neither_match_nor_recondition():
    """One detection covering two tracks (IoM 1 with each): Meta zeroes both overlaps after
    deciding new detections, so it is not new, matches neither track and re-conditions none."""
    left, right = blob(32, 32, 16, 8, 3), blob(32, 32, 16, 24, 3)
    det = torch.maximum(left, right)[None]
    ambiguous = replace(SAM31_ASSOCIATION, drop_ambiguous_matches=False)
    kept = associate(det, torch.tensor([0.9]), torch.stack([left, right]), [1, 2], ambiguous)
    assert kept.det_tracks == {0: [1, 2]} and kept.recondition
    dropped = associate(
        det, torch.tensor([0.9]), torch.stack([left, right]), [1, 2], SAM31_ASSOCIATION
    )
    assert dropped.new == [] and dropped.det_tracks == {0: []} and dropped.recondition == {}
    assert dropped.unmatched == []  # decided before the zeroing, as Meta


def test_confirmation_needs_consecutive_detections():
    states = {1: TrackState(0, 0), 2: TrackState(0, 0)}
    assert update_confirmation(states, [1, 2], {1, 2}, 3) == {1, 2}
    assert update_confirmation(states, [1, 2], {1}, 3) == {1, 2}  # 2's run resets
    assert update_confirmation(states, [1, 2], {1, 2}, 3) == {2}  # 1: three in a row
    assert update_confirmation(states, [1, 2], set(), 3) == {2}  # confirmed for good
    assert states[1].confirmed and states[2].detected_run == 0


def test_unconfirmed_tracks_are_hidden_on_video(vp, monkeypatch):  # noqa: F811
    """Blob A is detected on every frame, B on frame 2 only (a flicker the tracker keeps),
    C on frames 3-5. With confirmation (3 frames, looking 2 ahead) A shows from frame 0, C
    from frame 3, B never; without it B shows from frame 2."""
    s_ = side(vp)
    a, b, c = blob(s_, s_, 8, 8, 3), blob(s_, s_, 24, 8, 3), blob(s_, s_, 16, 26, 3)
    found = lambda n: [a] + ([b] if n == 2 else []) + ([c] if 3 <= n <= 5 else [])
    force_tracker(monkeypatch, lambda t: {1: a, 2: b, 3: c})
    shown = {}
    for cfg in (SAM31_ASSOCIATION, replace(SAM31_ASSOCIATION, masklet_confirmation=0)):
        force_detections(monkeypatch, vp, found)
        s = vp.start(moving_video(7), association=cfg)
        assert s.add_concept(0, concepts="blob").track_ids.tolist() == [1]
        shown[cfg.masklet_confirmation] = {t: i.track_ids.tolist() for t, i in s.propagate()}
        assert not s.unconfirmed  # cleared after the pass
    on, off = shown[3], shown[0]
    assert on == {0: [1], 1: [1], 2: [1], 3: [1, 3], 4: [1, 3], 5: [1, 3], 6: [1, 3]}
    assert off[2] == [1, 2] and off[3] == [1, 2, 3] and off[6] == [1, 2, 3]


def flicker_session(vp, monkeypatch, cfg):  # noqa: F811
    """A 7-frame session: blob A detected on every frame, B on frame 2 only, C on 3-5."""
    s_ = side(vp)
    a, b, c = blob(s_, s_, 8, 8, 3), blob(s_, s_, 24, 8, 3), blob(s_, s_, 16, 26, 3)
    force_tracker(monkeypatch, lambda t: {1: a, 2: b, 3: c})
    force_detections(monkeypatch, vp, lambda n: [a] + [b] * (n == 2) + [c] * (3 <= n <= 5))
    s = vp.start(moving_video(7), association=cfg)
    s.add_concept(0, concepts="blob")
    return s


@pytest.mark.parametrize(
    ("delay", "max_frames", "expected"),
    [
        (2, None, {0: [1], 1: [1], 2: [1], 3: [1, 3], 4: [1, 3], 5: [1, 3], 6: [1, 3]}),
        (1, None, {0: [1], 1: [1], 2: [1], 3: [1, 3], 4: [1, 3], 5: [1, 3], 6: [1, 3]}),
        # the look-ahead stops at the pass's last frame (3), where B and C are unconfirmed
        (15, 4, {0: [1], 1: [1], 2: [1], 3: [1]}),
    ],
)
def test_confirmation_holds_with_short_delays_and_short_passes(
    vp,  # noqa: F811
    monkeypatch,
    delay,
    max_frames,
    expected,
):
    """A hot-start delay shorter than the confirmation look-ahead, or a pass cut short by
    max_frames, still hides the flicker B (outputs wait for the look-ahead frame)."""
    s = flicker_session(vp, monkeypatch, replace(SAM31_ASSOCIATION, hotstart_delay=delay))
    shown = {t: i.track_ids.tolist() for t, i in s.propagate(max_frames=max_frames)}
    assert shown == expected


def test_stopping_a_propagation_early_leaves_no_confirmation_records(vp, monkeypatch):  # noqa: F811
    """Breaking out of `propagate` clears the pass's records, so the next pass starts clean."""
    s = flicker_session(vp, monkeypatch, SAM31_ASSOCIATION)
    for _ in s.propagate():
        break
    assert not s.unconfirmed


def test_unmatched_tracks_hidden_after_the_hot_start_only_when_asked():
    states = {1: TrackState(0, 0, unmatched=3), 2: TrackState(0, 5, unmatched=3)}
    states[3] = TrackState(0, 0)  # never unmatched (transformers: never suppressed)
    assert suppressed_tracks(states, [1, 2, 3], [], SAM3) == []
    hide = replace(SAM3, suppress_unmatched_only_within_hotstart=False)
    assert suppressed_tracks(states, [1, 2, 3], [], hide) == [1]
    assert suppressed_tracks(states, [1, 2, 3], [1], hide) == []  # ended: removed anyway


def test_recondition_logits_take_the_detection_where_they_disagree():
    trk = torch.tensor([[3.0, -2.0], [0.5, -4.0]])
    det = torch.tensor([[9.0, 0.25], [-1.0, -8.0]])
    merged = recondition_logits(trk, det)
    assert merged.tolist() == [[3.0, 0.25], [-1.0, -4.0]]
    assert torch.equal(merged > 0, det > 0)


def test_reconditioning_thresholds_detection_logits_at_zero(vp, monkeypatch):  # noqa: F811
    """On a re-conditioning frame the mask given to the tracker (mask-as-output: pointer and
    conditioning channel) is Meta's: the detection's logits (not the merged ones: the track's
    faint background, -0.1, would widen the rim) resized to the mask size, > 0, so a
    faint rim (logits 0.3) counts; SAM 3's rule (>= 0.5 on the low-res logits) would drop it."""
    s_ = side(vp)
    core = blob(s_, s_, 16, 16, 4)
    rim = torch.where(blob(s_, s_, 16, 16, 7) > 0, 0.3, -10.0)
    det = torch.maximum(core, rim)
    track = torch.where(core > 0, 2.0, -0.1)
    force_tracker(monkeypatch, lambda t: {1: track})
    given = {}
    mask_results = MultiplexVideo.mask_results

    def spy(self, t, ids, masks):
        given.setdefault(t, []).append(masks.clone())
        return mask_results(self, t, ids, masks)

    monkeypatch.setattr(MultiplexVideo, "mask_results", spy)
    cfg = replace(SAM31_ASSOCIATION, hotstart_delay=0, recondition_every_nth_frame=2)
    for from_logits, expect_rim in ((True, True), (False, False)):
        force_detections(monkeypatch, vp, lambda n: [det if n == 2 else core])
        given.clear()
        s = vp.start(moving_video(3), association=replace(cfg, recondition_from_logits=from_logits))
        s.add_concept(0, concepts="blob")
        list(s.propagate())
        (mask,) = given[2]  # the re-conditioned track's mask on frame 2
        size = mask.shape[-1]
        meta = F.interpolate(det[None, None], size=(size, size), mode="bilinear") > 0
        assert torch.equal(mask.bool(), meta) == expect_rim
        assert bool(mask.sum() < meta.sum()) != expect_rim  # the rim, dropped by SAM 3's rule
