"""Concepts and mask prompts on SAM 3.1 videos (`sam3_core.video.multiplex_concepts`, the
mask-as-output path of `sam3_core.video.multiplex_backend`) on a tiny random-weight model with
buckets of 4 objects. The random detector finds nothing useful, so detections are forced (and,
where a track must follow its object, the tracker's masks too). Parity of the mask-as-output
step with Meta's code is in tests/core/modeling/test_multiplex_parity.py."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from sam3_core.modeling.detector import DetectorOutput
from sam3_core.modeling.mask_head import MaskLogits
from sam3_core.postprocess import masks_to_boxes
from sam3_core.prompts import PromptError
from sam3_core.video.association import AssociationConfig
from sam3_core.video.multiplex_backend import MultiplexVideo
from sam3_core.video.multiplex_concepts import SAM31_ASSOCIATION
from sam3_core.video.predictor import VideoPredictor
from tests.core.video.multiplex_tools import moving_video, multiplex_predictor
from tests.core.video.test_video import blob


@pytest.fixture(scope="module")
def vp() -> VideoPredictor:
    return multiplex_predictor()


def side(vp) -> int:
    return vp.model.tracker_model.prompt_encoder.mask_input_size[0]


def force_detections(monkeypatch, vp, found):
    """`found(call)` -> blob masks [h, w] detected with score ~1 on the detector's call."""
    s = side(vp)
    calls = {"n": 0}

    def fake_detect(state, batch):
        masks, scores = torch.full((1, 8, s, s), -10.0), torch.full((1, 8), -10.0)
        for q, mask in enumerate(found(calls["n"])):
            masks[0, q], scores[0, q] = mask, 10.0
        calls["n"] += 1
        masks, scores = masks.to(vp.device), scores.to(vp.device)
        boxes = masks_to_boxes(masks[0] > 0).float()[None] / s  # normalised xyxy
        presence = torch.full((1, 1), 10.0, device=vp.device)
        return DetectorOutput(scores, presence, boxes, MaskLogits.dense(masks), masks[:, :1])

    monkeypatch.setattr(vp.image, "detect_concepts", fake_detect)


def force_tracker(monkeypatch, masks_at):
    """The propagated mask of object id `i` on frame t becomes masks_at(t)[i] (present)."""
    propagate = MultiplexVideo.propagate_results

    def follows(self, t, reverse):
        out = propagate(self, t, reverse)
        for i, r in out.items():
            if i in masks_at(t):
                r.low_res = masks_at(t)[i][None].to(r.low_res.device)
                r.score = torch.full_like(r.score, 10.0)
        return out

    monkeypatch.setattr(MultiplexVideo, "propagate_results", follows)


def test_mask_prompt_is_the_output_and_is_tracked(vp):
    s = vp.start(moving_video(5))
    mask = np.zeros((64, 80), bool)
    mask[10:30, 20:44] = True
    inst = s.add_prompt(1, obj_id=7, mask=mask)
    assert inst.track_ids.tolist() == [7] and inst.scores[0] > 0.999
    assert (inst.masks[0] == mask).mean() > 0.99  # the mask itself, not a decoder's guess
    assert s.multiplex.cond_frames() == [1]
    record = s.multiplex.bank.records[1]
    assert record.prompted == {7} and record.stale  # its memory: encoded when first read
    s.multiplex.refresh()
    assert s.multiplex.bank.records[1].memory.shape[0] == 1
    # an empty mask: the object is absent there (no-object pointer, score logit -10)
    s.add_prompt(1, obj_id=8, mask=np.zeros((64, 80), bool))
    absent = s.multiplex.bank.records[1].results[8]
    assert float(absent.score) == -10.0 and (absent.low_res < 0).all()
    present = s.multiplex.bank.records[1].results[7]
    assert not torch.allclose(present.pointer, absent.pointer)
    outs = dict(s.propagate())
    assert sorted(outs) == [1, 2, 3, 4]
    assert all(o.track_ids.tolist() == [7, 8] for o in outs.values())
    with pytest.raises(PromptError, match="differs from the video size"):
        s.add_prompt(2, obj_id=9, mask=np.ones((10, 10), bool))


def test_sam31_sessions_use_sam31_thresholds(vp):
    s = vp.start(moving_video(2))
    assert s.association == SAM31_ASSOCIATION
    assert (s.association.score_threshold_detection, s.association.new_det_thresh) == (0.4, 0.65)
    assert not s.association.recondition_on_trk_masks and s.association.fill_hole_area == 0
    mine = AssociationConfig(hotstart_delay=0)
    assert vp.start(moving_video(2), association=mine).association is mine


def test_concept_tracks_keep_ids_appear_and_end(vp, monkeypatch):
    """One blob moves right on every frame; a second appears on frame 3 and is gone from
    frame 6 (detector and tracker): it ends after end_lost_after=2 empty frames, leaving its
    group's slot; ids never change."""
    s_ = side(vp)
    first = lambda t: blob(s_, s_, 10, 6 + t, 4)
    second = lambda t: blob(s_, s_, 24, 22, 4)
    found = lambda n: [first(n)] + ([second(n)] if 3 <= n < 6 else [])
    force_detections(monkeypatch, vp, found)
    gone = torch.full((s_, s_), -10.0)
    force_tracker(monkeypatch, lambda t: {1: first(t), 2: second(t) if t < 6 else gone})
    assoc = replace_cfg(end_lost_after=2)
    s = vp.start(moving_video(10), association=assoc)
    assert s.add_concept(0, concepts="blob").track_ids.tolist() == [1]
    group = s.multiplex_concepts.groups[0]
    assert group.cond_frames() == [0]  # the group's first frame is its conditioning frame
    ids = {}
    for t, inst in s.propagate():
        ids[t] = inst.track_ids.tolist()
        if t == 3:
            # object 2 joins the free slot of group 0: no new group, frame 3 is no
            # conditioning frame, yet its memory has object 2's conditioning channel
            assert len(s.multiplex_concepts.groups) == 1 and group.ids == [1, 2]
            assert group.cond_frames() == [0] and 3 in group.bank.records
    assert ids[0] == ids[1] == ids[2] == [1]
    assert ids[3] == ids[4] == ids[5] == [1, 2]
    assert all(ids[t] == [1] for t in range(6, 10))
    assert s.lost_ids == {2} and sorted(s.objects) == [1] and group.ids == [1]
    assert group.state.num_objects == 1


def replace_cfg(**kw) -> AssociationConfig:
    """SAM 3.1's thresholds with every output shown at once (no hot-start delay, no masklet
    confirmation: tests/core/video/test_association_sam31.py tests those)."""
    from dataclasses import replace

    return replace(SAM31_ASSOCIATION, **{"hotstart_delay": 0, "masklet_confirmation": 0, **kw})


def test_new_group_when_the_buckets_are_full(vp, monkeypatch):
    """Five blobs on frame 0 fill a group (one bucket of 4 would not hold them: a group of 2
    buckets); three more on frame 2 fit its free slots; two more on frame 4 do not: a new
    group starts there, with frame 4 as its conditioning frame."""
    s_ = side(vp)
    spots = [(4 + 6 * (k % 4), 4 + 8 * (k // 4)) for k in range(10)]
    blobs = [blob(s_, s_, y, x, 2) for y, x in spots]
    found = lambda n: blobs[:5] if n < 2 else blobs[:8] if n < 4 else blobs[8:]
    force_detections(monkeypatch, vp, found)  # (the tiny detector has 8 queries)
    force_tracker(monkeypatch, lambda t: {k + 1: blobs[k] for k in range(10)})
    s = vp.start(moving_video(6), association=replace_cfg())
    assert s.add_concept(0, concepts="dot").track_ids.tolist() == [1, 2, 3, 4, 5]
    outs = dict(s.propagate())
    groups = s.multiplex_concepts.groups
    assert [g.ids for g in groups] == [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10]]
    assert [g.cond_frames() for g in groups] == [[0], [4]]
    assert [g.state.num_buckets for g in groups] == [2, 1]
    assert outs[5].track_ids.tolist() == list(range(1, 11))
    assert s.memory_bytes() > s.multiplex.nbytes()


def test_concept_memory_stays_bounded(vp, monkeypatch):
    s_ = side(vp)
    force_detections(monkeypatch, vp, lambda n: [blob(s_, s_, 12, 12, 5)])
    force_tracker(monkeypatch, lambda t: {1: blob(s_, s_, 12, 12, 5)})
    s = vp.start(moving_video(40, 28, 28), association=replace_cfg())
    s.add_concept(0, concepts="blob")
    sizes, records = [], []
    for t, inst in s.propagate():
        assert inst.track_ids.tolist() == [1]
        (group,) = s.multiplex_concepts.groups
        sizes.append(s.multiplex_concepts.nbytes())
        records.append(len(group.bank.records))
    window = min(40, vp.model.config.multiplex.max_object_pointers_in_encoder)
    assert max(records) <= window + 1
    assert sizes[-1] == sizes[window + 2] and max(sizes) == sizes[-1]


def test_objects_past_the_cap_are_refused_with_a_message(vp, monkeypatch, caplog):
    s_ = side(vp)
    blobs = [blob(s_, s_, 6, 6, 3), blob(s_, s_, 20, 20, 3), blob(s_, s_, 6, 24, 3)]
    force_detections(monkeypatch, vp, lambda n: blobs)
    force_tracker(monkeypatch, lambda t: {k + 1: b for k, b in enumerate(blobs)})
    s = vp.start(moving_video(3), association=replace_cfg(), max_num_objects=3)
    s.add_prompt(0, obj_id=10, points=[[40, 30]], point_labels=[1])
    with caplog.at_level(logging.WARNING):
        inst = s.add_concept(0, concepts="blob")
    assert "max_num_objects" in caplog.text
    concept_ids = [i for i in inst.track_ids.tolist() if i != 10]
    assert len(concept_ids) == 2  # one click + two tracks = the cap; the third refused
    with pytest.raises(PromptError, match="max_num_objects"):
        s.add_prompt(1, obj_id=20, points=[[5, 5]], point_labels=[1])
    with pytest.raises(PromptError, match="concept track"):
        s.add_prompt(1, obj_id=concept_ids[0], points=[[5, 5]], point_labels=[1])
    for _, inst in s.propagate():
        assert len(inst.track_ids) <= 3 and 10 in inst.track_ids


def test_both_directions_from_a_concept_frame(vp, monkeypatch):
    """add_concept on frame 3, propagate both ways: tracks found forward keep their ids going
    back."""
    s_ = side(vp)
    a, b = blob(s_, s_, 8, 8, 4), blob(s_, s_, 24, 24, 4)
    found = lambda n: [a] + ([b] if n >= 2 else [])
    force_detections(monkeypatch, vp, found)
    force_tracker(monkeypatch, lambda t: {1: a, 2: b})
    s = vp.start(moving_video(7), association=replace_cfg())
    assert s.add_concept(3, concepts="blob").track_ids.tolist() == [1]
    outs = dict(s.propagate(direction="both"))
    assert sorted(outs) == list(range(7))
    assert outs[3].track_ids.tolist() == [1]
    assert all(outs[t].track_ids.tolist() == [1, 2] for t in (5, 6, 2, 1, 0))
    (group,) = s.multiplex_concepts.groups
    assert group.ids == [1, 2] and group.cond_frames() == [3]
    # revisited, the group's first frame gives object 1's stored output there, and object 2
    # (which joined later) decoded from memory: matched, not a new track
    again = dict(s.propagate(start=3, direction="forward", max_frames=1))
    assert again[3].track_ids.tolist() == [1, 2] and sorted(s.objects) == [1, 2]
    stored = group.bank.records[3].results[1].low_res.cpu().numpy()
    np.testing.assert_array_equal(again[3].low_res_logits[0], stored[0])
