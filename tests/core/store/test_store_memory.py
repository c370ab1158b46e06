"""The memory tier: a byte-bounded LRU, safe for threads; a predictor's store stays in bound."""

from __future__ import annotations

import pytest
import torch

from sam3_core import ImagePredictor
from sam3_core.store import EmbeddingStore
from sam3_core.store.memory import MemoryLRU, entry_bytes
from tests.core.helpers import make_image, tiny_model


def block(n_floats: int) -> dict:
    return {"x": torch.zeros(n_floats)}  # 4 bytes per float


def test_byte_bound_and_lru_order():
    lru = MemoryLRU(max_bytes=1000)
    for k in "abc":
        lru.put(k, block(80))  # 320 bytes each: three fit
    assert lru.nbytes == 960 and lru.keys() == ["a", "b", "c"]
    assert lru.get("a") is not None  # a becomes most recent
    lru.put("d", block(80))
    assert lru.keys() == ["c", "a", "d"] and lru.nbytes == 960  # b, the least recent, left
    lru.put("e", block(200))  # 800 bytes: every older entry has to go
    assert lru.keys() == ["e"] and lru.nbytes == 800
    assert lru.nbytes <= lru.max_bytes


def test_entry_larger_than_bound_is_not_kept_and_evicts_nothing():
    lru = MemoryLRU(max_bytes=1000)
    lru.put("a", block(100))
    lru.put("big", block(300))
    assert lru.keys() == ["a"] and lru.get("big") is None
    lru.put("a", {"y": torch.zeros(300)}, merge=True)  # a too large merge keeps the old entry
    assert lru.size_of("a") == 400


def test_merge_adds_parts_and_counts_them():
    lru = MemoryLRU(max_bytes=10_000)
    lru.put("a", {"x": torch.zeros(10)})
    lru.put("a", {"y": torch.zeros(20)}, merge=True)
    assert set(lru.get("a")) == {"x", "y"} and lru.nbytes == 120
    lru.put("a", {"z": torch.zeros(5)})
    assert set(lru.get("a")) == {"z"} and lru.nbytes == 20


def test_zero_bytes_keeps_nothing_and_negative_is_refused():
    lru = MemoryLRU(0)
    lru.put("a", block(1))
    assert len(lru) == 0
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryLRU(-1)


def test_threads_keep_the_bound():
    from concurrent.futures import ThreadPoolExecutor

    lru = MemoryLRU(max_bytes=4000)

    def work(t):
        for i in range(300):
            lru.put(f"{t}-{i % 17}", block(40 + 10 * (i % 7)))
            lru.get(f"{(t + 1) % 4}-{i % 17}")
            assert lru.nbytes <= 4000

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(work, t) for t in range(4)]:
            future.result()  # re-raises a failure of that thread
    held = [lru.size_of(k) for k in lru]
    assert sum(held) == lru.nbytes <= 4000


def test_predictor_store_memory_stays_within_bound():
    model = tiny_model()
    probe = ImagePredictor(model, device="cpu", store=EmbeddingStore())
    state = probe.set_image(make_image(seed=0))
    one = entry_bytes(probe.store.memory.get(state.key))
    store = EmbeddingStore(memory_bytes=int(2.5 * one))
    pred = ImagePredictor(model, device="cpu", store=store)
    for seed in range(5):
        pred.set_image(make_image(seed=seed))
        assert store.memory.nbytes <= store.memory.max_bytes
    assert len(store.memory) == 2


def test_extend_adds_only_to_held_entries():
    lru = MemoryLRU(max_bytes=1000)
    assert not lru.extend("a", block(10)) and len(lru) == 0
    lru.put("a", {"x": torch.zeros(10)})
    assert lru.extend("a", {"y": torch.zeros(10)}) and set(lru.get("a")) == {"x", "y"}


def test_evicted_image_is_read_back_from_disk_not_recomputed(tmp_path):
    """Memory-only parts (the detector's levels) never stand in for an evicted entry."""
    model = tiny_model()
    images = [make_image(seed=s) for s in (1, 2)]
    probe = ImagePredictor(model, device="cpu", store=EmbeddingStore())
    state = probe.set_image(images[0])
    probe.predict(state, "cat")  # trunk + detector levels in memory
    store = EmbeddingStore(tmp_path, memory_bytes=entry_bytes(probe.store.memory.get(state.key)))
    pred = ImagePredictor(model, device="cpu", store=store)
    first, second = pred.set_images(images)
    pred.predict(second, "cat")  # its detector levels join its entry: the first one leaves
    assert store.memory.keys() == [second.key]
    pred.predict(first, "cat")  # its detector levels: computed, no entry to join
    assert store.memory.keys() == [second.key]
    pred.set_image(images[0])
    assert store.stats["misses"] == 2 and store.stats["disk_hits"] == 1
