"""The click path on a stored image: only the click levels are read (checked, in the decoder's
layout), the trunk waits for a concept prompt, and a damaged part is recomputed on use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam3_core import ImagePredictor
from sam3_core.store import EmbeddingStore, disk
from sam3_core.store import entries as parts
from sam3_core.store.keys import signature_digest
from tests.core.helpers import make_image, tiny_model


def clicks(pred, state):
    return pred.predict(state, points=[[30, 40], [80, 20]], point_labels=[1, 0])


def concepts(pred, state):
    return pred.predict(state, ["red car", "a dog"], score_threshold=0.0)


def assert_same(a, b) -> None:
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


@pytest.fixture()
def reads(monkeypatch):
    """The part names each `disk.read_parts` call was asked for, in order."""
    calls: list[set[str]] = []
    real = disk.read_parts

    def spy(path, key, signature, names, formats=None):
        names = list(names)
        calls.append(set(names))
        return real(path, key, signature, names, formats)

    monkeypatch.setattr(disk, "read_parts", spy)
    return calls


def test_click_reads_only_the_click_levels_then_memory(model, tmp_path, reads):
    image = make_image(97, 150, seed=11)
    plain = ImagePredictor(model, device="cpu")
    expected_clicks = clicks(plain, plain.set_image(image))
    expected_concepts = concepts(plain, plain.set_image(image))
    ImagePredictor(model, device="cpu", store=tmp_path).precompute([image])
    fresh = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path))
    assert_same(clicks(fresh, fresh.set_image(image)), expected_clicks)
    assert reads == [set(parts.TRACKER)]  # no trunk
    assert_same(clicks(fresh, fresh.set_image(image)), expected_clicks)  # from memory
    assert len(reads) == 1
    assert_same(concepts(fresh, fresh.set_image(image)), expected_concepts)
    assert reads[1:] == [{parts.VIT}]  # the trunk, read once a concept needs it
    stats = fresh.store.stats  # each use asks for the trunk: on disk only until a concept read it
    assert stats["disk_hits"] == 3 and stats["memory_hits"] == 0 and stats["misses"] == 0
    assert_same(concepts(fresh, fresh.set_image(image)), expected_concepts)
    assert len(reads) == 2 and stats["memory_hits"] == 1 and stats["disk_hits"] == 3


def test_levels_are_read_in_the_decoders_layout_and_kept(model, tmp_path):
    image = make_image(97, 150, seed=12)
    ImagePredictor(model, device="cpu", store=tmp_path).precompute([image])
    fresh = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path))
    state = fresh.set_image(image)
    feats = fresh.tracker_features(state)
    held = fresh.store.memory.get(state.key)
    assert set(held) == set(parts.TRACKER)
    for name in parts.TRACKER:
        assert held[name].is_contiguous(memory_format=torch.channels_last)
    for level in feats.high_res_feats:
        assert level.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_read_parts_equals_decode_entry(model, tmp_path, dtype):
    image = make_image(97, 150, seed=13)
    pred = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path, dtype=dtype))
    key = pred.precompute([image])[0].key
    path, digest = disk.entry_path(tmp_path, key), signature_digest(pred.store.signature)
    whole = disk.decode_entry(path.read_bytes(), key, digest)
    got = disk.read_parts(path, key, digest, ["tracker.0", "nothing", "vit"], parts.LAYOUTS)
    assert set(got) == {"tracker.0", "vit"}  # parts the file lacks are left out
    for name, tensor in got.items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, whole[name])
    assert got["tracker.0"].is_contiguous(memory_format=torch.channels_last)


def flip_byte_of(path, key: str, digest: str, name: str) -> None:
    """Damage one byte inside the stored part `name` of an entry file."""
    spans, _ = disk.read_header(path, key, digest)
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    data[8 + header_len + spans[name][0] + 5] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damaged", ["vit", "tracker.0"])
def test_damaged_part_is_recomputed_when_used(model, tmp_path, damaged, caplog):
    image = make_image(97, 150, seed=14)
    plain = ImagePredictor(model, device="cpu")
    expected_clicks = clicks(plain, plain.set_image(image))
    expected_concepts = concepts(plain, plain.set_image(image))
    key = ImagePredictor(model, device="cpu", store=tmp_path).precompute([image])[0].key
    fresh = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path))
    digest = signature_digest(fresh.store.signature)
    flip_byte_of(disk.entry_path(tmp_path, key), key, digest, damaged)
    state = fresh.set_image(image)  # the header is fine: the damage shows when read
    with caplog.at_level("WARNING", logger="sam3_core.store"):
        assert_same(clicks(fresh, state), expected_clicks)
        assert_same(concepts(fresh, state), expected_concepts)
    assert fresh.store.stats["corrupt"] == 1 and fresh.store.stats["writes"] == 1
    assert "Recomputing the damaged store entry" in caplog.text
    rewritten = disk.read_parts(disk.entry_path(tmp_path, key), key, digest, [damaged])
    assert set(rewritten) == {damaged}  # stored again, whole


def test_vanished_entry_is_recomputed_from_the_kept_pixels(model, tmp_path):
    image = make_image(97, 150, seed=15)
    plain = ImagePredictor(model, device="cpu")
    expected = concepts(plain, plain.set_image(image))
    key = ImagePredictor(model, device="cpu", store=tmp_path).precompute([image])[0].key
    fresh = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path))
    state = fresh.set_image(image)
    disk.entry_path(tmp_path, key).unlink()  # e.g. a user clearing the folder meanwhile
    assert_same(concepts(fresh, state), expected)
    assert fresh.store.parts(key) == {parts.VIT}
