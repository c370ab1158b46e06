"""`sam3 segment` on a folder with a tiny checkpoint: COCO JSON, overlays, failures reported,
large images tiled, results saved as they come, usage errors refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sam3_core.cli import main
from sam3_core.formats.images import ImageTooLargeError, load_image
from sam3_core.postprocess import rle_to_mask
from sam3_core.predictor import ImagePredictor
from tests.core.helpers import make_image, save_checkpoint, tiny_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(tiny_model(), tmp_path_factory.mktemp("cli") / "tiny.safetensors")


def segment(ckpt, out, *inputs_and_flags):
    model = ["--checkpoint", str(ckpt), "--config", "sam3_tiny", "--device", "cpu"]
    return main(["segment", *map(str, inputs_and_flags), *model, "--out", str(out)])


def coco_of(out):
    return json.loads((out / "annotations.json").read_text())


def test_segment_folder_writes_coco_and_overlays(ckpt, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(make_image(90, 120, seed=1)).save(images / "a.png")
    Image.fromarray(make_image(70, 60, seed=2)).save(images / "b.jpg")
    (images / "c.png").write_bytes(b"corrupt")
    out = tmp_path / "out"
    code = segment(
        ckpt,
        out,
        images,
        *("--concept", "cell", "--concept", "nucleus"),
        *("--exemplar", "5,5,40,40", "--exemplar", "50,30,80,60,neg"),
        *("--score-threshold", "0.0"),
    )
    assert code == 1  # c.png failed, the others went on
    err = capsys.readouterr().err
    assert "c.png" in err
    coco = coco_of(out)
    assert [c["name"] for c in coco["categories"]] == ["cell", "nucleus"]
    assert sorted(i["file_name"].rsplit("/", 1)[-1] for i in coco["images"]) == ["a.png", "b.jpg"]
    assert len(coco["annotations"]) == 2 * 2 * 8  # 2 images x 2 concepts x 8 queries
    ann = coco["annotations"][0]
    img = next(i for i in coco["images"] if i["id"] == ann["image_id"])
    mask = rle_to_mask(ann["segmentation"])
    assert mask.shape == (img["height"], img["width"]) and mask.sum() == ann["area"]
    overlay = np.array(Image.open(out / "overlays" / "a.png.png"))
    assert overlay.shape == (90, 120, 3)


def test_overlays_of_same_named_images_do_not_overwrite(ckpt, tmp_path):
    for folder, name, (h, w) in (("a", "x.png", (40, 50)), ("b", "x.jpg", (30, 70))):
        (tmp_path / folder).mkdir()
        Image.fromarray(make_image(h, w, seed=h)).save(tmp_path / folder / name)
    Image.fromarray(make_image(20, 30)).save(tmp_path / "b" / "x.png")
    out = tmp_path / "out"
    assert segment(ckpt, out, tmp_path / "a", tmp_path / "b", "--concept", "cell") == 0
    shapes = {
        p.relative_to(out / "overlays").as_posix(): np.array(Image.open(p)).shape[:2]
        for p in (out / "overlays").rglob("*.png")
    }
    assert shapes == {"a/x.png.png": (40, 50), "b/x.jpg.png": (30, 70), "b/x.png.png": (20, 30)}


def test_image_too_large_to_read_is_tiled_not_a_traceback(ckpt, tmp_path, monkeypatch, capsys):
    """PIL's decompression-bomb limit: load_image says how to tile; the CLI tiles such images."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # refused above 4000 px
    Image.fromarray(make_image(80, 100, seed=3)).save(tmp_path / "huge.png")
    Image.fromarray(make_image(40, 50, seed=4)).save(tmp_path / "small.png")
    with pytest.raises(ImageTooLargeError, match=r"segment_tiled.*sam3 segment --tile"):
        load_image(tmp_path / "huge.png")
    from sam3_core.large import tiling

    tiled = []
    real = tiling.segment_tiled
    monkeypatch.setattr(
        tiling,
        "segment_tiled",
        lambda p, im, *a, **k: tiled.append(im.size) or real(p, im, *a, **k),
    )
    out = tmp_path / "out"
    code = segment(ckpt, out, tmp_path, "--concept", "cell", "--score-threshold", "0")
    assert code == 0, capsys.readouterr().err
    assert tiled == [(80, 100)]  # the large one only, read by open_array despite PIL's limit
    coco = coco_of(out)
    sizes = {i["file_name"].rsplit("/", 1)[-1]: (i["height"], i["width"]) for i in coco["images"]}
    assert sizes == {"huge.png": (80, 100), "small.png": (40, 50)}
    huge = next(i["id"] for i in coco["images"] if i["file_name"].endswith("huge.png"))
    anns = [a for a in coco["annotations"] if a["image_id"] == huge]
    assert anns and all(rle_to_mask(a["segmentation"]).shape == (80, 100) for a in anns)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert np.array(Image.open(out / "overlays" / "huge.png.png")).shape == (80, 100, 3)


def test_tile_flag_and_size_threshold(ckpt, tmp_path, monkeypatch):
    """--tile tiles every image; --tile-above tiles those with a longer side; same COCO file."""
    image = make_image(90, 130, seed=5)
    Image.fromarray(image).save(tmp_path / "big.png")
    Image.fromarray(make_image(40, 50, seed=6)).save(tmp_path / "small.png")
    from sam3_core.large import tiling

    calls = []
    real = tiling.segment_tiled
    monkeypatch.setattr(
        tiling,
        "segment_tiled",
        lambda p, im, *a, **k: (
            calls.append((im.size, k["tile_size"], k["overlap"])) or real(p, im, *a, **k)
        ),
    )
    out = tmp_path / "forced"
    flags = ("--concept", "cell", "--score-threshold", "0", "--tile", 64, "--tile-overlap", 16)
    assert segment(ckpt, out, tmp_path / "big.png", tmp_path / "small.png", *flags) == 0
    assert calls == [((90, 130), 64, 16), ((40, 50), 64, 16)]
    big = next(i["id"] for i in coco_of(out)["images"] if i["file_name"].endswith("big.png"))
    masks = [rle_to_mask(a["segmentation"]) for a in coco_of(out)["annotations"]]
    assert masks and all(m.shape in ((90, 130), (40, 50)) for m in masks) and big
    calls.clear()
    out = tmp_path / "auto"
    flags = ("--concept", "cell", "--tile-above", 100)
    assert segment(ckpt, out, tmp_path / "big.png", tmp_path / "small.png", *flags) == 0
    assert calls == [((90, 130), 1008, 128)] and len(coco_of(out)["images"]) == 2


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_keeps_finished_images(ckpt, tmp_path, monkeypatch, capsys, stop):
    for k in range(4):
        Image.fromarray(make_image(40, 50, seed=k)).save(tmp_path / f"{k}.png")
    calls = []
    real = ImagePredictor.predict

    def predict(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise stop("stopped")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ImagePredictor, "predict", predict)
    out = tmp_path / "out"
    code = segment(ckpt, out, tmp_path, "--concept", "cell", "--batch-size", 1)
    assert code == (130 if stop is KeyboardInterrupt else 2)
    names = [i["file_name"].rsplit("/", 1)[-1] for i in coco_of(out)["images"]]
    assert names == ["0.png", "1.png"]
    if stop is KeyboardInterrupt:
        assert "interrupted; 2 of 4 images saved" in capsys.readouterr().err
    assert not list(out.glob(".*tmp"))  # no temporary file left behind


def test_annotations_rewritten_every_n_images(ckpt, tmp_path, monkeypatch):
    """--save-every N: annotations.json also rewritten every N images, then at the end."""
    from sam3_core.jobs import writers

    for k in range(3):
        Image.fromarray(make_image(40, 50, seed=k)).save(tmp_path / f"{k}.png")
    written = []
    real = writers.write_coco

    def write_coco(out_dir, *args):
        path = real(out_dir, *args)
        written.append(len(json.loads(path.read_text())["images"]))
        return path

    monkeypatch.setattr(writers, "write_coco", write_coco)
    out = tmp_path / "out"
    assert segment(ckpt, out, tmp_path, "--concept", "cell", "--save-every", 2) == 0
    assert written == [2, 3]


def test_formats_and_resume(ckpt, tmp_path, capsys):
    """--format picks the files (repeatable, comma lists); the same command again resumes:
    finished images are skipped and the files stay the same."""
    for k in range(3):
        Image.fromarray(make_image(40 + k, 50, seed=k)).save(tmp_path / f"{k}.png")
    out = tmp_path / "out"
    flags = ("--concept", "cell", "--format", "coco,labelstudio", "--format", "parquet")
    assert segment(ckpt, out, tmp_path, *flags, "--no-overlays") == 0
    assert "3 images done" in capsys.readouterr().out
    assert len(list((out / "shards").glob("*.parquet"))) >= 1 and not (out / "overlays").exists()
    tasks = json.loads((out / "labelstudio.json").read_text())
    assert len(tasks) == len(coco_of(out)["images"]) == 3
    files = {n: (out / n).read_bytes() for n in ("annotations.json", "labelstudio.json")}
    assert segment(ckpt, out, tmp_path, *flags, "--no-overlays") == 0
    assert "0 images done (0 errors, 0 instances), 3 already done" in capsys.readouterr().out
    assert {n: (out / n).read_bytes() for n in files} == files
    only = tmp_path / "only"
    assert segment(ckpt, only, tmp_path / "0.png", "--concept", "cell", "--format", "parquet") == 0
    assert not (only / "annotations.json").exists() and (only / "overlays" / "0.png.png").exists()


def test_thresholds_file_per_concept(ckpt, tmp_path, capsys):
    """--thresholds: each concept keeps the instances at or above its own threshold; the file
    is part of the job, so another file on the same output is refused."""
    from sam3_core.metrics.thresholds import Thresholds, save_thresholds

    Image.fromarray(make_image(40, 50, seed=1)).save(tmp_path / "a.png")
    file = save_thresholds(Thresholds(default=1.0, concepts={"Cell": 0.0}), tmp_path / "t.json")
    concepts = ("--concept", "cell", "--concept", "dog")
    out = tmp_path / "out"
    assert segment(ckpt, out, tmp_path / "a.png", *concepts, "--thresholds", file) == 0
    coco = coco_of(out)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [names[a["category_id"]] for a in coco["annotations"]] == ["cell"] * 8  # dog: none
    plain = tmp_path / "plain"
    assert segment(ckpt, plain, tmp_path / "a.png", *concepts, "--score-threshold", 0) == 0
    cells = [a for a in coco_of(plain)["annotations"] if names[a["category_id"]] == "cell"]
    assert [a["score"] for a in coco["annotations"]] == [a["score"] for a in cells]
    other = save_thresholds(Thresholds(default=0.0), tmp_path / "other.json")
    assert segment(ckpt, out, tmp_path / "a.png", *concepts, "--thresholds", other) == 2
    assert "thresholds" in capsys.readouterr().err
    both = ("--thresholds", file, "--score-threshold", "0.2")
    assert segment(ckpt, out, tmp_path / "a.png", *concepts, *both) == 2
    assert "not both" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"version": 1, "default": 2}')
    bad = tmp_path / "bad.json"
    assert segment(ckpt, out, tmp_path / "a.png", *concepts, "--thresholds", bad) == 2
    assert "thresholds file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--config", "sam3_tiyn"), "invalid choice: 'sam3_tiyn'"),
        (("--batch-size", "0"), "--batch-size: expected a whole number of at least 1"),
        (("--batch-size", "-2"), "--batch-size: expected a whole number of at least 1"),
        (("--score-threshold", "1.5"), "--score-threshold: expected a number between 0.0 and 1"),
        (("--mask-threshold", "nan"), "--mask-threshold: expected a number between"),
        (("--tile", "0"), "--tile: expected a whole number of at least 1"),
        (("--tile-overlap", "-1"), "--tile-overlap: expected a whole number of at least 0"),
        (("--save-every", "x"), "--save-every: expected a whole number"),
        (("--format", "coco,json"), "--format 'coco,json': choose from coco, parquet"),
        (("--workers", "0"), "--workers: expected a whole number of at least 1"),
        (("--ray", "somewhere"), "expected auto, local, HOST:PORT"),
    ],
)
def test_segment_usage_errors(tmp_path, capsys, flags, message):
    """Refused before any model or checkpoint is touched: exit 2 and a message, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(tmp_path), "--concept", "c", *flags, "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if "config" in flags[0]:
        assert "'sam3'" in err and "'sam3_tiny'" in err  # the presets are listed


def test_track_usage_errors(tmp_path, capsys):
    for flags in (("--frame", "-1"), ("--score-threshold", "2"), ("--max-objects", "0")):
        with pytest.raises(SystemExit):
            main(["track", "v.mp4", "--concept", "c", *flags, "--out", str(tmp_path)])
        assert flags[0] in capsys.readouterr().err


def test_tile_overlap_not_below_tile_is_a_usage_error(tmp_path, capsys):
    Image.fromarray(make_image(40, 50)).save(tmp_path / "a.png")
    flags = ("--concept", "c", "--tile", "64", "--tile-overlap", "64")
    assert main(["segment", str(tmp_path / "a.png"), *flags, "--out", str(tmp_path / "o")]) == 2
    assert "--tile-overlap 64 must be smaller" in capsys.readouterr().err


def test_workers_without_ray_is_a_usage_error(tmp_path, capsys):
    Image.fromarray(make_image(40, 50)).save(tmp_path / "a.png")
    flags = ("--concept", "c", "--workers", "2")
    assert main(["segment", str(tmp_path / "a.png"), *flags, "--out", str(tmp_path / "o")]) == 2
    assert "--workers needs --ray" in capsys.readouterr().err


def test_segment_bad_exemplar_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["segment", str(tmp_path), "--exemplar", "1,2,3", "--out", str(tmp_path / "o")])
    assert "x0,y0,x1,y1" in capsys.readouterr().err


def test_slow_precision_is_warned(tmp_path, capsys, monkeypatch):
    """bf16 on a CPU without AMX is no faster than fp32: the CLI says so (before any work)."""
    import torch

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["segment", str(empty), "--concept", "x", "--device", "cpu", "--out", str(tmp_path)]
    main([*args, "--precision", "bf16"])  # no images: ends before loading weights
    assert "no faster than fp32" in capsys.readouterr().err
    main([*args, "--precision", "fp32"])
    assert "note" not in capsys.readouterr().err
