"""The store on disk: damaged entries are recomputed, several processes share one folder."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from sam3_core import ImagePredictor
from sam3_core.store import EmbeddingStore, StoreError
from sam3_core.store.disk import CorruptEntryError, decode_entry, entry_path
from sam3_core.store.keys import signature_digest
from tests.core.helpers import make_image, tiny_model
from tests.core.store.workers import fill_store


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def scores(pred, image):
    return pred.predict(pred.set_image(image), ["red car"], score_threshold=0.0).scores


def damage_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def damage_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x40  # one bit of the last tensor's bytes
    path.write_bytes(bytes(data))


def damage_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:20] = b"not a header"
    path.write_bytes(bytes(data))


def damage_empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [damage_truncate, damage_flip, damage_header, damage_empty])
def test_damaged_entry_is_recomputed_not_trusted(model, tmp_path, damage, caplog):
    image = make_image(97, 150, seed=1)
    pred = ImagePredictor(model, device="cpu", store=tmp_path)
    expected = scores(pred, image)
    path = entry_path(tmp_path, pred.image_key(image))
    good = path.read_bytes()
    damage(path)
    fresh = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path))
    with caplog.at_level("WARNING", logger="sam3_core.store"):
        np.testing.assert_array_equal(scores(fresh, image), expected)
    assert fresh.store.stats["corrupt"] == 1 and fresh.store.stats["writes"] == 1
    assert "Recomputing the damaged store entry" in caplog.text
    digest = signature_digest(fresh.store.signature)  # rewritten whole, same tensors:
    rewritten = decode_entry(path.read_bytes(), fresh.image_key(image), digest)
    original = decode_entry(good, fresh.image_key(image), digest)
    assert rewritten.keys() == original.keys()
    assert all(torch.equal(rewritten[k], original[k]) for k in original)


def test_entry_of_another_image_is_not_trusted(model, tmp_path):
    pred = ImagePredictor(model, device="cpu", store=tmp_path)
    a, b = make_image(97, 150, seed=2), make_image(97, 150, seed=3)
    pred.set_image(a)
    key_a, key_b = pred.image_key(a), pred.image_key(b)
    entry_path(tmp_path, key_b).parent.mkdir(parents=True, exist_ok=True)
    entry_path(tmp_path, key_b).write_bytes(entry_path(tmp_path, key_a).read_bytes())
    with pytest.raises(CorruptEntryError, match="another key"):
        decode_entry(
            entry_path(tmp_path, key_b).read_bytes(), key_b, signature_digest(pred.store.signature)
        )
    fresh = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path))
    expected = scores(ImagePredictor(model, device="cpu"), b)
    np.testing.assert_array_equal(scores(fresh, b), expected)
    assert fresh.store.stats["corrupt"] == 1


def test_two_processes_write_one_store(model, tmp_path):
    """Spawned processes fill one folder at once (overlapping images); every entry is whole
    and right afterwards, and no temporary file is left."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(2)
    jobs = [[20, 21, 22, 23], [22, 23, 24, 25]]
    with ctx.Pool(2) as pool:
        results = [pool.apply_async(fill_store, (str(tmp_path), s, barrier)) for s in jobs]
        keys = [r.get(timeout=300) for r in results]
    assert len(set(keys[0]) | set(keys[1])) == 6
    store = EmbeddingStore(tmp_path)
    pred = ImagePredictor(model, device="cpu", store=store)
    digest = signature_digest(store.signature)
    for key in set(keys[0]) | set(keys[1]):
        entry = decode_entry(entry_path(tmp_path, key).read_bytes(), key, digest)
        assert {"vit", "tracker.0", "tracker.1", "tracker.2"} <= set(entry)
    assert sorted(store.keys()) == sorted(set(keys[0]) | set(keys[1]))
    assert not list(tmp_path.rglob("*.tmp"))
    plain = ImagePredictor(model, device="cpu")
    for seed in (20, 25):
        image = make_image(97, 150, seed=seed)
        np.testing.assert_array_equal(scores(pred, image), scores(plain, image))
    assert store.stats["misses"] == 0 and store.stats["corrupt"] == 0


def test_unwritable_store_is_read_and_keeps_new_entries_in_memory(model, tmp_path, monkeypatch):
    """A store precomputed elsewhere and mounted read-only: read, never rewritten."""
    from sam3_core.store import disk

    image, other = make_image(97, 150, seed=4), make_image(97, 150, seed=5)
    ImagePredictor(model, device="cpu", store=tmp_path).precompute([image])

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(disk, "create_meta", refuse)
    monkeypatch.setattr(disk, "atomic_write", refuse)
    pred = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path))
    plain = ImagePredictor(model, device="cpu")
    np.testing.assert_array_equal(scores(pred, image), scores(plain, image))
    np.testing.assert_array_equal(scores(pred, other), scores(plain, other))
    np.testing.assert_array_equal(scores(pred, other), scores(plain, other))
    assert pred.store.stats["disk_hits"] == 1 and pred.store.stats["write_errors"] == 1
    assert pred.store.stats["misses"] == 1  # the second call found it in memory
    with pytest.raises(StoreError, match=r"Cannot use .*\(read-only"):
        ImagePredictor(model, device="cpu", store=tmp_path / "new")


def test_precompute_resumes_from_headers_and_redoes_damaged_files(model, tmp_path):
    images = [make_image(97, 150, seed=s) for s in (30, 31, 32)]
    pred = ImagePredictor(model, device="cpu", store=tmp_path)
    assert [s.computed for s in pred.precompute(images[:2])] == [True, True]
    damage_truncate(entry_path(tmp_path, pred.image_key(images[1])))
    fresh = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path, memory_bytes=0))
    assert fresh.store.parts(fresh.image_key(images[0])) == {
        "vit",
        "tracker.0",
        "tracker.1",
        "tracker.2",
    }
    assert [s.computed for s in fresh.precompute(images)] == [False, True, True]
    assert fresh.store.stats["disk_hits"] == 0  # stored entries were judged by their headers
