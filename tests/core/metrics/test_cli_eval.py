"""`sam3 eval` end to end: on COCO files written here, and on a dataset job's output made by
run_job with a tiny random model."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from sam3_core.cli import eval as eval_cli
from sam3_core.cli import main
from sam3_core.jobs import JobSpec, run_job
from sam3_core.metrics import EvalSet, evaluate, load_thresholds
from tests.core.helpers import make_image, save_checkpoint, tiny_model
from tests.core.metrics.helpers import box_result, square_annotation


def sam3(argv: list[str]) -> int:
    """`sam3 ...` through the real entry point (`eval` is one of its COMMANDS)."""
    return main(argv)


def eval_report(folder, gt, pred, *flags: str) -> tuple[int, dict]:
    """Write gt.json and pred.json (None: keep the file there) to `folder`, run `sam3 eval` on
    them with `flags`; (exit code, the JSON report)."""
    for name, content in (("gt.json", gt), ("pred.json", pred)):
        if content is not None:
            (folder / name).write_text(json.dumps(content))
    argv = ["--gt", str(folder / "gt.json"), "--pred", str(folder / "pred.json")]
    rc = sam3(["eval", *argv, *flags, "--json", str(folder / "r.json")])
    return rc, json.loads((folder / "r.json").read_text()) if rc == 0 else {}


def sa_co_gt(pairs: list[tuple[str, str, bool]], h: int = 30, w: int = 40) -> dict:
    """SA-Co ground truth: one image entry (id 1, 2, ...) per (file, noun phrase, exhaustive)
    pair, the SQUARE instance on pair 1 only."""
    images = [
        {
            "id": i,
            "file_name": name,
            "text_input": phrase,
            "is_instance_exhaustive": exhaustive,
            "height": h,
            "width": w,
        }
        for i, (name, phrase, exhaustive) in enumerate(pairs, 1)
    ]
    categories = [{"id": 1, "name": "object"}]
    return {"images": images, "categories": categories, "annotations": [square_annotation(1, 1)]}


def test_register_alone():
    # the module's own parser: `register` adds `eval` with its run function
    parser = argparse.ArgumentParser(prog="sam3")
    eval_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", "--gt", "g.json", "--pred", "p.json", "--calibrate"])
    assert args.run is eval_cli.evaluate_command and args.metric == "cgF1"


@pytest.fixture()
def coco_files(tmp_path):
    """cat on im1 (found at 0.9) and im2 (found at 0.4); a dog false alarm on im3 at 0.6;
    every image exhaustive through is_instance_exhaustive except im4 (not flagged)."""
    h, w = 30, 40
    images = [
        {
            "id": i,
            "file_name": f"im{i}.png",
            "height": h,
            "width": w,
            "is_instance_exhaustive": i != 4,
        }
        for i in (1, 2, 3, 4)
    ]
    gt = {
        "images": images,
        "annotations": [square_annotation(1, 1), square_annotation(2, 2)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    preds = [
        box_result(1, 1, 5, 5, 10, 10, h, w, 0.9),
        box_result(2, 1, 5, 5, 10, 10, h, w, 0.4),
        box_result(3, 2, 20, 10, 8, 8, h, w, 0.6),
        box_result(4, 2, 20, 10, 8, 8, h, w, 0.95),  # im4 is not exhaustive: left out
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    return tmp_path


def test_eval_coco_files(coco_files, capsys):
    d = coco_files
    rc, report = eval_report(d, None, None, "--plot", str(d / "p.png"))
    assert rc == 0
    out = capsys.readouterr()
    assert "cat" in out.out and "overall" in out.out and "cgF1" in out.out
    assert "1 predictions are on (image, concept) pairs that are not evaluated" in out.err
    cat, dog = report["concepts"]["cat"], report["concepts"]["dog"]
    # at 0.5: cat found on im1, missed on im2 (0.4 dropped); im3 negative -> IL_TP 1, IL_FN 1,
    # IL_TN 1 -> MCC = (1*1 - 0)/sqrt(1*2*1*2) = 0.5; pmF1: TP 1, FN 1 -> 2/3 -> cgF1 33.3
    assert (cat["IL_TP"], cat["IL_FN"], cat["IL_TN"]) == (1, 1, 1)
    assert cat["IL_MCC"] == pytest.approx(0.5) and cat["cgF1"] == pytest.approx(100 / 3)
    assert dog["IL_FP"] == 1 and dog["pairs"] == 3  # im4 (not exhaustive, no dog) left out
    assert report["overall"]["AP_mask"] is not None and cat["AP_mask"] == pytest.approx(100.0)
    assert Image.open(d / "p.png").format == "PNG"


def test_eval_calibrate_writes_thresholds(coco_files, capsys):
    d = coco_files
    rc, report = eval_report(d, None, None, "--calibrate", "--thresholds-out", str(d / "t.json"))
    assert rc == 0
    th = load_thresholds(d / "t.json")
    # cat: keep 0.4 and 0.9 (both right) -> lowest score 0.4; dog: only a false alarm (0.6)
    # -> keep none: (0.6 + 1) / 2 = 0.8
    assert th.for_concept("cat") == pytest.approx(0.4) and th.for_concept("dog") == 0.8
    assert th.metric == "cgF1" and th.source["pairs"] == 6
    assert report["concepts"]["cat"]["cgF1"] == pytest.approx(100.0)
    assert report["baseline"]["concepts"]["cat"]["cgF1"] == pytest.approx(100 / 3)
    assert "calibrated" in capsys.readouterr().out
    # the file evaluates back to the same figures
    rc, again = eval_report(d, None, None, "--thresholds", str(d / "t.json"))
    assert rc == 0 and again["concepts"]["cat"]["cgF1"] == pytest.approx(100.0)


def test_eval_pillow_plot_without_matplotlib(coco_files, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails -> Pillow drawing
    d = coco_files
    rc, _ = eval_report(d, None, None, "--no-ap", "--plot", str(d / "pil.png"))
    assert rc == 0
    image = np.asarray(Image.open(d / "pil.png").convert("RGB"))
    assert image.shape == (400, 640, 3) and (image != 255).any()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threshold", "0.3", "--thresholds", "x.json"], "not both"),
        (["--thresholds-out", "t.json"], "needs --calibrate"),
        (["--thresholds", "missing.json"], "does not exist"),
    ],
)
def test_eval_bad_options(coco_files, capsys, extra, message):
    d = coco_files
    rc = sam3(["eval", "--gt", str(d / "gt.json"), "--pred", str(d / "pred.json"), *extra])
    assert rc == 2 and message in capsys.readouterr().err


def test_eval_bad_files(coco_files, capsys):
    d = coco_files
    (d / "bad.json").write_text(json.dumps([{"image_id": 99, "category_id": 1, "score": 0.5}]))
    assert sam3(["eval", "--gt", str(d / "gt.json"), "--pred", str(d / "bad.json")]) == 2
    assert "image ids ['99'] are not in the ground truth" in capsys.readouterr().err
    assert sam3(["eval", "--gt", str(d / "nope.json"), "--pred", str(d / "pred.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (d / "notcoco.json").write_text("[]")
    assert sam3(["eval", "--gt", str(d / "notcoco.json"), "--pred", str(d / "pred.json")]) == 2
    assert "is not a COCO instances file" in capsys.readouterr().err
    assert sam3(["eval", "--gt", str(d / "gt.json"), "--pred", str(d)]) == 2
    assert "no job output" in capsys.readouterr().err


def test_eval_on_job_output(tmp_path, capsys):
    # A tiny random model labels 3 images (cell, dog) at score >= 0.05. Ground truth: im0's
    # best "cell" instance is a cell; nothing else anywhere (all exhaustive). The CLI reads
    # the shards and must give the figures of an EvalSet built from the raw Parquet rows.
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(make_image(40 + 4 * i, 56, seed=i)).save(images / f"im{i}.png")
    ckpt = save_checkpoint(tiny_model(), tmp_path / "tiny.safetensors")
    spec = JobSpec(
        inputs=(str(images),),
        concepts=("cell", "dog"),
        score_threshold=0.05,
        checkpoint=str(ckpt),
        config="sam3_tiny",
        device="cpu",
        batch_size=2,
    )
    out = tmp_path / "out"
    run_job(spec, out, progress=False)
    rows = [
        r for s in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(s).to_pylist()
    ]
    assert len(rows) == 3 and all(r["error"] is None for r in rows)
    by_name = {r["id"].rsplit("/", 1)[-1]: r for r in rows}
    cells = [x for x in by_name["im0.png"]["instances"] if x["concept"] == "cell"]
    assert cells, "the tiny model found no cell on im0: lower the job's threshold"
    best = max(cells, key=lambda x: x["score"])
    gt = {
        "images": [
            {
                "id": i + 1,
                "file_name": f"im{i}.png",
                "height": by_name[f"im{i}.png"]["height"],
                "width": 56,
            }
            for i in range(3)
        ],
        "annotations": [
            {
                **square_annotation(1, 1),
                "segmentation": best["segmentation"],
                "bbox": [0, 0, 1, 1],
                "area": 1,
            }
        ],
        "categories": [{"id": 1, "name": "cell"}, {"id": 2, "name": "dog"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    argv = ["--gt", str(tmp_path / "gt.json"), "--pred", str(out), "--exhaustive"]
    rc = sam3(["eval", *argv, "--threshold", "0.05", "--json", str(tmp_path / "r.json")])
    assert rc == 0
    assert "kept predictions at score >= 0.05" in capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())

    es = EvalSet(["cell", "dog"])
    for name, rec in by_name.items():
        labels = (
            [{"concept": "cell", "segmentation": best["segmentation"], "bbox": [0, 0, 1, 1]}]
            if name == "im0.png"
            else []
        )
        es.add_image(
            name,
            (rec["height"], rec["width"]),
            gt=labels,
            pred=[dict(x) for x in rec["instances"]],
            exhaustive=True,
        )
    expected = evaluate(es, 0.05)
    for key in ("cgF1", "pmF1", "IL_MCC", "TP@0.5", "FP@0.5", "AP_mask", "pairs", "pred"):
        assert report["overall"][key] == pytest.approx(expected["overall"][key]), key
    assert report["overall"]["pairs"] == 6 and report["concepts"]["cell"]["TP@0.5"] >= 1


def test_eval_sa_co_pairs(tmp_path):
    # SA-Co layout: each image entry is one (image, noun phrase) pair. Pair 1 ("red car",
    # exhaustive) is found; pair 2 ("blue car", exhaustive, no instances) has a false alarm;
    # pair 3 is not exhaustive: left out with its prediction, as Meta's evaluator does.
    # IL: TP 1, FP 1 -> MCC 0; pmF1 100 (the false alarm is on a negative pair).
    h, w = 30, 40
    gt = sa_co_gt(
        [("x.jpg", "red car", True), ("x.jpg", "blue car", True), ("y.jpg", "red car", False)]
    )
    preds = [
        box_result(1, 1, 5, 5, 10, 10, h, w, 0.9),
        box_result(2, 1, 5, 5, 10, 10, h, w, 0.8),
        box_result(3, 1, 0, 0, 5, 5, h, w, 0.9),
    ]
    rc, report = eval_report(tmp_path, gt, preds, "--no-ap")
    assert rc == 0 and set(report["concepts"]) == {"red car", "blue car"}
    o = report["overall"]
    assert (o["pairs"], o["IL_TP"], o["IL_FP"], o["pmF1"]) == (2, 1, 1, pytest.approx(100.0))
    assert report["skipped_predictions"] == 1


def test_eval_sa_co_pairs_against_a_coco_file_by_path(tmp_path):
    # The same SA-Co ground truth, predictions as a COCO file with full paths and concept
    # names (what `sam3 segment` writes): x.jpg's predictions reach both of its pairs.
    h, w = 30, 40
    gt = sa_co_gt([("x.jpg", "red car", True), ("x.jpg", "blue car", True)])
    red = box_result(7, 1, 5, 5, 10, 10, h, w, 0.9)
    blue = box_result(7, 2, 20, 5, 10, 10, h, w, 0.3)  # below 0.5: dropped -> IL_TN
    pred = {
        "images": [{"id": 7, "file_name": "/data/set/x.jpg", "height": h, "width": w}],
        "annotations": [{**red, "id": 1}, {**blue, "id": 2}],
        "categories": [{"id": 1, "name": "red car"}, {"id": 2, "name": "blue car"}],
    }
    rc, report = eval_report(tmp_path, gt, pred, "--no-ap")
    o = report["overall"]
    # IL: TP 1 (red car), TN 1 (blue car) -> MCC 1, pmF1 100 -> cgF1 100
    assert rc == 0 and (o["pairs"], o["IL_TP"], o["IL_TN"]) == (2, 1, 1)
    assert o["cgF1"] == pytest.approx(100.0)
