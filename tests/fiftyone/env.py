"""FiftyOne settings for tests, set once per process before `import fiftyone`: a private
database, model zoo and job folders (removed at exit), this repository's plugins."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

MARK = "SAM3_TEST_FIFTYONE_ROOT"  # set once configured; child processes inherit it all
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def configure() -> Path:
    """Point FiftyOne at a private temporary root (idempotent); returns that root."""
    if os.environ.get(MARK):
        return Path(os.environ[MARK])
    root = tempfile.mkdtemp(prefix="sam3-fiftyone-")
    os.environ[MARK] = root
    os.environ["FIFTYONE_DATABASE_DIR"] = os.path.join(root, "db")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    os.environ["FIFTYONE_PLUGINS_DIR"] = str(PLUGINS)
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
    os.environ["FIFTYONE_MODEL_ZOO_DIR"] = os.path.join(root, "zoo")
    os.environ["SAM3_FIFTYONE_JOBS"] = os.path.join(root, "jobs")  # label_view's job folders
    atexit.register(shutil.rmtree, root, True)
    import_eta_leniently()
    return Path(root)


def import_eta_leniently() -> None:
    """Import eta (FiftyOne's base) with a metadata lookup that gives None for absent fields.

    eta reads `metadata("voxel51-eta")["author"]`. Once the `importlib_metadata` backport (>= 8,
    pulled in by napari's dask) is imported, e.g. by napari's pytest plugin, it replaces the
    stdlib's finder and that lookup raises KeyError, as the field is absent from eta's metadata.
    """
    import importlib.metadata as md

    class Lenient:
        def __init__(self, meta) -> None:
            self.meta = meta

        def __getitem__(self, key):
            return self.meta.get(key)

    original = md.metadata
    md.metadata = lambda name: Lenient(original(name))
    try:
        import eta  # noqa: F401
    except ImportError:
        pass  # fiftyone is not installed: its tests skip
    finally:
        md.metadata = original
