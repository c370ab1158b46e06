"""The Ray runner on a real two-node local cluster: same records as the local runner, resume
after the driver is killed, and a complete output when a worker process is killed mid-job."""

from __future__ import annotations

import json
import os
import signal

import pytest

from sam3_core.jobs import iter_records, run_job
from tests.core.jobs.job_tools import (
    BAD,
    GOOD,
    kill_driver_after_first_shard,
    shard_ids,
    torch_threads,
)

pytest.importorskip("ray.data", reason='Ray runner tests need Ray Data: pip install ".[ray]"')

TOTAL = GOOD + len(BAD)


def test_ray_driver_killed_then_resumed_equals_local(cluster, tmp_path, spec, local_out):
    out = tmp_path / "out"
    ray = {"runner": "ray", "ray_address": cluster.address, "workers": 2}
    at_kill = kill_driver_after_first_shard(spec, out, **ray)  # a real SIGKILL of the driver
    assert 0 < at_kill < TOTAL
    summary = run_job(spec, out, progress=False, exports=("coco",), **ray)
    assert (summary.skipped, summary.processed) == (at_kill, TOTAL - at_kill)
    ids = shard_ids(out)
    assert len(ids) == len(set(ids)) == TOTAL  # every image exactly once
    ref, _ = local_out
    assert list(iter_records(out)) == list(iter_records(ref))  # identical to the local runner's
    assert (out / "annotations.json").read_bytes() == (ref / "annotations.json").read_bytes()
    again = run_job(spec, out, progress=False, **ray)
    assert (again.processed, again.skipped) == (0, TOTAL)


def test_ray_worker_killed_mid_job_still_completes(cluster, tmp_path, spec, local_out):
    killed: list[tuple[int, int]] = []

    def kill_one_actor(done: int, total: int) -> None:
        if not killed:
            pids = cluster.actor_pids()
            assert pids, "no Worker actor process found on the cluster"
            os.kill(pids[0], signal.SIGKILL)
            killed.append((pids[0], done))

    out = tmp_path / "out"
    summary = run_job(
        spec,
        out,
        runner="ray",
        ray_address=cluster.address,
        workers=2,
        progress=False,
        on_progress=kill_one_actor,
    )
    assert killed and killed[0][1] < TOTAL  # killed with batches left to do
    assert (summary.processed, summary.skipped) == (TOTAL, 0)
    ids = shard_ids(out)
    assert len(ids) == len(set(ids)) == TOTAL  # every image exactly once
    ref, _ = local_out
    assert list(iter_records(out)) == list(iter_records(ref))


def test_ray_per_image_prompts_equal_local(cluster, tmp_path, prompt_spec):
    """Per-image prompts travel with the spec to the actors: the same records as locally, with
    the local run on one thread as each Ray CPU worker (the exemplar path's float sums change in
    the last bits with the thread count)."""
    out = tmp_path / "out"
    summary = run_job(
        prompt_spec, out, runner="ray", ray_address=cluster.address, workers=2, progress=False
    )
    with torch_threads(1):
        local = run_job(prompt_spec, tmp_path / "local", progress=False)
    assert (summary.processed, summary.errors) == (TOTAL, local.errors)
    assert list(iter_records(out)) == list(iter_records(tmp_path / "local"))


def test_cli_segment_on_the_cluster(cluster, tmp_path, job_data, local_out, capsys):
    """`sam3 segment --ray ADDRESS --workers 2`: the same records as the local runner (the CLI
    has no max_pixels flag, so huge.png is segmented here, not an error), both files written,
    the failed images named and exit code 1."""
    from sam3_core.cli import main

    ckpt, images = job_data
    out = tmp_path / "out"
    model = ["--checkpoint", str(ckpt), "--config", "sam3_tiny", "--device", "cpu"]
    args = ["segment", str(images), "--concept", "cell", "--concept", "dog", *model]
    flags = ["--score-threshold", "0.3", "--batch-size", "2", "--format", "coco,labelstudio"]
    ray = ["--ray", cluster.address, "--workers", "2", "--out", str(out)]
    assert main([*args, *flags, *ray]) == 1
    err = capsys.readouterr().err
    assert "3 image(s) failed" in err and "truncated.png" in err
    ref, _ = local_out
    got = {r["id"]: r for r in iter_records(out)}
    want = {r["id"]: r for r in iter_records(ref)}
    assert sorted(got) == sorted(want)
    huge = next(i for i in got if i.endswith("huge.png"))
    assert got.pop(huge)["error"] is None and want.pop(huge)["error"]
    assert got == want
    coco = json.loads((out / "annotations.json").read_text())
    assert len(coco["images"]) == GOOD + 1
    assert len(json.loads((out / "labelstudio.json").read_text())) == GOOD + 1
    assert len(list((out / "overlays").iterdir())) == GOOD + 1


def test_cli_embed_on_the_cluster(cluster, tmp_path, job_data, capsys):
    """`sam3 embed --ray ADDRESS --workers 2`: both workers write one store folder; every
    readable image is stored once, the bad ones are error records, a re-run skips all."""
    from sam3_core.cli import main
    from sam3_core.store import EmbeddingStore

    ckpt, images = job_data
    store = tmp_path / "store"
    model = ["--checkpoint", str(ckpt), "--config", "sam3_tiny", "--device", "cpu"]
    args = ["embed", str(images), "--store", str(store), *model]
    ray = ["--ray", cluster.address, "--workers", "2"]
    assert main([*args, *ray]) == 1  # three bad files (huge.png is read: no max_pixels flag)
    assert "3 image(s) failed" in capsys.readouterr().err
    assert len(EmbeddingStore(store)) == GOOD + 1
    assert main([*args, *ray]) == 1
    assert f"{TOTAL} already done" in capsys.readouterr().out
    # Another model on this store: refused inside the workers, reported in one line (exit 2).
    from tests.core.helpers import save_checkpoint, tiny_model

    other = save_checkpoint(tiny_model(seed=1), tmp_path / "other.safetensors")
    args = ["embed", str(images), "--store", str(store), "--checkpoint", str(other)]
    assert main([*args, "--config", "sam3_tiny", "--device", "cpu", "--restart", *ray]) == 2
    err = capsys.readouterr().err
    assert "sam3: error: the Ray job failed on a worker: StoreMismatchError" in err
    assert len(EmbeddingStore(store)) == GOOD + 1
