"""A 50-sample dataset labeled through the Ray runner on a real two-node local cluster,
interrupted after its first shards, then resumed: nothing redone, a user's labels untouched."""

from __future__ import annotations

import pytest

fo = pytest.importorskip("fiftyone")
pytest.importorskip("ray.data", reason='Ray runner tests need Ray Data: pip install ".[ray]"')

from tests.core.helpers import make_image
from tests.core.jobs.job_tools import torch_threads
from tests.fiftyone.helpers import load_plugin_module

sam3_fiftyone = load_plugin_module()
N = 50


class Interrupted(Exception):
    """Stands for the App's process stopping in the middle of a run."""


@pytest.fixture
def big_dataset(tmp_path):
    """N small images; the user has labeled `sam3` on two of them and has a `notes` field."""
    from PIL import Image

    ds = fo.Dataset()
    samples = []
    for i in range(N):
        path = tmp_path / f"im{i:02d}.png"
        Image.fromarray(make_image(40 + i % 5 * 4, 48 + i % 3 * 8, seed=i)).save(path)
        samples.append(fo.Sample(filepath=str(path), notes=fo.Classification(label=f"n{i}")))
    ds.add_samples(samples)
    mine = fo.Detections(detections=[fo.Detection(label="mine", bounding_box=[0, 0, 0.5, 0.5])])
    for sample in ds.limit(2):
        sample["sam3"] = mine.copy()
        sample.save()
    yield ds
    ds.delete()


def test_ray_run_interrupted_then_resumed(cluster, big_dataset, checkpoint):
    # `cluster`: the two-node Ray cluster of tests/conftest.py, started for this module
    ds = big_dataset
    user = {s.id: [d.id for d in s.sam3.detections] for s in ds.exists("sam3")}
    notes = ds.values("notes.label")
    settings = {
        "checkpoint": checkpoint,
        "device": "cpu",
        "score_threshold": 0.0,
        "batch_size": 4,
        "skip_labeled": True,
        "ray": cluster.address,
        "workers": 2,
    }

    def stop_after_two_shards(fraction: float, text: str) -> None:
        if ds.count("sam3") >= 2 + 8:
            raise Interrupted(text)

    with pytest.raises(Interrupted):
        sam3_fiftyone.label_view(ds, "sam3", ["blob"], progress=stop_after_two_shards, **settings)
    first = {s.id: [d.id for d in s.sam3.detections] for s in ds.exists("sam3")}
    assert 10 <= len(first) < N  # some shards were written back before the interruption

    report = sam3_fiftyone.label_view(ds, "sam3", ["blob"], **settings)
    assert report.skipped == len(first) and report.labeled == N - len(first)
    assert report.failed == 0
    assert ds.count("sam3") == N
    done = {s.id: [d.id for d in s.sam3.detections] for s in ds.select(list(first))}
    assert done == first  # written once: the resumed run left them as they were
    assert {k: done[k] for k in user} == user  # the user's own labels kept
    assert ds.values("notes.label") == notes  # another field untouched
    assert ds.count("sam3.detections") > N  # instances found on the images


def test_exemplars_on_ray_equal_local(cluster, big_dataset, checkpoint):
    """Each sample's own boxes travel to the Ray workers: the labels equal a local run's."""
    view = big_dataset.limit(8)
    boxes = [
        fo.Detections(detections=[fo.Detection(label="x", bounding_box=[i / 20, 0.1, 0.4, 0.5])])
        for i in range(len(view))
    ]
    view.set_values("ex", boxes)
    settings = {"checkpoint": checkpoint, "device": "cpu", "score_threshold": 0.0}
    report = sam3_fiftyone.label_from_exemplars(
        view, "on_ray", "ex", ray=cluster.address, workers=2, batch_size=2, **settings
    )
    assert (report.labeled, report.failed) == (len(view), 0)
    with torch_threads(1):  # as each Ray worker, so the scores can be compared exactly
        sam3_fiftyone.label_from_exemplars(view, "here", "ex", batch_size=2, **settings)
    for sample in view:
        a, b = sample.on_ray.detections, sample.here.detections
        assert [d.label for d in a] == [d.label for d in b] and a
        assert [d.confidence for d in a] == [d.confidence for d in b]
        assert all((p.mask == q.mask).all() for p, q in zip(a, b))
    assert big_dataset.count("on_ray") == len(view)  # nothing outside the view
