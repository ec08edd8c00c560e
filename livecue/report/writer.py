"""Write a review to a directory: ``index.html`` (self-contained) and the PNG charts beside it."""

from __future__ import annotations

import os
from pathlib import Path

from .charts import CJK_FONT_PATHS, draw_charts
from .html import render_html
from .model import Report

__all__ = ["write_report"]


def write_report(rep: Report, out_dir: Path | str, lang: str = "zh",
                 font_paths: tuple[str, ...] = CJK_FONT_PATHS) -> Path:
    """Draw the charts, write them and ``index.html`` into ``out_dir`` (created); return the
    page's path. Files are written under a temporary name and renamed, so a reader (the gateway
    serving /reports/) never sees half a page."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    charts, note = draw_charts(rep, lang, font_paths)
    for c in charts:
        _atomic(out / c.name, c.png)
    page = render_html(rep, charts, lang, [note] if note else [])
    path = out / "index.html"
    _atomic(path, page.encode("utf-8"))
    return path


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
