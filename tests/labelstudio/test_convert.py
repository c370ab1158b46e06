"""Pure conversions: labeling configs, interactive context, regions, image URL policy."""

from __future__ import annotations

import numpy as np
import pytest
from sam3_labelstudio import convert
from sam3_labelstudio.images import ImageFetcher, ImageFetchError, local_storage_path, resolve_url
from sam3_labelstudio.labeling import ConfigError, OutputTag, parse_config

CONFIG = """<View>
  <Image name="image" value="$img"/>
  <BrushLabels name="brush" toName="image">
    <Label value="RBC" concept="red blood cell"/><Label value="WBC"/>
  </BrushLabels>
  <PolygonLabels name="poly" toName="image"><Label value="WBC" concept="white cell"/></PolygonLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="RBC" smart="true"/></KeyPointLabels>
  <TextArea name="prompt" toName="image"/>
</View>"""


def test_parse_config_concepts_and_outputs():
    schema = parse_config(CONFIG)
    assert (schema.media_tag, schema.media_name, schema.data_key) == ("Image", "image", "img")
    assert [(o.name, o.tag) for o in schema.outputs] == [
        ("brush", "BrushLabels"),
        ("poly", "PolygonLabels"),
    ]
    assert schema.outputs[0].concepts == {"RBC": "red blood cell", "WBC": "WBC"}
    assert schema.concepts() == ["red blood cell", "WBC", "white cell"]
    assert schema.prompt_names == ["prompt"]
    assert schema.output_for("RBC")[0].name == "brush"
    assert schema.label_for_text("White Cell") == (schema.outputs[0], "WBC")
    with pytest.raises(ConfigError, match="Unknown label 'Platelet'"):
        schema.output_for("Platelet")


@pytest.mark.parametrize(
    "config",
    [
        "",
        "<View><Image name='i' value='$i'/><Choices name='c' toName='i'><Choice value='a'/>"
        + "</Choices></View>",
        "<View><Image name='i' value='$i'",
    ],
)
def test_parse_config_without_usable_tag_names_the_fix(config):
    with pytest.raises(ConfigError, match="label_config|BrushLabels|XML"):
        parse_config(config)


def test_parse_context_positive_negative_box_and_text():
    items = [
        {
            "type": "keypointlabels",
            "value": {"x": 50, "y": 25, "keypointlabels": ["RBC"]},
            "is_positive": True,
        },
        {
            "type": "keypointlabels",
            "value": {"x": 10, "y": 10, "keypointlabels": ["RBC"]},
            "is_positive": False,
        },
        {
            "type": "rectanglelabels",
            "value": {"x": 10, "y": 20, "width": 50, "height": 40, "rectanglelabels": ["RBC"]},
        },
        {"type": "textarea", "value": {"text": ["red cell"]}},
    ]
    p = convert.parse_context(items, width=200, height=100)
    assert p.points == [(100.0, 25.0), (20.0, 10.0)] and p.point_labels == [1, 0]
    assert p.box == (20.0, 20.0, 120.0, 60.0) and p.label == "RBC" and p.text == "red cell"
    with pytest.raises(convert.PromptError, match="no area"):
        convert.parse_context([{"type": "rectanglelabels", "value": {"x": 1, "y": 1}}], 10, 10)


def test_region_conversions_round_trip():
    from label_studio_sdk.converter.brush import decode_rle

    mask = np.zeros((40, 60), bool)
    mask[10:30, 20:50] = True
    brush = OutputTag("b", "image", "BrushLabels", {"A": "a"})
    poly = OutputTag("p", "image", "PolygonLabels", {"A": "a"})
    rect = OutputTag("r", "image", "RectangleLabels", {"A": "a"})
    box = np.array([[20, 10, 50, 30]], np.float32)
    [b], [p], [r] = (
        convert.instance_results(mask[None], box, [0.9], o, "A") for o in (brush, poly, rect)
    )
    assert b["type"] == "brushlabels" and b["value"]["brushlabels"] == ["A"]
    assert (b["original_width"], b["original_height"], b["score"]) == (60, 40, 0.9)
    decoded = decode_rle(b["value"]["rle"]).reshape(40, 60, 4)[..., 3] > 0
    assert (decoded == mask).all()
    pts = np.array(p["value"]["points"])
    assert p["value"]["closed"] and len(pts) == 4
    assert np.allclose(pts.min(0), [100 * 20 / 60, 25]) and np.allclose(
        pts.max(0), [100 * 49 / 60, 100 * 29 / 40]
    )
    v = r["value"]
    assert np.allclose([v["x"], v["y"], v["width"], v["height"]], [100 / 3, 25, 50, 50])
    assert convert.instance_results(np.zeros((1, 4, 4), bool), box, [0.5], brush, "A") == []
    pred = convert.prediction([b, r], "v1")
    assert pred["model_version"] == "v1" and pred["score"] == 0.9


def test_image_urls_only_from_label_studio_and_allowed_hosts(tmp_path):
    assert (
        resolve_url("/data/upload/1/a.png", "http://ls:8080")
        == "http://ls:8080/data/upload/1/a.png"
    )
    assert resolve_url("upload/1/a.png", "http://ls:8080/") == "http://ls:8080/data/upload/1/a.png"
    with pytest.raises(ImageFetchError, match="--label-studio-url"):
        resolve_url("/data/upload/1/a.png", None)
    fetcher = ImageFetcher("http://127.0.0.1:1", allow_hosts=("images.example",))
    with pytest.raises(ImageFetchError, match="--allow-host evil.example"):
        fetcher.fetch_bytes("http://evil.example/x.png")
    with pytest.raises(ImageFetchError, match="Cannot reach"):
        fetcher.fetch_bytes("/data/upload/1/a.png")  # nothing listens on port 1
    (tmp_path / "a.png").write_bytes(b"x")
    assert local_storage_path("/data/local-files/?d=a.png", str(tmp_path)) == str(
        tmp_path / "a.png"
    )
    with pytest.raises(ImageFetchError, match="leaves the document root"):
        local_storage_path("/data/local-files/?d=../../etc/passwd", str(tmp_path))
