"""The book builds offline at the smoke profile and reads right in a real browser.

A copy of the book's sources is built with the project's own ``make book`` (papermill executes
the notebooks, jupyter-book renders them with warnings as errors), then headless Chromium opens
the pages and checks that the tables and figures are there.  Screenshots are kept under
``_build/test-artifacts/``.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "_build" / "test-artifacts"
# The library is not copied: the book is built with the lenslib installed in this environment.
COPY = ["Makefile", "pyproject.toml", "_config.yml", "_toc.yml", "book", "notebooks"]


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """Build the book at the smoke profile in a copy of the sources; return its HTML folder."""
    work = tmp_path_factory.mktemp("book")
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, copy_function=shutil.copy2,
                            ignore=shutil.ignore_patterns("executed", "__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, work / name)
    env = dict(os.environ, LENSLIB_DATA_DIR=os.environ.get("LENSLIB_DATA_DIR", str(ROOT / "data")),
               LENSLIB_RESULTS_DIR=str(work / "results"))
    venv = Path(sys.executable).parents[1]
    # "-o STAMP": never (re)install from the copy, which would point the editable install at it.
    stamp = venv / ".installed"
    proc = subprocess.run(["make", "book", "PROFILE=smoke", f"VENV={venv}", "-o", str(stamp)], cwd=work,
                          env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"make book failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    html = work / "_build" / "html"
    assert (html / "index.html").is_file()
    return html


def test_every_page_of_the_toc_is_rendered(smoke_book):
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]
    for f in files:
        assert (smoke_book / f"{f}.html").is_file(), f"{f} was not rendered"
    dataset_page = (smoke_book / "book" / "executed" / "01_dataset.html").read_text()
    assert "Figure 5-1" in dataset_page and "<img" in dataset_page


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def _images(driver):
    return driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);")


@pytest.mark.browser
@pytest.mark.parametrize("page, must_contain", [
    ("book/executed/01_dataset.html", ["Figure 5-1", "galaxy_galaxy", "ring_galaxy"]),
    ("book/executed/02_cross_validation.html", ["Table 5-1", "ROC AUC"]),
])
def test_pages_show_tables_and_figures(smoke_book, browser, page, must_contain):
    path = smoke_book / page
    if not path.exists():
        pytest.fail(f"{page} is missing from the built book")
    browser.get(path.as_uri())
    text = browser.find_element("tag name", "body").text
    for phrase in must_contain:
        assert phrase in text, f"{phrase!r} not shown on {page}"
    images = [img for img in _images(browser) if img[0] and "_images/" in img[0]]
    assert images, f"no figures on {page}"
    assert all(complete and width > 0 for _, complete, width in images), f"broken figures on {page}: {images}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / (Path(page).stem + ".png")
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
