"""The bench's PNG: throughput, CPU per event and latency of one run, side by side (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["require_matplotlib", "write_chart"]


class ChartUnavailable(RuntimeError):
    pass


def require_matplotlib() -> None:
    """Fail early, with the fix, when matplotlib is missing (before minutes of measuring)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ChartUnavailable(
            f"matplotlib is needed for the chart: pip install -e '.[bench]' [{exc}]") from None


def _bars(ax: Any, labels: list[str], values: list[float | None], title: str, unit: str, color: str) -> None:
    shown = [v if v is not None else 0.0 for v in values]
    bars = ax.bar(range(len(labels)), shown, color=color)
    for b, v in zip(bars, values, strict=True):
        text = "n/a" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:,.1f}")
        ax.annotate(text, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=25, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit, fontsize=9)


def write_chart(result: dict[str, Any], path: Path) -> None:
    """Write the run's figures as a PNG to ``path``."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = result.get("details", {})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    tput = [("ceiling", result.get("ceiling_eps")), ("worker\nmany-room", result.get("worker_eps")),
            ("worker\ndense", result.get("worker_dense_eps")), ("Quix", result.get("quix_eps")),
            ("Bytewax", result.get("bytewax_eps")), ("2 workers\nmany-room", d.get("scale", {}).get("eps_2w"))]
    _bars(axes[0], [t[0] for t in tput], [t[1] for t in tput], "throughput (same events, same run)",
          "events/s", "#4c72b0")
    cpu = [("ceiling", result.get("ceiling_cpu_us_per_event")),
           ("worker\nmany-room", result.get("worker_cpu_us_per_event")),
           ("worker\ndense", result.get("worker_dense_cpu_us_per_event")),
           ("Quix", d.get("quix", {}).get("cpu_us_per_event")),
           ("Bytewax", d.get("bytewax", {}).get("cpu_us_per_event"))]
    _bars(axes[1], [c[0] for c in cpu], [c[1] for c in cpu], "CPU per event", "µs/event", "#dd8452")
    lat_labels: list[str] = []
    p50: list[float | None] = []
    p99: list[float | None] = []
    for kind, runs_key, label in (("e2e", "runs", "e2e"), ("floor", "runs", "floor"),
                                  ("floor", "one_topic_runs", "floor 1 topic")):
        for run in d.get(kind, {}).get(runs_key, []):
            lat_labels.append(f"{label}\n{run['rate']:,.0f}/s")
            p50.append(run.get("p50_ms"))
            p99.append(run.get("p99_ms"))
    if "fanout" in d and isinstance(d["fanout"], dict) and "screens" in d["fanout"]:
        lat_labels.append(f"fan-out\n{d['fanout']['screens']} screens")
        p50.append(d["fanout"].get("p50_ms"))
        p99.append(d["fanout"].get("p99_ms"))
    ax = axes[2]
    x = list(range(len(lat_labels)))
    ax.bar([i - 0.2 for i in x], [v or 0.0 for v in p50], width=0.4, label="p50", color="#55a868")
    ax.bar([i + 0.2 for i in x], [v or 0.0 for v in p99], width=0.4, label="p99", color="#c44e52")
    for i, v in enumerate(p99):
        ax.annotate("n/a" if v is None else f"{v:,.0f}", (i + 0.2, v or 0.0), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, lat_labels, fontsize=8)
    if any(v for v in p99):
        ax.set_yscale("log")
    ax.set_title("latency (event → screen, floor, fan-out)", fontsize=10)
    ax.set_ylabel("ms", fontsize=9)
    ax.legend(fontsize=8)
    fig.suptitle(f"livecue bench — {result.get('started_at', '')}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
