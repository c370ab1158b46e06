"""Concept tracking bookkeeping: match detections to tracked masklets by mask IoU, as SAM 3 does.

Plain functions on tensors, no model: mask NMS of detections, the detection/track association
(`assoc_iou_thresh`, `trk_assoc_iou_thresh`, `new_det_thresh`), per-track keep-alive and
hot-start counters that decide when a track ends, and masklet confirmation. Defaults are the
released SAM 3 model's (transformers' `Sam3VideoModel`); the options Meta's SAM 3.1 video model
adds (intersection over the smaller mask, detections near the frame border dropped, masklet
confirmation) are off by default and on in `sam3_core.video.multiplex_concepts.SAM31_ASSOCIATION`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssociationConfig:
    """Thresholds of SAM 3's video detector/tracker association (transformers' Sam3VideoConfig).

    det_nms_thresh <= 0 turns detection NMS off; recondition_every_nth_frame = 0 turns off the
    periodic re-conditioning of tracks on strong detections (high_conf_thresh, high_iou_thresh),
    which writes the track's own mask to memory as a conditioning frame, or the detection's
    when recondition_on_trk_masks is False (to correct drift);
    suppress_overlap_thresh is transformers' suppress_overlapping_based_on_recent_occlusion;
    fill_hole_area: holes and specks up to this many low-res pixels are filled and removed in
    tracked masks (0: off); max_num_objects caps the concept tracks alive at once (new
    detections beyond it are dropped, lowest scores first).

    end_lost_after is ours, not the released model's: a track whose mask has been empty (or
    hidden behind another track) for this many frames in a row ends and its memory is freed;
    if the object comes back it is detected again under a new id. The released model keeps
    every track to the end of the video, so that memory and time grow with every object that
    ever appeared; 0 restores that.

    max_reconditioned_frames is ours too: how many re-conditioned frames per track stay
    conditioning frames (the newest; older ones become ordinary tracked frames and are
    forgotten as they age), so that memory and the object pointers attended stay bounded
    however long the video. SAM 3.1 attends to at most 4 conditioning frames. The released
    model keeps every one; None restores that. Prompted frames (clicks, a track's first
    frame) are never dropped.

    Meta's SAM 3.1 options (off here, the SAM 3 behaviour): det_nms_use_iom measures the NMS
    overlap as intersection over the smaller mask (IoM); use_iom_association measures every
    detection/track overlap (matching, confirmation, re-conditioning at high_iou_thresh) by IoM
    (Meta's `use_iom_recondition`); drop_ambiguous_matches: a detection overlapping several
    tracks by >= high_iou_thresh, or a track overlapped so by several detections, neither
    matches nor re-conditions (Meta's code, not transformers'); border_margin > 0 drops
    detections whose box centre lies within that fraction of the frame from an edge (Meta:
    0.025); masklet_confirmation > 0 hides a new track until it has been detected on that many
    consecutive frames (Meta: 3; the session looks that many frames minus one ahead, so a track
    confirmed then is shown from its first frame, and holds outputs back for at least that many
    frames; as Meta, only while hotstart_delay > 0 holds outputs back); recondition_from_logits
    re-conditions with Meta's 3.1 masks: the track's logits where they agree with the
    detection's, the detection's elsewhere (before the occlusion check, as Meta), given to the
    tracker as logits (thresholded at 0 after resizing), not as a mask thresholded at 0.5, for
    tracks whose
    object probability (not logit) exceeds high_conf_thresh (recondition_on_trk_masks is then
    ignored). suppress_unmatched_only_within_hotstart=False hides a track on
    frames where its keep-alive counter is <= 0 (transformers' option; Meta's 3.1 code computes
    but never applies it, so `SAM31_ASSOCIATION` keeps the default).
    """

    score_threshold_detection: float = 0.5
    det_nms_thresh: float = 0.1
    assoc_iou_thresh: float = 0.1
    trk_assoc_iou_thresh: float = 0.5
    new_det_thresh: float = 0.7
    hotstart_delay: int = 15
    hotstart_unmatch_thresh: int = 8
    hotstart_dup_thresh: int = 8
    init_trk_keep_alive: int = 30
    max_trk_keep_alive: int = 30
    min_trk_keep_alive: int = -1
    decrease_keep_alive_when_empty: bool = False
    recondition_every_nth_frame: int = 16
    high_conf_thresh: float = 0.8
    high_iou_thresh: float = 0.8
    recondition_on_trk_masks: bool = True
    suppress_overlap_thresh: float = 0.7
    fill_hole_area: int = 16
    max_num_objects: int = 10000
    end_lost_after: int = 90
    max_reconditioned_frames: int | None = 4
    suppress_unmatched_only_within_hotstart: bool = True
    det_nms_use_iom: bool = False
    use_iom_association: bool = False
    drop_ambiguous_matches: bool = False
    border_margin: float = 0.0
    masklet_confirmation: int = 0
    recondition_from_logits: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.border_margin < 0.5:
            raise ValueError(
                f"border_margin must be in [0, 0.5) (a fraction of the frame; 0 turns it off), "
                f"got {self.border_margin}"
            )
        if self.masklet_confirmation < 0:
            raise ValueError(
                "masklet_confirmation must be 0 (off) or the number of consecutive frames a new "
                f"track must be detected on to be shown, got {self.masklet_confirmation}"
            )
        if self.max_reconditioned_frames is not None and self.max_reconditioned_frames < 1:
            raise ValueError(
                "max_reconditioned_frames must be at least 1 (re-conditioned frames kept per "
                f"track) or None (keep all, as the released model), got "
                f"{self.max_reconditioned_frames}"
            )
        if self.end_lost_after < 0:
            raise ValueError(
                f"end_lost_after must be 0 (never end lost tracks) or a number of frames, "
                f"got {self.end_lost_after}"
            )
        if self.max_num_objects < 1:
            raise ValueError(
                f"max_num_objects must be at least 1, got {self.max_num_objects}: it is the "
                "number of concept tracks kept alive at once"
            )


@dataclass
class TrackState:
    """Counters of one concept track: first frame, keep-alive, unmatched frames, the frames it
    shared a detection with an earlier track (per that track's id), last occluded frame,
    consecutive frames its mask has been empty, consecutive frames it has been detected and
    whether that has confirmed it (`masklet_confirmation`)."""

    first_frame: int
    keep_alive: int
    unmatched: int = 0
    overlaps: dict[int, int] = field(default_factory=dict)
    last_occluded: int | None = None
    empty_run: int = 0
    detected_run: int = 0
    confirmed: bool = False


@dataclass
class Association:
    """One frame's matching. new: detection indices that start tracks; matched: track id ->
    detection indices overlapping it; unmatched: non-empty tracks no detection confirms;
    empty: tracks whose predicted mask is empty; det_tracks: detection index -> the track ids
    it overlaps; recondition: track id -> the one strong detection that may re-condition it."""

    new: list[int]
    matched: dict[int, list[int]] = field(default_factory=dict)
    unmatched: list[int] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)
    det_tracks: dict[int, list[int]] = field(default_factory=dict)
    recondition: dict[int, int] = field(default_factory=dict)


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of bool masks a [N, H, W] and b [M, H, W]: [N, M] (0 where both are empty)."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return inter / union.clamp(min=1)


def mask_iom(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over the smaller mask (IoM) of bool masks a [N, H, W] and b [M, H, W]:
    [N, M] (0 where either is empty). A mask inside a larger one scores 1."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    smaller = torch.minimum(a.sum(1)[:, None], b.sum(1)[None])
    return (a @ b.T) / smaller.clamp(min=1)


def mask_overlap(a: Tensor, b: Tensor, iom: bool) -> Tensor:
    """`mask_iom` if `iom`, else `mask_iou`: [N, M] for bool masks [N, H, W] and [M, H, W]."""
    return mask_iom(a, b) if iom else mask_iou(a, b)


def away_from_border(boxes: Tensor, margin: float) -> Tensor:
    """bool [N]: boxes (normalised xyxy [N, 4]) whose centre lies more than `margin` (a
    fraction of the frame) from every edge, as Meta's SAM 3.1 video model keeps them."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > margin) & (cx < 1 - margin) & (cy > margin) & (cy < 1 - margin)


def nms_masks(
    scores: Tensor,
    masks: Tensor,
    score_threshold: float,
    iou_threshold: float,
    groups: Tensor | None = None,
    use_iom: bool = False,
) -> Tensor:
    """Greedy mask NMS: bool keep [N] for detections scoring above `score_threshold` that overlap
    no higher-scoring kept detection of their group (concept index, [N]; default one group) by
    more than `iou_threshold` (<= 0: no NMS), overlap measured by IoU, or by IoM with `use_iom`.
    masks: logits [N, H, W]."""
    keep = torch.zeros_like(scores, dtype=torch.bool)
    valid = torch.nonzero(scores > score_threshold).flatten()
    if valid.numel() == 0 or iou_threshold <= 0:
        keep[valid] = True
        return keep
    order = valid[torch.argsort(scores[valid], descending=True, stable=True)]
    ious = mask_overlap(masks[order] > 0, masks[order] > 0, use_iom)
    if groups is not None:
        ious = ious * (groups[order][:, None] == groups[order][None])
    ious = ious.cpu()  # compared one by one: on the host (one copy, not N^2 device syncs)
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

    Without tracks every detection starts one. Otherwise a detection matches every track it
    overlaps by IoU (IoM with `use_iom_association`) >= assoc_iou_thresh (many-to-one) and
    starts a new track if it matches none and scores >= new_det_thresh. A non-empty track is
    unmatched unless some detection overlaps it by >= trk_assoc_iou_thresh. Labels (concept
    indices) keep detections of one concept from matching tracks of another. With
    `drop_ambiguous_matches`, overlaps >= high_iou_thresh shared by several tracks or several
    detections are zeroed (after new detections and unmatched tracks are decided, as Meta).
    """
    det, trk = det_masks > 0, trk_masks > 0
    if not trk_ids:
        return Association(list(range(det.shape[0])))
    nonempty = trk.flatten(1).any(1).tolist()
    empty = [i for i, ne in zip(trk_ids, nonempty) if not ne]
    if det.shape[0] == 0:
        return Association([], {}, [i for i, ne in zip(trk_ids, nonempty) if ne], empty)
    ious = mask_overlap(det, trk, cfg.use_iom_association)
    if det_labels is not None and trk_labels is not None:
        ious = torch.where(det_labels[:, None] == trk_labels[None], ious, torch.zeros_like(ious))
    trk_confirmed = (ious >= cfg.trk_assoc_iou_thresh).any(0).tolist()
    unmatched = [i for i, ne, ok in zip(trk_ids, nonempty, trk_confirmed) if ne and not ok]
    is_new = (det_scores >= cfg.new_det_thresh) & ~(ious >= cfg.assoc_iou_thresh).any(1)
    if cfg.drop_ambiguous_matches:
        strong = ious >= cfg.high_iou_thresh
        ambiguous = (strong.sum(1) > 1)[:, None] | (strong.sum(0) > 1)[None]
        ious = torch.where(ambiguous, torch.zeros_like(ious), ious)
    hits = ious >= cfg.assoc_iou_thresh
    det_tracks = {
        d: [trk_ids[j] for j in hits[d].nonzero().flatten().tolist()] for d in range(len(det))
    }
    matched: dict[int, list[int]] = {}
    for d, tids in det_tracks.items():
        for tid in tids:
            matched.setdefault(tid, []).append(d)
    best_iou, best = ious.max(1)
    strong = (det_scores >= cfg.high_conf_thresh) & ~is_new & (best_iou >= cfg.high_iou_thresh)
    recondition = {trk_ids[int(best[d])]: d for d in strong.nonzero().flatten().tolist()}
    new = is_new.nonzero().flatten().tolist()
    return Association(new, matched, unmatched, empty, det_tracks, recondition)


def limit_new_tracks(new: list[int], scores: Tensor, n_tracks: int, max_tracks: int) -> list[int]:
    """The new detections that may start tracks when `n_tracks` are alive: all of them in order
    if they fit under `max_tracks`, else the best-scoring ones, best first (as the reference)."""
    room = max(max_tracks - n_tracks, 0)
    if len(new) <= room:
        return new
    logger.warning(
        "max_num_objects=%d reached: %d of %d new detections dropped",
        max_tracks,
        len(new) - room,
        len(new),
    )
    best = torch.topk(scores[torch.tensor(new, device=scores.device)], k=room).indices
    return [new[i] for i in best.tolist()]


def update_confirmation(
    states: dict[int, TrackState], ids: list[int], detected: set[int], needed: int
) -> set[int]:
    """Count, for the tracks `ids`, the consecutive frames they were `detected` (matched by a
    detection or started by one); a track detected on `needed` frames in a row is confirmed
    for good (Meta's masklet confirmation). Returns the ids still unconfirmed."""
    for tid in ids:
        st = states[tid]
        st.detected_run = st.detected_run + 1 if tid in detected else 0
        st.confirmed = st.confirmed or st.detected_run >= needed
    return {tid for tid in ids if not states[tid].confirmed}


def update_tracks(
    states: dict[int, TrackState],
    assoc: Association,
    frame: int,
    cfg: AssociationConfig,
    reverse: bool = False,
) -> list[int]:
    """Advance keep-alive / hot-start counters after `associate`; returns the track ids to end.

    Within `hotstart_delay` frames of its start a track ends when it has been unmatched on
    `hotstart_unmatch_thresh` frames (a false start), or when it has shared a detection with an
    earlier track `hotstart_dup_thresh` times (a duplicate; counted once per shared detection,
    as the reference does).
    """
    for tid in {t for tids in assoc.det_tracks.values() for t in tids}:
        states[tid].keep_alive = min(cfg.max_trk_keep_alive, states[tid].keep_alive + 1)
    for tid in assoc.unmatched:
        states[tid].unmatched += 1
        states[tid].keep_alive = max(cfg.min_trk_keep_alive, states[tid].keep_alive - 1)
    if cfg.decrease_keep_alive_when_empty:
        for tid in assoc.empty:
            states[tid].keep_alive = max(cfg.min_trk_keep_alive, states[tid].keep_alive - 1)
    pick = max if reverse else min
    for tids in assoc.det_tracks.values():
        if len(tids) < 2:
            continue
        first = pick(tids, key=lambda i: states[i].first_frame)
        for tid in tids:
            if tid != first:
                states[tid].overlaps[first] = states[tid].overlaps.get(first, 0) + 1

    def hot(st: TrackState) -> bool:
        return (
            frame - st.first_frame if not reverse else st.first_frame - frame
        ) < cfg.hotstart_delay

    ended = []
    for tid, st in states.items():
        false_start = st.unmatched >= cfg.hotstart_unmatch_thresh
        duplicate = any(n >= cfg.hotstart_dup_thresh for n in st.overlaps.values())
        if hot(st) and (false_start or duplicate):
            ended.append(tid)
    return ended


def suppressed_tracks(
    states: dict[int, TrackState], ids: list[int], ended: list[int], cfg: AssociationConfig
) -> list[int]:
    """With `suppress_unmatched_only_within_hotstart=False`, the tracks of `ids` (not `ended`)
    hidden on this frame: unmatched before and keep-alive down to <= 0 (transformers' rule)."""
    if cfg.suppress_unmatched_only_within_hotstart:
        return []
    return [
        tid
        for tid in ids
        if tid not in ended and states[tid].unmatched > 0 and states[tid].keep_alive <= 0
    ]


def lost_tracks(
    states: dict[int, TrackState], ids: list[int], empty: list[bool], cfg: AssociationConfig
) -> list[int]:
    """Count the frames in a row each track's mask has been empty (`empty` per id, this
    frame); returns the ids empty for `end_lost_after` frames (none when it is 0)."""
    for tid, e in zip(ids, empty):
        states[tid].empty_run = states[tid].empty_run + 1 if e else 0
    if cfg.end_lost_after <= 0:
        return []
    return [tid for tid in ids if states[tid].empty_run >= cfg.end_lost_after]
