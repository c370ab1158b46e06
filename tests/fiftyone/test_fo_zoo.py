"""The remote zoo source in plugins/fiftyone/zoo: registered from an archive URL as FiftyOne
users register remote sources, then `foz.load_zoo_model` gives a working `Sam3Model`."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

fo = pytest.importorskip("fiftyone")

import fiftyone.zoo as foz

from tests.fiftyone.helpers import load_plugin_module

ZOO = Path(__file__).resolve().parents[2] / "plugins" / "fiftyone" / "zoo"


@pytest.fixture
def zoo_url(tmp_path):
    """The zoo folder as a zip archive served over HTTP on 127.0.0.1."""
    shutil.make_archive(str(tmp_path / "sam3-zoo"), "zip", ZOO.parent, ZOO.name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/sam3-zoo.zip"
    server.shutdown()
    server.server_close()


def test_register_source_and_load_zoo_model(zoo_url, checkpoint, dataset, monkeypatch):
    sam3_fiftyone = load_plugin_module()
    monkeypatch.setenv("SAM3_CHECKPOINT", checkpoint)  # the "download" resolves these weights
    foz.register_zoo_model_source(zoo_url, overwrite=True)
    assert "facebook/sam3" in foz.list_zoo_models(source=zoo_url)
    model = foz.load_zoo_model(
        "facebook/sam3",
        device="cpu",
        classes=["blob"],
        confidence_thresh=0.0,
    )
    assert isinstance(model, sam3_fiftyone.Sam3Model)
    assert model.config.checkpoint == str(Path(checkpoint).resolve())
    dataset.apply_model(model, label_field="zoo")
    assert dataset.count("zoo") == len(dataset) and dataset.count("zoo.detections") > 0
    assert dataset.distinct("zoo.detections.label") == ["blob"]


def test_unreadable_zoo_record_says_how_to_fix(tmp_path):
    zoo = load_plugin_module("zoo")
    record = tmp_path / "sam3-weights.json"
    record.write_text("{broken")
    with pytest.raises(ValueError, match="overwrite=True"):
        zoo.load_model("facebook/sam3", str(record))
