"""The post-show review (复盘) of one room's session.

:mod:`.model` computes the figures from the room's events (pure: events in, numbers out),
:mod:`.source` reads a recording or the topics, :mod:`.charts` draws the minute-by-minute PNGs
(matplotlib, Agg), :mod:`.html` writes the self-contained page, :func:`write_report` puts the
page and the charts in a directory.
"""

from .model import Report, build_report
from .writer import write_report

__all__ = ["Report", "build_report", "write_report"]
