"""Headless Chromium for the grading page: a screenshot for the book, and the driver the tests
and the benchmark use.  Needs ``selenium`` (the ``test`` extra) and the ``chromium`` and
``chromedriver`` programs; without them :class:`BrowserUnavailableError` says what is missing,
so that a caller (the survey-scan notebook) can fall back."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from ..files import atomic_output

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_NAMES = ("chromedriver",)
_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--no-first-run", "--hide-scrollbars")


class BrowserUnavailableError(RuntimeError):
    """Headless Chromium cannot be started here: selenium, chromium or chromedriver is missing
    (or the browser failed to start); the message says which."""


def _which(names) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


def find_chromium() -> tuple[str, str]:
    """The paths of Chromium and chromedriver, or :class:`BrowserUnavailableError`."""
    chromium, driver = _which(CHROMIUM_NAMES), _which(DRIVER_NAMES)
    if not (chromium and driver):
        missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver)) if not p]
        raise BrowserUnavailableError(f"headless Chromium is not installed ({' and '.join(missing)} not "
                                      "found; Debian: apt-get install chromium chromium-driver)")
    return chromium, driver


@contextlib.contextmanager
def headless_chromium(*, width: int = 1280, height: int = 900, download_dir=None):
    """A selenium Chrome driver on headless Chromium with a ``width`` x ``height`` viewport,
    closed on exit; with ``download_dir``, downloads go there without asking."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        raise BrowserUnavailableError("selenium is not installed (pip install selenium)") from err
    chromium, driver_path = find_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in _FLAGS + (f"--window-size={int(width)},{int(height)}",):
        options.add_argument(flag)
    if download_dir is not None:
        options.add_experimental_option("prefs", {
            "download.default_directory": str(Path(download_dir).resolve()),
            "download.prompt_for_download": False, "download.directory_upgrade": True,
            "safebrowsing.enabled": False})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except WebDriverException as err:
        raise BrowserUnavailableError(f"headless Chromium did not start ({err.msg})") from err
    try:
        # The window's size less its frame is smaller than asked; the page's viewport is exact.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": int(width), "height": int(height), "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()


def wait_until_ready(driver, timeout: float = 20.0) -> None:
    """Wait until the page's script has run and the first stamp is shown (or nothing matches)."""
    script = ("const i = document.querySelector('#stamps img');"
              "return document.body && document.body.dataset.ready === '1' && document.readyState === "
              "'complete' && (!i || !i.getAttribute('src') || (i.complete && i.naturalWidth > 0));")
    deadline = time.monotonic() + timeout
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page did not become ready within {timeout:g} s")
        time.sleep(0.02)


def screenshot(page_html_path, png_path, *, width: int = 1280, height: int = 900) -> Path:
    """Open a grading page from disk in headless Chromium and save a PNG screenshot of the window
    (``width`` x ``height`` pixels), written atomically.  Raises :class:`BrowserUnavailableError`
    where Chromium (or selenium) is missing, so that a notebook can show something else."""
    page = Path(page_html_path)
    if page.is_dir():
        page = page / "index.html"
    if not page.is_file():
        raise FileNotFoundError(f"grading page not found: {page}")
    with headless_chromium(width=width, height=height) as driver:
        driver.get(page.resolve().as_uri())
        wait_until_ready(driver)
        png = driver.get_screenshot_as_png()
    with atomic_output(png_path) as tmp:
        Path(tmp).write_bytes(png)
    return Path(png_path)


__all__ = ["BrowserUnavailableError", "find_chromium", "headless_chromium", "screenshot", "wait_until_ready"]
