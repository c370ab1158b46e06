"""The cost of many clicked SAM 3.1 objects: a clicked frame's memory is encoded once, before
propagation reads it, not once per click (`sam3_core.video.multiplex_backend`). Counted in
bucket encodes (one memory-encoder pass of one bucket) on a tiny model with buckets of 4."""

from __future__ import annotations

import numpy as np
import pytest

from sam3_core.video.predictor import VideoPredictor
from tests.core.video.multiplex_tools import moving_video, multiplex_predictor


@pytest.fixture(scope="module")
def vp() -> VideoPredictor:
    return multiplex_predictor()


@pytest.fixture
def bucket_encodes(vp, monkeypatch) -> list[int]:
    """Buckets of each memory-encoder call, in order."""
    calls: list[int] = []
    mux = vp.model.multiplex_tracker
    encode = mux.encode_memory

    def counted(*args, **kwargs):
        memory, pos = encode(*args, **kwargs)
        calls.append(memory.shape[0])
        return memory, pos

    monkeypatch.setattr(mux, "encode_memory", counted)
    return calls


def points(n: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).uniform(2, 60, size=(n, 2)).tolist()


def test_clicks_on_one_frame_cost_one_encode_per_bucket(vp, bucket_encodes):
    n, frames = 10, 3  # 10 objects: 3 buckets of 4
    s = vp.start(moving_video(frames))
    for i, xy in enumerate(points(n), start=1):
        s.add_prompt(0, obj_id=i, points=[xy], point_labels=[1])
    assert s.multiplex.state.num_buckets == 3
    assert bucket_encodes == []  # nothing encoded while clicking
    outs = dict(s.propagate())
    assert all(inst.track_ids.tolist() == list(range(1, n + 1)) for inst in outs.values())
    # frame 0 once for its 3 buckets, then each propagated frame once: linear in buckets
    # (one encode per click would be sum(ceil(k / 4) for k in 1..10) = 18 on frame 0 alone)
    assert bucket_encodes == [3] * frames
    # a refined click on a known object re-encodes that frame once, when it is next read
    bucket_encodes.clear()
    s.add_prompt(0, obj_id=2, points=[[30.0, 30.0]], point_labels=[0])
    list(s.propagate(max_frames=2))
    assert bucket_encodes == [3, 3]


def test_clicks_on_two_frames_encode_each_frame_once(vp, bucket_encodes):
    s = vp.start(moving_video(4))
    for i, xy in enumerate(points(6), start=1):
        s.add_prompt(0, obj_id=i, points=[xy], point_labels=[1])
    # the first click on frame 2 propagates frame 0's objects there: frame 0 is encoded first
    s.add_prompt(2, obj_id=7, points=[[40.0, 30.0]], point_labels=[1])
    assert bucket_encodes == [2]
    for i, xy in enumerate(points(5, seed=1), start=8):  # objects 8..12 open bucket 3
        s.add_prompt(2, obj_id=i, points=[xy], point_labels=[1])
    assert bucket_encodes == [2]
    assert s.multiplex.cond_frames() == [0, 2]
    list(s.propagate(start=0, max_frames=2))  # frames 0 and 2 encoded for 3 buckets, frame 1
    assert bucket_encodes == [2, 3, 3, 3]


def test_removing_an_object_after_clicks_keeps_tracking(vp, bucket_encodes):
    s = vp.start(moving_video(3))
    for i, xy in enumerate(points(5), start=1):
        s.add_prompt(0, obj_id=i, points=[xy], point_labels=[1])
    s.remove_object(5)  # the clicked memory is encoded for 2 buckets, then bucket 1 goes
    assert bucket_encodes == [2]
    assert s.multiplex.state.num_buckets == 1
    assert all(r.memory.shape[0] == 1 for r in s.multiplex.bank.records.values())
    outs = [inst.track_ids.tolist() for _, inst in s.propagate()]
    assert outs == [[1, 2, 3, 4]] * 3
