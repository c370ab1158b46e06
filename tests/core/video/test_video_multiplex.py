"""SAM 3.1 click tracking through the public video API (`sam3_core.video.multiplex_backend`) on
a tiny random-weight model with buckets of 4 objects. Parity with Meta's `track_step` is in
tests/core/modeling/test_multiplex_parity.py; here: ids, buckets, memory bounds, limits."""

from __future__ import annotations

import numpy as np
import pytest

from sam3_core.prompts import PromptError
from sam3_core.video.multiplex_backend import DEFAULT_MAX_NUM_OBJECTS
from sam3_core.video.predictor import VideoPredictor
from tests.core.helpers import tiny_model
from tests.core.video.multiplex_tools import moving_video, multiplex_predictor

CLICKS = [[10, 10], [50, 20], [30, 40], [60, 50], [20, 55], [70, 10]]


@pytest.fixture(scope="module")
def vp() -> VideoPredictor:
    return multiplex_predictor()


def click(session, frame: int, ids: list[int]) -> None:
    for i in ids:
        session.add_prompt(frame, obj_id=i, points=[CLICKS[i - 1]], point_labels=[1])


def test_clicks_track_with_stable_ids_in_buckets(vp):
    s = vp.start(moving_video(6))
    assert s.multiplex is not None
    click(s, 0, [1, 2, 3])
    inst = s.add_prompt(2, obj_id=5, boxes=[5, 5, 40, 30])
    assert inst.track_ids.tolist() == [5] and inst.masks.shape == (1, 64, 80)
    click(s, 2, [4])
    assert s.multiplex.state.assignments == [[0, 1, 2, 3], [4, -1, -1, -1]]
    seen = []
    for t, inst in s.propagate(start=2, direction="both"):
        seen.append(t)
        assert inst.track_ids.tolist() == [1, 2, 3, 4, 5]
        assert inst.masks.shape == (5, 64, 80) and inst.low_res_logits.shape == (5, 32, 32)
    assert seen == [2, 3, 4, 5, 1, 0]
    assert [t for t, _ in s.propagate(start=5, direction="backward")] == [5, 4, 3, 2, 1, 0]


def test_a_bucket_does_not_see_the_next_one(vp):
    # Objects 1-4 fill bucket 0; object 5 opens bucket 1. Buckets share only the image, so the
    # first four objects' masks are the same with or without the fifth.
    video = moving_video(5)
    alone, beside = vp.start(video), vp.start(video)
    click(alone, 0, [1, 2, 3, 4])
    click(beside, 0, [1, 2, 3, 4, 5])
    for (t, a), (_, b) in zip(alone.propagate(), beside.propagate()):
        assert b.track_ids.tolist() == [1, 2, 3, 4, 5]
        np.testing.assert_allclose(a.low_res_logits, b.low_res_logits[:4], atol=1e-4)
        np.testing.assert_allclose(a.scores, b.scores[:4], atol=1e-5)
    # ... while objects sharing a bucket do see each other
    three = vp.start(video)
    click(three, 0, [1, 2, 3])
    last = [inst for _, inst in three.propagate()][-1]
    assert np.abs(last.scores - a.scores[:3]).max() > 1e-4


def test_memory_stays_bounded(vp):
    s = vp.start(moving_video(40, 28, 28))
    s.add_prompt(0, obj_id=1, points=[[10, 10]], point_labels=[1])
    s.add_prompt(0, obj_id=2, boxes=[2, 2, 20, 20])
    sizes, records = [], []
    for t, inst in s.propagate():
        assert inst.track_ids.tolist() == [1, 2]
        sizes.append(s.multiplex.nbytes())
        records.append(len(s.multiplex.bank.records))
    window = min(40, vp.model.config.multiplex.max_object_pointers_in_encoder)
    assert max(records) <= window + 1  # the prompted frame + frames of the pointer window
    assert sizes[-1] == sizes[window + 2] and max(sizes) == sizes[-1]
    assert s.memory_bytes() >= sizes[-1]


def test_objects_past_the_cap_are_refused(vp):
    assert DEFAULT_MAX_NUM_OBJECTS > 16
    s = vp.start(moving_video(3), max_num_objects=3)
    click(s, 0, [1, 2, 3])
    with pytest.raises(PromptError, match="max_num_objects"):
        click(s, 1, [4])
    click(s, 1, [2])  # a known object may still be prompted
    s.remove_object(3)
    click(s, 1, [4])  # a freed place is free again
    assert [inst.track_ids.tolist() for _, inst in s.propagate()] == [[1, 2, 4]] * 3


def test_adding_and_removing_objects_after_propagation(vp):
    s = vp.start(moving_video(6))
    click(s, 0, [1, 2, 3, 4, 5])
    list(s.propagate())
    s.remove_object(5)  # bucket 1 empties and goes, with its memory
    assert s.multiplex.state.num_buckets == 1
    assert all(r.pointers.shape[0] == 1 for r in s.multiplex.bank.records.values())
    assert [inst.track_ids.tolist() for _, inst in s.propagate()] == [[1, 2, 3, 4]] * 6
    click(s, 3, [6])  # a new object on a tracked frame: the others are propagated there
    assert s.multiplex.cond_frames() == [0, 3]
    outs = dict(s.propagate())
    assert all(inst.track_ids.tolist() == [1, 2, 3, 4, 6] for inst in outs.values())
    assert outs[3].masks[4].any()  # clicked there
    assert outs[0].scores[4] == 0  # not on frame 0: absent in its memory
    s.remove_object(1)
    assert dict(s.propagate(start=0))[5].track_ids.tolist() == [2, 3, 4, 6]


def test_max_num_objects_is_for_sam31_sessions():
    sam3 = VideoPredictor(tiny_model(seed=2), device="cpu")
    with pytest.raises(ValueError, match="max_num_objects caps SAM 3.1"):
        sam3.start(moving_video(2), max_num_objects=4)


def test_offload_to_cpu_is_refused_with_the_reason(vp):
    with pytest.raises(ValueError, match="SAM 3.1 session keeps one memory per bucket"):
        vp.start(moving_video(2), offload_to_cpu=True)
