"""Opening a grading page of 2,000 candidates (``lenslib inspect``) in headless Chromium.

Prints, for a page of ``--n`` candidates (synthetic 100x100 cutouts: noise, a galaxy, an arc on
every third; seeded) written with :func:`lenslib.inspect.write_page`:

- the time to write it (stamps and HTML);
- the time from navigation start until the page is open and interactive, measured in the
  browser (``performance`` timings of a fresh navigation, browser cache cleared): the load
  event, the script ready to grade (mark ``lenslib-ready``) and the first stamp shown (mark
  ``lenslib-first-stamp``), median and range over ``--rounds`` loads (target: under 2 s);
- the same for two baselines measured in the same run: a page of 20 candidates (the cost that
  does not grow with the page), and a naive page showing every stamp of the 2,000 candidates
  at once (three ``<img>`` each, loaded eagerly: what the page avoids), with the ratios;
- the cost of one keystroke (next candidate) and of re-filtering the whole list, in the page.

    python bench/bench_inspect.py                 # 2,000 candidates, 5 loads of each page
    python bench/bench_inspect.py --n 5000 --rounds 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from lenslib.inspect import write_page
from lenslib.inspect.browser import headless_chromium, wait_until_ready
from lenslib.inspect.page import STAMP_DIR, stamp_name
from lenslib.inspect.stamps import STRETCHES

SIZE = 100
TARGET_S = 2.0


def synthetic_candidates(n: int, seed: int = 0) -> tuple[Table, np.ndarray]:
    """``n`` candidates: ids, scores, sky positions and cutouts in e-/s."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    r, phi = np.hypot(xx, yy), np.arctan2(yy, xx)
    cutouts = rng.normal(0.0, 0.01, (n, SIZE, SIZE)).astype(np.float32)
    for i in range(n):
        cutouts[i] += 0.5 * np.exp(-r / rng.uniform(3, 10)).astype(np.float32)
        if i % 3 == 0:
            cutouts[i] += (0.1 * np.exp(-0.5 * ((r - rng.uniform(15, 30)) / 1.2) ** 2)
                           * (np.cos(phi - rng.uniform(-np.pi, np.pi)) > 0.3)).astype(np.float32)
    table = Table({"id": np.arange(1, n + 1), "score": rng.uniform(0.5, 1.0, n),
                   "ra": 150.1 + rng.uniform(-0.1, 0.1, n), "dec": 2.2 + rng.uniform(-0.1, 0.1, n)})
    return table, cutouts


def naive_page(folder: Path, n: int) -> Path:
    """Every stamp of the page in ``folder`` as an eagerly loaded ``<img>``: the baseline."""
    imgs = "\n".join(f'<img src="{STAMP_DIR}/{stamp_name(row, kind)}" width="100" height="100">'
                     for row in range(n) for kind in STRETCHES)
    path = folder / "naive.html"
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{imgs}</body></html>")
    return path


_TIMES = """
const nav = performance.getEntriesByType('navigation')[0];
const mark = (name) => {
  const m = performance.getEntriesByName(name);
  return m.length ? m[0].startTime : null;
};
return {load: nav.loadEventEnd, dom: nav.domContentLoadedEventEnd, ready: mark('lenslib-ready'),
        first: mark('lenslib-first-stamp')};
"""


def open_times(driver, page: Path, rounds: int) -> list[dict]:
    """Timings (ms from navigation start) of ``rounds`` fresh loads of ``page``."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    out = []
    for _ in range(rounds):
        driver.get("about:blank")
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        driver.get(page.resolve().as_uri())
        deadline = time.monotonic() + 120
        while driver.execute_script("return document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{page} did not load in 120 s")
            time.sleep(0.01)
        if page.name == "index.html":
            wait_until_ready(driver)
        out.append(driver.execute_script(_TIMES))
    return out


_INTERACTION = """
const steps = 200;
let t0 = performance.now();
for (let i = 0; i < steps; i++) {
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 'j', bubbles: true}));
}
const key = (performance.now() - t0) / steps;
const select = document.getElementById('grade-filter');
t0 = performance.now();
for (const value of ['ungraded', 'all']) {
  select.value = value;
  select.dispatchEvent(new Event('change'));
  document.body.offsetHeight;
}
return {key: key, filter: (performance.now() - t0) / 2};
"""


def _spread(values, scale: float = 1e-3) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float) * scale
    if v.size == 0:
        return "-"
    return f"{np.median(v):.3f} s [{v.min():.3f}-{v.max():.3f}]"


def report(times: dict, interaction: dict, n: int, rounds: int) -> None:
    """Print the timings, the figure against the target and the ratios to the baselines."""
    print(f"\nfrom navigation start, median [range] of {rounds} loads, browser cache cleared:")
    print(f"{'page':<44} {'load event':>26} {'ready to grade':>26} {'first stamp shown':>26}")
    for name, rows in times.items():
        cells = [_spread([r[k] for r in rows]) for k in ("load", "ready", "first")]
        print(f"{name:<44} " + " ".join(f"{c:>26}" for c in cells))
    # open and interactive: the load event and the first stamp shown, whichever comes later
    med = [float(np.median([max(r["load"], r["first"] or 0) for r in rows])) / 1e3 for rows in times.values()]
    verdict = "met" if med[0] < TARGET_S else "NOT met"
    print(f"\nopen and interactive, {n} candidates: {med[0]:.3f} s (target < {TARGET_S:g} s: {verdict})")
    print(f"ratio to the 20-candidate page: {med[0] / med[1]:.2f}x; to the naive eager page: "
          f"{med[0] / med[2]:.3f}x (naive: {med[2]:.2f} s)")
    print(f"in the page: one keystroke (next candidate) {interaction['key']:.2f} ms; "
          f"re-filtering {n} candidates {interaction['filter']:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="candidates on the page")
    parser.add_argument("--rounds", type=int, default=5, help="loads of each page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table, cutouts = synthetic_candidates(args.n)
        start = time.perf_counter()
        big = write_page(table, cutouts, tmp / "big", title="bench")
        wall = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (tmp / "big").rglob("*")) / 2**20
        print(f"page of {args.n} candidates written in {wall:.1f} s ({wall / args.n * 1e3:.1f} ms a "
              f"candidate; {3 * args.n} stamps, {size:.1f} MiB, HTML {big.stat().st_size / 2**10:.0f} KiB)")
        pages = {f"lenslib page, {args.n} candidates": big,
                 "baseline: lenslib page, 20 candidates": write_page(table[:20], cutouts[:20], tmp / "small"),
                 f"baseline: naive page, all {3 * args.n} stamps eager": naive_page(tmp / "big", args.n)}
        with headless_chromium(width=1280, height=900) as driver:
            times = {name: open_times(driver, page, args.rounds) for name, page in pages.items()}
            driver.get(big.resolve().as_uri())
            wait_until_ready(driver)
            interaction = driver.execute_script(_INTERACTION)
    report(times, interaction, args.n, args.rounds)


if __name__ == "__main__":
    main()
