"""Parity of `Sam3Tracker` with transformers' Sam3TrackerModel / Sam3TrackerVideoModel.

Both sides get the same perturbed random weights (default inits make outputs nearly independent
of the prompts), the same FPN features, and must agree on mask logits, IoU and object scores.
Models and inputs live on `tests.device.DEVICE` (SAM3_TEST_DEVICE, default cpu); weights and
inputs are drawn on the CPU and moved, so they are the same numbers on every device. The fp32
tolerances below hold on CUDA too: TF32 is off there (`tests.device`), so both sides differ
only by the order of fp32 sums, as on the CPU (where the largest error is a fifth of
LOGIT_ATOL).
"""

from __future__ import annotations

import pytest
import torch

from sam3_core.config import sam3, sam3_tiny
from sam3_core.modeling.tracker import Sam3Tracker
from tests.device import DEVICE
from tests.reference import hf_image_tracker_config, hf_tracker_config, perturb_

transformers = pytest.importorskip("transformers")

LOGIT_ATOL = 1e-4  # fp32, absolute, on low-res mask logits
SCORE_ATOL = 1e-5  # IoU scores (sigmoid outputs) and object score logits


@pytest.fixture(scope="module")
def models():
    """(ours, transformers video tracker, transformers image tracker, fpn, fpn_pos, pixels),
    all on DEVICE."""
    torch.manual_seed(0)
    cfg = sam3_tiny()
    hf_cfg = hf_tracker_config(cfg)
    video = transformers.Sam3TrackerVideoModel(hf_cfg, remove_vision_encoder=True).eval()
    perturb_(video)
    image = transformers.Sam3TrackerModel(hf_image_tracker_config(hf_cfg)).eval()
    perturb_(image.vision_encoder, seed=1)
    missing, _ = image.load_state_dict(video.state_dict(), strict=False)
    assert all(k.startswith("vision_encoder.") for k in missing)
    ours = Sam3Tracker(cfg).eval()
    ours.load_state_dict(video.state_dict(), strict=True)
    ours, video, image = ours.to(DEVICE), video.to(DEVICE), image.to(DEVICE)
    pixels = torch.randn(2, 3, cfg.image_size, cfg.image_size).to(DEVICE)
    with torch.no_grad():
        vis = image.vision_encoder(pixels)
    return ours, video, image, list(vis.fpn_hidden_states), list(vis.fpn_position_encoding), pixels


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0, b > 0
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def run_both(models, batch=1, **prompts):
    """Run our predict_masks and transformers' forward on the same prompts."""
    ours, _, image, fpn, pos, pixels = models
    multimask = prompts.pop("multimask", True)
    hf_kwargs = {
        "input_points": prompts.get("points"),
        "input_labels": prompts.get("labels"),
        "input_boxes": prompts.get("boxes"),
        "input_masks": None if prompts.get("masks") is None else prompts["masks"][:, 0],
    }
    with torch.no_grad():
        ref = image(pixel_values=pixels[:batch], multimask_output=multimask, **hf_kwargs)
        feats = ours.prepare_image_features([f[:batch] for f in fpn], [p[:batch] for p in pos])
        out = ours.predict_masks(
            feats,
            points=prompts.get("points"),
            point_labels=prompts.get("labels"),
            boxes=prompts.get("boxes"),
            mask_input=prompts.get("masks"),
            multimask=multimask,
        )
    return out, ref


def assert_close(out, ref) -> dict[str, float]:
    errs = {
        "mask": (out.low_res_masks - ref.pred_masks).abs().max().item(),
        "iou": (out.iou_scores - ref.iou_scores).abs().max().item(),
        "obj": (out.object_score_logits - ref.object_score_logits).abs().max().item(),
    }
    assert out.low_res_masks.shape == ref.pred_masks.shape
    assert errs["mask"] < LOGIT_ATOL, errs
    assert errs["iou"] < SCORE_ATOL and errs["obj"] < SCORE_ATOL * 10, errs
    assert mask_iou(out.low_res_masks, ref.pred_masks) >= 0.999
    return errs


POINTS = torch.tensor([[[[30.0, 40.0], [80.0, 20.0]]]], device=DEVICE)
LABELS = torch.tensor([[[1, 0]]], device=DEVICE)
BOX = torch.tensor([[[10.0, 15.0, 90.0, 70.0]]], device=DEVICE)


@pytest.mark.parametrize("multimask", [True, False])
def test_parity_points(models, multimask):
    out, ref = run_both(models, points=POINTS, labels=LABELS, multimask=multimask)
    assert out.low_res_masks.shape[2] == (3 if multimask else 1)
    assert_close(out, ref)


@pytest.mark.parametrize("multimask", [True, False])
def test_parity_box(models, multimask):
    out, ref = run_both(models, boxes=BOX, multimask=multimask)
    assert_close(out, ref)


def test_parity_points_and_box(models):
    out, ref = run_both(models, points=POINTS[:, :, :1], labels=LABELS[:, :, :1], boxes=BOX)
    assert_close(out, ref)


@pytest.mark.parametrize("with_points", [True, False])
def test_parity_mask_input(models, with_points):
    ours, *_ = models
    side = ours.prompt_encoder.mask_input_size[0]
    gen = torch.Generator().manual_seed(3)
    masks = 8 * torch.randn(1, 1, 1, side, side, generator=gen).to(DEVICE)
    prompts = {"points": POINTS, "labels": LABELS} if with_points else {}
    out, ref = run_both(models, masks=masks, multimask=False, **prompts)
    assert_close(out, ref)


def test_parity_two_objects_two_images(models):
    points = torch.tensor(
        [[[[30.0, 40.0]], [[90.0, 90.0]]], [[[5.0, 100.0]], [[60.0, 60.0]]]], device=DEVICE
    )
    labels = torch.ones(2, 2, 1, dtype=torch.long, device=DEVICE)
    boxes = torch.tensor(
        [[[0.0, 0.0, 60.0, 60.0], [50.0, 40.0, 111.0, 100.0]]], device=DEVICE
    ).expand(2, 2, 4)
    for multimask in (True, False):
        out, ref = run_both(models, batch=2, points=points, labels=labels, multimask=multimask)
        assert out.low_res_masks.shape[:2] == (2, 2)
        assert_close(out, ref)
    out, ref = run_both(models, batch=2, points=points, labels=labels, boxes=boxes)
    assert_close(out, ref)


def test_parity_outputs_depend_on_prompts(models):
    a, _ = run_both(models, points=POINTS[:, :, :1], labels=LABELS[:, :, :1])
    far = torch.tensor([[[[100.0, 100.0]]]], device=DEVICE)
    b, _ = run_both(models, points=far, labels=LABELS[:, :, :1])
    c, _ = run_both(models, boxes=BOX)
    for x, y in ((a, b), (a, c), (b, c)):
        assert (x.low_res_masks - y.low_res_masks).abs().mean() > 0.1
        assert mask_iou(x.low_res_masks, y.low_res_masks) < 0.95
        assert (x.iou_scores - y.iou_scores).abs().max() > 1e-3


def test_parity_dynamic_multimask(models):
    ours, _, image, *_ = models
    gen = torch.Generator().manual_seed(5)
    masks = torch.randn(2, 3, 4, 16, 16, generator=gen).to(DEVICE)
    masks[0, 0, 0] = 5.0  # a stable single mask: kept
    iou = torch.rand(2, 3, 4, generator=gen).to(DEVICE)
    got = ours.mask_decoder._dynamic_multimask_via_stability(masks, iou)
    ref = image.mask_decoder._dynamic_multimask_via_stability(masks, iou)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


def test_bad_prompt_shapes_raise(models):
    ours, _, _, fpn, pos, _ = models
    feats = ours.prepare_image_features([f[:1] for f in fpn], [p[:1] for p in pos])
    with pytest.raises(ValueError, match="point_labels"):
        ours.predict_masks(feats, points=POINTS, point_labels=LABELS[..., :1])
    with pytest.raises(ValueError, match="leading"):
        ours.predict_masks(feats, points=POINTS, point_labels=LABELS, boxes=BOX.expand(1, 2, 4))
    with pytest.raises(ValueError, match="FPN level sizes"):
        ours.prepare_image_features([fpn[1], fpn[1], fpn[2]], pos)


# ------------------------------------------------------------------------------ memory path


def test_parity_track_step(models):
    """Best-mask selection, no-object gating, upsampling and object pointer of a video frame."""
    ours, video, _, fpn, pos, _ = models
    with torch.no_grad():
        feats = ours.prepare_image_features([f[:1] for f in fpn], [p[:1] for p in pos])
        embed = feats.image_embed + 0.5
        for multimask in (True, False):
            ref = video._single_frame_forward(
                image_embeddings=[*feats.high_res_feats, embed],
                input_points=POINTS,
                input_labels=LABELS,
                multimask_output=multimask,
            )
            out = ours.predict_masks(feats, POINTS, LABELS, multimask=multimask, image_embed=embed)
            low, high, pointer = ours.track_step_output(out)
            assert (low[0] - ref.pred_masks.reshape(low[0].shape)).abs().max() < LOGIT_ATOL
            assert (high[0] - ref.high_res_masks.reshape(high[0].shape)).abs().max() < LOGIT_ATOL
            assert (pointer.flatten() - ref.object_pointer.flatten()).abs().max() < 1e-4


def test_parity_mask_as_output(models):
    ours, video, _, fpn, pos, _ = models
    mask = torch.zeros(1, 1, 112, 112, device=DEVICE)
    mask[..., 20:70, 30:90] = 1.0
    with torch.no_grad():
        feats = ours.prepare_image_features([f[:1] for f in fpn], [p[:1] for p in pos])
        ref = video._use_mask_as_output(feats.image_embed, list(feats.high_res_feats), mask)
        low, high, score, pointer = ours.mask_as_output(feats, mask)
    assert (low - ref.pred_masks).abs().max() < 1e-4
    assert (high - ref.high_res_masks).abs().max() < 1e-4
    assert torch.equal(score.flatten(), ref.object_score_logits.flatten())
    assert (pointer.flatten() - ref.object_pointer.flatten()).abs().max() < 1e-4


@pytest.mark.parametrize("binarize", [True, False])
def test_parity_memory_encoder(models, binarize):
    ours, video, _, fpn, _, _ = models
    gen = torch.Generator().manual_seed(7)
    embed = fpn[2]
    masks = 4 * torch.randn(2, 1, 112, 112, generator=gen).to(DEVICE)
    scores = torch.tensor([[[1.5]], [[-2.0]]], device=DEVICE)  # present, absent (occlusion)
    with torch.no_grad():
        feat, mpos = ours.encode_memory(embed, masks, scores[:, 0], binarize=binarize)
        ref_feat, ref_pos = video._encode_new_memory(
            embed.flatten(2).permute(2, 0, 1), masks, scores, is_mask_from_pts=binarize
        )
        # transformers stores memories in bfloat16: compare at that precision, then in fp32
        ref_feat = ref_feat.float().permute(1, 2, 0).reshape(feat.shape)
        assert torch.allclose(feat.to(torch.bfloat16).float(), ref_feat, rtol=1.6e-2, atol=1e-3)
        assert (mpos - ref_pos.permute(1, 2, 0).reshape(mpos.shape)).abs().max() < 1e-6
        mask_in = torch.sigmoid(torch.nn.functional.interpolate(masks, size=(128, 128)))
        a = ours.memory_encoder(embed, mask_in)[0]
        b = video.memory_encoder(embed, mask_in)[0]
    assert (a - b).abs().max() < 1e-4
    assert (feat[0] - feat[1]).abs().mean() > 0.1


def test_parity_memory_attention(models):
    """Two spatial memories (a conditioning frame and the previous frame) plus object pointers."""
    ours, video, _, fpn, pos, _ = models
    gen = torch.Generator().manual_seed(11)
    c, m, grid = ours.config.hidden_size, ours.config.memory_channels, fpn[2].shape[-1]
    mem = [torch.randn(1, m, grid, grid, generator=gen).to(DEVICE) for _ in range(2)]
    mem_pos = [torch.randn(1, m, grid, grid, generator=gen).to(DEVICE) for _ in range(2)]
    pointers = torch.randn(3, 1, c, generator=gen).to(DEVICE)
    offsets = [0, 1, 2]
    with torch.no_grad():
        feats = ours.prepare_image_features([f[:1] for f in fpn], [p[:1] for p in pos])
        bank = ours.build_memory(
            [(0, mem[0], mem_pos[0]), (1, mem[1], mem_pos[1])], pointers, offsets, max_pointers=5
        )
        got = ours.attend_memory(feats, bank)

        def seq(x):
            return x.flatten(2).permute(2, 0, 1)

        hf_mem, hf_pos = video._build_memory_attention_inputs(
            [
                (0, {"maskmem_features": seq(mem[0]), "maskmem_pos_enc": seq(mem_pos[0])}),
                (1, {"maskmem_features": seq(mem[1]), "maskmem_pos_enc": seq(mem_pos[1])}),
            ],
            fpn[2].device,
        )
        ptr, ptr_pos = video._process_object_pointers(
            offsets, list(pointers), 5, 1, c, fpn[2].device
        )
        memory, memory_pos = torch.cat([*hf_mem, ptr]), torch.cat([*hf_pos, ptr_pos])
        assert (bank.memory - memory.transpose(0, 1)).abs().max() < 1e-6
        assert (bank.memory_pos - memory_pos.transpose(0, 1)).abs().max() < 1e-6
        ref = video.memory_attention(
            current_vision_features=seq(feats.image_embed),
            memory=memory,
            current_vision_position_embeddings=seq(feats.image_pos),
            memory_posision_embeddings=memory_pos,
            num_object_pointer_tokens=ptr.shape[0],
        )
    ref = ref.squeeze(1).transpose(1, 2).reshape(got.shape)
    err = (got - ref).abs().max().item()
    assert err < 1e-4, err
    assert (got - feats.image_embed).abs().mean() > 0.1


def test_memory_attention_batches_objects(models):
    """Two objects in one call give the same result as one at a time."""
    ours, _, _, fpn, pos, _ = models
    gen = torch.Generator().manual_seed(13)
    m, grid = ours.config.memory_channels, fpn[2].shape[-1]
    mem = torch.randn(2, m, grid, grid, generator=gen).to(DEVICE)
    with torch.no_grad():
        feats = ours.prepare_image_features(
            [f[:1].expand(2, -1, -1, -1) for f in fpn], [p[:1].expand(2, -1, -1, -1) for p in pos]
        )
        both = ours.attend_memory(feats, ours.build_memory([(1, mem, mem * 0.5)]))
        one = ours.attend_memory(
            ours.prepare_image_features([f[:1] for f in fpn], [p[:1] for p in pos]),
            ours.build_memory([(1, mem[1:], mem[1:] * 0.5)]),
        )
    assert (both[1:] - one).abs().max() < 1e-5


# ---------------------------------------------------------------------------- checkpoint keys


@pytest.mark.parametrize("preset", ["tiny", "full"])
def test_state_dict_keys_match_transformers(preset):
    cfg = sam3_tiny() if preset == "tiny" else sam3()
    hf_cfg = hf_tracker_config(cfg) if preset == "tiny" else transformers.Sam3TrackerVideoConfig()
    with torch.device("meta"):
        ref = transformers.Sam3TrackerVideoModel(hf_cfg, remove_vision_encoder=True)
        ours = Sam3Tracker(cfg)
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert got == want
