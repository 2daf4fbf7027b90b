"""``lenslib inspect``: the grading page (stamps, self-containment, keyboard grading in headless
Chromium, grades kept across a reload, exports) and the merging of inspectors' grades."""

import argparse
import csv
import io
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from lenslib.errors import InputError
from lenslib.files import write_table
from lenslib.inspect import merge_grades, read_grades, write_page
from lenslib.inspect.cli import configure_parser, run
from lenslib.inspect.stamps import residual, stretch_asinh

SIZE = 48  # pixels a side of the synthetic cutouts: small, so that pages are written fast


def _scene(rng, lens: bool, *, noise: float = 1.0) -> np.ndarray:
    """A round galaxy (sigma 8 pixels); a lens also has a thin arc at radius 12 pixels."""
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    r = np.hypot(xx, yy)
    image = 40 * np.exp(-0.5 * (r / 8) ** 2) + rng.normal(0, noise, (SIZE, SIZE))
    if lens:
        image += _arc()
    return image.astype(np.float32)


def _arc() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    r, phi = np.hypot(xx, yy), np.arctan2(yy, xx)
    return 15 * np.exp(-0.5 * ((r - 12) / 0.8) ** 2) * (np.abs(phi - 0.5) < 1.2)


def _graded_set(n: int = 12, seed: int = 0):
    """A small stand-in for the graded candidate set: ids, distinct scores, a known label."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    table = Table({"id": np.arange(101, 101 + n), "score": rng.permutation(np.linspace(0.05, 0.95, n)),
                   "label": labels})
    cutouts = np.stack([_scene(rng, bool(lab)) for lab in labels])
    return table, cutouts


def _page_data(page: Path) -> dict:
    text = page.read_text()
    found = re.search(r'<script type="application/json" id="lenslib-data">(.*?)</script>', text, re.S)
    assert found, "the page holds no candidate data"
    return json.loads(found.group(1))


# --------------------------------------------------------------------------------------------
# Stamps and the page's files
# --------------------------------------------------------------------------------------------
def test_residual_removes_the_smooth_galaxy_and_keeps_the_arc():
    rng = np.random.default_rng(1)
    lens, galaxy = _scene(rng, lens=True, noise=0.0), _scene(rng, lens=False, noise=0.0)
    res = residual(lens)
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    core, arc = np.hypot(xx, yy) < 6, _arc() > 7
    assert abs(res[core].mean()) < 0.15 * galaxy[core].mean()  # the lens light is gone
    assert res[arc].mean() > 0.45 * _arc()[arc].mean()  # the arc is not
    assert np.abs(residual(galaxy)[arc]).mean() < 0.1 * _arc()[arc].mean()


def test_stamps_are_north_up():
    image = np.zeros((SIZE, SIZE))
    image[0, 0] = 1000.0  # row 0 of a FITS image is its bottom row
    pixels = stretch_asinh(image + np.random.default_rng(0).normal(0, 1, image.shape))
    assert pixels.shape == (SIZE, SIZE) and pixels.dtype == np.uint8
    assert pixels[-1, 0] == 255 and pixels[0, 0] < 255


def test_page_is_self_contained(tmp_path):
    from PIL import Image

    table, cutouts = _graded_set(10)
    page = write_page(table, cutouts, tmp_path / "grades", truth="label", saliency=cutouts * 0.01)
    stamps = sorted((tmp_path / "grades" / "stamps").iterdir())
    assert len(stamps) == 10 * 4
    text = page.read_text()
    assert "http" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(//|[a-z]+:)""", text, re.I), "an external reference"
    for stamp in stamps:
        assert b"http" not in stamp.read_bytes().lower(), stamp
    with Image.open(stamps[0]) as im:
        assert im.size == (SIZE, SIZE)
    data = _page_data(page)
    assert [c["id"] for c in data["candidates"]] == [str(i) for i in table["id"]]
    assert data["truth_name"] == "label"
    assert all("label" not in dict(c["info"]) for c in data["candidates"]), "the truth is shown"
    kinds = {s.name.split("-")[1] for s in stamps}
    assert kinds == {"asinh.png", "linear.png", "residual.png", "saliency.png"}


@pytest.mark.slow
def test_page_of_the_graded_candidate_set(tmp_path, smoke_config):
    """The 92 candidates of Table 5-2 (known truth) take cutouts of their own, not a mosaic."""
    from lenslib.candidates import get_candidates

    candidates = get_candidates(smoke_config, tmp_path / "data")
    meta = candidates.metadata
    scores = np.clip(0.3 + 0.4 * meta["label"] + np.random.default_rng(0).normal(0, 0.1, len(meta)), 0, 1)
    table = Table({"id": meta["index"], "score": scores, "kind": meta["kind"]})
    page = write_page(table, candidates.images, tmp_path / "grades", truth=meta["label"])
    data = _page_data(page)
    assert len(data["candidates"]) == 92 and data["truth_name"] == "truth"
    assert [c["truth"] for c in data["candidates"]] == [str(v) for v in meta["label"]]
    assert all(dict(c["info"]) == {} for c in data["candidates"]), "kind would give the truth away"
    assert len(list((tmp_path / "grades" / "stamps").glob("*.png"))) == 3 * 92


def test_page_never_overwrites_other_files(tmp_path):
    table, cutouts = _graded_set(3)
    foreign = tmp_path / "mine" / "index.html"
    foreign.parent.mkdir()
    foreign.write_text("<html>my notes</html>")
    with pytest.raises(InputError, match="not a page lenslib wrote"):
        write_page(table, cutouts, tmp_path / "mine")
    assert foreign.read_text() == "<html>my notes</html>"
    page = write_page(table, cutouts, tmp_path / "ours")
    write_page(table[:2], cutouts[:2], tmp_path / "ours")  # its own page: replaced
    assert len(_page_data(page)["candidates"]) == 2
    catalog = tmp_path / "ours" / "stamps" / "catalog.ecsv"
    write_table(table, catalog)
    with pytest.raises(InputError, match="lies where the page"):
        write_page(table, cutouts, tmp_path / "ours", inputs=[catalog])
    with pytest.raises(InputError, match="one image per candidate"):
        write_page(table, cutouts[:2], tmp_path / "other")


def _scan_catalog(tmp_path, spots):
    """A FITS image with a WCS and the catalog ``lenslib scan`` writes for it (from synthetic tile
    scores, through the scan's own catalog function)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from lenslib.scan import TileScores, candidates_table, tile_grid

    rng = np.random.default_rng(3)
    image = rng.normal(0, 1, (300, 400)).astype(np.float32)
    yy, xx = np.mgrid[:300, :400]
    for x, y in spots:
        image += 60 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.5**2)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cdelt = [150.1, 2.2], [200, 150], [-0.05 / 3600, 0.05 / 3600]
    path = tmp_path / "mosaic.fits"
    fits.PrimaryHDU(image, header=wcs.to_header()).writeto(path)
    grid = tile_grid(image.shape, stride=50)
    xc, yc = grid.centres()
    scores = np.zeros(xc.shape, dtype=np.float32)
    for x, y in spots:
        scores[np.unravel_index(np.argmin(np.hypot(xc - x, yc - y)), xc.shape)] = 0.9
    return path, candidates_table(TileScores(grid, scores), wcs=wcs)


@pytest.mark.parametrize("suffix", [".ecsv", ".csv", ".fits"])
def test_cli_page_of_a_scan_catalog(tmp_path, suffix):
    from PIL import Image

    image, catalog = _scan_catalog(tmp_path, [(100, 100), (300, 200)])
    if suffix == ".csv":
        catalog.remove_column("skycoord")  # as lenslib scan writes a CSV catalog
    path = write_table(catalog, tmp_path / f"candidates{suffix}")
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert run(parser.parse_args([str(path), "--image", str(image), "--out", str(tmp_path / "g")])) == 0
    data = _page_data(tmp_path / "g" / "index.html")
    assert len(data["candidates"]) == 2
    sky = dict(data["candidates"][0]["info"])["RA Dec"]
    assert sky.startswith("150.") and "+02:" in sky
    for row in catalog:
        stamp = tmp_path / "g" / "stamps" / f"{data['candidates'][row.index]['row']}-asinh.png"
        pixels = np.asarray(Image.open(stamp))[::-1]  # back to FITS order
        peak = np.unravel_index(np.argmax(pixels), pixels.shape)
        assert (row["cutout_y0"] + peak[0], row["cutout_x0"] + peak[1]) in [(100, 100), (200, 300)]


def test_cli_refuses_bad_input(tmp_path):
    image, catalog = _scan_catalog(tmp_path, [(100, 100)])
    path = write_table(catalog, tmp_path / "candidates.ecsv")
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    with pytest.raises(InputError, match="--image.*--cutouts"):
        run(parser.parse_args([str(path), "--out", str(tmp_path / "g")]))
    with pytest.raises(InputError, match="--saliency needs"):
        run(parser.parse_args([str(path), "--image", str(image), "--saliency", "--out", str(tmp_path / "g")]))
    with pytest.raises(InputError, match="takes grade exports"):
        run(parser.parse_args(["--merge", str(path), "--image", str(image), "--out", "m.csv"]))
    catalog["cutout_x0"][0] = 390  # beyond the 400-pixel-wide image
    write_table(catalog, path)
    with pytest.raises(InputError, match="row 1.*inside"):
        run(parser.parse_args([str(path), "--image", str(image), "--out", str(tmp_path / "g")]))


# --------------------------------------------------------------------------------------------
# Merging inspectors' grades
# --------------------------------------------------------------------------------------------
HEADER = "id,grade,score,inspector,page_id,graded_at\n"


def _export(path: Path, inspector: str, grades: dict, page_id: str = "abc") -> Path:
    lines = [f"{i},{g},0.{i},{inspector},{page_id},2026-01-01T00:00:00Z\n" for i, g in grades.items()]
    path.write_text(HEADER + "".join(lines))
    return path


def test_merge_means_spreads_and_counts(tmp_path):
    a = _export(tmp_path / "a.csv", "alice", {1: "A", 2: "B", 3: "X", 4: "skip"})
    b = _export(tmp_path / "b.csv", "bob", {1: "A", 2: "C", 3: "skip", 5: "B"})
    merged = merge_grades([a, b])
    rows = {int(r["id"]): r for r in merged}
    assert sorted(rows) == [1, 2, 3, 4, 5]
    assert rows[1]["mean_grade"] == 3 and rows[1]["std_grade"] == 0 and rows[1]["n_inspectors"] == 2
    assert rows[2]["mean_grade"] == pytest.approx(1.5) and rows[2]["std_grade"] == pytest.approx(0.5)
    assert rows[3]["mean_grade"] == 0 and rows[3]["n_inspectors"] == 1 and rows[3]["n_skip"] == 1
    assert np.isnan(rows[4]["mean_grade"]) and rows[4]["n_inspectors"] == 0
    assert rows[5]["mean_grade"] == 2 and rows[5]["n_B"] == 1
    assert list(merged["id"][:2]) == [1, 5], "sorted by mean grade, best first"
    assert rows[2]["grade_alice"] == "B" and rows[2]["grade_bob"] == "C"


def test_merge_cli_writes_a_table(tmp_path):
    a = _export(tmp_path / "a.csv", "alice", {7: "A", 8: "C"})
    b = _export(tmp_path / "b.csv", "bob", {7: "B", 8: "C"})
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    out = tmp_path / "merged.ecsv"
    assert run(parser.parse_args(["--merge", str(a), str(b), "--out", str(out)])) == 0
    merged = Table.read(out)
    assert list(merged["id"]) == [7, 8]
    assert list(merged["mean_grade"]) == [2.5, 1.0] and list(merged["n_inspectors"]) == [2, 2]
    with pytest.raises(InputError, match="is the input"):
        run(parser.parse_args(["--merge", str(a), str(b), "--out", str(a)]))


@pytest.mark.parametrize("text, message", [
    (HEADER + "1,A,0.5,al,abc,t\n2,Q,0.5,al,abc,t\n", r"bad\.csv, row 2: field 'grade' is 'Q'"),
    ("name,grade\n1,A\n", r"bad\.csv has no field 'id'"),
    (HEADER + "1,A,0.5,al,abc,t\n1,B,0.5,al,abc,t\n", r"bad\.csv, row 2: id 1 is graded twice"),
])
def test_merge_names_the_file_and_field_of_bad_input(tmp_path, text, message):
    good = _export(tmp_path / "good.csv", "bob", {1: "A"})
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        merge_grades([good, tmp_path / "bad.csv"])


# --------------------------------------------------------------------------------------------
# The page in a browser
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium")
    from lenslib.inspect.browser import headless_chromium

    downloads = tmp_path_factory.mktemp("downloads")
    with headless_chromium(width=1280, height=900, download_dir=downloads) as driver:
        driver.download_dir = downloads
        yield driver


def _open(driver, page: Path):
    from lenslib.inspect.browser import wait_until_ready

    driver.get(page.as_uri())
    wait_until_ready(driver)
    return driver.execute_script("return window.lenslibState();")


def _press(driver, *keys):
    """Key presses as an inspector makes them: on the page (the window focused, no form field
    holding the focus), one after another."""
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script("window.focus(); const a = document.activeElement;"
                          "if (a && a !== document.body) a.blur();")
    for key in keys:
        ActionChains(driver).send_keys(key).perform()


def _let_storage_settle(seconds: float = 1.0) -> None:
    """Before a reload or another page: Chromium hands a page's localStorage writes to its browser
    process asynchronously, and a page loaded within milliseconds of the last key press can read
    the storage without them (seen on a loaded machine; an inspector never reloads that fast)."""
    time.sleep(seconds)


def _wait_for_grades(driver, n: int, timeout: float = 5.0) -> dict:
    """The page's state once it holds ``n`` grades (or after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    state = driver.execute_script("return window.lenslibState();")
    while state["graded"] != n and time.monotonic() < deadline:
        time.sleep(0.05)
        state = driver.execute_script("return window.lenslibState();")
    return state


def _wait_for_file(folder: Path, pattern: str, timeout: float = 10.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in folder.glob(pattern) if not p.name.endswith(".crdownload")]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no download matching {pattern} in {folder}: {list(folder.iterdir())}")


@pytest.mark.browser
def test_grade_with_the_keyboard_reload_and_export(browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    table, cutouts = _graded_set(12)
    page = write_page(table, cutouts, tmp_path / "grades", truth="label", title="keyboard test")
    by_score = [str(i) for i in table["id"][np.argsort(-np.asarray(table["score"]))]]
    from lenslib.inspect.browser import wait_until_ready

    expected = {by_score[0]: "A", by_score[1]: "B", by_score[2]: "C", by_score[3]: "X",
                by_score[4]: "A", by_score[5]: "skip"}
    # Headless Chromium can drop a file:// page's localStorage writes across a reload (see
    # test_filters_and_pages_do_not_share_grades): three tries of grading and reloading.
    for _attempt in range(3):
        _open(browser, page)
        browser.execute_script("window.localStorage.clear();")
        state = _open(browser, page)
        assert state["total"] == 12 and state["graded"] == 0 and state["current"] == by_score[0]
        inspector = browser.find_element("id", "inspector")
        inspector.send_keys("alice", Keys.ENTER)
        # A, B, C, X on the four best; pass the fifth; skip the sixth; back twice; A on the fifth.
        _press(browser, "a", "b", "c", "x", Keys.ARROW_RIGHT, "s", "k", "k", "A")
        state = browser.execute_script("return window.lenslibState();")
        assert state["grades"] == expected and state["graded"] == 5 and state["current"] == by_score[5]
        assert browser.find_element("id", "progress").text == "graded 5 / 12, 1 skipped"

        _let_storage_settle()
        browser.refresh()  # a closed tab loses nothing
        wait_until_ready(browser)
        state = browser.execute_script("return window.lenslibState();")
        if state["grades"] == expected:
            break
    assert state["grades"] == expected and state["current"] == by_score[5]
    assert browser.find_element("id", "progress").text == "graded 5 / 12, 1 skipped"
    assert browser.find_element("id", "inspector").get_attribute("value") == "alice"

    confusion = browser.find_element("id", "confusion").text
    labels = dict(zip(table["id"].astype(str), table["label"]))
    a_lenses = sum(labels[i] == 1 for i, g in expected.items() if g == "A")
    assert f"A {2 - a_lenses} {a_lenses}" in confusion, confusion

    text = browser.execute_script("return window.lenslibExport('csv');")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["id"]: r["grade"] for r in rows} == expected
    assert {r["inspector"] for r in rows} == {"alice"}
    scores = dict(zip(table["id"].astype(str), table["score"]))
    assert all(float(r["score"]) == pytest.approx(scores[r["id"]]) for r in rows)

    browser.find_element("id", "export-csv").click()
    download = _wait_for_file(browser.download_dir, "grades-*-alice.csv")
    assert download.read_text() == text
    exported = read_grades(download)
    assert dict(zip(exported["id"], exported["grade"])) == expected

    ecsv = tmp_path / "grades.ecsv"
    ecsv.write_text(browser.execute_script("return window.lenslibExport('ecsv');"))
    t = Table.read(ecsv, format="ascii.ecsv")
    assert t["id"].dtype.kind == "i" and dict(zip(t["id"].astype(str), t["grade"])) == expected

    other = _export(tmp_path / "bob.csv", "bob", {by_score[0]: "B", by_score[1]: "B"}, state["page_id"])
    merged = {str(r["id"]): r for r in merge_grades([download, other])}
    assert merged[by_score[0]]["mean_grade"] == 2.5 and merged[by_score[0]]["n_inspectors"] == 2
    assert merged[by_score[3]]["mean_grade"] == 0 and merged[by_score[3]]["n_inspectors"] == 1


@pytest.mark.browser
def test_filters_and_pages_do_not_share_grades(browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    table, cutouts = _graded_set(8, seed=5)
    first = write_page(table, cutouts, tmp_path / "one", title="first page")
    second = write_page(table, cutouts, tmp_path / "two", title="second page")
    # Headless Chromium on a loaded machine can drop a file:// page's last localStorage writes when
    # another page is opened (seen: 2 of 6 tries with the cores oversubscribed 3x; once in ~8 CI
    # runs). That is the browser, not the page, so the round trip gets three tries; a page that
    # kept no grades, or shared them, fails all three.
    for _attempt in range(3):
        _open(browser, first)
        browser.execute_script("window.localStorage.clear();")
        _open(browser, first)
        _press(browser, "a", "x", "a")
        assert _wait_for_grades(browser, 3)["graded"] == 3, "the key presses were not handled"
        _let_storage_settle()
        state = _open(browser, second)
        assert state["graded"] == 0, "two pages share their grades"
        state = _open(browser, first)
        if state["graded"] == 3:
            break
    assert state["graded"] == 3, "the first page lost its grades"
    Select(browser.find_element("id", "grade-filter")).select_by_value("A")
    shown = browser.execute_script("return document.querySelectorAll('#strip .thumb').length;")
    assert shown == 2
    assert "candidate 1 of 2" in browser.find_element("id", "position").text
    Select(browser.find_element("id", "grade-filter")).select_by_value("all")
    best = float(np.max(table["score"]))
    browser.find_element("id", "min-score").send_keys(str(round(best - 0.01, 3)))
    shown = browser.execute_script("return document.querySelectorAll('#strip .thumb').length;")
    assert shown == 1


@pytest.mark.browser
def test_thumbnails_load_lazily(browser, tmp_path):
    rng = np.random.default_rng(2)
    n = 400
    table = Table({"id": np.arange(n), "score": rng.uniform(size=n)})
    page = write_page(table, rng.normal(size=(n, 8, 8)), tmp_path / "many")
    _open(browser, page)
    loaded = "return Array.from(document.querySelectorAll('#strip img')).map(i => i.hasAttribute('src'));"
    thumbs = browser.execute_script(loaded)
    assert len(thumbs) == n and 0 < sum(thumbs) < n / 2, f"{sum(thumbs)} of {n} thumbnails loaded at once"
    assert not thumbs[-1]
    browser.execute_script("const s = document.getElementById('strip'); s.scrollTop = s.scrollHeight;")
    deadline = time.monotonic() + 5
    while not browser.execute_script(loaded)[-1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert browser.execute_script(loaded)[-1], "the last thumbnail is not loaded when scrolled to"


@pytest.mark.browser
def test_screenshot(browser, tmp_path):
    from PIL import Image

    from lenslib.inspect import screenshot

    table, cutouts = _graded_set(4)
    page = write_page(table, cutouts, tmp_path / "grades")
    shot = screenshot(page, tmp_path / "shot.png", width=900, height=700)
    with Image.open(shot) as im:
        assert im.size == (900, 700)
        assert len(np.unique(np.asarray(im.convert("L")))) > 20, "a blank screenshot"


def test_screenshot_without_chromium_says_so(tmp_path, monkeypatch):
    from lenslib.inspect import BrowserUnavailableError, browser, screenshot

    table, cutouts = _graded_set(2)
    page = write_page(table, cutouts, tmp_path / "grades")
    monkeypatch.setattr(browser, "CHROMIUM_NAMES", ("no-such-chromium",))
    with pytest.raises(BrowserUnavailableError, match="chromium"):
        screenshot(page, tmp_path / "shot.png")
    assert not (tmp_path / "shot.png").exists()
