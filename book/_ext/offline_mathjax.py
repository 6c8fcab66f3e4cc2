"""Serve MathJax from the built book itself, so that equations render offline.

Sphinx's default ``mathjax_path`` is a CDN address (MathJax 3 on jsDelivr); a page opened
without network (a laptop on a train, CI, an offline GPU node) then shows raw TeX. This
extension takes MathJax 2.7 from the ``jupyter-server-mathjax`` package (a PyPI dependency of
the ``book`` extra; nothing third-party is committed to this repository) and

* copies its ``static/`` folder to ``_build/html/_static/mathjax/`` when an HTML build finishes
  (files already there with the same size and modification time are skipped);
* points ``mathjax_path`` at ``_static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full``
  (the only combined configuration that package ships: TeX with AMSmath/AMSsymbols, MathML,
  HTML-CSS output);
* gives MathJax 2 the configuration (``mathjax2_config``) that MyST's math needs. MyST marks
  each page section ``tex2jax_ignore mathjax_ignore`` and its math elements with class
  ``math`` (see ``myst_mathjax_classes``), and tells MathJax 3 so through
  ``mathjax3_config['options']['processHtmlClass']``; MathJax 2 reads the same information
  from ``tex2jax.processClass`` / ``tex2jax.ignoreClass``, so it is moved there and
  ``mathjax3_config`` is cleared (Sphinx would otherwise emit a v3 ``window.MathJax`` object
  for a v2 library). The package ships only the STIX-Web web fonts, so HTML-CSS is told to
  use them (and no local or image fonts);
* adds ``static/offline_mathjax.css`` (next to this file), which undoes the theme's MathJax-3
  layout rules for MathJax 2 (the theme makes ``span.math`` a clipping flex box; MathJax 2
  names its own inner box ``span.math`` too, so inline math rode above the text line and wide
  displays were cut off instead of scrolling).

If ``jupyter-server-mathjax`` is not installed, or the project sets ``mathjax_path`` itself,
nothing is changed and Sphinx's CDN default stays in place (no warning, so ``-W`` builds
keep passing).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.ext import mathjax as sphinx_mathjax
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Folder under the HTML output's ``_static/`` that receives MathJax.
STATIC_SUBDIR = "mathjax"
#: The combined MathJax 2 configuration shipped by jupyter-server-mathjax.
MATHJAX2_CONFIG_FILE = "TeX-AMS-MML_HTMLorMML-full"
#: MyST's default for ``myst_mathjax_classes`` (used when MyST is not loaded).
DEFAULT_PROCESS_CLASSES = "tex2jax_process|mathjax_process|math|output_area"
#: Classes MyST puts on a page's top-level section so that MathJax skips un-parsed text.
IGNORE_CLASSES = "tex2jax_ignore|mathjax_ignore"


def mathjax_static_dir() -> Path | None:
    """The ``static/`` folder of the installed ``jupyter-server-mathjax`` (the one holding
    ``MathJax.js``), or ``None`` when the package is missing or incomplete.

    Located through the import machinery without importing the package (its ``__init__``
    imports jupyter_server, which a book build does not need).
    """
    import importlib.util

    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        static = Path(location) / "static"
        if (static / "MathJax.js").is_file() and (static / "config" / f"{MATHJAX2_CONFIG_FILE}.js").is_file():
            return static
    return None


def _mathjax2_config(process_classes: str) -> dict[str, Any]:
    return {
        "tex2jax": {
            "inlineMath": [["\\(", "\\)"]],
            "displayMath": [["\\[", "\\]"], ["$$", "$$"]],
            "processEscapes": True,
            "processClass": process_classes,
            "ignoreClass": IGNORE_CLASSES,
        },
        "HTML-CSS": {
            "availableFonts": [],
            "preferredFont": None,
            "webFont": "STIX-Web",
            "imageFont": None,
        },
        # A TeX error shows MathJax's error box (class "merror", with the message) rather than
        # the raw source (noErrors) or a red macro name (noUndefined): visible to readers and
        # detectable by tests/test_book.py.
        "TeX": {"noErrors": {"disabled": True}, "noUndefined": {"disabled": True}},
        "showMathMenu": True,
        "messageStyle": "none",
    }


def _config_inited(app: Sphinx, config: Config) -> None:
    app._offline_mathjax_static = None  # type: ignore[attr-defined]
    static = mathjax_static_dir()
    if static is None:
        return  # keep the CDN default; the book still builds, math then needs network
    if config.mathjax_path != sphinx_mathjax.MATHJAX_URL:
        return  # the project chose its own MathJax
    config.mathjax_path = f"{STATIC_SUBDIR}/MathJax.js?config={MATHJAX2_CONFIG_FILE}"
    config.html_static_path = [*config.html_static_path, str(Path(__file__).parent / "static")]
    app.add_css_file("offline_mathjax.css")
    # Set here (not in builder-inited) so that the HTML builder's config hash sees it and
    # pages are rewritten when it changes.
    if config.mathjax2_config is None:
        classes = getattr(config, "myst_mathjax_classes", None) or DEFAULT_PROCESS_CLASSES
        config.mathjax2_config = _mathjax2_config(classes)
    app._offline_mathjax_static = static  # type: ignore[attr-defined]


def _builder_inited(app: Sphinx) -> None:
    """Runs after MyST's own builder-inited hook (priority 900 > 500), which writes the classes
    MathJax must process into ``mathjax3_config``: move them to MathJax 2's ``tex2jax`` and
    drop the v3 configuration."""
    if getattr(app, "_offline_mathjax_static", None) is None:
        return
    v3 = app.config.mathjax3_config
    v2 = app.config.mathjax2_config
    if isinstance(v3, dict) and isinstance(v2, dict) and "processHtmlClass" in v3.get("options", {}):
        v2.setdefault("tex2jax", {})["processClass"] = v3["options"]["processHtmlClass"]
    app.config.mathjax3_config = None


def _copy_tree(src: Path, dst: Path) -> int:
    """Copy ``src`` into ``dst``, skipping files whose size and mtime already match."""
    copied = 0
    for path in src.rglob("*"):
        if path.is_dir() or path.suffix in (".py", ".pyc"):
            continue
        target = dst / path.relative_to(src)
        st = path.stat()
        if target.is_file():
            tt = target.stat()
            if tt.st_size == st.st_size and int(tt.st_mtime) == int(st.st_mtime):
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied += 1
    return copied


def _build_finished(app: Sphinx, exception: Exception | None) -> None:
    static = getattr(app, "_offline_mathjax_static", None)
    if exception is not None or static is None or app.builder.format != "html":
        return
    n = _copy_tree(static, Path(app.outdir) / "_static" / STATIC_SUBDIR)
    logger.info("offline_mathjax: MathJax 2 from %s (%d files copied)", static, n)


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", _config_inited, priority=900)
    app.connect("builder-inited", _builder_inited, priority=900)
    app.connect("build-finished", _build_finished)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
