"""One frame of concept tracking, as transformers' `Sam3VideoModel` does it.

Detect (score threshold, optional mask NMS, optionally no detections near the border), clean
the tracks' propagated masks (small holes and specks), match detections to them, start tracks
for new detections up to `max_num_objects` (their masks given to the tracker as mask prompts),
advance the hot-start counters (false starts and duplicates end), re-condition tracks on strong
detections every `recondition_every_nth_frame` frames, blank tracks hidden behind a more
persistent one, write the tracks' memories from their (constrained) masks, end tracks empty
for `end_lost_after` frames, and record the tracks not confirmed yet (`masklet_confirmation`)
in the host's `unconfirmed`. Used by `sam3_core.video.session` and
`sam3_core.video.multiplex_concepts`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sam3_core.prompts import ConceptBatch
from sam3_core.video.association import (
    TrackState,
    associate,
    away_from_border,
    limit_new_tracks,
    lost_tracks,
    nms_masks,
    suppressed_tracks,
    update_confirmation,
    update_tracks,
)
from sam3_core.video.masklets import (
    ALWAYS_OCCLUDED,
    NEVER_OCCLUDED,
    NO_OBJECT,
    fill_small_regions,
    suppress_recently_occluded,
    suppress_shrunk,
)
from sam3_core.video.outputs import Outputs
from sam3_core.video.state import ConceptHost, CurrentFrame, FrameResult, TrackedObject


def merge_concepts(old: ConceptBatch | None, new: ConceptBatch) -> ConceptBatch:
    """`old`'s rows unchanged (labels index them), then `new`'s rows not already in `old`
    (same text and exemplars)."""
    if old is None:
        return new
    rows = list(zip(old.texts, old.boxes, old.positives, old.names))
    rows += [r for r in zip(new.texts, new.boxes, new.positives, new.names) if r not in rows]
    texts, boxes, positives, names = (list(c) for c in zip(*rows))
    return ConceptBatch(texts, boxes, positives, names, old.size)


def detect(session: ConceptHost, feats: CurrentFrame) -> tuple[Tensor, Tensor, Tensor]:
    """Detections kept on one frame: scores [N], mask logits [N, h, w], labels [N] (1-based)."""
    cfg = session.association
    out = session.detect_concepts(feats.image)
    scores = out.scores.float()
    rows, queries = (scores > cfg.score_threshold_detection).nonzero(as_tuple=True)
    scores = scores[rows, queries]
    masks = out.mask_logits.select(rows, queries).float()
    keep = nms_masks(
        scores, masks, cfg.score_threshold_detection, cfg.det_nms_thresh, rows, cfg.det_nms_use_iom
    )
    if cfg.border_margin > 0:  # after NMS, as Meta's
        keep &= away_from_border(out.boxes[rows, queries].float(), cfg.border_margin)
    return scores[keep], masks[keep], rows[keep] + 1


def concept_step(
    session: ConceptHost,
    t: int,
    feats: CurrentFrame,
    tracked: list[tuple[TrackedObject, FrameResult]],
    reverse: bool,
    settled: Outputs | None = None,
) -> Outputs:
    """Detection + association on frame `t` given the tracks' propagated results (whose
    memories are not stored yet); stores memories, starts and ends tracks; returns outputs.

    `settled`: tracks whose output on `t` is already final (an earlier call on `t`); their
    detections start no new tracks, and they are otherwise left alone."""
    cfg, states = session.association, session.track_states
    scores, masks, labels = detect(session, feats)
    ids = [o.obj_id for o, _ in tracked]
    trk = torch.cat([r.low_res for _, r in tracked]).float() if tracked else masks[:0]
    trk = fill_small_regions(trk, cfg.fill_hole_area)
    trk_labels = torch.tensor([o.label for o, _ in tracked], dtype=torch.long, device=masks.device)
    assoc = associate(masks, scores, trk, ids, cfg, labels, trk_labels)
    if settled:  # their detections start no tracks (matched against every track)
        low = torch.cat([trk, *(v[1].float().to(trk.device) for v in settled.values())])
        settled_labels = [v[0].label for v in settled.values()]
        groups = torch.cat([trk_labels, trk_labels.new_tensor(settled_labels)])
        assoc.new = associate(masks, scores, low, [*ids, *settled], cfg, labels, groups).new
    alive = len(ids) + len(settled or ())
    assoc.new = limit_new_tracks(assoc.new, scores, alive, cfg.max_num_objects)
    new_ids = [session.new_id() for _ in assoc.new]
    ended = update_tracks(states, assoc, t, cfg, reverse)
    recondition = set()
    if cfg.recondition_every_nth_frame > 0 and t % cfg.recondition_every_nth_frame == 0:
        # the tracker's object score: its logit (transformers), its probability (Meta 3.1)
        score = {o.obj_id: r.score.float().reshape(-1)[0] for o, r in tracked}
        if cfg.recondition_from_logits:
            score = {i: s.sigmoid() for i, s in score.items()}
        recondition = {i for i in assoc.recondition if float(score[i]) > cfg.high_conf_thresh}
    outputs: Outputs = {}
    lost: list[int] = []
    if tracked:
        if recondition and cfg.recondition_from_logits:  # Meta 3.1: before the occlusion check
            for i, obj in enumerate(o for o, _ in tracked):
                if obj.obj_id in recondition:
                    trk[i] = recondition_logits(trk[i], masks[assoc.recondition[obj.obj_id]])
        if cfg.suppress_overlap_thresh > 0:
            default = [ALWAYS_OCCLUDED if i in ended else NEVER_OCCLUDED for i in ids]
            last = [states[i].last_occluded for i in ids]
            last = [d if v is None else v for v, d in zip(last, default)]
            hidden = suppress_recently_occluded(
                trk,
                torch.tensor(last, device=trk.device),  # indexed by the tracks' group indices
                trk_labels,
                cfg.suppress_overlap_thresh,
                reverse,
            )
            occluded = (~(trk > 0).flatten(1).any(1) | hidden).tolist()  # one sync, not N
            for i, tid in enumerate(ids):
                states[tid].last_occluded = t if occluded[i] else last[i]
            trk[hidden] = NO_OBJECT
        empty = (~(trk > 0).flatten(1).any(1)).tolist()
        lost = [i for i in lost_tracks(states, ids, empty, cfg) if i not in ended]
        memory = trk
        from_det = not cfg.recondition_on_trk_masks and not cfg.recondition_from_logits
        if recondition and from_det:
            memory = trk.clone()
            for i, obj in enumerate(o for o, _ in tracked):
                if obj.obj_id in recondition:
                    memory[i] = (masks[assoc.recondition[obj.obj_id]] >= 0.5).float()
        cond = recondition
        if recondition and cfg.recondition_from_logits:  # Meta 3.1: the detections' logits
            cond = {i: masks[assoc.recondition[i]] for i in recondition}  # give the pointers
        _remember_tracks(session, tracked, memory, trk_labels, t, feats, reverse, cond)
        for i, (obj, r) in enumerate(tracked):
            # a re-conditioned track outputs its detection (the reference does so; Meta 3.1:
            # the re-conditioning logits, in `trk` already)
            d = assoc.recondition.get(obj.obj_id) if obj.obj_id in recondition else None
            low = trk[i : i + 1] if d is None or cfg.recondition_from_logits else masks[d][None]
            outputs[obj.obj_id] = (obj, low, r.score.float().sigmoid().reshape(()))
        for tid in suppressed_tracks(states, ids, ended, cfg):
            outputs.pop(tid, None)
    new_items = []
    shown = fill_small_regions(masks[assoc.new], cfg.fill_hole_area)  # outputs only
    for j, (d, oid) in enumerate(zip(assoc.new, new_ids)):
        obj = TrackedObject(oid, label=int(labels[d]))
        session.objects[oid] = obj
        states[oid] = TrackState(t, cfg.init_trk_keep_alive)
        new_items.append((obj, session.mask_result(feats, masks[d][None, None])))
        outputs[oid] = (obj, shown[j : j + 1], scores[d])
    session.remember(new_items, t, feats, binarize=True, cond=True, reverse=reverse)
    for tid in ended:  # false starts and duplicates: hidden on the held frames too
        session.remove_object(tid)
        session.removed_ids.add(tid)
        outputs.pop(tid, None)
    for tid in lost:  # empty for a while: earlier frames keep it
        session.remove_object(tid)
        session.lost_ids.add(tid)
    if cfg.masklet_confirmation > 0:
        current = [i for i in [*ids, *new_ids] if i in states]  # not ended or lost
        detected = set(assoc.matched) | set(new_ids)
        pending = update_confirmation(states, current, detected, cfg.masklet_confirmation)
        # merged with what an earlier call on `t` recorded for the tracks settled there
        pending |= session.unconfirmed.get(t, set()) - set(current)
        if pending:
            session.unconfirmed[t] = pending
        else:
            session.unconfirmed.pop(t, None)
    return outputs


def hide_unconfirmed(
    outputs: Outputs,
    unconfirmed: dict[int, set[int]],
    f: int,
    reverse: bool,
    confirmation: int,
    last: int,
) -> Outputs:
    """`outputs` of frame f without the tracks still unconfirmed `confirmation` - 1 frames
    later in the pass (Meta's look-ahead, clamped to the pass's `last` frame, so that a pass
    cut short still hides them; nothing hidden with `confirmation` 0)."""
    ahead = confirmation - 1
    if ahead < 0 or not unconfirmed:
        return outputs
    later = max(f - ahead, last) if reverse else min(f + ahead, last)
    hidden = unconfirmed.get(later, set())
    return {i: v for i, v in outputs.items() if i not in hidden}


def recondition_logits(track: Tensor, detection: Tensor) -> Tensor:
    """Meta 3.1's re-conditioning mask (logits [h, w]): the track's logits where they agree in
    sign with the detection's, the detection's elsewhere (so its mask is the detection's)."""
    return torch.where((track > 0) == (detection > 0), track, detection)


def _remember_tracks(
    session: ConceptHost, tracked, trk, trk_labels, t, feats, reverse, recondition
):
    """Memories of the tracked masks: tracks that would shrink under the non-overlap constraint
    are written as absent; object scores come from the mask areas (+-10)."""
    masks = suppress_shrunk(trk[:, None], trk_labels)
    present = (masks > 0).flatten(1).any(1, keepdim=True)
    score = torch.where(present, 10.0, -10.0)
    embed_dtype = feats.tracker.image_embed.dtype
    session.remember(
        tracked, t, feats, False, recondition, reverse, masks.to(embed_dtype), score, True
    )


__all__ = ["concept_step", "detect", "hide_unconfirmed", "merge_concepts", "recondition_logits"]
