"""The checks a figure passes before the book shows it, and the hand-over: text at least
:data:`MIN_FONT_PT` points as displayed in the :data:`COLUMN_IN`-inch column
(:func:`small_text`), no legend entry for something not drawn (:func:`undrawn_legend_entries`),
and :func:`glue_figure`, which checks a finished figure and glues it (myst-nb ``glue``).
:mod:`bridgeout.plots` re-exports these names.
"""
from __future__ import annotations

import numpy as np

__all__ = ["COLUMN_IN", "MIN_FONT_PT", "small_text", "undrawn_legend_entries", "glue_figure"]

#: Width of the book's text column, in inches of a figure shown at its natural size: 740 CSS
#: px at a 1280 px window, 96 px per inch, less the cell-output padding (about 650 px).
COLUMN_IN = 6.8
#: The smallest text, in points as displayed, that a book figure may use.
MIN_FONT_PT = 9.0


def small_text(fig, *, column_in: float = COLUMN_IN, min_pt: float = MIN_FONT_PT) -> list[str]:
    """The visible texts of ``fig`` smaller than ``min_pt`` points as displayed in a column
    ``column_in`` inches wide (a wider figure is shown scaled down to the column, and its
    text with it); ``[]`` when every text is large enough. Each entry names the text and
    its displayed size.

    Args:
        fig: the matplotlib figure (drawn without rendering first).
        column_in: keyword-only; the column width in inches.
        min_pt: keyword-only; the smallest size allowed, in points.

    Returns:
        the descriptions of the texts that are too small.
    """
    from matplotlib.text import Text

    fig.draw_without_rendering()   # tick labels get their text when drawn
    scale = min(1.0, column_in / fig.get_figwidth())
    out = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip():
            continue
        if t.axes is not None and not t.axes.get_visible():
            continue
        size = t.get_fontsize() * scale
        if size < min_pt - 1e-9:
            out.append(f"{t.get_text()!r} shown at {size:.1f} pt")
    return out


def _neutral(rgba) -> bool:
    r, g, b = rgba[:3]
    return abs(r - g) < 1e-6 and abs(g - b) < 1e-6 and 0.1 < r < 0.9


def undrawn_legend_entries(fig) -> list[str]:
    """Labels of legend entries of ``fig`` (axes and figure legends) that stand for nothing
    drawn: no visible line with data has the entry's colour (a line entry: a colour key),
    or no visible patch or collection has its colour (an area entry). A grey line entry is a
    style key ("dashed = published") and needs a drawn line of its style, any colour; a grey
    area entry ("band = range") any drawn area. Hidden handles (the :func:`not_run` message
    box) are skipped. ``[]`` when every entry is drawn.

    Args:
        fig: the matplotlib figure.

    Returns:
        the labels of the undrawn entries.
    """
    import matplotlib.colors as mcolors
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    def style(ls):
        return {"solid": "-", "dashed": "--", "dotted": ":", "dashdot": "-."}.get(ls, ls)

    drawn = []   # (rgba, linestyle or "area")
    for ax in fig.axes:
        for ln in ax.get_lines():
            if ln.get_visible() and len(ln.get_xdata()) > 0:
                ls = style(ln.get_linestyle())
                if ls in ("None", "none", ""):
                    ls = "marker"
                drawn.append((mcolors.to_rgba(ln.get_color()), ls))
        for pa in ax.patches:
            if pa.get_visible() and pa.get_path().vertices.size:
                for c in (pa.get_edgecolor(), pa.get_facecolor()):
                    drawn.append((mcolors.to_rgba(c), "area"))
        for co in ax.collections:
            if co.get_visible() and len(co.get_paths()):
                for arr in (co.get_edgecolor(), co.get_facecolor()):
                    for c in arr:
                        drawn.append((mcolors.to_rgba(c), "area"))
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    legends += [a for ax in fig.axes for a in ax.artists if a.__class__.__name__ == "Legend"]
    missing = []
    for leg in legends:
        if leg is None:
            continue
        for h, t in zip(leg.legend_handles, leg.get_texts()):
            if h is None or not h.get_visible():
                continue
            if isinstance(h, Line2D):
                rgba, ls = mcolors.to_rgba(h.get_color()), style(h.get_linestyle())
                if ls in ("None", "none", ""):
                    ls = "marker"
            elif isinstance(h, (Patch, Collection)):
                if isinstance(h, Patch):
                    face, edge = [h.get_facecolor()], [h.get_edgecolor()]
                else:   # e.g. the error bars of an errorbar entry: edge colours only
                    face, edge = list(h.get_facecolor()), list(h.get_edgecolor())
                cols = ([c for c in face if mcolors.to_rgba(c)[3] > 0]
                        or [c for c in edge if mcolors.to_rgba(c)[3] > 0])
                if not cols:
                    continue
                rgba, ls = mcolors.to_rgba(cols[0]), "area"
            else:
                continue
            ok = False
            for c, dls in drawn:
                same_colour = np.allclose(c[:3], rgba[:3], atol=1e-3)
                # a coloured line entry is a colour key (any style of that colour counts); a grey
                # one is a style key (any colour of that style counts)
                if ls == "area":
                    hit = dls == "area" and (same_colour or _neutral(rgba))
                else:
                    hit = dls != "area" and (same_colour if not _neutral(rgba) else dls == ls)
                if hit:
                    ok = True
                    break
            if not ok:
                missing.append(t.get_text())
    return missing


def glue_figure(name: str, fig) -> None:
    """Hand a finished figure to the book: check it, ``glue`` it under ``name`` (shown, numbered
    and captioned by a ``{glue:figure}`` directive) and close it.

    Raises ``ValueError`` naming the problems when a text would be shown smaller than
    :data:`MIN_FONT_PT` points (:func:`small_text`) or a legend entry stands for nothing
    drawn (:func:`undrawn_legend_entries`), so a book build fails on an unreadable figure.

    Args:
        name: the glue name.
        fig: the matplotlib figure (closed in either case).

    Raises:
        ValueError: as above.
    """
    import matplotlib.pyplot as plt

    small, undrawn = small_text(fig), undrawn_legend_entries(fig)
    if small or undrawn:
        plt.close(fig)
        raise ValueError(f"figure {name!r} is not fit for the book: "
                         + "; ".join(([f"text below {MIN_FONT_PT:g} pt in a {COLUMN_IN:g}-inch column: "
                                       + ", ".join(small[:6])] if small else [])
                                     + ([f"legend entries with nothing drawn: {undrawn}"] if undrawn else [])))
    from myst_nb import glue
    glue(name, fig, display=False)
    plt.close(fig)
