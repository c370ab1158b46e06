"""`sam3 segment` on a folder with a tiny checkpoint: COCO JSON, overlays, failures reported."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from sam3_core.cli import main
from sam3_core.postprocess import rle_to_mask
from tests.core.helpers import make_image, save_checkpoint, tiny_model


def test_segment_folder_writes_coco_and_overlays(tmp_path, capsys):
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_model(), ckpt)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(make_image(90, 120, seed=1)).save(images / "a.png")
    Image.fromarray(make_image(70, 60, seed=2)).save(images / "b.jpg")
    (images / "c.png").write_bytes(b"corrupt")
    out = tmp_path / "out"
    code = main(
        [
            "segment",
            str(images),
            "--concept",
            "cell",
            "--concept",
            "nucleus",
            "--exemplar",
            "5,5,40,40",
            "--exemplar",
            "50,30,80,60,neg",
            "--checkpoint",
            str(ckpt),
            "--config",
            "sam3_tiny",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--score-threshold",
            "0.0",
        ]
    )
    assert code == 1  # c.png failed, the others went on
    err = capsys.readouterr().err
    assert "c.png" in err
    coco = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["cell", "nucleus"]
    assert sorted(i["file_name"].rsplit("/", 1)[-1] for i in coco["images"]) == ["a.png", "b.jpg"]
    assert len(coco["annotations"]) == 2 * 2 * 8  # 2 images x 2 concepts x 8 queries
    ann = coco["annotations"][0]
    img = next(i for i in coco["images"] if i["id"] == ann["image_id"])
    mask = rle_to_mask(ann["segmentation"])
    assert mask.shape == (img["height"], img["width"]) and mask.sum() == ann["area"]
    overlay = np.array(Image.open(out / "overlays" / "a.png"))
    assert overlay.shape == (90, 120, 3)


def test_segment_bad_exemplar_is_a_usage_error(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["segment", str(tmp_path), "--exemplar", "1,2,3", "--out", str(tmp_path / "o")])
    assert "x0,y0,x1,y1" in capsys.readouterr().err
