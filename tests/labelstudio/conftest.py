"""Label Studio backend tests: make the plugin importable from a plain checkout, build a server."""

from __future__ import annotations

from pathlib import Path

import pytest

try:  # the labelstudio extra is optional: without it these tests are not collected
    import label_studio_sdk  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError:
    collect_ignore_glob = ["test_*.py"]

from tests.labelstudio import servers  # noqa: F401  (puts the plugin package on sys.path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny perturbed model saved as safetensors (config `sam3_tiny`)."""

    from tests.core.helpers import save_checkpoint, tiny_model

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(tiny_model(), path)
    return path


@pytest.fixture(scope="session")
def images_dir(tmp_path_factory) -> Path:
    """A folder served as Label Studio local storage, with two test images."""
    from PIL import Image

    from tests.core.helpers import make_image

    root = tmp_path_factory.mktemp("files")
    Image.fromarray(make_image(90, 120, seed=1)).save(root / "a.png")
    Image.fromarray(make_image(64, 80, seed=2)).save(root / "b.png")
    return root
