"""Concept tracking in video against transformers' Sam3VideoModel on the same tiny weights.

Both sides get our tiny model's perturbed random weights (its state dict keys are
Sam3VideoModel keys), the same synthetic video and text prompt, and lowered detection
thresholds so that the random detector starts tracks. transformers runs without the optional
`kernels` package here, so it skips detection NMS and hole filling: NMS is off on both sides
(det_nms_thresh=0) and hole filling off in the reference (fill_hole_area=0; we do none).
Object ids: transformers counts from 0, we from 1 (ids are shared with clicked objects).
"""

from __future__ import annotations

import numpy as np
import pytest

from sam3_core.association import AssociationConfig
from sam3_core.config import sam3_tiny
from sam3_core.video import VideoPredictor
from tests.core.helpers import make_image, tiny_model
from tests.reference import (
    hf_detector_config,
    hf_tracker_config,
    mask_iou,
    write_clip_tokenizer_files,
)

transformers = pytest.importorskip("transformers")
CFG = sam3_tiny()
H, W, T = 90, 130, 8
PROMPT = "blob"
# lowered so that the random detector's ~0.25 scores start tracks; the rest are the defaults
# except re-conditioning every 3rd frame with lower bars, so that it happens within 8 frames
ASSOC = AssociationConfig(
    score_threshold_detection=0.2,
    new_det_thresh=0.3,
    det_nms_thresh=0.0,
    recondition_every_nth_frame=3,
    high_conf_thresh=0.2,
    high_iou_thresh=0.5,
)


def hf_video_model(model):
    cfg = transformers.Sam3VideoConfig(
        detector_config=hf_detector_config(CFG).to_dict(),
        tracker_config=hf_tracker_config(CFG).to_dict(),
        score_threshold_detection=ASSOC.score_threshold_detection,
        new_det_thresh=ASSOC.new_det_thresh,
        det_nms_thresh=ASSOC.det_nms_thresh,
        recondition_every_nth_frame=ASSOC.recondition_every_nth_frame,
        high_conf_thresh=ASSOC.high_conf_thresh,
        high_iou_thresh=ASSOC.high_iou_thresh,
        fill_hole_area=0,
    )
    hf = transformers.Sam3VideoModel(cfg).eval()
    missing, unexpected = hf.load_state_dict(model.state_dict(), strict=False)
    assert not missing and not unexpected
    return hf


def hf_processor(folder):
    from transformers import (
        CLIPTokenizer,
        Sam2VideoVideoProcessor,
        Sam3ImageProcessor,
        Sam3VideoProcessor,
    )

    write_clip_tokenizer_files(folder)
    s, half, m = CFG.image_size, [0.5, 0.5, 0.5], 4 * CFG.image_size // CFG.vit.patch_size
    return Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(
            size={"height": s, "width": s}, mask_size={"height": m, "width": m}
        ),
        video_processor=Sam2VideoVideoProcessor(
            size={"height": s, "width": s}, image_mean=half, image_std=half
        ),
        tokenizer=CLIPTokenizer.from_pretrained(str(folder)),
    )


def make_video(n: int = T) -> np.ndarray:
    base = make_image(H, W, seed=3)
    return np.stack([np.roll(base, (2 * t, 3 * t), (0, 1)) for t in range(n)])


def reference_tracks(model, frames, folder):
    hf, proc = hf_video_model(model), hf_processor(folder)
    sess = proc.init_video_session(video=list(frames), inference_device="cpu")
    proc.add_text_prompt(sess, PROMPT)
    out = {}
    for res in hf.propagate_in_video_iterator(sess, start_frame_idx=0):
        post = proc.postprocess_outputs(sess, res)
        out[res.frame_idx] = (post["object_ids"].tolist(), post["masks"].numpy())
    return out, sorted(sess.hotstart_removed_obj_ids)


def test_parity_concept_tracking(tmp_path):
    model = tiny_model(seed=2)
    frames = make_video()
    ref, ref_removed = reference_tracks(model, frames, tmp_path)
    session = VideoPredictor(model, device="cpu").start(frames, association=ASSOC)
    session.add_concept(0, PROMPT)
    ours = dict(session.propagate())
    assert sorted(ours) == sorted(ref) == list(range(T))
    ious = []
    for t in range(T):
        ids, masks = ref[t]
        assert [i - 1 for i in ours[t].track_ids] == ids, (t, ours[t].track_ids, ids)
        assert ours[t].names() == [PROMPT] * len(ids)
        ious.append([mask_iou(a, b) for a, b in zip(ours[t].masks, masks)])
    print(f"concept parity: ids {[ref[t][0] for t in range(T)]}, removed {ref_removed}")
    print("per-frame IoU", [round(min(v, default=1.0), 4) for v in ious])
    assert sorted(i - 1 for i in session.removed_ids) == ref_removed
    assert all(ref[t][0] for t in range(T))  # something is tracked on every frame
    assert min(min(v) for v in ious) >= 0.99
