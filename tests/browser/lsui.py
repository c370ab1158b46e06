"""Label Studio 1.23.2's web UI as a user drives it (Selenium): log in, the Data Manager's
actions, the labeling screen's labels, tools, canvas, suggestions and timeline."""

from __future__ import annotations

import time

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def wait_for(driver, condition, timeout: float = 60, message: str = ""):
    """WebDriverWait(...).until(condition) with a message naming what did not appear; elements
    that React re-renders meanwhile (stale) are looked up again."""
    wait = WebDriverWait(driver, timeout, 0.25, [StaleElementReferenceException])
    return wait.until(condition, message)


def button(driver, text: str, timeout: float = 30):
    """The visible button whose text is `text` (or starts with it)."""

    def find(d):
        for b in d.find_elements(By.CSS_SELECTOR, "button"):
            if b.is_displayed() and b.text.strip().startswith(text):
                return b
        return False

    return wait_for(driver, find, timeout, f"no button {text!r}")


def log_in(driver, base: str, email: str, password: str) -> None:
    """The login form, as a user fills it (nothing to do when the session is logged in)."""
    driver.get(base + "/user/login/")
    if "/user/login" not in driver.current_url:
        return
    wait_for(driver, EC.presence_of_element_located((By.NAME, "email"))).send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    wait_for(driver, lambda d: "/user/login" not in d.current_url, 60, "login did not complete")


def retrieve_predictions(driver, base: str, project: int, row: int = 0) -> None:
    """Data Manager: tick task row `row`, Actions (the "1 Task" menu) > Retrieve Predictions > OK."""
    driver.get(f"{base}/projects/{project}/data")
    boxes = wait_for(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=table-row] input[type=checkbox]"),
        60,
        "no task rows in the Data Manager",
    )
    boxes[row].click()
    button(driver, "1 Task").click()
    item = wait_for(
        driver,
        EC.element_to_be_clickable(
            (By.XPATH, "//*[normalize-space(text())='Retrieve Predictions']")
        ),
    )
    item.click()
    button(driver, "OK").click()


def open_task(driver, base: str, project: int, task: int) -> None:
    """The labeling screen of one task (from the Data Manager), once its canvas is drawn."""
    driver.get(f"{base}/projects/{project}/data?task={task}")
    wait_for(driver, lambda d: canvas(d), 120, f"task {task} did not open")


def wait_video(driver, timeout: float = 120) -> None:
    """Wait until the task's video can play (Label Studio draws its frames on a canvas)."""
    ready = "var v = document.querySelector('video'); return !!v && v.readyState >= 3"
    wait_for(driver, lambda d: d.execute_script(ready), timeout, "the video did not load")
    time.sleep(1)  # the first frame reaches the canvas


def region_count(driver) -> int:
    """Rows in the Regions panel (outliner), labelled or not."""
    return len(driver.find_elements(By.CSS_SELECTOR, ".lsf-tree-node-content-wrapper"))


def canvas(driver):
    """The topmost visible canvas of the labeling screen (image or video stage), else None."""
    shown = [c for c in driver.find_elements(By.CSS_SELECTOR, "canvas") if c.is_displayed()]
    return shown[-1] if shown else None


def region_labels(driver) -> list[str]:
    """The label of each region in the Regions panel (outliner), in order."""
    rows = driver.find_elements(By.CSS_SELECTOR, ".lsf-tree-node-content-wrapper")
    return [r.text.split("\n")[1] for r in rows if "\n" in r.text]


def auto_annotation(driver, on: bool = True) -> None:
    """Switch the bottom bar's Auto-Annotation toggle to `on` (it re-renders: found afresh)."""
    query = "document.querySelector('[data-testid=bottombar-auto-annotation-toggle]')"
    wait_for(driver, lambda d: d.execute_script(f"return !!{query}"), 60, "no Auto-Annotation")
    if driver.execute_script(f"return {query}.checked") != on:
        driver.execute_script(f"{query}.click()")
    wait_for(driver, lambda d: d.execute_script(f"return {query}.checked") == on, 10,
             "Auto-Annotation did not switch")  # fmt: skip


def click_label(driver, index: int) -> None:
    """Click the `index`-th label under the media (config order), scrolled into view."""

    def click(d):
        el = d.find_elements(By.CSS_SELECTOR, ".lsf-label")[index]
        d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        el.click()
        return True

    wait_for(driver, click, 30, f"label {index} could not be clicked")


def press(driver, keys: str) -> None:
    """Type `keys` as hotkeys (to the page, not to an input)."""
    ActionChains(driver).send_keys(keys).perform()


def on_canvas(driver, act) -> None:
    """`act(ActionChains, canvas)` on the current canvas, again if React redraws it meanwhile."""

    def run(d):
        act(ActionChains(d), canvas(d))
        return True

    wait_for(driver, run, 30, "the canvas could not be used")


def click_at(driver, x: float, y: float) -> None:
    """Click the canvas at (x, y) pixels from its centre."""
    on_canvas(
        driver, lambda a, c: a.move_to_element_with_offset(c, int(x), int(y)).click().perform()
    )


def drag(driver, x0: float, y0: float, x1: float, y1: float) -> None:
    """Drag on the canvas from (x0, y0) to (x1, y1), pixels from its centre."""
    dx, dy = int((x1 - x0) / 2), int((y1 - y0) / 2)
    on_canvas(driver, lambda a, c: a.move_to_element_with_offset(c, int(x0), int(y0))
              .click_and_hold().move_by_offset(dx, dy).move_by_offset(dx, dy).release().perform())  # fmt: skip


def suggestions(driver, timeout: float = 120) -> int:
    """Wait for the bottom bar's "N suggestions" (interactive answers) and return N."""
    info = wait_for(
        driver,
        EC.visibility_of_element_located((By.CSS_SELECTOR, ".lsf-auto-accept__info")),
        timeout,
        "no suggestions appeared in the bottom bar",
    )
    return int(info.text.split()[0])


def reject_suggestions(driver) -> None:
    """The bottom bar's reject-all (x) button."""
    driver.find_element(
        By.CSS_SELECTOR, "[data-testid=bottombar-reject-suggestions-button]"
    ).click()
    time.sleep(0.5)


def type_concept(driver, text: str) -> None:
    """Type a concept into the TextArea prompt and press Enter (submits it)."""
    box = wait_for(
        driver, EC.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=textarea-input]"))
    )
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def timeline_keyframes(driver) -> int:
    """Keyframe markers drawn on the video timeline (all tracks)."""
    return len(driver.find_elements(By.CSS_SELECTOR, ".lsf-keypoints__point"))
