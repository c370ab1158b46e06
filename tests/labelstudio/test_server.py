"""The ML backend protocol in-process (Starlette test client) on the tiny SAM 3 model."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import pytest
from sam3_labelstudio.cli import build_parser, make_backend
from sam3_labelstudio.server import create_app
from starlette.testclient import TestClient

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image">
    <Label value="RBC" concept="red blood cell"/><Label value="WBC"/>
  </BrushLabels>
  <PolygonLabels name="poly" toName="image"><Label value="Nucleus"/></PolygonLabels>
  <RectangleLabels name="rect" toName="image" smart="true"><Label value="Cell"/></RectangleLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="RBC" smart="true"/></KeyPointLabels>
  <TextArea name="prompt" toName="image"/>
</View>"""
TASK_A = {"id": 1, "data": {"image": "/data/local-files/?d=a.png"}}
TASK_B = {"id": 2, "data": {"image": "/data/local-files/?d=b.png"}}
NO_LABELS = """<View><Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image"/>
  <RectangleLabels name="rect" toName="image"><Label value="Cell"/></RectangleLabels>
</View>"""
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ls:secret").decode()}


@pytest.fixture(scope="module")
def backend(tiny_checkpoint, images_dir):
    args = build_parser().parse_args(
        ["serve", "--checkpoint", str(tiny_checkpoint), "--config", "sam3_tiny", "--device", "cpu",
         "--local-files-root", str(images_dir), "--score-threshold", "0.0",
         "--label-studio-url", "http://127.0.0.1:1"]
    )  # fmt: skip
    return make_backend(args)


@pytest.fixture(scope="module")
def client(backend):
    with TestClient(create_app(backend, basic_auth="ls:secret"), headers=AUTH) as c:
        yield c


def click(x, y, positive=True, label="RBC"):
    value = {"x": x, "y": y, "keypointlabels": [label]}
    return {"type": "keypointlabels", "value": value, "is_positive": positive,
            "original_width": 120, "original_height": 90}  # fmt: skip


def test_health_setup_versions_webhook_and_auth(client, backend):
    assert client.get("/health").json()["status"] == "UP"
    version = backend.model_version
    assert version.startswith("sam3-sam3_tiny")
    setup = client.post("/setup", json={"project": "1.1", "schema": CONFIG})
    assert setup.status_code == 200 and setup.json() == {"model_version": version}
    assert client.get("/versions").json()["versions"] == [version]
    assert client.post("/webhook", json={"action": "ANNOTATION_CREATED"}).status_code == 201
    assert client.get("/health", headers={"Authorization": ""}).status_code == 401
    wrong = "Basic " + base64.b64encode(b"ls:wrong").decode()
    assert client.post("/predict", json={}, headers={"Authorization": wrong}).status_code == 401


def test_batch_preannotation_one_batched_call_per_task(client, backend, monkeypatch):
    calls = []
    real = backend.predictor.predict
    monkeypatch.setattr(
        backend.predictor, "predict", lambda *a, **k: calls.append(k) or real(*a, **k)
    )
    body = {"tasks": [TASK_A, TASK_B], "label_config": CONFIG, "project": "1.1", "params": {}}
    resp = client.post("/predict", json=body)
    assert resp.status_code == 200, resp.text
    preds = resp.json()["results"]
    assert len(preds) == 2 and len(calls) == 2
    # the smart RectangleLabels serves smart boxes: batch predictions leave it empty
    assert calls[0]["concepts"] == ["red blood cell", "WBC", "Nucleus"]
    first = preds[0]["result"]
    assert {r["type"] for r in first} == {"brushlabels", "polygonlabels"}
    labels = {r["value"][r["type"]][0] for r in first}
    assert labels == {"RBC", "WBC", "Nucleus"}
    for r in first:
        assert (r["original_width"], r["original_height"]) == (120, 90)
        assert r["to_name"] == "image" and 0 <= r["score"] <= 1
    assert preds[1]["result"][0]["original_width"] == 80
    assert preds[0]["model_version"] == backend.model_version


def test_a_config_of_smart_tags_only_is_filled_in_batch(client):
    config = """<View><Image name="image" value="$image"/>
      <RectangleLabels name="rect" toName="image" smartOnly="true"><Label value="Cell"/></RectangleLabels>
    </View>"""  # fmt: skip
    resp = client.post("/predict", json={"tasks": [TASK_A], "label_config": config})
    assert resp.status_code == 200, resp.text
    assert {r["type"] for r in resp.json()["results"][0]["result"]} == {"rectanglelabels"}


def test_interactive_clicks_reuse_the_embedding(client, backend, images_dir, monkeypatch):
    """Clicks read the image's embedding from the store: encoded once, by content (the same
    picture under another name and task hits too)."""
    from PIL import Image

    Image.open(images_dir / "b.png").save(images_dir / "b-copy.png")
    stats = backend.store.stats
    calls = []
    real = backend.predictor.predict
    monkeypatch.setattr(
        backend.predictor, "predict", lambda *a, **k: calls.append(k) or real(*a, **k)
    )
    misses, hits = stats["misses"], stats["memory_hits"]
    clicks = [[click(40, 50)], [click(40, 50), click(70, 20, positive=False)]]
    for task_id, name, ctx in [(99, "b.png", clicks[0]), (100, "b-copy.png", clicks[1])]:
        task = {"id": task_id, "data": {"image": f"/data/local-files/?d={name}"}}
        body = {"tasks": [task], "label_config": CONFIG, "params": {"context": {"result": ctx}}}
        resp = client.post("/predict", json=body)
        assert resp.status_code == 200, resp.text
        [region] = resp.json()["results"][0]["result"]
        assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["RBC"]
        assert region["value"]["format"] == "rle"
    assert stats["misses"] <= misses + 1  # b.png encoded at most once (the batch test did)
    assert stats["memory_hits"] >= hits + 1  # the second click found it encoded
    assert calls[1]["point_labels"] == [1, 0]
    assert calls[1]["points"] == [(32.0, 32.0), (56.0, 12.8)]  # b.png is 80 x 64


def test_smart_box_and_text_prompt(client):
    box = {"type": "rectanglelabels",
           "value": {"x": 10, "y": 10, "width": 50, "height": 60, "rectanglelabels": ["Cell"]}}  # fmt: skip
    body = {"tasks": [TASK_A], "label_config": CONFIG, "params": {"context": {"result": [box]}}}
    [region] = client.post("/predict", json=body).json()["results"][0]["result"]
    assert region["type"] == "rectanglelabels" and region["value"]["rectanglelabels"] == ["Cell"]
    text = {"type": "textarea", "from_name": "prompt", "value": {"text": ["white blood cell"]}}
    body["params"]["context"]["result"] = [text]
    regions = client.post("/predict", json=body).json()["results"][0]["result"]
    assert len(regions) == 8  # tiny model: 8 queries, threshold 0
    assert {r["value"]["brushlabels"][0] for r in regions} == {"RBC"}  # no match: first label


def test_an_empty_interactive_context_is_answered_empty_without_the_model(
    client, backend, monkeypatch
):
    """Label Studio sends `context: {result: []}` for every region it destroys (leaving a
    task): that is not a batch request, and must not run the model."""
    monkeypatch.setattr(backend.predictor, "predict", lambda *a, **k: pytest.fail("model ran"))
    body = {"tasks": [TASK_A], "label_config": CONFIG, "params": {"context": {"result": []}}}
    resp = client.post("/predict", json=body)
    assert resp.status_code == 200 and resp.json()["results"][0]["result"] == []


def test_a_concept_with_no_hits_is_logged(client, backend, caplog):
    text = {"type": "textarea", "from_name": "prompt", "value": {"text": ["zebra"]}}
    body = {"tasks": [TASK_B], "label_config": CONFIG, "params": {"context": {"result": [text]}}}
    threshold = backend.settings.score_threshold
    backend.settings.score_threshold = 1.0  # nothing scores that high
    try:
        with caplog.at_level("INFO", logger="sam3_labelstudio"):
            resp = client.post("/predict", json=body)
    finally:
        backend.settings.score_threshold = threshold
    assert resp.status_code == 200 and resp.json()["results"][0]["result"] == []
    assert "'zebra' found nothing with score >= 1" in caplog.text


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"tasks": [TASK_A], "label_config": "<View><Image name='i' value='$i'/></View>"},
         422, "no BrushLabels"),
        ({"tasks": [{"id": 5, "data": {"image": "/data/upload/1/x.png"}}], "label_config": CONFIG},
         502, "Cannot reach"),
        ({"tasks": [{"id": 6, "data": {"image": "http://evil.example/x.png"}}],
          "label_config": CONFIG}, 502, "--allow-host"),
        ({"tasks": [TASK_A], "label_config": CONFIG,
          "params": {"context": {"result": [click(10, 10, label="Platelet")]}}},
         422, "Unknown label 'Platelet'"),
        ({"tasks": [TASK_A], "label_config": CONFIG,
          "params": {"context": {"result": [click(10, 10), {"type": "keypointlabels",
                                                            "value": {"x": 500, "y": 1}}]}}},
         422, "outside"),
        ({"label_config": CONFIG}, 400, "tasks"),
        ({"tasks": ["a.png"], "label_config": CONFIG}, 400, "a list of task objects"),
        ({"tasks": [{"id": 3, "data": "a.png"}], "label_config": CONFIG}, 400,
         "Task 3's data must be a JSON object"),
        ({"tasks": [TASK_A], "label_config": CONFIG, "params": "x"}, 400, "params must be"),
        ({"tasks": [TASK_A], "label_config": CONFIG, "params": {"context": {"result": "x"}}},
         400, "params.context.result must be a list"),
        ({"tasks": [TASK_A], "label_config": CONFIG, "params": {"context": {"result": [1]}}},
         400, "params.context.result must be a list"),
        ({"tasks": [TASK_A], "label_config": CONFIG,
          "params": {"context": {"result": [{"type": "keypointlabels", "value": "x"}]}}},
         422, "has no 'value' object"),
        ({"tasks": [TASK_A], "label_config": CONFIG, "params": {"context": {"result": [
            {"type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": "w", "height": 5}}]}}},
         422, "needs numeric value.x, value.y (and width, height)"),
        ({"tasks": [TASK_A], "label_config": 5}, 422, "as an XML string, not int"),
        ({"tasks": [TASK_A], "label_config": NO_LABELS}, 422,
         '<BrushLabels name="brush"> has no <Label> children: add <Label value="..."/>'),
        ({"tasks": [{"id": 8, "data": {"image": "/data/local-files/?d="}}], "label_config": CONFIG},
         422, "names no file"),
    ],
)  # fmt: skip
def test_bad_input_is_a_json_error_and_the_server_lives(client, body, status, needle, caplog):
    resp = client.post("/predict", json=body)
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["error"]
    assert needle in caplog.text
    assert client.get("/health").status_code == 200
    bad = client.post(
        "/predict", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400


def test_concurrent_requests_share_one_model_thread(client, backend, monkeypatch):
    import threading

    threads = set()
    for name in ("set_image", "predict"):
        real = getattr(backend.predictor, name)
        monkeypatch.setattr(backend.predictor, name,
                            lambda *a, _real=real, **k: threads.add(threading.get_ident())
                            or _real(*a, **k))  # fmt: skip
    body = {"tasks": [{"id": 1000, "data": {"image": "/data/local-files/?d=b.png"}}],
            "label_config": CONFIG}  # fmt: skip
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda i: client.post("/predict", json=body).status_code, range(6)))
    assert codes == [200] * 6
    assert len(threads) == 1  # every model call ran on the one model thread


@pytest.mark.parametrize(("config", "needle"), [
    (NO_LABELS, '<BrushLabels name="brush"> has no <Label> children: add <Label value="..."/>'),
    (5, "as an XML string"),
])  # fmt: skip
def test_setup_refuses_a_config_naming_the_tag(client, config, needle):
    resp = client.post("/setup", json={"project": "1.1", "schema": config})
    assert resp.status_code == 422, resp.text
    assert needle in resp.json()["error"]


def test_lone_strings_where_label_studio_sends_lists(client, backend, monkeypatch):
    calls = []
    real = backend.predictor.predict
    monkeypatch.setattr(
        backend.predictor, "predict", lambda *a, **k: calls.append(k) or real(*a, **k)
    )
    point = {"type": "keypointlabels", "value": {"x": 40, "y": 50, "keypointlabels": "WBC"}}
    text = {"type": "textarea", "value": {"text": "white cell"}}
    labels = []
    for item in (point, text):
        body = {"tasks": [TASK_A], "label_config": CONFIG,
                "params": {"context": {"result": [item]}}}  # fmt: skip
        resp = client.post("/predict", json=body)
        assert resp.status_code == 200, resp.text
        labels.append({r["value"]["brushlabels"][0] for r in resp.json()["results"][0]["result"]})
    assert labels == [{"WBC"}, {"RBC"}]  # the clicked label, not "W"; no label matches the text
    assert calls[1]["concepts"] == ["white cell"]  # not "w h i t e   c e l l"
