"""`sam3 embed` on a folder with a tiny checkpoint: the store filled once per image content,
used by a predictor afterwards, resumed, other weights refused, bad files reported."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from sam3_core.cli import main
from sam3_core.predictor import ImagePredictor
from sam3_core.store import EmbeddingStore
from tests.core.helpers import make_image, save_checkpoint, tiny_model


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    return (
        save_checkpoint(tiny_model(), root / "tiny.safetensors"),
        save_checkpoint(tiny_model(seed=1), root / "other.safetensors"),
    )


def embed(ckpt, store, *inputs_and_flags):
    model = ["--checkpoint", str(ckpt), "--config", "sam3_tiny", "--device", "cpu"]
    return main(["embed", *map(str, inputs_and_flags), *model, "--store", str(store)])


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(3):
        Image.fromarray(make_image(40 + k, 50, seed=k)).save(folder / f"{k}.png")
    shutil.copy(folder / "0.png", folder / "copy_of_0.png")  # same content, another path
    (folder / "broken.png").write_bytes(b"not a PNG")
    return folder


def test_embed_fills_the_store_the_predictor_reads(ckpts, images, tmp_path, capsys):
    store_dir = tmp_path / "store"
    assert embed(ckpts[0], store_dir, images, "--batch-size", 2) == 1  # broken.png failed
    captured = capsys.readouterr()
    assert "broken.png" in captured.err
    assert "5 images done (1 errors" in captured.out
    assert "store " in captured.out and "3 embeddings" in captured.out
    assert "MB per image" in captured.out
    store = EmbeddingStore(store_dir)
    assert len(store) == 3 and store.disk_bytes() > 0  # one entry per distinct image
    image = np.asarray(Image.open(images / "1.png").convert("RGB"))
    from sam3_core.build import load_model

    model = load_model(str(ckpts[0]), config="sam3_tiny")
    cached = ImagePredictor(model, "cpu", store=store_dir)
    plain = ImagePredictor(load_model(str(ckpts[0]), config="sam3_tiny"), "cpu")
    state = cached.set_image(image)
    assert cached.store.stats["disk_hits"] == 1 and cached.store.stats["misses"] == 0
    want = plain.predict(plain.set_image(image), "cell", score_threshold=0.0)
    got = cached.predict(state, "cell", score_threshold=0.0)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.masks, want.masks)


def test_embed_resumes_and_refuses_other_weights(ckpts, images, tmp_path, capsys):
    store_dir = tmp_path / "store"
    assert embed(ckpts[0], store_dir, images) == 1
    capsys.readouterr()
    assert embed(ckpts[0], store_dir, images) == 1  # the broken file is still reported
    assert "0 images done (0 errors), 5 already done" in capsys.readouterr().out
    assert embed(ckpts[1], store_dir, images) == 2  # the job's settings: other weights
    assert "weights" in capsys.readouterr().err
    assert embed(ckpts[1], store_dir, images, "--restart") == 2  # the store itself refuses
    err = capsys.readouterr().err
    assert "sam3: error:" in err and "Traceback" not in err
    assert len(EmbeddingStore(store_dir)) == 3  # nothing of the other model was written


def test_embed_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["embed", str(tmp_path), "--store", str(tmp_path / "s"), "--dtype", "fp8"])
    assert "--dtype" in capsys.readouterr().err
    args = ["embed", str(tmp_path), "--store", str(tmp_path / "s"), "--workers", "2"]
    assert main(args) == 2
    assert "--workers needs --ray" in capsys.readouterr().err


def test_segment_reads_the_store_embed_filled(ckpts, images, tmp_path, monkeypatch):
    """`sam3 segment --store DIR` after `sam3 embed`: every image comes from the store (no
    entry added) and the COCO file equals one made without a store (fp32 storage). Batch size
    1 on both sides: a backbone pass over other images in the batch moves floats by ~1e-6,
    which can flip a mask pixel."""
    import json

    store_dir = tmp_path / "store"
    assert embed(ckpts[0], store_dir, images, "--batch-size", 1) == 1
    hits = []
    real = EmbeddingStore.lookup
    monkeypatch.setattr(
        EmbeddingStore,
        "lookup",
        lambda self, key, names: hits.append(key) or real(self, key, names),
    )
    model = ["--checkpoint", str(ckpts[0]), "--config", "sam3_tiny", "--device", "cpu"]
    flags = [str(images), "--concept", "cell", "--score-threshold", "0", "--batch-size", "1"]
    flags += ["--no-overlays", *model]
    assert main(["segment", *flags, "--store", str(store_dir), "--out", str(tmp_path / "a")]) == 1
    assert len(hits) == 4 and len(EmbeddingStore(store_dir)) == 3  # 4 readable images
    monkeypatch.undo()
    assert main(["segment", *flags, "--out", str(tmp_path / "b")]) == 1
    with_store = json.loads((tmp_path / "a" / "annotations.json").read_text())
    without = json.loads((tmp_path / "b" / "annotations.json").read_text())
    assert with_store == without and with_store["annotations"]
