"""Concept tracking bookkeeping: match detections to tracked masklets by mask IoU, as SAM 3 does.

Plain functions on tensors, no model: mask NMS of detections, the detection/track association
(`assoc_iou_thresh`, `trk_assoc_iou_thresh`, `new_det_thresh`), and per-track keep-alive and
hot-start counters that decide when a track ends. Defaults are the released model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class AssociationConfig:
    """Thresholds of SAM 3's video detector/tracker association (transformers' Sam3VideoConfig)."""

    score_threshold_detection: float = 0.5
    det_nms_thresh: float = 0.1
    assoc_iou_thresh: float = 0.1
    trk_assoc_iou_thresh: float = 0.5
    new_det_thresh: float = 0.7
    hotstart_delay: int = 15
    hotstart_unmatch_thresh: int = 8
    init_trk_keep_alive: int = 30
    max_trk_keep_alive: int = 30
    min_trk_keep_alive: int = -1
    max_lost_frames: int = 30


@dataclass
class TrackState:
    """Counters of one concept track: where it started, keep-alive, unmatched frames, lost run."""

    first_frame: int
    keep_alive: int
    unmatched: int = 0
    lost_run: int = 0


@dataclass
class Association:
    """One frame's matching. new: detection indices that start tracks; matched: track id ->
    detection indices overlapping it; unmatched: non-empty tracks no detection confirms;
    empty: tracks whose predicted mask is empty."""

    new: list[int]
    matched: dict[int, list[int]] = field(default_factory=dict)
    unmatched: list[int] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of bool masks a [N, H, W] and b [M, H, W]: [N, M] (0 where both are empty)."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return inter / union.clamp(min=1)


def nms_masks(
    scores: Tensor, masks: Tensor, score_threshold: float, iou_threshold: float
) -> Tensor:
    """Greedy mask NMS: bool keep [N] for detections scoring above `score_threshold` that overlap
    no higher-scoring kept detection by more than `iou_threshold`. masks: logits [N, H, W]."""
    keep = torch.zeros_like(scores, dtype=torch.bool)
    valid = torch.nonzero(scores > score_threshold).flatten()
    if valid.numel() == 0:
        return keep
    order = valid[torch.argsort(scores[valid], descending=True, stable=True)]
    ious = mask_iou(masks[order] > 0, masks[order] > 0)
    kept: list[int] = []
    for i in range(len(order)):
        if all(ious[i, j] <= iou_threshold for j in kept):
            kept.append(i)
    keep[order[kept]] = True
    return keep


def associate(
    det_masks: Tensor,
    det_scores: Tensor,
    trk_masks: Tensor,
    trk_ids: list[int],
    cfg: AssociationConfig,
    det_labels: Tensor | None = None,
    trk_labels: Tensor | None = None,
) -> Association:
    """Match detections (logits [N, H, W], scores [N]) to tracks (logits [M, H, W], ids [M]).

    A detection matches every track it overlaps by IoU >= assoc_iou_thresh (many-to-one); it
    starts a new track if it matches none and scores >= new_det_thresh. A non-empty track is
    unmatched unless some detection overlaps it by >= trk_assoc_iou_thresh. Labels (concept
    indices) keep detections of one concept from matching tracks of another.
    """
    det, trk = det_masks > 0, trk_masks > 0
    nonempty = trk.flatten(1).any(1) if len(trk_ids) else torch.zeros(0, dtype=torch.bool)
    empty = [i for i, ne in zip(trk_ids, nonempty.tolist()) if not ne]
    if det.shape[0] == 0 or not trk_ids:
        new = (det_scores >= cfg.new_det_thresh).nonzero().flatten().tolist() if not trk_ids else []
        unmatched = [i for i, ne in zip(trk_ids, nonempty.tolist()) if ne]
        return Association(new, {}, unmatched, empty)
    ious = mask_iou(det, trk)
    if det_labels is not None and trk_labels is not None:
        ious = torch.where(det_labels[:, None] == trk_labels[None], ious, torch.zeros_like(ious))
    trk_confirmed = (ious >= cfg.trk_assoc_iou_thresh).any(0)
    unmatched = [
        i for i, ne, ok in zip(trk_ids, nonempty.tolist(), trk_confirmed.tolist()) if ne and not ok
    ]
    hits = ious >= cfg.assoc_iou_thresh
    new = ((det_scores >= cfg.new_det_thresh) & ~hits.any(1)).nonzero().flatten().tolist()
    matched = {tid: hits[:, j].nonzero().flatten().tolist() for j, tid in enumerate(trk_ids)}
    matched = {tid: dets for tid, dets in matched.items() if dets}
    return Association(new, matched, unmatched, empty)


def update_tracks(
    states: dict[int, TrackState], assoc: Association, frame: int, cfg: AssociationConfig
) -> list[int]:
    """Advance keep-alive / hot-start counters after `associate`; returns the track ids to end.

    A track ends when it stays unmatched for `hotstart_unmatch_thresh` frames while it is
    still within `hotstart_delay` frames of its start (a false start), or when it has been
    unmatched or empty for `max_lost_frames` frames in a row (lost), with keep-alive spent.
    """
    ended = []
    for tid, st in states.items():
        if tid in assoc.matched:
            st.keep_alive = min(cfg.max_trk_keep_alive, st.keep_alive + 1)
            st.lost_run = 0
        elif tid in assoc.unmatched or tid in assoc.empty:
            st.keep_alive = max(cfg.min_trk_keep_alive, st.keep_alive - 1)
            st.lost_run += 1
            if tid in assoc.unmatched:
                st.unmatched += 1
        hot = abs(frame - st.first_frame) < cfg.hotstart_delay
        if (
            hot
            and st.unmatched >= cfg.hotstart_unmatch_thresh
            or st.lost_run >= cfg.max_lost_frames
            and st.keep_alive <= 0
        ):
            ended.append(tid)
    return ended
