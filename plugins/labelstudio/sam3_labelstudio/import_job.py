"""`sam3-labelstudio import FILE`: a job's Label Studio file (`sam3 segment --format
labelstudio`, `sam3_core.jobs.write_labelstudio`) as pre-annotated tasks of a project.

The file's tasks name images by local path and label regions by concept; a project shows
images through Label Studio's Local Storage and labels regions by its own tags. So each
image path becomes a `/data/local-files/?d=...` URL under Label Studio's document root (a
Local Storage of the project covers the folder), and each region goes to the project's tag
and label whose value or `concept` is its concept. Nothing is imported when anything misfits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from sam3_core.cli.args import parse_positive_int
from sam3_labelstudio.labeling import Schema
from sam3_labelstudio.options import add_connection_options

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

LOCAL_FILES = "/data/local-files/?d="
IMPORT_BATCH = 500  # tasks per import request
REGION_TYPES = {"brushlabels": "BrushLabels", "rectanglelabels": "RectangleLabels"}


class ImportFileError(ValueError):
    """The file, its images or the project's labels do not fit: the message says the fix."""


def read_tasks(path: str | os.PathLike) -> list[dict]:
    """The tasks of a Label Studio JSON file: a list of objects, each with `data`."""
    try:
        tasks = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ImportFileError(
            f"Cannot read {path} ({exc}): pass the labelstudio.json that `sam3 segment "
            "--format labelstudio` wrote into its --out folder."
        ) from exc
    if not (isinstance(tasks, list) and all(isinstance(t, dict) and "data" in t for t in tasks)):
        raise ImportFileError(f"{path} is not a list of Label Studio tasks (objects with data).")
    return tasks


def region_names(tasks: list[dict]) -> tuple[list[str], str]:
    """The concepts the tasks' regions are labeled with (in order) and the region kind
    ("brush" when any region is a mask, else "rectangle"), for a new project's config."""
    names, kinds = {}, set()
    for region in regions(tasks):
        kinds.add(region["type"])
        names.update(dict.fromkeys(region["value"].get(region["type"]) or []))
    return list(names), "brush" if "brushlabels" in kinds or not kinds else "rectangle"


def regions(tasks: list[dict]) -> Iterator[dict]:
    """Every region of every prediction of `tasks`."""
    for task in tasks:
        for prediction in task.get("predictions") or []:
            yield from prediction.get("result") or []


def local_files_url(path: str, root: str) -> str:
    """The Local Storage URL of a file under Label Studio's document root `root`."""
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([base, real]) != base:
        raise ImportFileError(
            f"The image {path} is not under --local-files-root {root}: Label Studio serves local "
            "files from its LOCAL_FILES_DOCUMENT_ROOT only. Pass the folder that holds the images "
            "(and start Label Studio with that document root)."
        )
    return LOCAL_FILES + quote(os.path.relpath(real, base), safe="/")


def fit_to_project(tasks: list[dict], schema: Schema, root: str | None) -> tuple[list[dict], set]:
    """The tasks as the project needs them (image under its data key, as a Local Storage URL;
    regions in its tags and labels), and the folders of the local images."""
    folders, missing, fitted = set(), {}, []
    for task in tasks:
        data = dict(task["data"])
        image = data.pop("image", None) or data.get(schema.data_key)
        if isinstance(image, str) and os.path.isabs(image):
            if not root:
                raise ImportFileError(
                    f"The tasks name local files ({image}): pass --local-files-root, Label "
                    "Studio's LOCAL_FILES_DOCUMENT_ROOT (with LOCAL_FILES_SERVING_ENABLED=true), "
                    "a folder holding the images."
                )
            url = local_files_url(image, root)
            folder = os.path.dirname(unquote(url[len(LOCAL_FILES) :]))
            if not folder:
                raise ImportFileError(
                    f"The image {image} sits directly in --local-files-root {root}: Label Studio "
                    "serves Local Storage from subfolders of its document root only. Move the "
                    f"images into a folder inside {root} and run `sam3 segment` on them there (or "
                    f"start Label Studio with a document root above {root} and pass that)."
                )
            image = url
            folders.add(os.path.join(root, folder))
        predictions = []
        for prediction in task.get("predictions") or []:
            result = [fit_region(r, schema, missing) for r in prediction.get("result") or []]
            predictions.append(dict(prediction, result=result))
        fitted.append({"data": data | {schema.data_key: image}, "predictions": predictions})
    if missing:
        wanted = "; ".join(f"<{tag}> with <Label value={name!r}/>" for name, tag in missing.items())
        raise ImportFileError(
            f"The project has no label for {sorted(missing)}: add {wanted} to its labeling config "
            "(a label's value or its concept attribute must be the concept), or import into a new "
            "project with --title."
        )
    return fitted, folders


def fit_region(region: dict, schema: Schema, missing: dict) -> dict:
    """One region moved to the project's tag and label for its concept (else noted in
    `missing`: concept -> tag)."""
    kind = region.get("type")
    if kind not in REGION_TYPES:
        raise ImportFileError(f"A region of type {kind!r} is not from a sam3 job: re-export it.")
    concept = (region["value"].get(kind) or [""])[0]
    for out in schema.outputs:
        if out.tag != REGION_TYPES[kind]:
            continue
        for label, text in out.concepts.items():
            if concept in (label, text):
                value = dict(region["value"], **{kind: [label]})
                return dict(region, from_name=out.name, to_name=out.to_name, value=value)
    missing[concept] = REGION_TYPES[kind]
    return region


def storage_folders(folders: set[str], root: str) -> list[str]:
    """The folders to give Local Storages over `folders` (subfolders of `root`): their common
    folder, or each top-level subfolder of `root` holding some when that is `root` itself
    (Label Studio refuses a storage on its document root)."""
    if not folders:
        return []
    common = os.path.commonpath(sorted(folders))
    if common != os.path.normpath(root):
        return [common]
    tops = {os.path.relpath(f, common).split(os.sep)[0] for f in folders}
    return sorted(os.path.join(common, top) for top in tops)


def cover_folders(ls: LabelStudio, project: int, folders: set[str], root: str) -> None:
    """Give the project Local Storages over the images' folders (`storage_folders`; not
    synced: the tasks come from the file), but for those its storages cover already. Folders
    are spelled under `root` as Label Studio spells its document root (it compares strings)."""
    have = [
        os.path.normpath(s.path) for s in ls.import_storage.local.list(project=project) if s.path
    ]
    for folder in storage_folders(folders, root):
        if any(os.path.commonpath([path, folder]) == path for path in have):
            continue
        try:
            ls.import_storage.local.create(
                project=project, path=folder, title="sam3 job images", use_blob_urls=True
            )
        except Exception as exc:  # the SDK raises ApiError
            raise ImportFileError(
                f"Label Studio refused a Local Storage on {folder} ({refusal(exc)}): start it with "
                f"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_"
                f"DOCUMENT_ROOT={root} (a folder above the images' folders)."
            ) from exc


def refusal(exc: Exception) -> str:
    """What Label Studio said in an SDK error: its validation errors or detail (an ApiError's
    text also holds every response header), else the error's text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return str(body.get("validation_errors") or body.get("detail") or body)
    return str(exc)


def import_tasks(
    ls: LabelStudio, project: int, tasks: list[dict], batch: int = IMPORT_BATCH
) -> int:
    """Import tasks with their predictions, `batch` per request; returns how many."""
    for start in range(0, len(tasks), batch):
        try:
            ls.projects.import_tasks(id=project, request=tasks[start : start + batch])
        except Exception as exc:  # the SDK raises ApiError, httpx errors, ...
            raise ImportFileError(
                f"Label Studio refused tasks {start + 1}-{start + batch} of {len(tasks)} "
                f"({refusal(exc)}); "
                f"the {start} before them are in project {project}. Import the rest after fixing "
                "the cause (or delete the project's tasks and import the whole file again)."
            ) from exc
    return len(tasks)


def import_file(
    ls: LabelStudio,
    path: str | os.PathLike,
    project: int | None,
    title: str | None,
    root: str | None,
    batch: int = IMPORT_BATCH,
    ls_url: str = "",
) -> tuple[int, int]:
    """Import a job's Label Studio file into `project`, or into a new project `title` whose
    labeling config has a label per concept; returns (project id, tasks imported)."""
    from sam3_core.jobs import labeling_config
    from sam3_labelstudio.labeling import parse_config
    from sam3_labelstudio.project import read_schema

    tasks = read_tasks(path)
    if project is None:
        names, kind = region_names(tasks)
        if not names:
            raise ImportFileError(f"{path} has no regions: pass --project to import the images.")
        config = labeling_config(names, kind)
        schema = parse_config(config)
    else:
        schema = read_schema(ls, project, ls_url)
    fitted, folders = fit_to_project(tasks, schema, root)  # all checked before any change
    if project is not None:
        cover_folders(ls, project, folders, root or "")
        return project, import_tasks(ls, project, fitted, batch)
    project = ls.projects.create(title=title, label_config=config).id
    try:
        cover_folders(ls, project, folders, root or "")
    except ImportFileError as exc:  # leave no empty project behind
        raise ImportFileError(f"{exc} {drop_project(ls, project)}") from exc
    return project, import_tasks(ls, project, fitted, batch)


def drop_project(ls: LabelStudio, project: int) -> str:
    """Delete a project this command created and could not fill; says what happened to it."""
    try:
        ls.projects.delete(id=project)
    except Exception as exc:  # noqa: BLE001 - any failure: the message says to delete it
        return f"The new project {project} is empty and could not be deleted ({exc}): delete it."
    return f"Nothing was imported (the new project {project} was deleted)."


def add_import_parser(sub: argparse._SubParsersAction) -> None:
    """The `import` subcommand's options (`sub`: the CLI's subparsers)."""
    i = sub.add_parser(
        "import",
        help="import a job's labelstudio.json (sam3 segment --format labelstudio) into a project "
        "as pre-annotated tasks",
    )
    i.add_argument("file", type=Path, help="the job's labelstudio.json")
    where = i.add_mutually_exclusive_group(required=True)
    where.add_argument("--project", type=parse_positive_int, help="an existing project's id")
    where.add_argument("--title", help="create a project with a label per concept")
    add_connection_options(i)
    i.add_argument(
        "--local-files-root",
        default=os.environ.get("LOCAL_FILES_DOCUMENT_ROOT"),
        help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT: image paths below it become Local "
        "Storage URLs (env LOCAL_FILES_DOCUMENT_ROOT)",
    )
    i.add_argument(
        "--import-batch", type=parse_positive_int, default=IMPORT_BATCH, help="tasks a request"
    )
    i.add_argument("--log-level", default="info")


def import_command(args: argparse.Namespace) -> int:
    """Run `sam3-labelstudio import`; 2 when the file, its images or the project misfit."""
    from sam3_labelstudio.project import ProjectError, client

    try:
        if not (args.label_studio_url and args.label_studio_token):
            raise ProjectError("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to reach the project")
        ls = client(args.label_studio_url, args.label_studio_token)
        project, n = import_file(ls, args.file, args.project, args.title, args.local_files_root,
                                 args.import_batch, args.label_studio_url)  # fmt: skip
    except (ImportFileError, ProjectError) as exc:
        print(f"sam3-labelstudio import: {exc}", file=sys.stderr)
        return 2
    print(f"project {project}: {n} tasks imported with their predictions from {args.file}")
    return 0
