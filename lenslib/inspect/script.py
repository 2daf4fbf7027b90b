'''The grading page's script (plain JavaScript, no library), inlined by :mod:`.template`.

State lives in ``localStorage`` under ``lenslib-inspect:<page id>``: the grades, when each was
given, and the last candidate shown; the inspector's name under ``lenslib-inspect:inspector``.
Only the stamps of the candidate on screen and of its neighbours are requested, and the
thumbnails when they scroll into view (IntersectionObserver).  ``window.lenslibExport(format)``
returns the export's text ("csv" or "ecsv") and ``window.lenslibState()`` the grades, for tests
and for scripts driving the page; the performance marks ``lenslib-ready`` (the script has run)
and ``lenslib-first-stamp`` (the first stamp is shown) time the opening.
'''

SCRIPT = r"""
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("lenslib-data").textContent);
  const CANDS = DATA.candidates;
  const KEY = "lenslib-inspect:" + DATA.page_id;
  const WHO_KEY = "lenslib-inspect:inspector";
  const GRADES = ["A", "B", "C", "X"];
  const ZOOMS = [1, 1.5, 2, 3];
  const $ = (id) => document.getElementById(id);
  const thumbs = new Map();
  let state = {grades: {}, times: {}, last: null};
  let storageOk = true;
  let order = [];
  let pos = 0;
  let zoom = 0;
  let observer = null;
  const preloaded = [];

  function load() {
    try {
      const saved = JSON.parse(window.localStorage.getItem(KEY) || "null");
      if (saved && typeof saved.grades === "object" && saved.grades !== null) {
        state.grades = saved.grades;
        state.times = saved.times || {};
        state.last = saved.last || null;
      }
      const who = window.localStorage.getItem(WHO_KEY);
      if (who !== null) $("inspector").value = who;
    } catch (err) {
      storageOk = false;
    }
  }

  function save() {
    try {
      window.localStorage.setItem(KEY, JSON.stringify(state));
    } catch (err) {
      storageOk = false;
    }
    $("storage-warning").hidden = storageOk;
  }

  function score(c) { return c.score === null ? -Infinity : c.score; }

  function cmpId(a, b) {
    if (DATA.id_type === "int64") {
      const x = BigInt(a.id), y = BigInt(b.id);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }

  function sorter(mode) {
    if (mode === "id") return cmpId;
    const sign = mode === "score-asc" ? 1 : -1;
    return (a, b) => {
      const d = sign * (score(a) - score(b));
      return d > 0 ? 1 : d < 0 ? -1 : cmpId(a, b);
    };
  }

  function bound(id) {
    const v = parseFloat($(id).value);
    return Number.isFinite(v) ? v : null;
  }

  function matches(c, lo, hi, grade) {
    if (lo !== null && !(score(c) >= lo)) return false;
    if (hi !== null && !(score(c) <= hi)) return false;
    const g = state.grades[c.id] || "";
    if (grade === "all") return true;
    if (grade === "ungraded") return g === "";
    return g === grade;
  }

  function applyFilter(keepId) {
    const lo = bound("min-score"), hi = bound("max-score"), grade = $("grade-filter").value;
    order = CANDS.filter((c) => matches(c, lo, hi, grade)).sort(sorter($("sort").value));
    const at = order.findIndex((c) => c.id === keepId);
    pos = at >= 0 ? at : 0;
    buildStrip();
    show();
  }

  function src(c, kind) { return DATA.stamp_dir + "/" + c.row + "-" + kind + ".png"; }
  function current() { return order.length ? order[pos] : null; }

  function buildStamps() {
    const box = $("stamps");
    for (const kind of DATA.kinds) {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.id = "stamp-" + kind;
      img.addEventListener("load", firstStamp);
      const cap = document.createElement("figcaption");
      cap.textContent = DATA.captions[kind];
      fig.append(img, cap);
      box.append(fig);
    }
  }

  function firstStamp() {
    if (!performance.getEntriesByName("lenslib-first-stamp").length) performance.mark("lenslib-first-stamp");
  }

  function preload() {
    preloaded.length = 0;
    for (const d of [1, -1, 2]) {
      const c = order[pos + d];
      if (!c) continue;
      for (const kind of DATA.kinds) {
        const img = new Image();
        img.src = src(c, kind);
        preloaded.push(img);
      }
    }
  }

  function gradeBadge(el, g) {
    el.className = "grade" + (g ? " grade-" + g : "");
    el.textContent = g || "";
  }

  function show() {
    const c = current();
    $("empty").hidden = c !== null;
    $("viewer-body").hidden = c === null;
    const filtered = order.length < CANDS.length ? " (filters: " + CANDS.length + " in all)" : "";
    $("position").textContent = c ? "candidate " + (pos + 1) + " of " + order.length + filtered
                                  : "0 of " + CANDS.length + " candidates shown";
    if (c) {
      for (const kind of DATA.kinds) {
        const img = $("stamp-" + kind);
        img.src = src(c, kind);
        img.alt = DATA.captions[kind] + ", candidate " + c.id;
      }
      $("cand-id").textContent = c.id;
      $("cand-score").textContent = c.score === null ? "nan" : c.score.toFixed(4);
      const info = $("info");
      while (info.children.length > 4) info.lastChild.remove();
      for (const [k, v] of c.info) {
        const dt = document.createElement("dt"), dd = document.createElement("dd");
        dt.textContent = k;
        dd.textContent = v;
        info.append(dt, dd);
      }
      gradeBadge($("cand-grade"), state.grades[c.id] || "");
      if (!state.grades[c.id]) $("cand-grade").textContent = "-";
      preload();
      state.last = c.id;
      save();
    }
    markCurrent();
    progress();
  }

  function buildStrip() {
    const strip = $("strip");
    strip.textContent = "";
    thumbs.clear();
    if (observer) observer.disconnect();
    observer = "IntersectionObserver" in window
      ? new IntersectionObserver(onVisible, {root: strip, rootMargin: "256px"}) : null;
    const frag = document.createDocumentFragment();
    order.forEach((c, i) => {
      const b = document.createElement("button");
      b.className = "thumb";
      b.dataset.pos = String(i);
      b.title = "candidate " + c.id + ", score " + (c.score === null ? "nan" : c.score.toFixed(3));
      const img = document.createElement("img");
      img.dataset.src = src(c, "asinh");
      img.alt = "";
      const badge = document.createElement("span");
      gradeBadge(badge, state.grades[c.id] || "");
      b.append(img, badge);
      frag.append(b);
      thumbs.set(c.id, b);
      if (observer) observer.observe(img); else img.src = img.dataset.src;
    });
    strip.append(frag);
  }

  function onVisible(entries) {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      e.target.src = e.target.dataset.src;
      observer.unobserve(e.target);
    }
  }

  function markCurrent() {
    for (const el of document.querySelectorAll(".thumb.current")) el.classList.remove("current");
    const c = current();
    const el = c && thumbs.get(c.id);
    if (!el) return;
    el.classList.add("current");
    const strip = $("strip");
    const top = el.offsetTop - strip.offsetTop;
    if (top < strip.scrollTop || top + el.offsetHeight > strip.scrollTop + strip.clientHeight) {
      strip.scrollTop = top - strip.clientHeight / 2;
    }
  }

  function progress() {
    let graded = 0, skipped = 0;
    for (const c of CANDS) {
      const g = state.grades[c.id];
      if (GRADES.includes(g)) graded += 1; else if (g === "skip") skipped += 1;
    }
    $("progress").textContent = "graded " + graded + " / " + CANDS.length
      + (skipped ? ", " + skipped + " skipped" : "");
    return {graded: graded, skipped: skipped};
  }

  function updateConfusion() {
    if (DATA.truth_name === null) return;
    $("confusion-box").hidden = false;
    const values = Array.from(new Set(CANDS.map((c) => c.truth))).sort();
    const rows = GRADES.concat(["skip", ""]);
    const count = new Map();
    for (const c of CANDS) {
      const k = (state.grades[c.id] || "") + "\u0000" + c.truth;
      count.set(k, (count.get(k) || 0) + 1);
    }
    const table = $("confusion");
    table.textContent = "";
    const head = table.insertRow();
    head.insertCell().textContent = "grade \\ " + DATA.truth_name;
    for (const v of values) head.insertCell().textContent = v;
    for (const g of rows) {
      const tr = table.insertRow();
      tr.insertCell().textContent = g === "" ? "not graded" : g;
      for (const v of values) tr.insertCell().textContent = String(count.get(g + "\u0000" + v) || 0);
    }
  }

  function go(i) {
    if (!order.length) return;
    pos = Math.max(0, Math.min(order.length - 1, i));
    show();
  }

  function nextUngraded() {
    for (let i = 1; i <= order.length; i += 1) {
      const j = (pos + i) % order.length;
      if (!state.grades[order[j].id]) return go(j);
    }
  }

  function setGrade(g) {
    const c = current();
    if (!c) return;
    if (g) {
      state.grades[c.id] = g;
      state.times[c.id] = new Date().toISOString();
    } else {
      delete state.grades[c.id];
      delete state.times[c.id];
    }
    save();
    const el = thumbs.get(c.id);
    if (el) gradeBadge(el.querySelector("span"), g || "");
    updateConfusion();
    if (g && pos < order.length - 1) go(pos + 1); else show();
  }

  function setZoom(z) {
    zoom = Math.max(0, Math.min(ZOOMS.length - 1, z));
    document.documentElement.style.setProperty("--stamp", Math.round(200 * ZOOMS[zoom]) + "px");
    $("zoom").textContent = ZOOMS[zoom] + "x";
  }

  function inspector() { return $("inspector").value.trim(); }

  function rows() {
    return CANDS.filter((c) => state.grades[c.id]).map((c) => [
      c.id, state.grades[c.id], c.score === null ? "nan" : String(c.score), inspector(),
      DATA.page_id, state.times[c.id] || ""]);
  }

  const COLUMNS = ["id", "grade", "score", "inspector", "page_id", "graded_at"];

  function csvField(v) { return /[",\r\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }
  function ecsvField(v) { return v === "" || /[\s",#]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }

  function toCSV() {
    const lines = [COLUMNS.join(",")].concat(rows().map((r) => r.map(csvField).join(",")));
    return lines.join("\n") + "\n";
  }

  function toECSV() {
    const types = [DATA.id_type, "string", "float64", "string", "string", "string"];
    const head = ["# %ECSV 1.0", "# ---", "# datatype:"]
      .concat(COLUMNS.map((n, i) => "# - {name: " + n + ", datatype: " + types[i] + "}"))
      .concat(["# meta: {page_id: '" + DATA.page_id + "', title: " + JSON.stringify(DATA.title)
               + ", scale: 'A=3 B=2 C=1 X=0, skip left out'}", "# schema: astropy-2.0",
               COLUMNS.join(" ")]);
    return head.concat(rows().map((r) => r.map(ecsvField).join(" "))).join("\n") + "\n";
  }

  function exportText(format) { return format === "ecsv" ? toECSV() : toCSV(); }

  function exportFile(format) {
    const who = inspector().replace(/[^A-Za-z0-9_-]+/g, "_");
    const ext = format === "ecsv" ? "ecsv" : "csv";
    const name = "grades-" + DATA.page_id + (who ? "-" + who : "") + "." + ext;
    const blob = new Blob([exportText(format)], {type: format === "ecsv" ? "text/plain" : "text/csv"});
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
    return name;
  }

  function toggleHelp() { $("help").hidden = !$("help").hidden; }

  const ACTIONS = {
    a: () => setGrade("A"), b: () => setGrade("B"), c: () => setGrade("C"), x: () => setGrade("X"),
    s: () => setGrade("skip"), " ": () => setGrade("skip"), u: () => setGrade(null),
    Backspace: () => setGrade(null), Delete: () => setGrade(null),
    ArrowRight: () => go(pos + 1), j: () => go(pos + 1), ArrowLeft: () => go(pos - 1), k: () => go(pos - 1),
    n: nextUngraded, Home: () => go(0), End: () => go(order.length - 1),
    z: () => setZoom((zoom + 1) % ZOOMS.length), "+": () => setZoom(zoom + 1), "=": () => setZoom(zoom + 1),
    "-": () => setZoom(zoom - 1), e: () => exportFile("csv"), "?": toggleHelp,
  };

  function onKey(ev) {
    const t = ev.target;
    if (t && ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName)) {
      if (ev.key === "Escape" || ev.key === "Enter") t.blur();
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const act = ACTIONS[ev.key.length === 1 ? ev.key.toLowerCase() : ev.key];
    if (!act) return;
    ev.preventDefault();
    act();
  }

  function bind() {
    document.addEventListener("keydown", onKey);
    const keep = () => applyFilter(current() ? current().id : null);
    for (const id of ["min-score", "max-score"]) $(id).addEventListener("input", keep);
    for (const id of ["grade-filter", "sort"]) {
      $(id).addEventListener("change", (ev) => { keep(); ev.target.blur(); });
    }
    $("inspector").addEventListener("change", () => {
      try { window.localStorage.setItem(WHO_KEY, inspector()); } catch (err) { storageOk = false; }
    });
    $("export-csv").addEventListener("click", (ev) => { exportFile("csv"); ev.target.blur(); });
    $("export-ecsv").addEventListener("click", (ev) => { exportFile("ecsv"); ev.target.blur(); });
    $("help-button").addEventListener("click", (ev) => { toggleHelp(); ev.target.blur(); });
    $("grade-buttons").addEventListener("click", (ev) => {
      const b = ev.target.closest("button");
      if (!b) return;
      b.blur();
      setGrade(b.dataset.grade || null);
    });
    $("strip").addEventListener("click", (ev) => {
      const b = ev.target.closest(".thumb");
      if (!b) return;
      b.blur();
      go(Number(b.dataset.pos));
    });
  }

  buildStamps();
  load();
  bind();
  setZoom(0);
  $("page-id").textContent = DATA.page_id;
  applyFilter(state.last);
  updateConfusion();
  window.lenslibExport = exportText;
  window.lenslibDownload = exportFile;
  window.lenslibState = () => {
    const p = progress();
    return {page_id: DATA.page_id, total: CANDS.length, graded: p.graded, skipped: p.skipped,
            grades: Object.assign({}, state.grades), current: current() ? current().id : null};
  };
  document.body.dataset.ready = "1";
  performance.mark("lenslib-ready");
})();
"""
