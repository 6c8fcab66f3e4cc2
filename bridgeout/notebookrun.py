"""One notebook executed with papermill, and its outputs trimmed to keep it small.

:func:`strip_outputs` keeps an executed notebook small (progress bars collapsed, long streams
cut, only PNG / text / small HTML outputs kept, widget state dropped); ``_execute`` runs one
grid cell's notebook with papermill (kernel ``python3``, working directory = the repository
root) and replaces its output file atomically with the trimmed result. The grid runner that
calls them is :mod:`bridgeout.runner`, which re-exports these names.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .experiment import REPO_ROOT

__all__ = ["strip_outputs"]


_KEEP_MIME = ("image/png", "text/plain", "text/markdown", "text/latex")
_MAX_STREAM = 20_000
_MAX_HTML = 50_000


def _collapse_cr(text: str) -> str:
    """What a terminal would show: for each line, the text after its last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"


def strip_outputs(nb):
    """Keep an executed notebook small: collapse progress bars, cut long streams, keep only
    PNG / plain text / small HTML outputs, drop widget state. Modifies and returns ``nb``.

    Consecutive outputs of one stream are merged first; streams and plain-text outputs longer
    than 20,000 characters keep their head and tail, HTML is kept up to 50,000 characters, and
    markdown and LaTeX outputs are kept too.

    Args:
        nb: an nbformat notebook.

    Returns:
        ``nb``.
    """
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"] = _merge_streams(cell.get("outputs", []))
        for out in cell["outputs"]:
            if out.get("output_type") == "stream":
                lines = _collapse_cr(out.get("text", "")).split("\n")
                text = "\n".join(line for line in lines[:-1] if line.strip())
                text = text + "\n" if text else ""
                if lines[-1].strip():
                    text += lines[-1]
                out["text"] = _cut(text, _MAX_STREAM)
            elif out.get("output_type") in ("display_data", "execute_result"):
                data = out.get("data", {})
                for mime in list(data):
                    keep = mime in _KEEP_MIME or (mime == "text/html" and len(str(data[mime])) <= _MAX_HTML)
                    if not keep:
                        del data[mime]
                if "text/plain" in data:
                    data["text/plain"] = _cut(str(data["text/plain"]) if not isinstance(data["text/plain"], list)
                                              else "".join(data["text/plain"]), _MAX_STREAM)
        cell["outputs"] = [o for o in cell["outputs"] if o.get("output_type") != "stream" or o.get("text")]
    return nb


def _merge_streams(outputs: list) -> list:
    """Join consecutive outputs of one stream. On stderr, a piece that follows an unfinished
    line overwrites it, as the carriage return tqdm starts each refresh with would."""
    merged = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and prev is not None and prev.get("output_type") == "stream"
                and prev.get("name") == out.get("name")):
            text = prev.get("text", "")
            if out.get("name") == "stderr" and text and not text.endswith("\n"):
                text = text[: text.rfind("\n") + 1]
            prev["text"] = text + out.get("text", "")
        else:
            merged.append(out)
    return merged


def _execute(notebook: Path, output: Path, params: Mapping, *, log_output: bool = False) -> None:
    """Run one cell with papermill (kernel python3, cwd = repo root); trim the output.
    ``log_output`` echoes the notebook's output (e.g. the epoch lines) to the terminal.

    Papermill writes the notebook as it goes to ``runs_dir/.partial/``; the trimmed result
    replaces ``output`` in one ``os.replace``, so ``output`` is never half-written (a failed
    cell's notebook is kept too, for its traceback)."""
    import nbformat
    import papermill as pm
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.parent / ".partial" / output.name
    partial.parent.mkdir(exist_ok=True)
    try:
        pm.execute_notebook(str(notebook), str(partial), parameters=dict(params), kernel_name="python3",
                            cwd=str(REPO_ROOT), progress_bar=False, log_output=log_output)
    finally:
        if partial.exists():
            nb = nbformat.read(str(partial), as_version=4)
            nbformat.write(strip_outputs(nb), str(partial))
            os.replace(partial, output)
