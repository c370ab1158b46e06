"""The backend: one SAM 3 predictor on one worker thread, its embedding store, LS JSON in and out."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sam3_labelstudio import convert, memory
from sam3_labelstudio.images import ImageFetcher
from sam3_labelstudio.labeling import ConfigError, Schema, parse_config

log = logging.getLogger("sam3_labelstudio")


class BackendError(Exception):
    """A request the backend cannot answer: `status` is the HTTP code to reply with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Settings:
    """How the backend thresholds and caches."""

    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    max_in_flight: int = 4  # requests decoding / predicting / converting at once; others wait
    thresholds: object = None  # sam3_core.metrics.thresholds.Thresholds: per concept, wins

    def threshold_of(self, concept: str) -> float:
        """The score a concept's instances need: its own threshold, else --score-threshold."""
        th = self.thresholds
        return self.score_threshold if th is None else th.for_concept(concept)

    def concepts(self, predictor, state, concepts: list[str]):
        """`predictor.predict` for concepts, kept by the per-concept thresholds when given
        (run at their lowest, then each concept's own), else by `score_threshold`."""
        th = self.thresholds
        inst = predictor.predict(
            state,
            concepts=concepts,
            score_threshold=self.score_threshold if th is None else th.lowest(),
            mask_threshold=self.mask_threshold,
        )
        if th is None:
            return inst
        from sam3_core.metrics.thresholds import apply_thresholds

        return apply_thresholds(inst, th)


def json_object(value, where: str) -> dict:
    """`value` when a JSON object, {} when absent, else a 400 naming the field."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BackendError(f"{where} must be a JSON object, not {type(value).__name__}.", 400)
    return value


def task_url(task: dict, schema: Schema) -> str:
    """The image / video URL of a task (`data.<value of the media tag>`), else a 422."""
    url = json_object(task.get("data"), f"Task {task.get('id')}'s data").get(schema.data_key)
    if not isinstance(url, str) or not url:
        raise BackendError(
            f"Task {task.get('id')} has no data.{schema.data_key}: import tasks with a URL under "
            f"'{schema.data_key}' (the {schema.media_tag} tag's value=\"${schema.data_key}\").",
            422,
        )
    return url


class Backend:
    """Answers /predict: batch pre-annotation and interactive clicks, boxes and typed concepts."""

    def __init__(self, predictor, model_version: str, fetcher: ImageFetcher, settings: Settings):
        self.predictor = predictor
        self.model_version = model_version
        self.fetcher = fetcher
        self.settings = settings
        if predictor.store is None:
            raise ValueError(
                "The backend keeps encoded images in the predictor's embedding store: build the "
                "ImagePredictor with store=EmbeddingStore(folder or None)."
            )
        self.store = predictor.store  # clicks reuse the embedding (memory, then disk)
        # One model, one thread: requests arrive on many threads, and every model call (and the
        # image cache) runs on this single worker, serialised, with torch's memory in one arena.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam3-model")
        self._worker_ident: int | None = None
        # The model is serialised anyway: a few requests at once keep it busy, and bound the
        # decoded images and result masks alive (each thread's buffers would otherwise raise
        # the heap's high-water mark, and RSS, under many concurrent clients).
        self._slots = threading.BoundedSemaphore(max(1, settings.max_in_flight))
        self.video = None  # set by `sam3_labelstudio.video` when a VideoPredictor is available

    # ------------------------------------------------------------------ helpers
    def run(self, fn, *args):
        """Call `fn(*args)` on the model thread and wait for its result (re-entrant)."""
        if threading.get_ident() == self._worker_ident:
            return fn(*args)

        def call():
            self._worker_ident = threading.get_ident()
            return fn(*args)

        return self._worker.submit(call).result()

    def schema(self, label_config: str) -> Schema:
        """The parsed labeling config, as a 422 when it has nothing to fill."""
        try:
            return parse_config(label_config)
        except ConfigError as exc:
            raise BackendError(str(exc), 422) from exc

    def _state(self, task: dict, schema: Schema):
        """The encoded image of a task: downloaded off the model thread, then read from the
        embedding store (memory, then disk) or encoded into it."""
        url = task_url(task, schema)
        try:
            image = self.fetcher.fetch_image(url)
        except Exception as exc:  # ImageFetchError: 502 (source failed) or 422 (its data)
            raise BackendError(
                f"Task {task.get('id')}: {exc}", getattr(exc, "status", 502)
            ) from exc
        return self.run(self._encode, image)

    def _encode(self, image):
        """(Model thread) the stored or freshly encoded state; after an encode (which may have
        evicted older entries) freed heap pages go back to the OS, so RSS stays flat."""
        misses = self.store.stats["misses"]
        state = self.predictor.set_image(image)
        if self.store.stats["misses"] != misses:
            memory.trim()
        return state

    # ------------------------------------------------------------------ predict
    def predict(self, payload: dict) -> dict:
        """The /predict body -> `{"results": [...]}`, one prediction per task, in order."""
        with self._slots:
            return self._predict(payload)

    def _predict(self, payload: dict) -> dict:
        tasks = payload.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BackendError(
                "The request needs 'tasks', a list of task objects: send "
                '{"tasks": [{"id": 1, "data": {...}}], "label_config": "<View>...</View>"}.',
                400,
            )
        schema = self.schema(payload.get("label_config") or "")
        params = json_object(payload.get("params"), "params")
        # Label Studio sends context null for Retrieve Predictions, an object for interactive
        # requests (whose result may be empty: then there is nothing to answer)
        interactive = isinstance(params.get("context"), dict)
        context = json_object(params.get("context"), "params.context")
        items = context.get("result") or []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise BackendError("params.context.result must be a list of region objects.", 400)
        if interactive and not items:
            return {"results": [convert.prediction([], self.model_version) for _ in tasks[:1]]}
        if schema.media_tag == "Video":
            if self.video is None:
                raise BackendError(
                    "This backend was built without video support: build it with "
                    "sam3_labelstudio.cli.make_backend (or call video.attach_video on it).",
                    501,
                )
            return {
                "results": self.each_task(tasks, lambda t: self.video.predict(t, schema, items))
            }
        if items:
            if not tasks:
                raise BackendError("An interactive request needs its task.", 400)
            return {"results": [self.interactive(tasks[0], schema, items)]}
        return {"results": self.each_task(tasks, lambda t: self.pre_annotate(t, schema))}

    def each_task(self, tasks: list[dict], fn) -> list[dict]:
        """`fn(task)` for each task, in order. In a batch, a task that fails gets an error entry
        (no `result`: Label Studio logs and skips it) and the others their predictions; a single
        task's error, or every task failing, is the request's error."""
        out, errors = [], []
        for task in tasks:
            try:
                out.append(fn(task))
            except BackendError as exc:
                if len(tasks) == 1:
                    raise
                log.error("task %s skipped: %s", task.get("id"), exc)
                errors.append(exc)
                entry = {"task": task.get("id"), "error": str(exc), "status": exc.status}
                out.append(entry | {"model_version": self.model_version})
        if errors and len(errors) == len(tasks):
            raise BackendError(
                f"{errors[0]} (all {len(tasks)} tasks failed: see the backend log)",
                errors[0].status,
            )
        return out

    def pre_annotate(self, task: dict, schema: Schema) -> dict:
        """Every label's concept on the task's image, in one batched `predict` call; tags
        marked smart (for clicks and boxes) are left out when the config has plain ones."""
        outputs = schema.batch_outputs()
        concepts = schema.concepts(outputs)
        state = self._state(task, schema)
        inst = self.run(self.settings.concepts, self.predictor, state, concepts)
        results = convert.outputs_results(
            outputs, concepts, inst.labels, inst.masks, inst.boxes, inst.scores
        )
        return convert.prediction(results, self.model_version)

    def interactive(self, task: dict, schema: Schema, items: list[dict]) -> dict:
        """Clicks / a box -> one brush mask; a typed concept -> every instance of it."""
        state = self._state(task, schema)
        h, w = state.size
        try:
            prompt = convert.parse_context(items, w, h)
            if prompt.is_geometric:
                out, label = schema.output_for(prompt.label)
                points, point_labels = prompt.points or None, prompt.point_labels or None
                inst = self.run(
                    lambda: self.predictor.predict(
                        state, points=points, point_labels=point_labels, boxes=prompt.box
                    )
                )
            elif prompt.text:
                out, label = schema.label_for_text(prompt.text)
                inst = self.run(self.settings.concepts, self.predictor, state, [prompt.text])
            else:
                return convert.prediction([], self.model_version)
        except (ConfigError, convert.PromptError) as exc:
            raise BackendError(str(exc), 422) from exc
        except ValueError as exc:  # sam3_core.PromptError: points outside the image etc.
            raise BackendError(f"Bad prompt: {exc}", 422) from exc
        results = convert.instance_results(inst.masks, inst.boxes, inst.scores, out, label)
        if prompt.text and not results:  # Label Studio shows nothing for an empty answer
            log.info(
                "task %s: %r found nothing with score >= %g (lower --score-threshold to see more)",
                task.get("id"), prompt.text, self.settings.threshold_of(prompt.text),
            )  # fmt: skip
        return convert.prediction(results, self.model_version)
