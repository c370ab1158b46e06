"""ImagePredictor end to end against transformers' processor + Sam3Model + post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam3_core import ImagePredictor
from sam3_core.config import sam3_tiny
from sam3_core.prompts import PromptError
from sam3_core.results import Exemplar
from tests.core.helpers import make_image, tiny_model
from tests.reference import hf_detector, hf_processor, mask_iou

CFG = sam3_tiny()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(transformers model, processor, our predictor) on the same weights."""
    hf = hf_detector(CFG, seed=3)
    model = tiny_model()
    model.detector_model.load_state_dict(hf.state_dict())
    proc = hf_processor(CFG, tmp_path_factory.mktemp("tok"))
    return hf, proc, ImagePredictor(model, device="cpu")


def _reference(hf, proc, image, text, threshold, boxes=None, labels=None):
    kw = {}
    if boxes is not None:
        kw = {"input_boxes": [boxes], "input_boxes_labels": [labels]}
    inputs = proc(images=image, text=text, return_tensors="pt", **kw)
    with torch.no_grad():
        out = hf(**inputs)
    return proc.post_process_instance_segmentation(
        out, threshold=threshold, mask_threshold=0.5, target_sizes=[image.shape[:2]]
    )[0]


def _compare(ref, ours):
    order = torch.argsort(ref["scores"], descending=True)
    assert len(ours) == len(order) > 0
    np.testing.assert_allclose(ours.scores, ref["scores"][order].numpy(), atol=1e-4)
    np.testing.assert_allclose(ours.boxes, ref["boxes"][order].numpy(), atol=1e-2)  # pixels
    for a, b in zip(ours.masks, ref["masks"][order].numpy()):
        assert mask_iou(a, b) >= 0.999


def test_preprocessing_parity_non_square(pair):
    _, proc, _ = pair
    from sam3_core.predictor import preprocess

    image = make_image(97, 150)
    ref = proc(images=image, return_tensors="pt")["pixel_values"][0]
    ours = (preprocess(image, CFG.image_size).float() / 255 - 0.5) / 0.5
    assert (ref - ours).abs().max() < 1e-5


def test_predict_parity_text_non_square(pair):
    hf, proc, pred = pair
    image = make_image(97, 150, seed=1)
    ref = _reference(hf, proc, image, "red car", threshold=0.05)
    ours = pred.predict(pred.set_image(image), "red car", score_threshold=0.05)
    _compare(ref, ours)
    assert ours.masks.shape[1:] == (97, 150) and ours.masks.dtype == bool


def test_predict_parity_exemplars(pair):
    hf, proc, pred = pair
    image = make_image(120, 90, seed=2)
    boxes = [[10, 20, 50, 70], [40, 60, 85, 110]]
    ref = _reference(hf, proc, image, "visual", 0.05, boxes, [1, 0])
    ex = [Exemplar(tuple(boxes[0]), True), Exemplar(tuple(boxes[1]), False)]
    ours = pred.predict(pred.set_image(image), exemplars=ex, score_threshold=0.05)
    _compare(ref, ours)
    assert ours.label_names == ["exemplar"]


def test_many_concepts_one_call_equal_separate_calls(pair):
    _, _, pred = pair
    state = pred.set_image(make_image(seed=4))
    together = pred.predict(state, ["cat", "yellow school bus", "nucleus"], score_threshold=0.0)
    for i, c in enumerate(["cat", "yellow school bus", "nucleus"]):
        alone = pred.predict(state, c, score_threshold=0.0)
        sel = together[together.labels == i]
        np.testing.assert_allclose(np.sort(sel.scores), np.sort(alone.scores), atol=1e-5)
    assert together.label_names == ["cat", "yellow school bus", "nucleus"]
    assert {"cat", "yellow school bus", "nucleus"} <= set(pred.cached_concepts)
    pred.clear_text_cache()
    assert pred.cached_concepts == []
    again = pred.predict(state, ["cat", "yellow school bus", "nucleus"], score_threshold=0.0)
    np.testing.assert_array_equal(again.scores, together.scores)  # re-encoded, same answer
    assert pred.cached_concepts == ["cat", "yellow school bus", "nucleus"]


def test_batch_of_images_equals_single(pair):
    _, _, pred = pair
    images = [make_image(80, 100, seed=5), make_image(64, 64, seed=6)]
    batch = pred.predict_batch(images, "cell", score_threshold=0.0, batch_size=2)
    for image, res in zip(images, batch):
        single = pred.predict(pred.set_image(image), "cell", score_threshold=0.0)
        np.testing.assert_allclose(res.scores, single.scores, atol=1e-5)
        assert res.masks.shape[1:] == image.shape[:2]


def test_threshold_and_semantic_map(pair):
    _, _, pred = pair
    state = pred.set_image(make_image(seed=7))
    everything = pred.predict(state, "dog", score_threshold=0.0)
    assert len(everything) == CFG.detr_decoder.num_queries
    cut = float(np.median(everything.scores))
    some = pred.predict(state, "dog", score_threshold=cut)
    assert 0 < len(some) < len(everything) and (some.scores > cut).all()
    sem = everything.semantic_map(0)
    assert sem.shape == state.size and 0 <= sem.min() <= sem.max() <= 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"concepts": ""}, "empty or blank"),
        ({"concepts": "   "}, "empty or blank"),
        ({}, "No prompt"),
        ({"exemplars": [(50, 10, 20, 40)]}, "inverted"),
        ({"exemplars": [(500, 500, 600, 600)]}, "outside"),
        ({"exemplars": [(1, 2, 3)]}, "exemplar is"),
    ],
)
def test_bad_prompts_have_clear_errors(pair, kwargs, match):
    _, _, pred = pair
    state = pred.set_image(make_image())
    with pytest.raises(PromptError, match=match):
        pred.predict(state, **kwargs)


def test_grayscale_rgba_and_16bit_images_are_converted(pair):
    _, _, pred = pair
    gray16 = (np.arange(60 * 70).reshape(60, 70) * 13).astype(np.uint16)
    rgba = np.dstack([make_image(60, 70), np.full((60, 70), 128, np.uint8)])
    for img in (gray16, rgba, gray16.astype(np.float32)):
        res = pred.predict(pred.set_image(img), "cell", score_threshold=0.0)
        assert res.masks.shape[1:] == (60, 70)


def test_unreadable_and_empty_images_error(pair, tmp_path):
    from sam3_core.formats.images import ImageReadError

    _, _, pred = pair
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError):
        pred.set_image(bad)
    with pytest.raises(ImageReadError):
        pred.set_image(np.zeros((0, 10, 3), np.uint8))


def test_semantic_map_parity_thresholded(pair):
    # The reference applies the sigmoid at the model's resolution, then resizes; resizing the
    # logits first (as before) flipped 38 of these 14550 pixels (IoU 0.997).
    hf, proc, pred = pair
    image = make_image(97, 150, seed=8)
    inputs = proc(images=image, text="red car", return_tensors="pt")
    with torch.no_grad():
        out = hf(**inputs)
    ref = proc.post_process_semantic_segmentation(
        out, target_sizes=[image.shape[:2]], threshold=0.5, return_segmentation_scores=True
    )[0]
    sem = pred.predict(pred.set_image(image), "red car", score_threshold=0.0).semantic_map(0)
    np.testing.assert_allclose(sem, ref["segmentation_scores"][0].numpy(), atol=1e-5)
    ref_mask = ref["segmentation"].numpy().astype(bool)
    assert 0.05 < ref_mask.mean() < 0.99  # a map with both sides, so the threshold matters
    assert np.count_nonzero((sem > 0.5) != ref_mask) <= 2


def test_predict_parity_exemplar_partly_outside(pair):
    # transformers' Sam3Processor normalises boxes as given, without clipping to the image.
    hf, proc, pred = pair
    image = make_image(120, 90, seed=2)
    boxes = [[-30, 20, 50, 70], [40, 60, 120, 150]]
    ref = _reference(hf, proc, image, "visual", 0.05, boxes, [1, 1])
    ours = pred.predict(pred.set_image(image), exemplars=boxes, score_threshold=0.05)
    _compare(ref, ours)


@pytest.mark.parametrize(
    "box", [(-45, 10, 50, 40), (100, 10, 224, 40), (10, -48, 50, 40), (10, 50, 50, 145)]
)
def test_exemplars_may_reach_half_the_image_past_any_edge(pair, box):
    _, _, pred = pair
    state = pred.set_image(make_image())  # 150 x 97
    assert pred.predict(state, exemplars=[box], score_threshold=0.0).masks.shape[1:] == (97, 150)


@pytest.mark.parametrize(
    "box",
    [(-76, 10, 50, 40), (100, 10, 226, 40), (10, -49, 50, 40), (10, 50, 50, 146), (0, 0, 1500, 40)],
)
def test_exemplars_farther_out_are_refused_on_every_side(pair, box):
    _, _, pred = pair
    state = pred.set_image(make_image())
    with pytest.raises(PromptError, match="more than half the image's size past an edge"):
        pred.predict(state, exemplars=[box])


def test_outputs_vary_with_image_concept_and_exemplars(pair):
    """Guards the tests above: a predictor that ignored an input would give equal answers."""
    _, _, pred = pair
    a, b = pred.set_image(make_image(seed=11)), pred.set_image(make_image(seed=12))
    runs = {
        "image a": pred.predict(a, "cat", score_threshold=0.0),
        "image b": pred.predict(b, "cat", score_threshold=0.0),
        "concept": pred.predict(a, "yellow school bus", score_threshold=0.0),
        "exemplar": pred.predict(a, "cat", [(10, 10, 60, 50)], score_threshold=0.0),
        "negative": pred.predict(a, "cat", [(10, 10, 60, 50, False)], score_threshold=0.0),
        "box moved": pred.predict(a, "cat", [(80, 40, 140, 90)], score_threshold=0.0),
    }
    names = list(runs)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            ra, rb = runs[x], runs[y]
            assert np.abs(np.sort(ra.scores) - np.sort(rb.scores)).max() > 1e-3, (x, y)
            assert np.mean(ra.masks != rb.masks) > 1e-3, (x, y)
    assert runs["image a"].scores.std() > 1e-3


def test_calls_from_threads_take_turns(pair):
    # FiftyOne shares one predictor between threads. While one call encodes a new concept,
    # another must not read or evict the text cache (nor the image states' caches).
    import threading

    pred = ImagePredictor(pair[2].model, device="cpu", text_cache_size=2)
    state = pred.set_image(make_image(seed=13))
    pred.encode_texts(["cat"])
    inside, release = threading.Event(), threading.Event()
    tokenize = pred.tokenizer

    def slow_tokenizer(texts):
        inside.set()
        release.wait(30)
        return tokenize(texts)

    pred.tokenizer = slow_tokenizer
    first = threading.Thread(target=pred.predict, args=(state, "dog"))
    first.start()
    assert inside.wait(30)
    done: list = []
    second = threading.Thread(target=lambda: done.append(pred.encode_texts(["cat"])))
    second.start()
    second.join(1.0)  # a cached concept is instant, unless it waits for the first call
    overlapped = bool(done)
    release.set()
    first.join(30)
    second.join(30)
    assert not overlapped and len(done) == 1


def test_one_predictor_shared_by_threads_answers_as_alone(pair):
    from concurrent.futures import ThreadPoolExecutor

    pred = ImagePredictor(pair[2].model, device="cpu", text_cache_size=2)
    images = [make_image(60, 70, seed=20), make_image(64, 70, seed=21)]
    jobs = [(0, "cat"), (1, "dog"), (0, "bus"), (1, None), (0, None), (1, "cat")]

    def run(job, states):
        image, concept = job
        if concept is None:  # a click on a shared state: fills its tracker cache
            return pred.predict(states[image], points=[[20, 30]], point_labels=[1])
        return pred.predict(states[image], concept, score_threshold=0.0)

    alone = [run(job, [pred.set_image(im) for im in images]) for job in jobs]
    states = [pred.set_image(im) for im in images]
    with ThreadPoolExecutor(6) as pool:
        shared = list(pool.map(lambda job: run(job, states), jobs))
    for job, got, want in zip(jobs, shared, alone):
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5, err_msg=str(job))
        assert np.array_equal(got.masks, want.masks), job
