"""Minute-by-minute PNG charts of a review: online viewers, interactions, GMV.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global backend
switch), at a fixed pixel size (:data:`WIDTH_PX` x :data:`HEIGHT_PX`). The popularity tier is
drawn as coloured bands behind the line, every cue as a vertical marker coloured by severity.

Fonts: Chinese labels need a CJK font. Debian's ``fonts-noto-cjk`` (Noto Sans CJK) is used when
installed. Without it, a warning is logged, the report gets a note saying so, and the charts
are labelled in English instead (the HTML page itself stays in the chosen language: the browser
brings its own fonts), so nothing crashes and no label turns into empty boxes.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .i18n import text
from .model import Report

__all__ = ["Chart", "draw_charts", "cjk_font", "WIDTH_PX", "HEIGHT_PX", "CJK_FONT_PATHS"]

log = logging.getLogger(__name__)

WIDTH_PX: Final = 1200
HEIGHT_PX: Final = 330
_DPI: Final = 100
CJK_FONT_PATHS: Final = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
)
TIER_COLOURS: Final = {"hot": "#f8d0c8", "warm": "#fdebb5", "cold": "#cfe0f3"}
SEVERITY_COLOURS: Final = {"critical": "#c62828", "warn": "#ef8f00", "info": "#607d8b"}


@dataclass(frozen=True, slots=True)
class Chart:
    name: str  # file name, e.g. online.png
    title: str
    png: bytes


def cjk_font(paths: Sequence[str] = CJK_FONT_PATHS) -> str | None:
    """The family name of an installed Noto Sans CJK (registered with matplotlib), or None."""
    from matplotlib import font_manager

    for p in paths:
        if Path(p).is_file():
            font_manager.fontManager.addfont(p)
            return str(font_manager.FontProperties(fname=p).get_name())
    return None


def draw_charts(rep: Report, lang: str, font_paths: Sequence[str] = CJK_FONT_PATHS,
                ) -> tuple[list[Chart], str | None]:
    """The three charts, and a note when the chart labels fell back to English (no CJK font)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D

    note = None
    family = ["DejaVu Sans"]
    label_lang = lang
    if lang == "zh":
        fam = cjk_font(font_paths)
        if fam is None:
            log.warning("no CJK font (install fonts-noto-cjk): chart labels fall back to English")
            note = text(lang, "note_no_cjk")
            label_lang = "en"
        else:
            family = [fam, "DejaVu Sans"]

    def t(key: str) -> str:
        return text(label_lang, key)

    mins = rep.minutes
    xs = [m.index + 0.5 for m in mins]
    t0 = rep.summary.started_ts
    series = (
        ("online.png", t("chart_online"), [m.online for m in mins], "#1565c0", t("unit_people")),
        ("interactions.png", t("chart_interactions"), [float(m.interactions) for m in mins],
         "#6a1b9a", t("unit_per_min")),
        ("gmv.png", t("chart_gmv"), [m.gmv_cents / 100 for m in mins], "#2e7d32", t("unit_yuan")),
    )
    out = []
    end_min = max(1.0, len(mins))
    for name, title, ys, colour, unit in series:
        fig = Figure(figsize=(WIDTH_PX / _DPI, HEIGHT_PX / _DPI), dpi=_DPI)
        ax = fig.add_subplot(1, 1, 1)
        for span in rep.tiers:
            a = (span.start_ts - t0) / 60_000
            b = (span.end_ts - t0) / 60_000
            if b > a:
                ax.axvspan(a, b, color=TIER_COLOURS.get(span.tier, "#eeeeee"), lw=0, zorder=0)
        if name == "gmv.png":
            ax.bar(xs, ys, width=0.85, color=colour, zorder=2)
        else:
            ax.plot(xs, ys, color=colour, lw=1.8, zorder=3)
            ax.fill_between(xs, ys, color=colour, alpha=0.12, zorder=2)
        top = max(ys, default=0.0) or 1.0
        for row in rep.cues:
            x = row.offset_s / 60
            c = SEVERITY_COLOURS.get(row.cue.severity, "#607d8b")
            ax.axvline(x, color=c, lw=1.0, ls="--", alpha=0.8, zorder=4)
            ax.plot([x], [top * 1.04], marker="v", color=c, ms=7, zorder=5, clip_on=False)
        ax.set_xlim(0, end_min)
        ax.set_ylim(0, top * 1.1)
        ax.set_title(title, loc="left", fontsize=12, family=family)
        ax.set_xlabel(t("axis_minutes"), family=family)
        ax.set_ylabel(unit, family=family)
        ax.grid(axis="y", color="#dddddd", lw=0.6, zorder=1)
        ax.spines[["top", "right"]].set_visible(False)
        handles: list[Artist] = [Patch(color=TIER_COLOURS[k], label=t("tier_" + k)) for k in ("hot", "warm", "cold")]
        handles += [Line2D([], [], color=SEVERITY_COLOURS[k], ls="--", marker="v",
                           label=t("cue_marker") + " · " + t("sev_" + k))
                    for k in ("critical", "warn", "info")]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
                  frameon=False, prop={"family": family, "size": 8})
        fig.subplots_adjust(left=0.06, right=0.85, top=0.88, bottom=0.17)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI)
        out.append(Chart(name, title, buf.getvalue()))
    return out, note
