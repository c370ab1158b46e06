"""`lookup` counts each use once, by where the asked parts came from: memory or disk."""

from __future__ import annotations

import torch

from sam3_core.store import EmbeddingStore


def test_lookup_counts_a_memory_hit_only_when_memory_holds_every_part(tmp_path):
    writer = EmbeddingStore(tmp_path / "store")
    writer.bind({"model": "test"})
    writer.put("k", {"a": torch.zeros(4), "b": torch.ones(4)})
    store = EmbeddingStore(tmp_path / "store")  # as in another process: nothing held in memory
    store.bind({"model": "test"})
    assert store.read("k", ["a"]) is not None  # memory now holds part a only
    assert store.lookup("k", ["a", "b"])  # b comes from the disk file
    assert (store.stats["memory_hits"], store.stats["disk_hits"]) == (0, 1)
    assert store.lookup("k", ["a"])  # all in memory
    assert (store.stats["memory_hits"], store.stats["disk_hits"]) == (1, 1)
    assert not store.lookup("k", ["a", "c"]) and store.stats["misses"] == 1
