"""The built book, opened in a real browser.

The last test executes the two result chapters on small synthetic tables (the committed
tables may be empty), so that the code paths that draw our runs are exercised too.

Assumes the HTML was built by ``make book`` (``make test`` builds it first); builds it
here when ``_build/html/index.html`` is missing. For every page of ``_toc.yml``: the page
exists and loads in headless Chromium (Debian's ``chromium``), every ``<img>`` points to an
existing non-empty file, no executed cell shows an error or a stderr stream, every notebook
page whose executed notebook has figures shows them, and a screenshot is saved to
``_build/screenshots/`` for a person to look at. Every figure carries a number and no plot
is shown outside a numbered figure; no glue reference is left unresolved; at a 1280 px
window no code block, table or cell output overflows the article (folded blocks opened).
"""
from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
EXECUTED = ROOT / "_build" / "jupyter_execute"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium")

pytestmark = pytest.mark.slow
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's `chromium` is not installed (`apt-get install chromium`, "
    "or `BRIDGEOUT_INSTALL_BROWSER=1 make browser` as root); the browser check needs it")


def toc_pages() -> list[str]:
    """Every document of _toc.yml, in order (paths without suffix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                pages.append(e["file"])
            walk(e.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return pages


PAGES = toc_pages()


class _Page(html.parser.HTMLParser):
    """Collects <img> sources, error/stderr output elements and the text of cell outputs."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.bad_outputs: list[str] = []
        self.output_text: list[str] = []
        self.title = ""
        self._stack: list[bool] = []   # per open element: inside a cell output?
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        inside = (self._stack[-1] if self._stack else False) or "cell_output" in classes
        if tag == "img":
            self.images.append(a.get("src", ""))
        if ("stderr" in classes and "output" in classes) or "traceback" in classes or "ipythontb" in " ".join(classes):
            self.bad_outputs.append(" ".join(classes))
        if tag == "title":
            self._in_title = True
        if tag not in ("img", "br", "hr", "meta", "link", "input", "source", "col", "wbr", "area", "base"):
            self._stack.append(inside)

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if tag not in ("img", "br", "hr", "meta", "link", "input", "source", "col", "wbr", "area", "base") and self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._stack and self._stack[-1]:
            self.output_text.append(data)


def _build_if_missing():
    if (HTML / "index.html").exists():
        return
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", ".", "--path-output", ".", "-W", "-n", "--keep-going"]
    env = dict(os.environ)
    shared = ROOT.parent / "shared" / "data"   # the Makefile's default data location
    if "BRIDGEOUT_DATA" not in env and shared.is_dir():
        env["BRIDGEOUT_DATA"] = str(shared)
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env)
    assert res.returncode == 0, f"jupyter-book build failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"


@pytest.fixture(scope="module")
def browser_profile():
    _build_if_missing()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bridgeout-chromium-") as d:
        yield d


def _chromium(profile: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
           "--window-size=1280,2000", "--virtual-time-budget=4000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": profile})


def _figures_in_executed_notebook(page: str) -> int:
    nb = EXECUTED / f"{page}.ipynb"
    if not nb.exists():
        return 0
    import nbformat
    cells = nbformat.read(nb, as_version=4).cells
    n = 0
    for c in cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            data = {k.split("papermill.record/")[-1] for k in o.get("data", {})}   # shown or glued
            n += bool(data & {"image/png", "image/svg+xml"})
    return n


@needs_chromium
@pytest.mark.parametrize("page", PAGES)
def test_page_loads_with_its_figures_and_no_errors(page, browser_profile):
    path = HTML / f"{page}.html"
    assert path.is_file(), f"{page}: not built ({path} missing)"
    parsed = _Page()
    parsed.feed(path.read_text(encoding="utf-8"))

    # every image resolves to an existing, non-empty file
    local = []
    for src in parsed.images:
        url = urlparse(src)
        if url.scheme in ("http", "https", "data"):
            continue
        target = (path.parent / unquote(url.path)).resolve()
        assert target.is_file() and target.stat().st_size > 0, f"{page}: broken image {src!r}"
        local.append(target)

    # no error output, no stderr stream, no traceback text in any cell output
    assert not parsed.bad_outputs, f"{page}: error/stderr outputs {parsed.bad_outputs}"
    text = "".join(parsed.output_text)
    assert "Traceback" not in text, f"{page}: a cell output shows a traceback"

    # a notebook page shows at least the figures its executed notebook produced
    n_fig = _figures_in_executed_notebook(page)
    if n_fig:
        shown = [p for p in local if "_images" in p.parts]
        assert len(shown) >= max(1, n_fig), f"{page}: {n_fig} figures executed but {len(shown)} shown"

    # the page loads in the browser: the DOM after scripts ran holds the article and its title
    url = path.resolve().as_uri()
    dom = _chromium(browser_profile, "--dump-dom", url)
    assert dom.returncode == 0, f"{page}: chromium failed: {dom.stderr[-2000:]}"
    assert "bd-article" in dom.stdout or "<article" in dom.stdout, f"{page}: no article in the rendered DOM"
    heading = parsed.title.split("\u2014")[0].split("#")[0].strip()
    assert heading and heading.split()[0] in dom.stdout, f"{page}: title {heading!r} not in the rendered DOM"

    # a screenshot, for a person to look at (and a sanity check that something was painted)
    shot = SHOTS / (page.replace("/", "__") + ".png")
    shot.unlink(missing_ok=True)
    res = _chromium(browser_profile, f"--screenshot={shot}", url)
    assert res.returncode == 0 and shot.is_file(), f"{page}: no screenshot: {res.stderr[-2000:]}"
    import matplotlib.image as mpimg
    img = mpimg.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert float(img[..., :3].std()) > 0.02, f"{page}: the screenshot is blank"


# --------------------------------------------------------------------------- layout and numbering
#: Injected at the end of a copy of a page: once the page has loaded, opens every folded
#: block (<details> and sphinx-togglebutton's hidden blocks: hidden cells, solutions), then lists every code block, table and cell
#: output that is wider than its box (its content scrolls sideways) or reaches past the
#: article's right edge, into <pre id="bridgeout-layout-report"> as JSON.
_LAYOUT_JS = """
<script>
window.addEventListener('load', function () { setTimeout(function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(function (e) { e.classList.remove('toggle-hidden'); });
  setTimeout(function () {
    var art = document.querySelector('article') || document.body;
    var right = art.getBoundingClientRect().right;
    var out = [];
    art.querySelectorAll('pre, table, div.cell_output').forEach(function (el) {
      var r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) return;
      // a table that scrolls sideways in its own box (overflow-x auto) is meant to: only its
      // box must stay inside the article
      var scrolls = el.tagName === 'TABLE' && /auto|scroll/.test(getComputedStyle(el).overflowX);
      var wide = !scrolls && el.scrollWidth > el.clientWidth + 1, past = r.right > right + 1;
      if (wide || past) {
        out.push({tag: el.tagName.toLowerCase(), scroll: el.scrollWidth, box: el.clientWidth,
                  right: Math.round(r.right), article_right: Math.round(right),
                  text: (el.textContent || '').trim().split('\\n')[0].slice(0, 80)});
      }
    });
    // words broken across lines inside a table cell ("resne|t"): a word whose text spans
    // more than one line box; hyphens, slashes, dashes and an opening parenthesis are allowed
    // break points, so they split words
    var broken = [];
    art.querySelectorAll('td, th').forEach(function (cell) {
      var walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
      var node;
      while ((node = walk.nextNode())) {
        var re = /[^\\s\\-\\/\\u2013\\u2014(]+/g, m;
        while ((m = re.exec(node.data))) {
          var range = document.createRange();
          range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
          var tops = {};
          Array.prototype.forEach.call(range.getClientRects(), function (r) { if (r.width > 0) tops[Math.round(r.top)] = 1; });
          if (Object.keys(tops).length > 1) broken.push(m[0]);
        }
      }
    });
    var verdict = document.querySelector('.verdict');
    var rep = document.createElement('pre');
    rep.id = 'bridgeout-layout-report';
    rep.style.display = 'none';
    var shown = function (e) { var r = e.getBoundingClientRect(); return e.offsetParent !== null && r.height > 0; };
    var searches = Array.prototype.filter.call(
      document.querySelectorAll('.search-button-field, form.bd-search'), shown).length;
    var hdr = document.querySelector('header.bd-header');
    rep.textContent = JSON.stringify({article_width: Math.round(art.getBoundingClientRect().width),
                                      overflow: out, search_boxes: searches, broken: broken,
                                      viewport_height: window.innerHeight,
                                      verdict_bottom: verdict ? Math.round(verdict.getBoundingClientRect().bottom + window.scrollY) : null,
                                      header_height: hdr ? Math.round(hdr.getBoundingClientRect().height) : 0});
    document.body.appendChild(rep);
  }, 300);
}, 200); });
</script>
"""


def layout_report(page: Path, profile: str, width: int = 1280, height: int = 900) -> dict:
    """Open ``page`` in headless Chromium at ``width`` px and return ``{"article_width",
    "overflow": [...]}``: the code blocks, tables and cell outputs of the article that
    overflow sideways, every folded block opened. The page itself is not modified: a copy
    with a ``<base>`` pointing at its folder (so its styles load) is opened instead."""
    import json
    import re

    src = page.read_text(encoding="utf-8")
    base = f'<base href="{page.parent.resolve().as_uri()}/">'
    src = re.sub(r"<head([^>]*)>", lambda m: f"<head{m.group(1)}>{base}", src, count=1)
    src = src.replace("</body>", _LAYOUT_JS + "</body>", 1) if "</body>" in src else src + _LAYOUT_JS
    with tempfile.TemporaryDirectory(prefix="bridgeout-layout-") as d:
        copy = Path(d) / page.name
        copy.write_text(src, encoding="utf-8")
        res = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "--virtual-time-budget=8000", "--dump-dom", copy.as_uri()],
            capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": profile})
    assert res.returncode == 0, f"chromium failed on {page}: {res.stderr[-2000:]}"
    m = re.search(r'<pre id="bridgeout-layout-report"[^>]*>(.*?)</pre>', res.stdout, re.S)
    assert m, f"{page}: the layout script did not report (page did not finish loading?)"
    return json.loads(html.unescape(m.group(1)))


class _Figures(html.parser.HTMLParser):
    """Inside the article: every <figure> (or div.figure) and whether it has a caption
    number; every image of the build (_images/) and whether it sits inside a figure; the
    visible text (for leftover glue syntax)."""

    _VOID = ("img", "br", "hr", "meta", "link", "input", "source", "col", "wbr", "area", "base")

    def __init__(self):
        super().__init__()
        self.figures: list[dict] = []
        self.bare_images: list[str] = []
        self.text: list[str] = []
        self._stack: list[tuple[str, int | None, bool]] = []  # (tag, figure index, in article)
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        fig = self._stack[-1][1] if self._stack else None
        art = (self._stack[-1][2] if self._stack else False) or tag == "article"
        if art and (tag == "figure" or (tag == "div" and "figure" in classes)):
            self.figures.append({"id": a.get("id", ""), "numbered": False})
            fig = len(self.figures) - 1
        if art and tag == "span" and "caption-number" in classes and fig is not None:
            self.figures[fig]["numbered"] = True
        if art and tag == "img" and "_images/" in a.get("src", "") and fig is None:
            self.bare_images.append(a.get("src", ""))
        if tag in ("script", "style"):
            self._skip += 1
        if tag not in self._VOID:
            self._stack.append((tag, fig, art))

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        if tag in self._VOID:
            return
        for i in range(len(self._stack) - 1, -1, -1):   # tolerate unclosed inner tags
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break

    def handle_data(self, data):
        if not self._skip and self._stack and self._stack[-1][2]:
            self.text.append(data)


def figure_report(page: Path) -> _Figures:
    parsed = _Figures()
    parsed.feed(page.read_text(encoding="utf-8"))
    return parsed


@needs_chromium
def test_layout_report_flags_what_overflows_and_nothing_else(tmp_path):
    """The overflow check is real: on a synthetic page it flags exactly the code block and the
    table that are wider than the article, not the ones that fit."""
    long = "x = " + "1234567890 " * 40
    page = tmp_path / "synthetic.html"
    page.write_text(f"""<!DOCTYPE html><html><head><style>
      article {{ width: 600px; margin: 0 auto; }} pre {{ overflow: auto; }}</style></head>
      <body><article>
      <pre id="fits">short = 1</pre>
      <pre id="wide">{long}</pre>
      <table id="small"><tr><td>1</td><td>2</td></tr></table>
      <table id="big"><tr>{''.join(f'<td>column{i:02d}</td>' for i in range(60))}</tr></table>
      <details><pre id="folded">{long}</pre></details>
      <table id="scrolls" style="display: block; overflow-x: auto; max-width: 100%">
        <tr>{''.join(f'<td>wide{i:02d}</td>' for i in range(60))}</tr></table>
      <table style="width: 120px"><tr><td style="overflow-wrap: anywhere">supercalifragilistic</td>
        <td>two words, cpu-cifar10-resnet-and-more</td></tr></table>
      <div class="verdict" style="height: 50px">verdict</div>
      </article></body></html>""", encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="bridgeout-chromium-") as profile:
        rep = layout_report(page, profile)
    assert rep["article_width"] == 600
    flagged = sorted((o["tag"], o["text"][:12]) for o in rep["overflow"])
    # the table that scrolls in its own box is not flagged; the one that runs past the article is
    assert flagged == [("pre", "x = 12345678"), ("pre", "x = 12345678"), ("table", "column00colu")], rep
    # the word forced to break inside its cell is reported; words wrapped at spaces and hyphens are not
    assert rep["broken"] == ["supercalifragilistic"], rep["broken"]
    assert 0 < rep["verdict_bottom"] < 2000 and 600 < rep["viewport_height"] <= 900   # the window less its chrome


def test_figure_report_finds_unnumbered_figures_and_bare_images():
    page = Path(tempfile.mkdtemp()) / "p.html"
    page.write_text("""<html><body><img src="_images/logo.png"><article>
      <figure id="a"><img src="_images/a.svg"><figcaption><p><span class="caption-number">Fig. 1 </span>
      <span class="caption-text">A.</span></p></figcaption></figure>
      <figure id="b"><img src="_images/b.svg"><figcaption><p>B.</p></figcaption></figure>
      <div class="cell_output"><img src="_images/c.png"></div><p>{glue:md}`x`</p>
      </article></body></html>""", encoding="utf-8")
    rep = figure_report(page)
    assert [(f["id"], f["numbered"]) for f in rep.figures] == [("a", True), ("b", False)]
    assert rep.bare_images == ["_images/c.png"]
    assert "{glue:" in "".join(rep.text)


@pytest.mark.parametrize("page", PAGES)
def test_every_figure_is_numbered_and_every_glue_resolved(page):
    """(a) Every figure of the page carries a number ("Fig. N") and no plot is shown outside
    a numbered figure; (c) no glue reference is left unresolved (literal `{glue:` text or
    myst-nb's missing-key marker)."""
    _build_if_missing()
    rep = figure_report(HTML / f"{page}.html")
    unnumbered = [f["id"] or "(no id)" for f in rep.figures if not f["numbered"]]
    assert not unnumbered, f"{page}: figures without a number: {unnumbered}"
    assert not rep.bare_images, f"{page}: {len(rep.bare_images)} plot(s) outside a numbered figure: {rep.bare_images[:5]}"
    text = "".join(rep.text)
    for marker in ("{glue:", "{glue}", "glue:any", "glue:md", "glue:text"):
        assert marker not in text, f"{page}: unresolved glue reference {marker!r} in the page text"


@needs_chromium
@pytest.mark.parametrize("page", PAGES)
def test_no_code_or_table_overflows_at_1280px(page, browser_profile):
    """(b) At a 1280 px window, no code block, table or cell output of the article (folded
    ones opened) is wider than its box or reaches past the article's edge."""
    rep = _layout(page, browser_profile)
    assert not rep["overflow"], (f"{page}: {len(rep['overflow'])} element(s) overflow the "
                                 f"{rep['article_width']} px article: " + "; ".join(
                                     f"{o['tag']} {o['scroll']}>{o['box']} px: {o['text'][:50]!r}"
                                     for o in rep["overflow"][:8]))


_LAYOUTS: dict[tuple[str, int, int], dict] = {}


def _layout(page: str, profile: str, width: int = 1280, height: int = 900) -> dict:
    """:func:`layout_report` of a page of the build, once per page and window size."""
    key = (page, width, height)
    if key not in _LAYOUTS:
        _LAYOUTS[key] = layout_report(HTML / f"{page}.html", profile, width, height)
    return _LAYOUTS[key]


@needs_chromium
@pytest.mark.parametrize("page", PAGES)
def test_no_table_cell_breaks_a_word_at_1280px(page, browser_profile):
    """At a 1280 px window no word of a table cell is split across two lines ("resne|t");
    a wide table scrolls instead (hyphens, slashes, dashes and "(" are allowed break points)."""
    rep = _layout(page, browser_profile)
    assert not rep["broken"], f"{page}: {len(rep['broken'])} word(s) broken inside a table cell: {rep['broken'][:12]}"


@needs_chromium
@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_the_verdict_is_on_the_first_screen(width, height, browser_profile):
    """The introduction's verdict box ends within the first screen, on a laptop and on a phone."""
    rep = _layout("book/intro", browser_profile, width, height)
    assert rep["verdict_bottom"] is not None, "the introduction has no element of class 'verdict'"
    assert rep["verdict_bottom"] <= rep["viewport_height"], (
        f"at {width} x {height} px the verdict ends at {rep['verdict_bottom']} px, below the first screen")


class _Tables(html.parser.HTMLParser):
    """The text of every table cell of a page: a list of tables, each a list of rows of cells."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_the_claims_table_gives_every_claim_a_verdict():
    """The reproduction chapter holds the claims table: one row per claim of
    :func:`bridgeout.claims.table`, each with a verdict from the legend."""
    from bridgeout import claims
    _build_if_missing()
    parsed = _Tables()
    parsed.feed((HTML / "notebooks" / "reproduction.html").read_text(encoding="utf-8"))
    found = [t for t in parsed.tables if t and t[0][:1] == ["verdict"]]
    assert len(found) == 1, f"expected one claims table (first header 'verdict'), found {len(found)}"
    rows = found[0][1:]
    assert len(rows) == len(claims.table()), rows
    assert all(r[0] in claims.VERDICTS for r in rows), [r[0] for r in rows]
    assert all(len(r) == 4 and all(r) for r in rows), "a claims row has an empty cell"


@needs_chromium
@pytest.mark.parametrize("page", ["book/intro", "notebooks/beyond"])
def test_no_empty_header_bar_and_one_search_box_at_1280px(page, browser_profile):
    """At a 1280 px window the theme's top bar (which would hold only a second search box)
    is not shown: one search box, in the sidebar."""
    rep = _layout(page, browser_profile)
    assert rep["header_height"] == 0, f"{page}: a {rep['header_height']} px header bar is shown"
    assert rep["search_boxes"] == 1, f"{page}: {rep['search_boxes']} search boxes are shown"


# --------------------------------------------------------------------------- result chapters
def _synthetic_tables(root: Path) -> None:
    """A few runs of each kind the result chapters distinguish, written with results.append
    (so they pass the schema): published scale (VGG-16/CIFAR-10, 2 seeds), a reduced-scale
    CPU grid with removal and several criteria, a q ablation, and MNIST teaching runs."""
    import numpy as np

    from bridgeout import results

    rng = np.random.default_rng(0)
    runs, rows = [], []

    def add(model, dataset, reg, seed, grid, protocol="paper", epochs=230, width=1.0, n_train=50_000,
            q=1.5, modes=("mask",), criteria=("l2",)):
        params = dict(model=model, dataset=dataset, regularizer=reg, seed=seed, protocol=protocol,
                      epochs=epochs, width=width, n_train=n_train, q=q)
        rid = results.make_run_id(params)
        runs.append(dict(run_id=rid, grid=grid, model=model, regularizer=reg, p=0.3, q=q, target_fraction=0.75,
                         signed=False, lam=None, dataset=dataset, protocol=protocol, epochs=epochs, epochs_done=epochs,
                         width=width, n_train=n_train, n_test=10_000, seed=seed, select="final",
                         quirks="", final_test_acc=0.9, best_test_acc=0.91, best_epoch=epochs, wall_time_s=60.0,
                         device="cpu", device_name="test cpu", torch_version="x", cuda_version="",
                         git_commit="", git_dirty=False, date="2026-01-01T00:00:00Z", notebook=""))
        for mode in modes:
            for crit in criteria:
                for f in np.arange(10) / 10:
                    acc = float(np.clip(0.1 + 0.8 / (1 + np.exp(20 * (f - 0.45))) + 0.005 * rng.standard_normal(), 0, 1))
                    removed = mode == "remove"
                    rows.append(dict(run_id=rid, criterion=crit, scope="layer", mode=mode, fraction=f, test_acc=acc,
                                     test_loss=1.0, params=1000, params_effective=int(1000 * (1 - f) ** 2),
                                     flops=int(1e6 * (1 - f) ** 2) if removed else 10**6,
                                     flops_effective=int(1e6 * (1 - f) ** 2),
                                     latency_b1_ms=1 + 4 * (1 - f) ** 2 if removed else np.nan,
                                     latency_b128_ms=10 + 90 * (1 - f) ** 2 if removed else np.nan,
                                     recalibrate_bn=False, finetune_epochs=0))

    for reg in ("bridgeout", "dropout", "weight_decay"):
        for seed in (0, 1):
            add("vgg16", "cifar10", reg, seed, "paper-cifar10")
            add("vgg16", "cifar10", reg, seed, "cpu-other", protocol="fast", epochs=10, width=0.25,
                modes=("mask", "remove"), criteria=("l2", "l1", "random"))
            add("lenet5", "mnist", reg, seed, "mnist-teaching", protocol="fast", epochs=3, n_train=60_000)
    add("vgg16", "cifar10", "bridgeout", 0, "cpu-other", protocol="fast", epochs=10, width=0.25, q=1.0)
    _append_padded(root, runs=runs, pruning=rows)
    _synthetic_cpu_comparison(root)
    _synthetic_cpu_comparison(root, "cpu-cifar10-resnet", model="resnet", width=1.0, seeds=(0,), precision="bf16")


def _append_padded(root: Path, **tables) -> None:
    """Append rows (lists of dicts) to the named tables, columns the rows lack left empty
    (or, for a column added later, the value older rows take: precision fp32)."""
    import numpy as np
    import pandas as pd

    from bridgeout import results

    for name in ("history", "pruning", "filters", "runs"):   # runs last, as the runner does
        if name in tables:
            df = pd.DataFrame(tables[name])
            for col in results.SCHEMAS[name]:
                if col not in df:
                    df[col] = results.LATER_VALUES.get(name, {}).get(col, np.nan)
            results.append(name, df[list(results.SCHEMAS[name])], root=root)


def _synthetic_cpu_comparison(root: Path, grid: str | None = None, model: str = "vgg16", width: float = 0.25,
                              seeds=(0, 1), precision: str = "fp32") -> None:
    """Seeds of three of the four arms of a CPU comparison grid (default: the VGG one;
    targeted DropConnect missing), with training histories and filter tables."""
    import numpy as np

    from bridgeout import summary

    grid = grid or summary.CPU_GRID
    runs, rows, hist, filt = [], [], [], []
    arms = {"weight_decay": (1.5, False, 1.2), "dropout": (1.5, False, 1.0), "bridgeout": (1.5, False, 0.4)}
    for reg, (q, signed, slope) in arms.items():
        for seed in seeds:
            rid = f"{grid}-{reg}-{seed}"
            runs.append(dict(run_id=rid, grid=grid, model=model, regularizer=reg, p=0.3, q=q,
                             target_fraction=0.75, signed=signed, lam=None, dataset="cifar10", protocol="cpu",
                             epochs=26, precision=precision,
                             epochs_done=26, width=width, n_train=50_000, n_test=10_000, seed=seed,
                             select="final", quirks="", final_test_acc=0.85 + 0.01 * seed, best_test_acc=0.86,
                             best_epoch=26, wall_time_s=1800.0, device="cpu", device_name="test cpu",
                             torch_version="x", cuda_version="", git_commit="", git_dirty=False,
                             date="2026-01-01T00:00:00Z", notebook=""))
            for recal in (False, True):
                for f in np.arange(10) / 10:
                    rows.append(dict(run_id=rid, criterion="l2", scope="layer", mode="mask", fraction=f,
                                     test_acc=float(np.clip(0.85 - slope * f + 0.01 * seed + 0.05 * recal, 0.1, 1)),
                                     test_loss=1.0, recalibrate_bn=recal, finetune_epochs=0))
            for e in range(1, 27):
                lr = 0.1 * 0.2 ** sum(m <= e - 1 for m in (7, 14, 18, 23))
                hist.append(dict(run_id=rid, epoch=e, lr=lr, train_acc=min(0.95, 0.3 + 0.03 * e),
                                 test_acc=min(0.9, 0.3 + 0.025 * e), train_loss=1.0, test_loss=1.0))
            for layer in ("features.0.conv", "features.1.conv"):
                for i in range(8):
                    filt.append(dict(run_id=rid, layer=layer, filter=i, norm=0.05 + 0.1 * i, gamma=0.1 * i, beta=0.0))
    _append_padded(root, runs=runs, pruning=rows, history=hist, filters=filt)


def _run(name: str) -> tuple[int, str]:
    """Execute notebooks/<name>.ipynb in memory; return (number of figures, all text output)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    figures, text = 0, []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{name}: {out.get('ename')}: {out.get('evalue')}"
            assert not (out.output_type == "stream" and out.name == "stderr"), f"{name}: stderr {out.text[:500]}"
            data = out.get("data", {})
            figures += "image/png" in data or "image/svg+xml" in data
            glued = {k.split("papermill.record/")[-1]: v for k, v in data.items() if "papermill.record/" in k}
            figures += "image/svg+xml" in glued or "image/png" in glued
            text.append(out.get("text", "") + data.get("text/html", "") + data.get("text/markdown", "")
                        + glued.get("text/markdown", ""))
    return figures, "\n".join(text)


def test_result_chapters_draw_synthetic_rows(tmp_path, monkeypatch):
    _synthetic_tables(tmp_path)
    monkeypatch.setenv("BRIDGEOUT_RESULTS", str(tmp_path))

    figures, text = _run("reproduction")
    # the six panels, the CPU comparison's three glued figures, the ResNet's two, the
    # reduced-scale CPU grid, the energy the pruned filters carry and one layer at a time
    # (why-section; the MNIST teaching runs are a table here; their figures are in the
    # teaching chapter)
    assert figures == 9
    # the paper's ResNet at its width: 3 of 12 runs, one seed per arm, beside the published panel
    assert "Status: 3 of 12 runs finished" in text and "precision bf16" in text
    assert ("One shot, as published, Batch Bridgeout keeps more than both baselines at every one of these "
            "fractions (20 %: +12.0 points against targeted Dropout") in text
    assert "| weight decay only (1) | 85.0 / 93.2 |" in text and "1 seed per arm" in text
    assert "With BatchNorm re-estimated, Batch Bridgeout keeps more than both baselines" in text
    # why the curves differ: every cause listed, measured where the tables allow
    assert "| candidate cause | what the runs show | status |" in text
    assert "| width (VGG-16 at a quarter of its channels) | the paper's ResNet at its own width, one shot" in text
    assert "| training length (26 epochs instead of 230) | the same comparison at 52 epochs" in text
    # ResNet / CIFAR-10 has the CPU-scale runs of its own section: 4 panels not run at all
    assert "run at the published scale" in text and text.count(">not run yet<") == 4   # status table cells
    assert "6 of 12 runs finished" in text and "targeted DropConnect (signed, q = 2) 0" in text
    # at 30 %: WD 0.85 - 0.36 (+0.01 seed 1) -> 49.5 mean; BB 0.85 - 0.12 -> 73.5
    assert "weight decay only 49.5 ± 0.7" in text and "Batch Bridgeout (q = 1.5) 73.5 ± 0.7" in text
    assert "Not every arm has a run yet" not in text     # Bridgeout vs both baselines is drawn
    assert "keeps more accuracy than both baselines at 4 of 4 fractions" in text
    assert "No panel has been run" not in text          # the delta table is there instead
    assert "VGG-16 / CIFAR-10" in text and "Batch Bridgeout" in text

    figures, text = _run("beyond")
    # one glued figure per question, placeholders included: regularizers, FLOPs, criteria,
    # speed, repair, ablations
    assert figures == 6
    assert "6 of 18 runs finished" in text and "The sparsity penalties have no finished run yet" in text
    # Bridgeout, BatchNorm re-estimated: 30 %: 0.85 - 0.12 + 0.05 (+0.01 seed 1) -> 78.5; 50 %: -> 70.5
    assert "weight decay only | 2 | 85.5 ± 0.7" in text and "| 78.5 ± 0.7 | 70.5 ± 0.7 |" in text
    assert "No pilot has been run yet" in text and "The criteria pass has not been run yet" in text
    assert "No run has been pruned with `mode=\"remove\"` yet" in text
    assert "have not been timed on a quiet machine yet" in text
    assert "1 setting varied so far, in `cpu-other`" in text and "`q`: 1 →" in text  # the synthetic q ablation
    assert "The fine-tuning pass has not been run yet" in text
    assert "| Regularizers compared | CIFAR-10 comparison, 3 arms, 2 seeds per arm | 12 runs to go |" in text
    assert "| Ranking criteria | the same 6 networks | pass not run | only the L2 ranking each run recorded so far |" in text
    assert ("| Repair | the same 6 networks | fine-tuning not run | Batch Bridgeout minus the best other arm at "
            "30 / 50 % (points): BatchNorm re-estimated +18.0 / +30.0 |") in text
    assert "1 seed per setting | partial | accuracy (%) at 70 % zeroed, mean ± sd: q 1 / 1.5:" in text


# --------------------------------------------------------------------------- offline math
_MATH_PAGES = [p for p in ("notebooks/theory", "book/method") if p in PAGES]
_REMOTE_MATHJAX = __import__("re").compile(r"""(?:https?:)?//[^"'\s>]*mathjax""", __import__("re").I)


def _has_local_mathjax_package() -> bool:
    import importlib.util
    return importlib.util.find_spec("jupyter_server_mathjax") is not None


def _math_elements(text: str) -> int:
    return text.count('class="math notranslate nohighlight"')


@pytest.mark.skipif(not _has_local_mathjax_package(),
                    reason="jupyter-server-mathjax (book extra) is not installed; the book then uses the CDN")
@pytest.mark.parametrize("page", PAGES)
def test_math_pages_load_mathjax_from_the_book_itself(page):
    """book/_ext/offline_mathjax.py: a page with equations loads MathJax from _static/mathjax/
    (a file that exists in the build), and no page refers to a MathJax on the network."""
    _build_if_missing()
    path = HTML / f"{page}.html"
    text = path.read_text(encoding="utf-8")
    assert not _REMOTE_MATHJAX.search(text), f"{page}: refers to a remote MathJax: {_REMOTE_MATHJAX.search(text)[0]}"
    if not _math_elements(text):
        return
    import re
    srcs = re.findall(r'<script[^>]*src="([^"]*MathJax\.js[^"]*)"', text)
    assert len(srcs) == 1, f"{page}: has equations but {len(srcs)} MathJax script tags"
    url = urlparse(srcs[0])
    assert url.scheme == "" and "config=TeX-AMS-MML_HTMLorMML-full" in url.query, srcs[0]
    target = (path.parent / unquote(url.path)).resolve()
    assert target.is_file() and target.stat().st_size > 10_000, f"{page}: {srcs[0]} is not in the build"
    assert (target.parent / "config" / "TeX-AMS-MML_HTMLorMML-full.js").is_file()
    assert "text/x-mathjax-config" in text and '"processClass"' in text, f"{page}: no MathJax 2 configuration"


@needs_chromium
@pytest.mark.skipif(not _has_local_mathjax_package(),
                    reason="jupyter-server-mathjax (book extra) is not installed; the book then uses the CDN")
@pytest.mark.parametrize("page", _MATH_PAGES)
def test_equations_are_typeset_offline(page, browser_profile):
    """In the browser (file://, no network needed) every equation of the page was typeset by
    MathJax: each math element holds a MathJax frame, and no error frame is shown."""
    path = HTML / f"{page}.html"
    n_math = _math_elements(path.read_text(encoding="utf-8"))
    assert n_math > 5, f"{page}: expected a page with equations, found {n_math}"
    dom = _chromium(browser_profile, "--virtual-time-budget=15000", "--dump-dom", path.resolve().as_uri())
    assert dom.returncode == 0, f"{page}: chromium failed: {dom.stderr[-2000:]}"
    import re
    frames = len(re.findall(r'id="MathJax-Element-\d+-Frame"', dom.stdout))
    assert frames >= n_math, f"{page}: {frames} of {n_math} math elements typeset by MathJax"
    errors = re.findall(r'class="merror"', dom.stdout)
    assert not errors, f"{page}: MathJax shows {len(errors)} TeX error box(es)"
