"""The widget's model side without a viewer: the embedding store, load errors, no network."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sam3_napari.engine import Engine, LoadError, ModelChoice
from sam3_napari.storage import StoreChoice


def plane() -> np.ndarray:
    from sam3_napari.sample_data import make_cells

    from sam3_core.formats.images import as_rgb8

    return as_rgb8(make_cells(112))


def test_a_store_folder_is_reused_by_a_new_session(tiny_checkpoint, tmp_path):
    choice = ModelChoice(tiny_checkpoint, "", "cpu")  # config: auto, inferred by sam3_core
    store = StoreChoice(folder=str(tmp_path / "store"))
    first = Engine().segment_concept(choice, store, plane, "nucleus", [], 0.0)
    assert len(list((tmp_path / "store").rglob("*.safetensors"))) == 1

    engine = Engine()  # a new napari session: nothing in memory
    again = engine.segment_concept(choice, store, plane, "nucleus", [], 0.0)
    stats = engine.predictor(choice, store).store.stats
    assert stats["disk_hits"] == 1 and stats["misses"] == 0  # read, not encoded
    np.testing.assert_array_equal(first.masks, again.masks)
    np.testing.assert_array_equal(first.scores, again.scores)

    clicks = engine.segment_object(choice, store, plane, np.array([[50.0, 50.0]]), np.array([1]))
    assert clicks.masks.shape == (1, 112, 112) and stats["misses"] == 0

    memory = StoreChoice(folder=str(tmp_path / "unused"), disk=False)
    engine.segment_concept(choice, memory, plane, "nucleus", [], 0.0)
    assert not (tmp_path / "unused").exists()


def test_a_store_of_another_model_is_refused(tiny_checkpoint, tmp_path):
    from tests.core.helpers import save_checkpoint, tiny_model

    other = save_checkpoint(tiny_model(seed=5), tmp_path / "other.safetensors")
    store = StoreChoice(folder=str(tmp_path / "store"))
    tiny = ModelChoice(tiny_checkpoint, "sam3_tiny", "cpu")
    Engine().segment_concept(tiny, store, plane, "x", [])
    with pytest.raises(LoadError) as err:
        Engine().segment_concept(ModelChoice(str(other), "sam3_tiny", "cpu"), store, plane, "x", [])
    assert str(err.value).startswith(f"the embedding store {tmp_path / 'store'} holds another")
    assert "choose another folder in 'embedding store'" in str(err.value)
    # automatic folders are per model: no clash
    auto = StoreChoice(source=str(tmp_path / "cells.tif"))
    for path in (tiny_checkpoint, str(other)):
        Engine().segment_concept(ModelChoice(path, "sam3_tiny", "cpu"), auto, plane, "x", [])
    assert len(list((tmp_path / "sam3-embeddings").iterdir())) == 2


def test_a_checkpoint_of_another_config_says_the_fix_first(tiny_checkpoint):
    with pytest.raises(LoadError) as err:
        Engine().predictor(ModelChoice(tiny_checkpoint, "sam3", "cpu"))
    message = str(err.value)
    assert message.startswith(f"could not load '{tiny_checkpoint}' with config 'sam3': ")
    fix = max(message.find("leave config unset"), message.find("config differs"))
    names = message.find("detector_model.")
    assert 0 < fix < 250 and (names == -1 or fix < names)  # the fix before any listing
    assert len(message) < 700 and "'config' to auto" in message


def test_without_network_the_hub_is_asked_once_and_the_cache_is_used(
    tiny_checkpoint, tmp_path, monkeypatch
):
    import shutil

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    with pytest.raises(LoadError, match="cannot reach the hub"):
        Engine().predictor(ModelChoice("facebook/sam3", "sam3_tiny", "cpu"))
    assert time.monotonic() - start < 15  # not the hub client's minute of retries

    snapshot = tmp_path / "hub" / "models--facebook--sam3" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, snapshot / "model.safetensors")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    pred = Engine().predictor(ModelChoice("facebook/sam3", "sam3_tiny", "cpu"))
    assert pred.model.config.image_size == 112  # loaded from the cache, offline


def test_embeddings_precomputed_from_the_file_answer_the_widget(tiny_checkpoint, tmp_path):
    """`sam3 embed` (ImagePredictor.precompute) on a 16-bit TIFF, then the widget's plane of the
    same image (napari's array through our conversion) is a disk hit: no backbone pass."""
    import tifffile
    from sam3_napari.plane import plane_rgb8
    from sam3_napari.sample_data import make_cells

    from sam3_core.predictor import ImagePredictor

    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, make_cells(128))
    folder = tmp_path / "store"
    ImagePredictor.from_pretrained(tiny_checkpoint, config=None, store=folder).precompute(
        [str(path)]
    )

    engine, store = Engine(), StoreChoice(folder=str(folder))
    choice = ModelChoice(tiny_checkpoint, "", "cpu")
    layer_data = tifffile.imread(path)  # what napari's reader gives the Image layer
    engine.segment_concept(choice, store, lambda: plane_rgb8(layer_data), "nucleus", [], 0.0)
    stats = engine.predictor(choice, store).store.stats
    assert stats["disk_hits"] == 1 and stats["misses"] == 0
