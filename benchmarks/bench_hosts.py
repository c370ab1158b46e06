"""The hosts at dataset scale, CPU, tiny model: Label Studio `/predict` vs `preannotate` (tasks/s)
and FiftyOne's in-process loop vs `label_view`, the job path (samples/s).

Same `--images` PNGs, concepts ("cell", "dog"), thresholds (score 0.3, mask 0.5), batch size 4
and one torch thread on every side. Warm-up is excluded the same way on every side: each timed
run is preceded by an untimed run of that side on a separate warm-up image. The timed run then
pays what the path pays per call: `/predict` and the loops keep their model loaded between
calls (server / cached predictor), `preannotate` and `label_view` load it inside the job on
every run (the tiny checkpoint loads in a fraction of a second). `--repeats` rounds go over
every side in turn, so bursts of load hit all alike; each side reports its best round.

- ls /predict: the backend app (`cli.make_backend` + `server.create_app`) in this process through
  starlette's TestClient, tasks posted `--ls-batch` at a time as Label Studio's "Retrieve
  predictions" does, images read from local storage (`--local-files-root`).
- ls preannotate: `sam3_labelstudio.cli.preannotate` itself (task images listed, the local job
  run, records converted into one prediction per task and imported 100 a request while the job
  runs, as the command does), with the project read replaced by the same tasks and schema, and
  the SDK client by an in-memory one: no Label Studio server and no HTTP in the timing. With `--label-studio`: the real command on a real Label Studio
  ($LS_VENV, started as the e2e tests do, about a minute), images uploaded to a new project per
  round; the timing then includes reading the project, downloading the images from Label
  Studio and posting the predictions. Either way a line gives the time per stage.
- fo loop: `sam3_fiftyone.label_samples` with a `Sam3Model` (the operators' in-process loop
  before jobs: batches of 4, one `set_values` per batch); fo job: `sam3_fiftyone.label_view`
  (local runner, one `set_values` per shard); fo apply_model (informative, not in the last
  line): `dataset.apply_model` with the same model, FiftyOne's own loop. All on datasets in a
  private FiftyOne database (tests/fiftyone/env.py), removed at the end.

Last line: `ls_predict_tps=.. ls_preannotate_tps=.. fo_loop_sps=.. fo_job_sps=..`.
`python -m benchmarks.bench_hosts --images 60` (default 150, 2 rounds: about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

os.environ["OMP_NUM_THREADS"] = "1"  # before torch: the backend's model thread gets 1 too

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins/labelstudio"))
sys.path.insert(0, str(ROOT / "plugins/fiftyone"))

from tests.core.helpers import make_image, save_checkpoint, tiny_model

CONCEPTS = ("cell", "dog")
SCORE, MASK, BATCH = 0.3, 0.5, 4
LABEL_CONFIG = """<View><Image name="image" value="$image"/>
<BrushLabels name="brush" toName="image"><Label value="Cell" concept="cell"/>
<Label value="Dog" concept="dog"/></BrushLabels></View>"""
WARMUP = "warmup.png"


def prepare(root: Path, images: int) -> tuple[str, list[str]]:
    """A tiny checkpoint and `images` PNGs (plus a warm-up one) under `root/images`."""
    folder = root / "images"
    folder.mkdir()
    names = [f"{i:05d}.png" for i in range(images)]
    for i, name in enumerate(names):
        Image.fromarray(make_image(64 + i % 17, 80 + i % 23, seed=i)).save(folder / name)
    Image.fromarray(make_image(70, 90, seed=10_000)).save(folder / WARMUP)
    return str(save_checkpoint(tiny_model(), root / "tiny.safetensors")), names


def model_args(command: str, ckpt: str, folder: Path, *extra: str):
    """Parsed `sam3-labelstudio <command>` options: tiny model on CPU, the shared thresholds."""
    from sam3_labelstudio.cli import build_parser

    return build_parser().parse_args(
        [command, "--checkpoint", ckpt, "--config", "sam3_tiny", "--device", "cpu",
         "--local-files-root", str(folder), "--score-threshold", str(SCORE),
         "--mask-threshold", str(MASK), "--log-level", "warning", *extra]
    )  # fmt: skip


def task(task_id: int, name: str) -> dict:
    """A Label Studio task whose image is in local storage."""
    return {"id": task_id, "data": {"image": f"/data/local-files/?d={name}"}}


def ls_predict(ckpt: str, folder: Path, names: list[str], batch: int, tag: str):
    """(seconds, instances) to pre-annotate every image through the backend's `/predict`; a
    fresh backend, so that its memory store of encoded images starts empty."""
    from sam3_labelstudio.cli import make_backend
    from sam3_labelstudio.server import create_app
    from starlette.testclient import TestClient

    client = TestClient(create_app(make_backend(model_args("serve", ckpt, folder))))

    def post(tasks: list[dict]) -> int:
        r = client.post("/predict", json={"tasks": tasks, "label_config": LABEL_CONFIG})
        r.raise_for_status()
        return sum(len(p["result"]) for p in r.json()["results"])

    post([task(0, WARMUP)])
    t0 = time.perf_counter()
    found = 0
    for start in range(0, len(names), batch):
        found += post([task(start + i + 1, n) for i, n in enumerate(names[start : start + batch])])
    return time.perf_counter() - t0, found


class Projects:
    """The `ls.projects` of an in-memory SDK client: keeps what `import_predictions` receives."""

    def __init__(self) -> None:
        self.created: list[dict] = []

    def import_predictions(self, id: int, request: list[dict]) -> None:
        self.created.extend(request)


def run_preannotate(ckpt: str, folder: Path, out: Path, names: list[str]) -> list[dict]:
    """`cli.preannotate` over tasks of `names` with no server: returns the predictions made."""
    from sam3_labelstudio import cli
    from sam3_labelstudio.labeling import parse_config
    from sam3_labelstudio.project import ProjectTask

    ls = SimpleNamespace(projects=Projects())
    tasks = [ProjectTask(i + 1, task(i + 1, n)["data"]["image"]) for i, n in enumerate(names)]
    found = (ls, parse_config(LABEL_CONFIG), tasks)
    args = model_args("preannotate", ckpt, folder, "--project", "1", "--out", str(out),
                      "--batch-size", str(BATCH))  # fmt: skip
    reader = cli.project_or_usage_error
    cli.project_or_usage_error = lambda _args: found
    try:
        if cli.preannotate(args) != 0:
            raise RuntimeError("preannotate reported failed tasks (see the log above)")
    finally:
        cli.project_or_usage_error = reader
    return ls.projects.created


@contextlib.contextmanager
def stage_times() -> Iterator[dict[str, float]]:
    """Seconds `cli.preannotate` spends per stage while active: its stage functions are
    wrapped where it looks them up. Predictions are converted and imported (in requests of
    `--post-batch`) as the job's batches finish, so "job" includes most of "convert" and
    "post"; those two also count the records read back after the job."""
    import sam3_labelstudio.preannotate as pre
    from sam3_labelstudio import cli

    import sam3_core.jobs

    stages = {"project": (cli, "project_or_usage_error"), "images": (pre, "task_inputs"),
              "job": (sam3_core.jobs, "run_job"), "convert": (pre, "record_results"),
              "post": (pre.PredictionPoster, "flush")}  # fmt: skip
    spent = dict.fromkeys(stages, 0.0)

    def timer(fn, name: str):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t0

        return timed

    with contextlib.ExitStack() as stack:
        for name, (owner, attr) in stages.items():
            stack.enter_context(mock.patch.object(owner, attr, timer(getattr(owner, attr), name)))
        yield spent


def print_stages(spent: dict[str, float], tag: str) -> None:
    """One line: where a timed preannotate run spent its time."""
    print(f"preannotate round {tag}: " + ", ".join(f"{k} {v:.2f} s" for k, v in spent.items()))


def ls_preannotate(ckpt: str, folder: Path, names: list[str], batch: int, tag: str):
    """(seconds, instances) for `preannotate` over the same tasks (fresh job folders)."""
    run_preannotate(ckpt, folder, folder.parent / f"pre-warmup-{tag}", [WARMUP])
    with stage_times() as spent:
        t0 = time.perf_counter()
        made = run_preannotate(ckpt, folder, folder.parent / f"pre-{tag}", names)
        seconds = time.perf_counter() - t0
    print_stages(spent, tag)
    if len(made) != len(names):
        raise RuntimeError(f"preannotate made {len(made)} predictions for {len(names)} tasks")
    return seconds, sum(len(p["result"]) for p in made)


def ls_project(server: tuple[str, str], folder: Path, names: list[str], title: str) -> int:
    """A new project of a real Label Studio with these images uploaded as tasks; its id."""
    import requests
    from label_studio_sdk import LabelStudio

    from tests.labelstudio.servers import access_headers

    base, token = server
    project = LabelStudio(base_url=base, api_key=token).projects.create(
        title=title, label_config=LABEL_CONFIG
    )
    for start in range(0, len(names), 50):  # Django takes at most 100 files a request
        files = {n: (n, (folder / n).read_bytes()) for n in names[start : start + 50]}
        r = requests.post(f"{base}/api/projects/{project.id}/import", files=files,
                          headers=access_headers(base, token), timeout=600)  # fmt: skip
        r.raise_for_status()
    return project.id


def run_preannotate_on(server: tuple[str, str], ckpt: str, out: Path, project: int) -> None:
    """`sam3-labelstudio preannotate` on a real project."""
    from sam3_labelstudio.cli import main

    base, token = server
    argv = ["preannotate", "--project", str(project), "--out", str(out), "--checkpoint", ckpt,
            "--config", "sam3_tiny", "--device", "cpu", "--score-threshold", str(SCORE),
            "--mask-threshold", str(MASK), "--batch-size", str(BATCH),
            "--label-studio-url", base, "--label-studio-token", token, "--log-level", "warning"]  # fmt: skip
    if main(argv) != 0:
        raise RuntimeError("preannotate reported failed tasks (see the log above)")


def ls_preannotate_server(ckpt: str, folder: Path, names: list[str], batch: int, tag: str, *,
                          server: tuple[str, str]):  # fmt: skip
    """(seconds, instances) for `preannotate` on a real Label Studio project of the images:
    reading the project, downloading its images, the job and posting every prediction."""
    from label_studio_sdk import LabelStudio

    warm = ls_project(server, folder, [WARMUP], f"warm-{tag}")
    run_preannotate_on(server, ckpt, folder.parent / f"pre-warmup-{tag}", warm)
    project = ls_project(server, folder, names, f"bench-{tag}")
    with stage_times() as spent:
        t0 = time.perf_counter()
        run_preannotate_on(server, ckpt, folder.parent / f"pre-{tag}", project)
        seconds = time.perf_counter() - t0
    print_stages(spent, tag)
    ls = LabelStudio(base_url=server[0], api_key=server[1])
    made = [p for t in ls.tasks.list(project=project, fields="all") for p in t.predictions or []]
    if len(made) != len(names):
        raise RuntimeError(f"preannotate made {len(made)} predictions for {len(names)} tasks")
    return seconds, sum(len(p.result if hasattr(p, "result") else p["result"]) for p in made)


def fo_dataset(name: str, paths: list[Path]):
    """A new FiftyOne dataset of these image files."""
    import fiftyone as fo

    dataset = fo.Dataset(name)
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in paths])
    return dataset


def fo_model(ckpt: str):
    """The plugin's `Sam3Model` with the shared concepts and thresholds."""
    from sam3_fiftyone import Sam3Model

    return Sam3Model({"checkpoint": ckpt, "config_name": "sam3_tiny", "device": "cpu",
                      "classes": list(CONCEPTS), "confidence_thresh": SCORE,
                      "mask_thresh": MASK})  # fmt: skip


def fo_loop(ckpt: str, folder: Path, names: list[str], batch: int, tag: str):
    """(seconds, detections) for `label_samples` with a `Sam3Model` over a new dataset."""
    from sam3_fiftyone import label_samples

    model = fo_model(ckpt)
    warm = fo_dataset(f"warm-loop-{tag}", [folder / WARMUP])
    label_samples(warm, model, "sam3", batch_size=BATCH)
    dataset = fo_dataset(f"loop-{tag}", [folder / n for n in names])
    t0 = time.perf_counter()
    report = label_samples(dataset, model, "sam3", batch_size=BATCH)
    seconds = time.perf_counter() - t0
    if report.labeled != len(names):
        raise RuntimeError(f"label_samples labeled {report.labeled} of {len(names)}: {report}")
    return seconds, dataset.count("sam3.detections")


def fo_job(ckpt: str, folder: Path, names: list[str], batch: int, tag: str):
    """(seconds, detections) for `label_view` (the local job) over a new dataset."""
    from sam3_fiftyone import label_view

    options = {"score_threshold": SCORE, "mask_threshold": MASK, "checkpoint": ckpt,
               "config": "sam3_tiny", "device": "cpu", "batch_size": BATCH}  # fmt: skip
    label_view(fo_dataset(f"warm-job-{tag}", [folder / WARMUP]), "sam3", CONCEPTS, **options)
    dataset = fo_dataset(f"job-{tag}", [folder / n for n in names])
    t0 = time.perf_counter()
    report = label_view(dataset, "sam3", CONCEPTS, **options)
    seconds = time.perf_counter() - t0
    if report.labeled != len(names):
        raise RuntimeError(f"label_view labeled {report.labeled} of {len(names)}: {report}")
    return seconds, dataset.count("sam3.detections")


def fo_apply_model(ckpt: str, folder: Path, names: list[str], batch: int, tag: str):
    """(seconds, detections) for `dataset.apply_model` with a `Sam3Model` over a new dataset."""
    model = fo_model(ckpt)
    warm = fo_dataset(f"warm-apply-{tag}", [folder / WARMUP])
    warm.apply_model(model, "sam3", batch_size=BATCH, skip_failures=False)
    dataset = fo_dataset(f"apply-{tag}", [folder / n for n in names])
    t0 = time.perf_counter()
    dataset.apply_model(model, "sam3", batch_size=BATCH, skip_failures=False)
    seconds = time.perf_counter() - t0
    return seconds, dataset.count("sam3.detections")


# name -> run(checkpoint, image folder, image names, /predict batch, tag) -> (seconds, found)
SIDES = {
    "ls /predict": ls_predict,
    "ls preannotate": ls_preannotate,
    "fo loop": fo_loop,
    "fo job": fo_job,
    "fo apply_model": fo_apply_model,
}


def stop_fiftyone() -> None:
    """Delete the datasets and stop FiftyOne's database now, before the private root is
    removed at exit (else mongod aborts there and logs an error after the results)."""
    import fiftyone as fo
    import fiftyone.core.odm.database as fod

    fo.delete_datasets("*")
    fod._disconnect()
    if fod._db_service is not None:  # no public API stops the service FiftyOne started
        fod._db_service.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=150, help="tasks / samples per side")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over every side (best)")
    parser.add_argument("--ls-batch", type=int, default=8, help="tasks per /predict request")
    parser.add_argument(
        "--label-studio",
        action="store_true",
        help="time preannotate on a real Label Studio ($LS_VENV, as the e2e tests start it): "
        "project read, image downloads and prediction posting included",
    )
    args = parser.parse_args(argv)
    if min(args.images, args.repeats, args.ls_batch) < 1:
        parser.error("--images, --repeats and --ls-batch must be at least 1")
    from tests.fiftyone.env import configure

    configure()  # a private FiftyOne database, before fiftyone is imported
    torch.set_num_threads(1)
    n = args.images
    sides = dict(SIDES)
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        ckpt, names = prepare(Path(tmp), n)
        if args.label_studio:
            from tests.labelstudio.servers import label_studio

            (Path(tmp) / "lsdata").mkdir()
            server = stack.enter_context(label_studio(Path(tmp) / "lsdata"))
            sides["ls preannotate"] = functools.partial(ls_preannotate_server, server=server)
        for r in range(args.repeats):  # rounds, so that a burst of load hits every side alike
            for name, side in sides.items():
                runs[name].append(side(ckpt, Path(tmp) / "images", names, args.ls_batch, str(r)))
        stop_fiftyone()
    best = {}
    for name, results in runs.items():
        rates = [n / seconds for seconds, _ in results]
        best[name] = max(rates)
        found = sorted({f for _, f in results})
        print(f"{name:>14}: {n} images, best {best[name]:6.2f}/s of "
              f"[{', '.join(f'{x:.2f}' for x in rates)}], instances {found}")  # fmt: skip
    counts = {f for results in runs.values() for _, f in results}
    print("instances: " + ("the same on every side" if len(counts) == 1 else
                           f"DIFFER between sides or rounds {sorted(counts)}"))  # fmt: skip
    print(f"ls_predict_tps={best['ls /predict']:.2f} "
          f"ls_preannotate_tps={best['ls preannotate']:.2f} fo_loop_sps={best['fo loop']:.2f} "
          f"fo_job_sps={best['fo job']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
