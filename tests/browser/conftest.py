"""A headless Chromium driven by Selenium, shared by the browser tests of every host.

Debian's `chromium` and `chromedriver` (apt) are used as installed: nothing is downloaded at run
time (no Selenium Manager). Screenshots go to `$SAM3_ARTIFACTS/<host>/` (default
`/tmp/artifacts/<host>/`) and are kept after the run; a failing test also leaves
`FAILED-<test>.png` and the browser console there. Without Chromium the tests skip, which fails
the run under CI=true (see tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SAM3_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SAM3_CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW = (1440, 960)


def artifacts_root() -> Path:
    """Where screenshots are kept: `$SAM3_ARTIFACTS`, else `/tmp/artifacts`."""
    return Path(os.environ.get("SAM3_ARTIFACTS", "/tmp/artifacts"))


def host_of(item: pytest.Item) -> str:
    """The artefact folder of a test: `test_<host>_*.py` -> `<host>` (e.g. labelstudio)."""
    stem = Path(str(item.fspath)).stem.removeprefix("test_")
    return stem.split("_")[0] or "browser"


def find_executable(path: str) -> str | None:
    """`path` if it is an executable file, else the same name looked up on PATH."""
    if os.access(path, os.X_OK):
        return path
    return shutil.which(Path(path).name)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One headless Chromium for the whole session (window 1440 x 960, console logs kept)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[test]'")
    binary, driver_path = find_executable(CHROMIUM), find_executable(CHROMEDRIVER)
    if binary is None or driver_path is None:
        pytest.skip(
            f"Chromium or chromedriver not found ({CHROMIUM}, {CHROMEDRIVER}): "
            "apt-get install -y chromium chromium-driver (or set SAM3_CHROMIUM/SAM3_CHROMEDRIVER)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars",
                 "--disable-search-engine-choice-screen", "--lang=en-US"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_window_size(*WINDOW)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def artifact_dir(request) -> Path:
    """This test's screenshot folder, `<artifacts>/<host>/` (created)."""
    folder = artifacts_root() / host_of(request.node)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def screenshot(browser, artifact_dir) -> Callable[[str], Path]:
    """`screenshot("01-login")` saves the viewport as `<artifact_dir>/01-login.png`."""

    def take(name: str) -> Path:
        path = artifact_dir / f"{name}.png"
        browser.save_screenshot(str(path))
        return path

    return take


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed browser test, keep a screenshot and the console log beside the others."""
    outcome = yield
    report = outcome.get_result()
    driver = getattr(item, "funcargs", {}).get("browser")
    if report.when != "call" or not report.failed or driver is None:
        return
    from selenium.common.exceptions import WebDriverException

    folder = artifacts_root() / host_of(item)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        driver.save_screenshot(str(folder / f"FAILED-{item.name}.png"))
        logs = driver.get_log("browser")
        (folder / f"FAILED-{item.name}.console.txt").write_text(
            "\n".join(f"{e['level']} {e['message']}" for e in logs)
        )
    except (WebDriverException, OSError) as exc:  # the browser may be gone: the failure stands
        report.sections.append(("browser artefacts", f"could not save: {exc}"))
