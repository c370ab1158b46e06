"""Job records -> predictions (preannotate), and job files -> project tasks (import), without a
server: the same conversion as /predict, batched posts, and misfits named before any change."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from label_studio_sdk.core.api_error import ApiError
from sam3_labelstudio import convert
from sam3_labelstudio.import_job import (
    ImportFileError,
    fit_to_project,
    import_file,
    local_files_url,
    read_tasks,
    region_names,
    storage_folders,
)
from sam3_labelstudio.labeling import parse_config
from sam3_labelstudio.preannotate import PostError, PredictionPoster, record_results

from sam3_core.postprocess import mask_to_rle

CONFIG = """<View>
  <Image name="image" value="$img"/>
  <BrushLabels name="brush" toName="image">
    <Label value="RBC" concept="red blood cell"/><Label value="Blood" concept="red blood cell"/>
  </BrushLabels>
  <RectangleLabels name="rect" toName="image"><Label value="WBC" concept="white cell"/></RectangleLabels>
</View>"""


def square(y: int, x: int, size: int = 6) -> np.ndarray:
    """A 20x30 mask with one filled square."""
    mask = np.zeros((20, 30), bool)
    mask[y : y + size, x : x + size] = True
    return mask


def without_ids(results: list[dict]) -> list[dict]:
    """Results with their random region ids dropped, to compare two conversions."""
    return [{k: v for k, v in r.items() if k != "id"} for r in results]


def test_a_job_record_converts_as_predict_does():
    """preannotate's record_results and /predict's conversion are one function: the same
    instances give the same regions, every label of a concept gets them."""
    schema = parse_config(CONFIG)
    masks = np.stack([square(1, 2), square(10, 20), square(5, 5)])
    boxes = np.array([[2, 1, 8, 7], [20, 10, 26, 16], [5, 5, 11, 11]], np.float32)
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    concepts = schema.concepts(schema.batch_outputs())
    labels = np.array([0, 1, 0])  # red blood cell, white cell, red blood cell
    direct = convert.outputs_results(schema.batch_outputs(), concepts, labels, masks, boxes, scores)
    instances = [
        {"concept": concepts[k], "score": s, "box": b.tolist(), "segmentation": mask_to_rle(m)}
        for k, s, b, m in zip(labels, scores, boxes, masks)
    ]
    record = {"id": "/x.png", "width": 30, "height": 20, "instances": instances, "error": None}
    from_record = record_results(record, schema)
    assert without_ids(from_record) == without_ids(direct)
    kinds = [
        (r["from_name"], r["value"].get("brushlabels") or r["value"]["rectanglelabels"])
        for r in direct
    ]
    assert kinds == [("brush", ["RBC"])] * 2 + [("brush", ["Blood"])] * 2 + [("rect", ["WBC"])]
    assert record_results(dict(record, instances=[]), schema) == []


class FakeProjects:
    """`ls.projects` that records each import_predictions request (or fails on demand)."""

    def __init__(self, fail: bool = False) -> None:
        self.requests: list[list[dict]] = []
        self.fail = fail

    def import_predictions(self, id: int, request: list[dict]) -> None:
        if self.fail:
            raise ConnectionError("refused")
        self.requests.append(list(request))


class FakeLS:
    def __init__(self, fail: bool = False) -> None:
        self.projects = FakeProjects(fail)


def record(i: int, error: str | None = None) -> dict:
    seg = mask_to_rle(square(i % 10, i % 20))
    inst = [{"concept": "white cell", "score": 0.8, "box": [0, 0, 5, 5], "segmentation": seg}]
    return {"id": f"/im{i}.png", "width": 30, "height": 20, "instances": inst, "error": error}


def test_predictions_are_posted_in_batches_each_task_once():
    ls = FakeLS()
    paths = {f"/im{i}.png": 100 + i for i in range(7)}
    poster = PredictionPoster(ls, 3, paths, parse_config(CONFIG), "v1", batch=3)
    for i in [0, 1, 2, 3, 3, 4, 5, 6, 0]:  # a record seen twice (hook, then the final pass)
        poster.add(record(i, error="not an image" if i == 5 else None))
    poster.add(record(9))  # an image of no task of this run
    poster.flush()
    sizes = [len(r) for r in ls.projects.requests]
    assert sizes == [3, 3] and poster.counts == {"posted": 6, "failed": 1}
    tasks = [p["task"] for r in ls.projects.requests for p in r]
    assert sorted(tasks) == [100, 101, 102, 103, 104, 106]
    first = ls.projects.requests[0][0]
    assert first["model_version"] == "v1" and first["result"][0]["from_name"] == "rect"


def test_a_failed_post_says_how_to_resume():
    poster = PredictionPoster(FakeLS(fail=True), 3, {"/im0.png": 1}, parse_config(CONFIG), "v1")
    poster.add(record(0))
    with pytest.raises(PostError, match="run the same command again"):
        poster.flush()


def job_tasks(paths: list[str], concept: str = "red blood cell", kind: str = "brushlabels"):
    region = {"type": kind, "from_name": "label", "to_name": "image",
              "value": {kind: [concept], "rle": [1, 2]}}  # fmt: skip
    return [{"data": {"image": p}, "predictions": [{"model_version": "sam3", "result": [region]}]}
            for p in paths]  # fmt: skip


def test_job_tasks_fit_a_project(tmp_path):
    root = tmp_path / "root"
    tasks = job_tasks([str(root / "a b" / "x.png"), str(root / "c" / "y.png")])
    fitted, folders = fit_to_project(tasks, parse_config(CONFIG), str(root))
    assert fitted[0]["data"] == {"img": "/data/local-files/?d=a%20b/x.png"}
    [region] = fitted[0]["predictions"][0]["result"]
    assert (region["from_name"], region["to_name"], region["value"]["brushlabels"]) == (
        "brush", "image", ["RBC"]
    )  # fmt: skip
    assert folders == {str(root / "a b"), str(root / "c")}
    assert tasks[0]["data"] == {"image": str(root / "a b" / "x.png")}  # the input is not changed
    assert region_names(tasks) == (["red blood cell"], "brush")


def test_job_tasks_that_misfit_are_named(tmp_path):
    schema = parse_config(CONFIG)
    with pytest.raises(ImportFileError, match=r"no label for \['dog'\]: add <BrushLabels>"):
        fit_to_project(job_tasks([str(tmp_path / "a" / "x.png")], "dog"), schema, str(tmp_path))
    with pytest.raises(ImportFileError, match="no label for"):  # a concept in another kind of tag
        fit_to_project(
            job_tasks([str(tmp_path / "a" / "x.png")], "white cell"), schema, str(tmp_path)
        )
    with pytest.raises(ImportFileError, match="not under --local-files-root"):
        local_files_url("/elsewhere/x.png", str(tmp_path))
    with pytest.raises(ImportFileError, match="pass --local-files-root"):
        fit_to_project(job_tasks(["/abs/x.png"]), schema, None)
    urls = job_tasks(["https://example.com/x.png"])  # URLs go as they are
    assert fit_to_project(urls, schema, None)[0][0]["data"] == {"img": "https://example.com/x.png"}
    (tmp_path / "bad.json").write_text(json.dumps({"data": {}}))
    with pytest.raises(ImportFileError, match="not a list of Label Studio tasks"):
        read_tasks(tmp_path / "bad.json")
    with pytest.raises(ImportFileError, match="Cannot read"):
        read_tasks(tmp_path / "missing.json")


def test_images_directly_in_the_root_are_refused_before_any_change(tmp_path):
    """Label Studio serves no Local Storage on its document root itself: an image there is
    named, with the fix, before any project is made."""
    ls = FakeImportLS()
    tasks = job_tasks([str(tmp_path / "sub" / "y.png"), str(tmp_path / "x.png")])
    (tmp_path / "job.json").write_text(json.dumps(tasks))
    with pytest.raises(ImportFileError, match=r"x.png sits directly in --local-files-root"):
        import_file(ls, tmp_path / "job.json", None, "new", str(tmp_path))
    assert ls.projects.made == [] and ls.import_storage.local.made == []


def test_storages_cover_the_images_below_the_root(tmp_path):
    """One storage on the images' common folder; one per top-level folder when that common
    folder is the document root (which Label Studio refuses as a storage)."""
    root = str(tmp_path)
    one = {f"{root}/jobs/a", f"{root}/jobs/a/b"}
    assert storage_folders(one, root) == [f"{root}/jobs/a"]
    assert storage_folders(one, root + "/") == [f"{root}/jobs/a"]
    two = {f"{root}/a", f"{root}/b/c", f"{root}/b/d"}
    assert storage_folders(two, root) == [f"{root}/a", f"{root}/b"]
    assert storage_folders(two, root + "/") == [f"{root}/a", f"{root}/b"]
    assert storage_folders(set(), root) == []

    ls = FakeImportLS()
    ls.import_storage.local.have = [f"{root}/b"]  # the project's storage already covers b
    tasks = job_tasks([f"{root}/a/x.png", f"{root}/b/c/y.png", f"{root}/b/d/z.png"])
    (tmp_path / "job.json").write_text(json.dumps(tasks))
    assert import_file(ls, tmp_path / "job.json", None, "new", root) == (1, 3)
    assert ls.import_storage.local.made == [f"{root}/a"]


def test_a_new_project_is_deleted_when_its_storage_is_refused(tmp_path):
    ls = FakeImportLS(refuse_storage=True)
    tasks = job_tasks([str(tmp_path / "a" / "x.png")])
    (tmp_path / "job.json").write_text(json.dumps(tasks))
    with pytest.raises(
        ImportFileError, match=r"refused a Local Storage .* project 1 was deleted"
    ) as err:
        import_file(ls, tmp_path / "job.json", None, "new", str(tmp_path))
    assert "cannot be the root" in str(err.value) and "secret" not in str(err.value)
    assert ls.projects.made == [1] and ls.projects.deleted == [1] and ls.projects.imported == []


REFUSED = {"detail": "Validation error", "validation_errors": {"path": ["cannot be the root"]}}


class FakeStorages:
    """`ls.import_storage.local`: lists the storages in `have`, records (or refuses) new ones."""

    def __init__(self, refuse: bool) -> None:
        self.have: list[str] = []
        self.made: list[str] = []
        self.refuse = refuse

    def list(self, project: int) -> list:
        return [SimpleNamespace(path=p) for p in self.have + self.made]

    def create(self, project: int, path: str, **kwargs) -> None:
        if self.refuse:
            raise ApiError(status_code=400, headers={"set-cookie": "secret"}, body=REFUSED)
        self.made.append(path)


class FakeImportLS:
    """A label-studio-sdk client for `import_file`: records the projects, storages and tasks."""

    def __init__(self, refuse_storage: bool = False) -> None:
        self.projects = SimpleNamespace(
            made=[], deleted=[], imported=[], create=self.create, import_tasks=self.import_tasks
        )
        self.projects.delete = lambda id: self.projects.deleted.append(id)
        self.import_storage = SimpleNamespace(local=FakeStorages(refuse_storage))

    def create(self, title: str, label_config: str) -> SimpleNamespace:
        self.projects.made.append(len(self.projects.made) + 1)
        return SimpleNamespace(id=self.projects.made[-1])

    def import_tasks(self, id: int, request: list[dict]) -> None:
        self.projects.imported.extend(request)


def test_preannotate_stopped_by_a_refused_import_resumes(
    tiny_checkpoint, images_dir, tmp_path, monkeypatch, capsys
):
    """Label Studio refusing an import (raised in the job's progress hook) stops the command
    with exit 1 and a message; the next run posts every task once and segments nothing again."""
    from sam3_labelstudio import cli
    from sam3_labelstudio.project import ProjectTask

    schema = parse_config(CONFIG.replace('value="$img"', 'value="$image"'))
    tasks = [
        ProjectTask(1, "/data/local-files/?d=a.png"),
        ProjectTask(2, "/data/local-files/?d=b.png"),
    ]
    argv = ["preannotate", "--project", "7", "--out", str(tmp_path / "run"), "--post-batch", "1",
            "--batch-size", "1", "--local-files-root", str(images_dir), "--checkpoint",
            str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu", "--score-threshold", "0"]  # fmt: skip
    down = FakeLS(fail=True)
    monkeypatch.setattr(cli, "project_or_usage_error", lambda args: (down, schema, tasks))
    assert cli.main(argv) == 1
    assert "did not take 1 predictions for project 7" in capsys.readouterr().err

    up = FakeLS()
    monkeypatch.setattr(cli, "project_or_usage_error", lambda args: (up, schema, tasks))
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"(\d) images done .*, 1 already done, of 2", out).group(1) == "1"
    assert "2 tasks, 2 predictions posted" in out
    assert sorted(p["task"] for r in up.projects.requests for p in r) == [1, 2]
