"""Full-size parity (opt-in: SAM3_SLOW=1): one text forward of the released architecture.

About 4 minutes and 10 GiB on a 2-core CPU, so it stays out of the default run. Runs on
`tests.device.DEVICE` (SAM3_TEST_DEVICE, default cpu): both models are built and perturbed on
the CPU (the same weights on every device), then moved there with every input. The tolerances
are fp32 ones and hold on CUDA too (TF32 off in `tests.device`: both sides differ only by the
order of fp32 sums). The two fp32 models' weights alone take about 6.3 GiB there.
"""

from __future__ import annotations

import pytest
import torch

from sam3_core.config import sam3
from sam3_core.modeling.detector import Sam3Detector
from tests.device import DEVICE
from tests.reference import hf_detector, mask_iou

pytest.importorskip("transformers")


@pytest.mark.slow
def test_parity_full_size_text_forward():
    cfg = sam3()
    hf = hf_detector(cfg, seed=0)
    ours = Sam3Detector(cfg).eval()
    ours.load_state_dict(hf.state_dict())
    hf, ours = hf.to(DEVICE), ours.to(DEVICE)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(1, 3, cfg.image_size, cfg.image_size, generator=g).to(DEVICE)
    ids = torch.full((2, 32), 49407)
    ids[:, 0] = 49406
    ids[0, 1:4] = torch.tensor([2368, 320, 1125])
    ids[1, 1:3] = torch.tensor([4009, 5100])
    mask = (torch.arange(32)[None] < torch.tensor([[5], [4]])).long()
    ids, mask = ids.to(DEVICE), mask.to(DEVICE)
    with torch.no_grad():
        ref = hf(pixel_values=pixels.expand(2, -1, -1, -1), input_ids=ids, attention_mask=mask)
        out = ours(ours.vision_encoder(pixels).repeat(2), ours.encode_text(ids), mask.bool())
    ref_scores = ref.pred_logits.sigmoid() * ref.presence_logits.sigmoid()
    assert (ref_scores - out.scores).abs().max() < 1e-4
    assert (ref.pred_boxes - out.boxes).abs().max() < 1e-4
    assert out.masks.shape[-1] == 288
    for a, b in zip(ref.pred_masks.flatten(0, 1), out.masks.flatten(0, 1)):
        assert mask_iou(a > 0, b > 0) >= 0.999
    assert (out.scores[0] - out.scores[1]).abs().max() > 1e-3
