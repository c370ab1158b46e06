"""ImagePredictor with an embedding store: same outputs as without one, hits from memory and
disk, and refusal of a store made by another model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from sam3_core import ImagePredictor
from sam3_core.build import build_model
from sam3_core.config import sam3_tiny
from sam3_core.store import EmbeddingStore, StoreError, StoreMismatchError
from tests.core.helpers import make_image, save_checkpoint, tiny_model

CONCEPTS = ["red car", "a dog"]


def assert_same(a, b) -> None:
    """Two Instances are identical (bit for bit)."""
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)


def concepts(pred, state):
    return pred.predict(state, CONCEPTS, score_threshold=0.0)


def clicks(pred, state):
    return pred.predict(state, points=[[30, 40], [80, 20]], point_labels=[1, 0])


def boxes(pred, state):
    return pred.predict(state, boxes=[[10, 10, 90, 60], [40, 30, 140, 90]], multimask=False)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def plain(model):
    return ImagePredictor(model, device="cpu")


@pytest.mark.parametrize("ask", [concepts, clicks, boxes])
def test_outputs_equal_without_store_cold_memory_and_disk(model, plain, tmp_path, ask):
    image = make_image(97, 150, seed=1)
    expected = ask(plain, plain.set_image(image))
    assert len(expected) > 0
    pred = ImagePredictor(model, device="cpu", store=tmp_path)
    assert_same(ask(pred, pred.set_image(image)), expected)  # computed, written
    assert_same(ask(pred, pred.set_image(image)), expected)  # from memory
    reopened = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path))
    assert_same(ask(reopened, reopened.set_image(image)), expected)  # from disk
    assert pred.store.stats["misses"] == 1 and pred.store.stats["memory_hits"] >= 1
    assert reopened.store.stats["disk_hits"] == 1 and reopened.store.stats["misses"] == 0
    assert reopened.store.stats["writes"] == 0  # the click levels were stored on first use


def test_other_images_give_other_outputs(model, tmp_path):
    """The store must not answer one image with another's embedding."""
    pred = ImagePredictor(model, device="cpu", store=tmp_path)
    a = concepts(pred, pred.set_image(make_image(97, 150, seed=1)))
    b = concepts(pred, pred.set_image(make_image(97, 150, seed=2)))
    assert not np.array_equal(a.scores, b.scores)
    assert len(pred.store) == 2


def test_set_images_batch_equals_no_store(model, plain, tmp_path):
    images = [make_image(97, 150, seed=s) for s in (3, 4)]
    expected = [concepts(plain, s) for s in plain.set_images(images)]
    pred = ImagePredictor(model, device="cpu", store=tmp_path)
    for _ in range(2):  # computed, then stored
        got = [concepts(pred, s) for s in pred.set_images(images)]
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
            assert (a.masks == b.masks).mean() > 0.999


def test_same_pixels_from_another_path_hit(model, tmp_path):
    image = make_image(60, 80, seed=5)
    for name in ("a.png", "b.png"):
        Image.fromarray(image).save(tmp_path / name)
    pred = ImagePredictor(model, device="cpu", store=tmp_path / "store")
    keys = {pred.image_key(x) for x in (tmp_path / "a.png", str(tmp_path / "b.png"), image)}
    assert len(keys) == 1
    assert not pred.is_stored(image)
    state = pred.set_image(tmp_path / "a.png")
    assert pred.is_stored(tmp_path / "b.png") and state.key == keys.pop()
    pred.set_image(tmp_path / "b.png")
    assert pred.store.stats["misses"] == 1 and len(pred.store) == 1
    assert (
        pred.store.nbytes(state.key)
        == (tmp_path / "store").joinpath(state.key[:2], f"{state.key}.safetensors").stat().st_size
    )


def test_click_on_precomputed_image_runs_no_network_pass(model, plain, tmp_path, monkeypatch):
    image = make_image(97, 150, seed=6)
    expected = clicks(plain, plain.set_image(image))
    pred = ImagePredictor(model, device="cpu", store=tmp_path)
    first = pred.precompute([image, image], batch_size=2)
    assert [s.computed for s in first] == [True, True]  # one backbone pass for both
    assert first[0].key == first[1].key and first[0].nbytes > 0
    again = pred.precompute([image])
    assert not again[0].computed and again[0].nbytes == first[0].nbytes
    fresh = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path))

    def fail(*args, **kwargs):
        raise AssertionError("a neck or the backbone ran on a precomputed image")

    monkeypatch.setattr(model.tracker_neck, "forward", fail)
    monkeypatch.setattr(model.detector_model.vision_encoder.backbone, "forward", fail)
    assert_same(clicks(fresh, fresh.set_image(image)), expected)


def test_detector_levels_are_computed_lazily_and_kept_in_memory(model, tmp_path, monkeypatch):
    image = make_image(97, 150, seed=7)
    pred = ImagePredictor(model, device="cpu", store=tmp_path)
    pred.precompute([image])
    neck = model.detector_model.vision_encoder.neck
    calls = []
    original = neck.forward
    monkeypatch.setattr(neck, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    fresh = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path))
    state = fresh.set_image(image)
    clicks(fresh, state)
    assert calls == []  # clicks need no detector neck
    first = concepts(fresh, state)
    assert calls == [1]
    assert_same(concepts(fresh, fresh.set_image(image)), first)  # levels reused from memory
    assert calls == [1]


def test_store_of_other_weights_is_refused(model, tmp_path):
    ImagePredictor(model, device="cpu", store=tmp_path)
    with pytest.raises(StoreMismatchError) as err:
        ImagePredictor(tiny_model(seed=1), device="cpu", store=tmp_path)
    message = str(err.value)
    assert "weights" in message and str(tmp_path) in message
    assert "another store folder" in message


def test_store_of_other_config_is_refused(model, tmp_path):
    ImagePredictor(model, device="cpu", store=tmp_path)
    cfg = sam3_tiny()
    other = build_model(
        dataclasses.replace(cfg, vit=dataclasses.replace(cfg.vit, rope_theta=500.0))
    )
    other.load_state_dict(model.state_dict())
    with pytest.raises(StoreMismatchError, match="vit.rope_theta"):
        ImagePredictor(other, device="cpu", store=tmp_path)


def test_store_of_other_precision_is_refused(tmp_path):
    ImagePredictor(tiny_model(), device="cpu", store=tmp_path)
    with pytest.raises(StoreMismatchError, match="precision"):
        ImagePredictor(tiny_model(), device="cpu", precision="bf16", store=tmp_path)


def test_memory_store_object_bound_to_one_model(model):
    store = EmbeddingStore()
    ImagePredictor(model, device="cpu", store=store)
    ImagePredictor(model, device="cpu", store=store)  # the same model: fine
    with pytest.raises(StoreMismatchError, match="this store object"):
        ImagePredictor(tiny_model(seed=2), device="cpu", store=store)


def test_from_pretrained_takes_a_folder(model, plain, tmp_path):
    ckpt = save_checkpoint(model, tmp_path / "tiny.safetensors")
    pred = ImagePredictor.from_pretrained(
        str(ckpt), config="sam3_tiny", device="cpu", store=str(tmp_path / "store")
    )
    image = make_image(97, 150, seed=8)
    assert isinstance(pred.store, EmbeddingStore)
    assert_same(concepts(pred, pred.set_image(image)), concepts(plain, plain.set_image(image)))
    assert (tmp_path / "store" / "store.json").is_file()


def test_bad_store_arguments_say_what_to_do(model, tmp_path):
    with pytest.raises(StoreError, match="EmbeddingStore or a folder"):
        ImagePredictor(model, device="cpu", store=3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        ImagePredictor(model, device="cpu", store=tmp_path / "file")
    with pytest.raises(StoreError, match="needs a store"):
        ImagePredictor(model, device="cpu").precompute([make_image()])
    with pytest.raises(StoreError, match="dtype"):
        EmbeddingStore(tmp_path, dtype="fp8")
    ImagePredictor(model, device="cpu", store=tmp_path / "s")
    with pytest.raises(StoreError, match="keeps fp32"):
        EmbeddingStore(tmp_path / "s", dtype="fp16")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "store.json").write_text("{not json")
    with pytest.raises(StoreError, match="unreadable"):
        EmbeddingStore(tmp_path / "broken")


def test_threads_share_a_predictor_and_store(model, plain, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    images = [make_image(97, 150, seed=s) for s in range(10, 14)]
    expected = [concepts(plain, plain.set_image(im)) for im in images]
    pred = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path, memory_bytes=0))

    def work(i):
        return concepts(pred, pred.set_image(images[i % 4]))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(12)))
    for i, r in enumerate(results):
        assert_same(r, expected[i % 4])
    assert len(pred.store) == 4 and pred.store.stats["corrupt"] == 0


def test_stored_trunk_is_not_modified_by_predictions(model, tmp_path):
    pred = ImagePredictor(model, device="cpu", store=tmp_path)
    state = pred.set_image(make_image(97, 150, seed=9))
    before = state.trunk.clone()
    concepts(pred, state), clicks(pred, state)
    assert torch.equal(pred.store.get(state.key)["vit"], before)
