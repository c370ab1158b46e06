"""Our detector against transformers' Sam3Model on the same perturbed random weights.

Both models and every input live on `tests.device.DEVICE` (SAM3_TEST_DEVICE, default cpu);
inputs are drawn on the CPU and moved, so they are the same numbers on every device.
Tolerances (fp32): scores, presence and boxes within 1e-4; mask and semantic logits within
1e-3 absolute; binary masks (logit > 0) IoU >= 0.999. The same bounds apply on CUDA: both
sides run there in fp32 with TF32 off (`tests.device`), so they differ only by the order of
fp32 sums, as on the CPU (where the largest error is a tenth of its bound, on mask logits).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam3_core.config import sam3_tiny
from sam3_core.modeling.detector import Sam3Detector
from tests.device import DEVICE
from tests.reference import hf_detector, mask_iou

pytest.importorskip("transformers")

CFG = sam3_tiny()
L = CFG.text.context_length


@pytest.fixture(scope="module")
def models():
    hf = hf_detector(CFG, seed=0)
    ours = Sam3Detector(CFG).eval()
    ours.load_state_dict(hf.state_dict())
    return hf.to(DEVICE), ours.to(DEVICE)


def _ids(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids with bos/eos and transformers' padding (49407), on DEVICE."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), L), 49407)
    mask = torch.zeros(len(lengths), L, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, 0] = 49406
        ids[i, 1 : n - 1] = torch.randint(0, 49406, (n - 2,), generator=g)
        mask[i, :n] = 1
    return ids.to(DEVICE), mask.to(DEVICE)


def _run(models, pixels, ids, mask, boxes=None, labels=None):
    hf, ours = models
    kw = {} if boxes is None else {"input_boxes": boxes, "input_boxes_labels": labels}
    with torch.no_grad():
        ref = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask, **kw)
        out = ours(ours.vision_encoder(pixels), ours.encode_text(ids), mask.bool(), boxes, labels)
    return ref, out


def _assert_close(ref, out) -> None:
    ref_scores = ref.pred_logits.sigmoid() * ref.presence_logits.sigmoid()
    assert (ref_scores - out.scores).abs().max() < 1e-4
    assert (ref.presence_logits - out.presence).abs().max() < 1e-4
    assert (ref.pred_boxes - out.boxes).abs().max() < 1e-4
    assert (ref.pred_masks - out.masks).abs().max() < 1e-3
    assert (ref.semantic_seg - out.semantic).abs().max() < 1e-3
    for a, b in zip(ref.pred_masks.flatten(0, 1), out.masks.flatten(0, 1)):
        assert mask_iou(a > 0, b > 0) >= 0.999


def _pixels(n: int, seed: int) -> torch.Tensor:
    """n random images [n, 3, S, S], drawn on the CPU, on DEVICE."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, CFG.image_size, CFG.image_size, generator=g).to(DEVICE)


def test_parity_text_only(models):
    ids, mask = _ids([5], seed=1)
    ref, out = _run(models, _pixels(1, 1), ids, mask)
    _assert_close(ref, out)


def test_parity_exemplars_only_positive_and_negative(models):
    ids, mask = _ids([3], seed=2)  # stands in for "visual"
    boxes = torch.tensor(
        [[[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.3, 0.2], [0.5, 0.5, 0.1, 0.4]]], device=DEVICE
    )
    labels = torch.tensor([[1, 0, 1]], device=DEVICE)
    ref, out = _run(models, _pixels(1, 2), ids, mask, boxes, labels)
    _assert_close(ref, out)


def test_parity_text_plus_exemplars(models):
    ids, mask = _ids([7], seed=3)
    boxes = torch.tensor([[[0.45, 0.55, 0.3, 0.25]]], device=DEVICE)
    labels = torch.tensor([[1]], device=DEVICE)
    ref, out = _run(models, _pixels(1, 3), ids, mask, boxes, labels)
    _assert_close(ref, out)


def test_parity_two_images_in_a_batch(models):
    ids, mask = _ids([4, 9], seed=4)
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2]], [[0.6, 0.5, 0.3, 0.4]]], device=DEVICE)
    labels = torch.tensor([[1], [0]], device=DEVICE)
    ref, out = _run(models, _pixels(2, 4), ids, mask, boxes, labels)
    _assert_close(ref, out)


def test_parity_outputs_depend_on_inputs(models):
    """Guards the parity tests: different images and texts must give different answers."""
    _, ours = models
    ids, mask = _ids([5, 8], seed=5)
    with torch.no_grad():
        feats = ours.vision_encoder(_pixels(2, 6))
        a = ours(feats, ours.encode_text(ids), mask.bool())
    assert (a.scores[0] - a.scores[1]).abs().max() > 1e-2
    assert (a.boxes[0] - a.boxes[1]).abs().max() > 1e-2
    assert np.mean((a.masks[0] > 0).cpu().numpy() != (a.masks[1] > 0).cpu().numpy()) > 0.01
    assert a.scores.std() > 1e-2


def test_parity_outputs_depend_on_exemplar_boxes(models):
    """Guards the exemplar parity tests: on one image and one text, moving a box, flipping its
    label or adding it must change the answer, in the reference and in ours alike."""
    _, ours = models
    ids, mask = _ids([3], seed=9)
    ids, mask = ids.expand(4, -1), mask.expand(4, -1)
    pixels = _pixels(1, 9).expand(4, -1, -1, -1)
    boxes = torch.tensor(
        [[[0.3, 0.4, 0.2, 0.3]], [[0.7, 0.6, 0.3, 0.2]], [[0.3, 0.4, 0.2, 0.3]], [[0.5] * 4]],
        device=DEVICE,
    )
    labels = torch.tensor([[1], [1], [0], [1]], device=DEVICE)
    ref, out = _run(models, pixels, ids, mask, boxes, labels)
    _assert_close(ref, out)
    with torch.no_grad():
        feats = ours.vision_encoder(_pixels(1, 9))
        plain = ours(feats, ours.encode_text(ids[:1]), mask[:1].bool())
    rows = [out.scores[i] for i in range(4)] + [plain.scores[0]]
    masks = [out.masks[i] > 0 for i in range(4)] + [plain.masks[0] > 0]
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            assert (rows[i] - rows[j]).abs().max() > 1e-3, (i, j)
            assert (masks[i] != masks[j]).float().mean() > 5e-3, (i, j)
    ref_scores = ref.pred_logits.sigmoid() * ref.presence_logits.sigmoid()
    assert (ref_scores[0] - ref_scores[1]).abs().max() > 1e-3
    assert (ref_scores[0] - ref_scores[2]).abs().max() > 1e-3


def test_parity_many_prompts_on_one_image_take_the_shared_path(models):
    """Several prompts on one (expanded) image: shared self-attention and pixel-decoder split."""
    hf, ours = models
    ids, mask = _ids([5, 7, 4], seed=8)
    pixels = _pixels(1, 8)
    with torch.no_grad():
        ref = hf(
            pixel_values=pixels.expand(3, -1, -1, -1).contiguous(),
            input_ids=ids,
            attention_mask=mask,
        )
        feats = ours.vision_encoder(pixels).repeat(3)
        assert feats.fpn[0].stride(0) == 0
        out = ours(feats, ours.encode_text(ids), mask.bool())
    _assert_close(ref, out)


def test_upsample_conv_folding_equals_conv_of_upsampled():
    from sam3_core.modeling.mask_head import upsample2x_conv3x3

    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(6, 5, 3, padding=1).to(DEVICE)
    x = torch.randn(2, 6, 7, 9, generator=g).to(DEVICE)
    want = (
        conv(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
        - conv.bias[:, None, None]
    )
    added = torch.randn(1, 5, 14, 18, generator=g).to(DEVICE)
    with torch.no_grad():  # the inference path interleaves in place
        got = upsample2x_conv3x3(x, conv, added)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got - want - added).abs().max() < 1e-5
    with_grad = upsample2x_conv3x3(x, conv, added)
    assert with_grad.requires_grad and (with_grad - want - added).abs().max() < 1e-5
