"""A Label Studio project read through label-studio-sdk: its schema and its image tasks."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sam3_labelstudio.labeling import ConfigError, Schema, parse_config

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

log = logging.getLogger("sam3_labelstudio")


class ProjectError(RuntimeError):
    """The project cannot be used (unreachable, not an image project): says how to fix it."""


@dataclass
class ProjectTask:
    """One task: its id, image URL, and the model versions of its predictions."""

    id: int
    url: str
    versions: set[str] = field(default_factory=set)


def client(ls_url: str, token: str) -> LabelStudio:
    """A label-studio-sdk client."""
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=ls_url, api_key=token)


def read_project(
    ls: LabelStudio, project: int, ls_url: str = ""
) -> tuple[Schema, list[ProjectTask]]:
    """The schema of an Image project and its tasks with an image (others are logged)."""
    schema = read_schema(ls, project, ls_url)
    tasks = []
    for task in ls.tasks.list(project=project, fields="all"):
        url = (task.data or {}).get(schema.data_key)
        if not (isinstance(url, str) and url):
            log.warning("task %s has no data.%s: skipped", task.id, schema.data_key)
            continue
        versions = {prediction_version(p) for p in (task.predictions or [])}
        tasks.append(ProjectTask(task.id, url, {v for v in versions if v}))
    return schema, tasks


def read_schema(ls: LabelStudio, project: int, ls_url: str = "") -> Schema:
    """The schema of an Image project's labeling config, or a ProjectError saying the fix."""
    try:
        config = ls.projects.get(id=project).label_config
    except Exception as exc:  # the SDK raises ApiError, httpx errors, ...
        raise ProjectError(
            f"Cannot read project {project} from {ls_url or 'Label Studio'} ({exc}): check the "
            "project id, LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY."
        ) from exc
    try:
        schema = parse_config(config)
    except ConfigError as exc:
        raise ProjectError(f"Project {project}: {exc}") from exc
    if schema.media_tag != "Image":
        raise ProjectError(
            f"Project {project} labels {schema.media_tag.lower()}s: this command works on Image "
            "projects (videos are encoded frame by frame while tracking)."
        )
    return schema


def prediction_version(prediction) -> str | None:
    """The model_version of a prediction (an SDK object, or a dict from older SDKs)."""
    if isinstance(prediction, dict):
        return prediction.get("model_version")
    return getattr(prediction, "model_version", None)
