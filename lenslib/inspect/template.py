"""The grading page's HTML and CSS; its script is :mod:`lenslib.inspect.script`.

Everything the page needs is inline or in its own folder (the stamps): it opens from disk, with
no server, no network and no address outside the folder.
"""

from __future__ import annotations

import json

from .script import SCRIPT

#: Captions of the stamps, by kind.
CAPTIONS = {
    "asinh": "arcsinh (the finder's view)",
    "linear": "linear",
    "residual": "lens light subtracted",
    "saliency": "saliency (where the finder looked)",
}

CSS = """
:root { --stamp: 200px; color-scheme: dark; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #15171c; color: #e6e6e6; }
header { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; padding: 8px 12px;
         background: #20232b; border-bottom: 1px solid #333; position: sticky; top: 0; z-index: 2; }
header h1 { font-size: 16px; margin: 0 8px 0 0; }
header label { font-size: 13px; color: #bbb; }
input, select, button { font: inherit; background: #2b2f3a; color: #eee; border: 1px solid #555;
                        border-radius: 4px; padding: 2px 6px; }
input[type=number] { width: 5.5em; }
button { cursor: pointer; }
button:hover { background: #394055; }
#progress { font-weight: 600; }
#storage-warning { color: #ffb0a0; }
main { display: flex; flex-wrap: wrap; gap: 16px; padding: 12px; }
#viewer { flex: 1 1 640px; }
aside { flex: 0 1 300px; font-size: 13px; }
#stamps { display: flex; flex-wrap: wrap; gap: 10px; }
#stamps figure { margin: 0; }
#stamps img { width: var(--stamp); height: var(--stamp); image-rendering: pixelated;
              background: #000; display: block; border: 1px solid #444; }
figcaption { font-size: 12px; color: #aaa; text-align: center; }
#details { display: flex; gap: 16px; align-items: flex-start; margin-top: 10px; }
#info { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 0; }
#info dt { color: #999; }
#info dd { margin: 0; font-family: ui-monospace, monospace; }
.grade { display: inline-block; min-width: 2.2em; text-align: center; font-weight: 700;
         border-radius: 4px; padding: 2px 4px; background: #333; color: #ccc; }
.grade-A { background: #2e7d32; color: #fff; } .grade-B { background: #9e9d24; color: #fff; }
.grade-C { background: #ef6c00; color: #fff; } .grade-X { background: #c62828; color: #fff; }
.grade-skip { background: #555; color: #ddd; }
#cand-grade { font-size: 28px; min-width: 2.2em; }
#grade-buttons { margin-top: 10px; display: flex; gap: 6px; flex-wrap: wrap; }
#strip { display: flex; flex-wrap: wrap; gap: 4px; padding: 8px 12px; max-height: 34vh;
         overflow-y: auto; border-top: 1px solid #333; background: #1a1c22; }
.thumb { position: relative; padding: 0; border: 2px solid transparent; background: #000; }
.thumb img { width: 64px; height: 64px; display: block; image-rendering: pixelated; }
.thumb.current { border-color: #4fc3f7; }
.thumb .grade { position: absolute; right: 0; bottom: 0; font-size: 10px; min-width: 1.6em;
                padding: 0 2px; }
.thumb .grade:empty { display: none; }
table { border-collapse: collapse; margin-top: 4px; }
th, td { border: 1px solid #444; padding: 2px 6px; text-align: right; }
kbd { background: #333; border: 1px solid #555; border-radius: 3px; padding: 0 4px;
      font-family: ui-monospace, monospace; }
#help ul { padding-left: 18px; margin: 4px 0; }
.muted { color: #999; }
"""

BODY = """
<header>
  <h1>{title}</h1>
  <span id="progress">graded 0 / 0</span>
  <span id="storage-warning" hidden>grades cannot be kept in this browser: export them often</span>
  <label>inspector <input id="inspector" size="10" placeholder="your name"></label>
  <label>score &ge; <input id="min-score" type="number" step="0.05"></label>
  <label>&le; <input id="max-score" type="number" step="0.05"></label>
  <label>grade <select id="grade-filter">
    <option value="all">all</option><option value="ungraded">not graded</option>
    <option value="A">A</option><option value="B">B</option><option value="C">C</option>
    <option value="X">X</option><option value="skip">skipped</option></select></label>
  <label>sort <select id="sort">
    <option value="score-desc">score, best first</option>
    <option value="score-asc">score, worst first</option><option value="id">id</option></select></label>
  <button id="export-csv" title="key e">export CSV</button>
  <button id="export-ecsv">export ECSV</button>
  <button id="help-button" title="key ?">keys</button>
</header>
<main>
  <section id="viewer">
    <div id="position" class="muted"></div>
    <p id="empty" hidden>No candidate matches the filters.</p>
    <div id="viewer-body">
      <div id="stamps"></div>
      <div id="details">
        <span id="cand-grade" class="grade">-</span>
        <dl id="info"><dt>id</dt><dd id="cand-id"></dd><dt>score</dt><dd id="cand-score"></dd></dl>
      </div>
      <div id="grade-buttons">
        <button data-grade="A">A: clearly a lens</button><button data-grade="B">B: probably a lens</button>
        <button data-grade="C">C: possibly a lens</button><button data-grade="X">X: not a lens</button>
        <button data-grade="skip">skip</button><button data-grade="">clear</button>
      </div>
    </div>
  </section>
  <aside>
    <div id="help">
      <strong>Keys</strong>
      <ul>
        <li><kbd>a</kbd> <kbd>b</kbd> <kbd>c</kbd> <kbd>x</kbd> grade (x: not a lens) and go on;
            <kbd>s</kbd> or <kbd>space</kbd> skip; <kbd>u</kbd> clear</li>
        <li><kbd>&rarr;</kbd> <kbd>j</kbd> next, <kbd>&larr;</kbd> <kbd>k</kbd> previous,
            <kbd>n</kbd> next not graded, <kbd>Home</kbd> <kbd>End</kbd></li>
        <li><kbd>z</kbd> cycle zoom, <kbd>+</kbd> <kbd>-</kbd> zoom in and out</li>
        <li><kbd>e</kbd> export the grades (CSV); <kbd>?</kbd> show or hide this help</li>
      </ul>
      <p class="muted">Grades are kept in this browser (page <span id="page-id"></span>) as you go;
      export them to merge with other inspectors' (<code>lenslib inspect --merge</code>:
      A=3, B=2, C=1, X=0, skip left out). A filter applies when it changes. Zoom: <span id="zoom"></span></p>
    </div>
    <div id="confusion-box" hidden><strong>Your grades against the truth</strong>
      <table id="confusion"></table></div>
  </aside>
</main>
<section id="strip" aria-label="all candidates"></section>
"""


def _json_for_script(data: dict) -> str:
    """``data`` as JSON safe inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(data: dict, escaped_title: str) -> str:
    """The whole page: ``data`` (:func:`lenslib.inspect.page.page_data`) and a title already
    escaped for HTML."""
    data = dict(data, captions={k: CAPTIONS.get(k, k) for k in data["kinds"]})
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta name="generator" content="{data["marker"]}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escaped_title}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        BODY.replace("{title}", escaped_title),
        f'<script type="application/json" id="lenslib-data">{_json_for_script(data)}</script>',
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
        "",
    ])
