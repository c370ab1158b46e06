"""FiftyOne test setup: a private database, this repo's plugins, a tiny checkpoint, small images."""

from __future__ import annotations

import pytest

from tests.fiftyone.env import configure

configure()

SIZES = [(64, 80), (72, 56), (56, 64)]  # (H, W) of the generated images


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> str:
    """A tiny random SAM 3 checkpoint (config "sam3_tiny", recorded in the file) as .safetensors."""

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
