"""The thresholds file: round trip, clear errors on bad files, applying it to Instances."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam3_core.metrics import (
    Thresholds,
    ThresholdsError,
    apply_thresholds,
    keep_mask,
    load_thresholds,
    save_thresholds,
)
from sam3_core.results import Instances


def instances(names, labels, scores) -> Instances:
    """N tiny instances with the given label indices and scores."""
    n = len(scores)
    return Instances(
        masks=np.zeros((n, 4, 4), bool),
        boxes=np.zeros((n, 4), np.float32),
        scores=np.asarray(scores, np.float32),
        labels=np.asarray(labels, np.int64),
        label_names=list(names),
        low_res_logits=np.zeros((n, 2, 2), np.float32),
    )


def test_round_trip_and_lookup(tmp_path):
    th = Thresholds(
        default=0.5, concepts={"person": 0.42, "Car": 0.61}, metric="cgF1", source={"gt": "gt.json"}
    )
    path = save_thresholds(th, tmp_path / "sub" / "t.json")
    data = json.loads(path.read_text())
    assert data["version"] == 1 and list(data["concepts"]) == ["Car", "person"]  # sorted
    back = load_thresholds(path)
    assert back.to_dict() == th.to_dict()
    assert back.for_concept("car") == 0.61 and back.for_concept("  PERSON ") == 0.42
    assert back.for_concept("dog") == 0.5
    assert back.lowest() == 0.42
    assert Thresholds.uniform(0.3).for_concept("x") == 0.3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"concepts": {}}', "unsupported version None"),
        ('{"version": 2, "concepts": {}}', "unsupported version 2"),
        ('{"version": 1, "concepts": {"cat": 1.5}}', "threshold of concept 'cat'"),
        ('{"version": 1, "concepts": {"cat": "high"}}', "must be a number in [0, 1]"),
        ('{"version": 1, "concepts": ["cat"]}', '"concepts" must map concept names'),
        ('{"version": 1, "default": -1}', "default must be a number"),
        ('{"version": 1, "concepts": {"Cat": 0.2, "cat ": 0.3}}', "are the same concept"),
        ('{"version": 1, "metric": "AP"}', "metric must be one of"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "t.json"
    path.write_text(text)
    with pytest.raises(ThresholdsError) as err:
        load_thresholds(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ThresholdsError, match="does not exist.*sam3 eval --calibrate"):
        load_thresholds(tmp_path / "nope.json")


def test_apply_to_instances():
    # cat (label 0) at 0.3 / 0.5 / 0.9 with cat's threshold 0.5 -> keeps 0.5 and 0.9 (>=);
    # dog (label 1) at 0.35 with the default 0.3 -> kept.
    th = Thresholds(default=0.3, concepts={"cat": 0.5})
    inst = instances(["cat", "dog"], [0, 0, 0, 1], [0.3, 0.5, 0.9, 0.35])
    kept = apply_thresholds(inst, th)
    assert kept.scores.tolist() == pytest.approx([0.5, 0.9, 0.35])
    assert kept.names() == ["cat", "cat", "dog"]
    assert kept.masks.shape == (3, 4, 4)
    assert len(apply_thresholds(instances(["cat"], [], []), th)) == 0
    assert keep_mask(["dog", "cat"], [0.2, 0.6], th).tolist() == [False, True]


def test_public_names_resolve_and_thresholds_stay_light():
    import subprocess
    import sys

    from sam3_core import metrics

    assert all(getattr(metrics, name) is not None for name in metrics.__all__)
    # hosts import the thresholds API without the evaluator's scipy / COCOeval
    code = (
        "import sys, sam3_core.metrics; "
        "print('scipy.optimize' in sys.modules, 'pycocotools.cocoeval' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
