"""The multiplex tracker's fast paths against the plain form they replace (Meta's): mux/demux by
index vs the 0/1 selection matrices, and the memory encoder's input built by
`MultiplexTracker.memory_encoder_input` vs sigmoid -> matmul mux -> concatenated conditioning
channels -> antialiased resize of all channels.

Everything runs on `tests.device.DEVICE` (SAM3_TEST_DEVICE, default cpu), inputs drawn on the
CPU and moved. The bounds hold on CUDA too: the selection-matrix matmul is exact in fp32 with
TF32 off (`tests.device`; one 1.0 term per row), and both forms of the memory input run the
same resize kernels on that device."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sam3_core.config import sam3_1_tiny
from sam3_core.modeling.multiplex_state import MultiplexState
from sam3_core.modeling.multiplex_tracker import MultiplexTracker
from tests.device import DEVICE


def _state() -> MultiplexState:
    """3 buckets of 4 on DEVICE: padding in the last one, a removed object in the first."""
    state = MultiplexState.for_objects(11, 4, device=DEVICE)
    state.remove_objects([2])  # bucket 0 keeps a REMOVED slot; 10 objects remain
    return state


def test_mux_and_demux_by_index_equal_the_selection_matrices():
    state = _state()
    x = torch.randn(state.num_objects, 3, 5).to(DEVICE)
    muxed = state.mux(x)
    want = (state.mux_matrix @ x.flatten(1)).view(state.num_buckets, 4, 3, 5)
    assert torch.equal(muxed, want)
    assert torch.equal(state.demux(muxed), x)
    assert muxed[0, 2].abs().sum() == 0 and muxed[2, 3].abs().sum() == 0  # removed, padding
    assert state.valid_mask().tolist() == [
        [True, True, False, True],
        [True, True, True, True],
        [True, True, True, False],
    ]
    # the dtype is kept (a matmul under autocast would round to bf16)
    assert state.mux(x.double()).dtype == torch.float64
    assert state.demux(muxed.to(torch.bfloat16)).dtype == torch.bfloat16


def _meta_input(tracker, masks, state, conditioning, size):
    """Meta's `_encode_new_memory` input: sigmoid, mux masks and conditioning channels by the
    selection matrices, concatenate, antialiased bilinear resize to `size`."""
    cfg = tracker.config
    mask = torch.sigmoid(masks) * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
    cond = torch.zeros(state.num_objects, device=masks.device)
    cond[conditioning] = 1.0
    cond = cond.view(-1, 1, 1, 1).expand_as(mask)

    def mux(t):
        flat = state.mux_matrix @ t.flatten(1)
        return flat.view(state.num_buckets, state.multiplex_count, *t.shape[2:])

    x = torch.cat([mux(mask), mux(cond)], dim=1)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


@pytest.mark.parametrize("side", [112, 160])  # enlarged to 128 (plain bilinear), reduced
def test_memory_encoder_input_equals_meta_form(side):
    torch.manual_seed(0)
    tracker = MultiplexTracker(sam3_1_tiny()).eval().to(DEVICE)
    state = _state()
    masks = 8 * torch.randn(state.num_objects, 1, side, side).to(DEVICE)
    conditioning = [0, 4, 9]
    got = tracker.memory_encoder_input(masks, state, conditioning, (8, 8))
    want = _meta_input(tracker, masks, state, conditioning, (128, 128))
    assert got.shape == want.shape == (3, 8, 128, 128)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got - want).abs().max() < 1e-5
    # it can fail: other conditioning objects, or masks not zeroed in the empty slots
    other = tracker.memory_encoder_input(masks, state, [1], (8, 8))
    assert (other - want).abs().max() > 0.99
    assert want[0, 2].abs().max() == 0 and got[0, 2].abs().max() == 0  # the removed slot


def test_encode_memory_uses_the_fast_input_without_changing_the_memory():
    torch.manual_seed(0)
    tracker = MultiplexTracker(sam3_1_tiny()).eval().to(DEVICE)
    state = _state()
    masks = 8 * torch.randn(state.num_objects, 1, 112, 112).to(DEVICE)
    scores = torch.randn(state.num_objects, 1).to(DEVICE)
    image = torch.randn(1, 128, 8, 8).to(DEVICE)
    with torch.no_grad():
        memory, _ = tracker.encode_memory(image, masks, scores, state, [3])
        x = _meta_input(tracker, masks, state, [3], (128, 128))
        want, _ = tracker.memory_encoder(image, x)
        absent = 1.0 - (state.mux(scores) > 0).float()
        no_object = (absent * tracker.occlusion_spatial_embedding_parameter).sum(1)
        want = want + no_object[..., None, None]
    assert (memory - want).abs().max() < 1e-4 * max(1.0, want.abs().max().item())
