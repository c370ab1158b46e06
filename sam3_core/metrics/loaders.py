"""Ground truth and predictions from files into an EvalSet.

Ground truth: a COCO instances JSON (concepts = category names; `is_instance_exhaustive` on an
image entry marks it exhaustive), or an SA-Co file (each image entry is one (image, noun
phrase) pair with `text_input`; only exhaustive pairs are evaluated, as Meta's evaluator).
Predictions: COCO results (a list; image and category ids of the ground truth), a COCO
instances JSON with scores (images matched by `file_name`, categories by name; what
`sam3 segment --format coco` and a job's `annotations.json` hold), or a dataset job's output
folder (Parquet shards; records matched to ground-truth images by path).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path, PurePosixPath

from sam3_core.metrics.data import EvalDataError, EvalSet
from sam3_core.metrics.thresholds import concept_key


def read_json(path: Path, what: str):
    """The JSON in `path`, or EvalDataError naming the file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise EvalDataError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EvalDataError(f"{what} file {path} is not readable JSON: {err}") from None


def check_coco(data, path: Path, what: str) -> dict:
    """A COCO instances dict with images, annotations and categories, or EvalDataError."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise EvalDataError(
            f"{what} file {path} is not a COCO instances file (a JSON object with "
            '"images", "annotations" and "categories")'
        )
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise EvalDataError(f'{what} file {path}: "{key}" must be a list')
    return data


def image_size(image: dict, path: Path) -> tuple[int, int]:
    """(H, W) of a COCO image entry."""
    try:
        return int(image["height"]), int(image["width"])
    except (KeyError, TypeError, ValueError):
        raise EvalDataError(
            f"{path}: image {image.get('id')!r} needs integer height and width"
        ) from None


def path_keys(name: str) -> list[str]:
    """A path and each shorter tail of it ("a/b/c.jpg", "b/c.jpg", "c.jpg"): how a record id
    (full path or URI) finds the ground-truth image it names."""
    parts = PurePosixPath(str(name).replace("\\", "/")).parts
    return ["/".join(parts[i:]) for i in range(len(parts))]


def load_eval_set(
    gt_path: str | os.PathLike, pred_path: str | os.PathLike, exhaustive: bool = False
) -> EvalSet:
    """An EvalSet from a ground-truth file and predictions (file or job output folder).
    exhaustive: treat every image as exhaustively labelled (else `is_instance_exhaustive`)."""
    gt_path, pred_path = Path(gt_path), Path(pred_path)
    gt = check_coco(read_json(gt_path, "ground-truth"), gt_path, "ground-truth")
    images = {img.get("id"): img for img in gt["images"]}
    preds, notes = load_predictions(pred_path, gt, gt_path)
    sa_co = bool(images) and all("text_input" in img for img in images.values())
    categories = {c.get("id"): str(c.get("name")) for c in gt.get("categories", [])}
    if sa_co:
        concepts = list(dict.fromkeys(str(img["text_input"]) for img in images.values()))
    else:
        concepts = list(categories.values())
    evalset = EvalSet(concepts=concepts)
    evalset.notes.extend(notes)
    gts: dict = defaultdict(list)
    for ann in gt.get("annotations", []):
        gts[ann.get("image_id")].append(ann)
    flagged = 0
    predicted: set[str] = set()
    for image_id, image in images.items():
        if image_id not in preds.images:
            continue
        gt_regions = [
            {
                **ann,
                "concept": str(image["text_input"])
                if sa_co
                else categories.get(ann.get("category_id"), ""),
            }
            for ann in gts[image_id]
        ]
        pred_regions = [{**ann, "concept": preds.concept(ann, image)} for ann in preds.of(image_id)]
        predicted.update(r["concept"] for r in pred_regions)
        flag = image.get("is_instance_exhaustive")
        flagged += flag is not None
        labelled = [str(image["text_input"])] if sa_co else None
        if sa_co and not (flag or exhaustive):
            evalset.dropped += len(pred_regions)
            continue
        evalset.add_image(
            str(image.get("file_name", image_id)) if not sa_co else f"{image_id}",
            image_size(image, gt_path),
            gt=gt_regions,
            pred=pred_regions,
            exhaustive=bool(exhaustive or flag),
            concepts=labelled,
        )
    concept_overlap(evalset, predicted)
    if not exhaustive and not flagged:
        evalset.notes.append(
            "no image is marked is_instance_exhaustive and --exhaustive is not set: only "
            "concepts present in an image's labels are evaluated there, so there are no "
            "negative pairs and IL_MCC and cgF1 are 0; pass --exhaustive if every concept "
            "is labelled on every image"
        )
    return evalset


class Predictions:
    """Predictions grouped by ground-truth image id; `concept` names an annotation's concept."""

    def __init__(self, images: set, by_image: dict, names: dict | None) -> None:
        self.images = images  # ground-truth image ids the predictions cover
        self.by_image = by_image
        self.names = names  # category id -> name (COCO results), None: "concept" in the row

    def of(self, image_id) -> list[dict]:
        """The prediction rows of one ground-truth image."""
        return self.by_image.get(image_id, [])

    def concept(self, ann: dict, image: dict) -> str:
        """A prediction's concept name (SA-Co pairs: the pair's noun phrase)."""
        if "text_input" in image and self.names is not None:
            return str(image["text_input"])
        if self.names is None:
            return str(ann.get("concept", ""))
        return self.names.get(ann.get("category_id"), "")


def load_predictions(pred_path: Path, gt: dict, gt_path: Path) -> tuple[Predictions, list[str]]:
    """Predictions from a job output folder, COCO results or a COCO file, with notes."""
    if pred_path.is_dir():
        return job_predictions(pred_path, gt)
    data = read_json(pred_path, "predictions")
    gt_ids = {img.get("id") for img in gt["images"]}
    if isinstance(data, list):  # COCO results: ids of the ground truth
        unknown = {d.get("image_id") for d in data} - gt_ids
        if unknown:
            raise EvalDataError(
                f"predictions file {pred_path}: image ids {sorted(map(str, unknown))[:5]} are "
                f"not in the ground truth {gt_path}; COCO results must use its image ids"
            )
        by_image: dict = defaultdict(list)
        for row in data:
            by_image[row.get("image_id")].append(row)
        names = {c.get("id"): str(c.get("name")) for c in gt.get("categories", [])}
        return Predictions(gt_ids, by_image, names), []
    data = check_coco(data, pred_path, "predictions")
    names = {c.get("id"): str(c.get("name")) for c in data.get("categories", [])}
    by_id = {img.get("id"): img.get("file_name", "") for img in data["images"]}
    rows: dict = defaultdict(list)
    for ann in data.get("annotations", []):
        rows[by_id.get(ann.get("image_id"))].append(
            {**ann, "concept": names.get(ann.get("category_id"), "")}
        )
    matched, notes = match_images(list(by_id.values()), gt)
    by_image = {gt_id: rows[name] for name, ids in matched.items() for gt_id in ids}
    return Predictions(set(by_image), by_image, None), notes


def job_predictions(out_dir: Path, gt: dict) -> tuple[Predictions, list[str]]:
    """Predictions from a dataset job's shards (error records are left out)."""
    from sam3_core.jobs.records import iter_records, list_shards

    if not list_shards(out_dir):
        raise EvalDataError(
            f"{out_dir} holds no job output (no shards/*.parquet): pass the out folder of "
            "`sam3 segment --out` / run_job, a COCO results file or a COCO file"
        )
    records = {r["id"]: r for r in iter_records(out_dir) if r["error"] is None}
    matched, notes = match_images(list(records), gt)
    by_image = {}
    for record_id, ids in matched.items():
        for gt_id in ids:
            by_image[gt_id] = [dict(inst) for inst in records[record_id]["instances"] or []]
    try:
        from sam3_core.jobs.spec import read_job

        low = read_job(out_dir)["signature"].get("score_threshold")
        notes.append(f"the job kept predictions at score >= {low}: lower thresholds show nothing")
    except (ValueError, KeyError, TypeError):
        pass
    return Predictions(set(by_image), by_image, None), notes


def match_images(names: list[str], gt: dict) -> tuple[dict, list[str]]:
    """{prediction image name: [ground-truth image ids]} by file_name (a full path matches the
    ground truth's relative name by its tail; SA-Co files list an image once per noun
    phrase), and notes on what did not match."""
    by_name: dict[str, list] = defaultdict(list)
    for img in gt["images"]:
        by_name[str(img.get("file_name", "")).replace("\\", "/")].append(img.get("id"))
    matched: dict = {}
    for name in names:
        hit = next((by_name[k] for k in path_keys(name) if k in by_name), None)
        if hit is not None:
            matched[name] = hit
    notes = []
    if len(matched) < len(names):
        notes.append(
            f"{len(names) - len(matched)} predicted images have no ground-truth image with "
            "their file_name: left out"
        )
    covered = {i for ids in matched.values() for i in ids}
    missing = len(gt["images"]) - len(covered)
    if missing:
        notes.append(f"{missing} ground-truth images have no predictions: left out")
    if not matched:
        raise EvalDataError(
            "no predicted image matches a ground-truth image by file_name (e.g. "
            f"{names[:1]} vs {[i.get('file_name') for i in gt['images'][:1]]}); the "
            "ground truth's file_name must be the image path or its tail"
        )
    return matched, notes


def concept_overlap(evalset: EvalSet, predicted: set[str]) -> None:
    """EvalDataError when no predicted concept is one of the evaluated concepts."""
    known = {concept_key(c) for c in evalset.concepts}
    if predicted and not known & {concept_key(p) for p in predicted}:
        raise EvalDataError(
            f"no predicted concept ({sorted(predicted)[:5]}) is a ground-truth category "
            f"({evalset.concepts[:5]}); prompt with the category names"
        )
