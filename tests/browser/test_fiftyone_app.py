"""The FiftyOne App in headless Chromium, as a new user meets our plugin: the operator browser
lists the operators; auto-label runs from its form (the checkpoint from $SAM3_CHECKPOINT, no
model config to type: it waits, empty, under the advanced options); the result panel shows
counts and no error line; the new field shows in the sidebar. On an image dataset the tracking
form says it needs videos and cannot be submitted; the evaluation form shows its table and plot.

A real App server (`fo.launch_app(remote=True)`) on a private database, with this repository's
plugin and a tiny random checkpoint given as $SAM3_CHECKPOINT (the form's default).
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.fiftyone.env import configure

configure()  # a private database and this repository's plugins, before fiftyone is imported
fo = pytest.importorskip("fiftyone")

OPERATORS = (
    "SAM 3: auto-label by concepts",
    "SAM 3: label from exemplars",
    "SAM 3: track in videos",
    "SAM 3: compute embeddings",
    "SAM 3: evaluate against ground truth",
)
WAIT = 180  # seconds for the App and a run on this loaded CPU


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(URL of the App showing a 4-image dataset, the dataset); the App stops at the end."""
    from PIL import Image

    from tests.core.helpers import make_image, save_checkpoint, tiny_model

    root = tmp_path_factory.mktemp("fo-app")
    checkpoint = save_checkpoint(tiny_model(), root / "tiny.safetensors")
    paths = []
    for i in range(4):
        paths.append(str(root / f"cells{i}.png"))
        Image.fromarray(make_image(96, 128, seed=i)).save(paths[-1])
    ds = fo.Dataset(f"sam3-app-{int(time.time())}")
    ds.add_samples([fo.Sample(filepath=p, **scored_labels(i)) for i, p in enumerate(paths)])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SAM3_CHECKPOINT", str(checkpoint))  # the App server inherits it
        port = free_port()
        session = fo.launch_app(ds, remote=True, address="127.0.0.1", port=port, auto=False)
        try:
            yield f"http://127.0.0.1:{port}/datasets/{ds.name}", ds
        finally:
            session.close()
            ds.delete()


def scored_labels(i: int) -> dict:
    """`truth` and `pred` Detections of a 96 x 128 image for the evaluation form: a 'cell' on
    even images, a 'dot' on odd ones, both found at 0.9, and a wrong 'cell' at 0.3 on image 1."""
    import numpy as np

    def det(label, rows, cols, score=None):
        mask = np.zeros((96, 128), bool)
        mask[rows, cols] = True
        found = fo.Detection.from_mask(mask, label=label)
        found.confidence = score
        return found

    label = "dot" if i % 2 else "cell"
    truth = [det(label, slice(10, 40), slice(10, 50))]
    pred = [det(label, slice(10, 40), slice(10, 50), 0.9)]
    if i == 1:
        pred.append(det("cell", slice(60, 90), slice(60, 120), 0.3))
    return {"truth": fo.Detections(detections=truth), "pred": fo.Detections(detections=pred)}


def wait_for(browser, xpath: str, timeout: float = WAIT):
    """The first element matching `xpath` once it is visible."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(
        ec.visibility_of_element_located((By.XPATH, xpath))
    )


def click_when_ready(browser, xpath: str, timeout: float = 60) -> None:
    """Click the element at `xpath` once it is enabled and nothing (a closing menu, a form
    still resolving) covers it."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        StaleElementReferenceException,
    )

    deadline = time.monotonic() + timeout
    while True:
        element = wait_for(browser, xpath)
        try:
            if element.get_attribute("disabled") is None:
                element.click()
                return
        except (ElementClickInterceptedException, StaleElementReferenceException):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{xpath} stayed disabled or covered for {timeout} s")
        time.sleep(0.5)


def text_is(text: str) -> str:
    """XPath of an element whose own text is `text`."""
    return f'//*[text()="{text}"]'


def input_after(browser, label: str):
    """The input that follows the form label `label`."""
    return wait_for(browser, f"{text_is(label)}/following::input[1]")


def replace_text(element, text: str, tries: int = 5) -> None:
    """Type `text` over the input's content until it holds exactly that, then leave the field
    (Tab) as a user does: the dynamic form re-renders as it resolves each change and can drop
    keys typed meanwhile (once a run got "round blo" for "round blob" with the input showing
    all of it), and leaving commits the value."""
    from selenium.webdriver.common.keys import Keys

    for _ in range(tries):
        element.send_keys(Keys.CONTROL, "a")
        element.send_keys(Keys.DELETE)
        for char in text:
            element.send_keys(char)
            time.sleep(0.05)
        time.sleep(1)  # let the form resolve the change
        if element.get_attribute("value") == text:
            element.send_keys(Keys.TAB)
            time.sleep(1)  # and resolve the committed value
            if element.get_attribute("value") == text:
                return
    raise AssertionError(f"the input holds {element.get_attribute('value')!r}, not {text!r}")


def open_dataset(browser, url: str) -> None:
    """Load the App's dataset page and close FiftyOne's first-visit pop-up if it shows."""
    from selenium.common.exceptions import TimeoutException

    browser.get(url)
    wait_for(browser, '//*[@data-cy="action-browse-operations"]')
    try:
        wait_for(browser, text_is("Dismiss"), timeout=10).click()
    except TimeoutException:
        pass  # not shown on this visit


def search_operators(browser) -> None:
    """Open the operator browser from the grid's actions and search "SAM 3"."""
    wait_for(browser, '//*[@data-cy="action-browse-operations"]').click()
    wait_for(browser, '//input[starts-with(@placeholder, "Search operations")]').send_keys("SAM 3")


def test_auto_label_from_the_app(browser, app, screenshot):
    url, ds = app
    open_dataset(browser, url)
    search_operators(browser)
    for label in OPERATORS:
        wait_for(browser, text_is(label))
    screenshot("fiftyone-01-operator-browser")

    wait_for(browser, text_is(OPERATORS[0])).click()
    wait_for(browser, '//button[contains(., "Add concepts")]').click()
    replace_text(input_after(browser, "Concepts (noun phrases)"), "round blob")
    replace_text(input_after(browser, "Score threshold"), "0")
    assert not browser.find_elements("xpath", text_is("Model config (optional)"))  # advanced
    top = wait_for(browser, text_is("Concepts (noun phrases)"))
    browser.execute_script("arguments[0].scrollIntoView()", top)  # the form's top, for the shot
    screenshot("fiftyone-02-auto-label-form")
    wait_for(browser, text_is("Show advanced options")).click()
    config = input_after(browser, "Model config (optional)")
    assert config.get_attribute("value") == ""  # nothing to type: the checkpoint says
    checkpoint = input_after(browser, "Checkpoint").get_attribute("value")
    assert checkpoint.endswith("tiny.safetensors")  # the form's default: $SAM3_CHECKPOINT
    screenshot("fiftyone-03-advanced-options")
    assert input_after(browser, "Concepts (noun phrases)").get_attribute("value") == "round blob"

    click_when_ready(browser, '//button[text()="Execute"]')
    wait_for(browser, '//*[contains(text(), "Labeled")]')
    time.sleep(1)  # the panel's values render right after its labels
    panel = browser.find_element("xpath", '//*[contains(text(), "Labeled")]/ancestor::*[4]')
    screenshot("fiftyone-04-result")
    assert "First error" not in panel.text and "No value provided" not in panel.text
    ds.reload()
    assert ds.count("sam3") == len(ds) and ds.count("sam3.detections") > 0
    assert ds.distinct("sam3.detections.label") == ["round blob"]

    wait_for(browser, text_is("Close")).click()
    wait_for(browser, '//*[@data-cy="sidebar-field-sam3"]')  # the new field, in the sidebar
    screenshot("fiftyone-05-sidebar-field")


def test_track_form_on_images_explains(browser, app, screenshot):
    url, _ = app
    open_dataset(browser, url)
    search_operators(browser)
    wait_for(browser, text_is(OPERATORS[2])).click()
    wait_for(browser, text_is("This operator tracks objects through videos"))
    assert not browser.find_elements("xpath", text_is("Concepts to track (noun phrases)"))
    screenshot("fiftyone-06-track-on-images")
    execute = wait_for(browser, '//button[text()="Execute"]')
    assert execute.get_attribute("disabled") is not None  # nothing to submit on images


def choose(browser, label: str, option: str) -> None:
    """Pick `option` in the form's dropdown labelled `label`."""
    wait_for(browser, f'{text_is(label)}/following::*[@role="combobox"][1]').click()
    wait_for(browser, f'//li[@role="option" and normalize-space()="{option}"]').click()


def test_evaluate_from_the_app(browser, app, screenshot):
    url, ds = app
    open_dataset(browser, url)
    search_operators(browser)
    wait_for(browser, text_is(OPERATORS[4])).click()
    choose(browser, "Predictions", "pred")
    choose(browser, "Ground truth", "truth")
    screenshot("fiftyone-07-evaluate-form")
    click_when_ready(browser, '//button[text()="Execute"]')
    wait_for(browser, '//*[contains(text(), "Per concept")]')
    wait_for(browser, '//*[contains(@class, "js-plotly-plot")]')  # the plot rendered
    time.sleep(2)
    screenshot("fiftyone-08-evaluate-result")
    for name in ("cell", "dot", "overall"):
        wait_for(browser, f'//td[normalize-space()="{name}"]')
    ds.reload()
    kept = ds.info["sam3_thresholds"]["pred"]["concepts"]
    assert set(kept) == {"cell", "dot"} and 0.3 < kept["cell"] <= 0.9  # drops the wrong cell
    assert browser.find_element("xpath", '//td[normalize-space()="overall"]/../td[2]').text == "100"
