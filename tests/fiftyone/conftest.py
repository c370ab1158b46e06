"""FiftyOne test setup: a private database, this repo's plugins, a tiny checkpoint, small images."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_DB_DIR = tempfile.mkdtemp(prefix="sam3-fiftyone-db-")
os.environ["FIFTYONE_DATABASE_DIR"] = _DB_DIR
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ["FIFTYONE_PLUGINS_DIR"] = str(Path(__file__).resolve().parents[2] / "plugins")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
atexit.register(shutil.rmtree, _DB_DIR, True)


def _import_eta_leniently() -> None:
    """Import eta (FiftyOne's base) with a metadata lookup that gives None for absent fields.

    eta reads `metadata("voxel51-eta")["author"]`. Once the `importlib_metadata` backport (>= 8,
    pulled in by napari's dask) is imported, e.g. by napari's pytest plugin, it replaces the
    stdlib's finder and that lookup raises KeyError, as the field is absent from eta's metadata.
    """
    import importlib.metadata as md

    class _Lenient:
        def __init__(self, meta) -> None:
            self._meta = meta

        def __getitem__(self, key):
            return self._meta.get(key)

    original = md.metadata
    md.metadata = lambda name: _Lenient(original(name))
    try:
        import eta  # noqa: F401
    except ImportError:
        pass  # fiftyone is not installed: its tests skip
    finally:
        md.metadata = original


_import_eta_leniently()

SIZES = [(64, 80), (72, 56), (56, 64)]  # (H, W) of the generated images


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> str:
    """A tiny random SAM 3 checkpoint (config "sam3_tiny") as a .safetensors file."""

    from tests.core.helpers import save_checkpoint, tiny_model

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(tiny_model(), path)
    return str(path)


@pytest.fixture(scope="session")
def image_paths(tmp_path_factory) -> list[str]:
    """A few small PNGs of different sizes."""
    from PIL import Image

    from tests.core.helpers import make_image

    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, (h, w) in enumerate(SIZES):
        path = folder / f"img{i}.png"
        Image.fromarray(make_image(h, w, seed=i)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def dataset(image_paths):
    """An image dataset with a `gt` Detections field (two boxes per image); deleted afterwards."""
    fo = pytest.importorskip("fiftyone")

    ds = fo.Dataset()
    samples = []
    for path in image_paths:
        gt = fo.Detections(
            detections=[
                fo.Detection(label="blob", bounding_box=[0.1, 0.1, 0.4, 0.4]),
                fo.Detection(label="bg", bounding_box=[0.5, 0.5, 0.3, 0.3], tags=["negative"]),
            ]
        )
        samples.append(fo.Sample(filepath=path, gt=gt))
    ds.add_samples(samples)
    yield ds
    ds.delete()
