"""The review as one self-contained HTML page: inline CSS, charts as ``data:`` PNGs, no script,
nothing fetched from the network. Every value goes through :func:`html.escape`."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from .charts import Chart
from .i18n import text
from .model import Effect, Report
from schemas.outputs import Cue

__all__ = ["render_html", "fmt_money", "fmt_duration"]

_CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.5 "Noto Sans CJK SC","Noto Sans CJK JP",
"PingFang SC","Microsoft YaHei",system-ui,sans-serif;color:#1d2530;background:#f4f6f9}
main{max-width:1280px;margin:0 auto;padding:24px}h1{margin:0 0 4px;font-size:26px}
h2{margin:32px 0 12px;font-size:19px;border-bottom:2px solid #d8dee6;padding-bottom:4px}
.meta{color:#5b6675}.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:10px}
.card{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px #0002}
.card .k{color:#5b6675;font-size:12px}.card .v{font-size:22px;font-weight:600}
img{display:block;width:100%;max-width:1200px;background:#fff;border-radius:8px;margin:10px 0}
table{border-collapse:collapse;width:100%;background:#fff;border-radius:8px;overflow:hidden}
th,td{padding:6px 8px;border-bottom:1px solid #e6eaf0;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;font-size:13px}td.n{text-align:right;font-variant-numeric:tabular-nums}
.sev-critical{color:#c62828;font-weight:600}.sev-warn{color:#b26a00;font-weight:600}.sev-info{color:#546e7a}
.v-helped{color:#1b7f3b;font-weight:600}.v-worse{color:#c62828;font-weight:600}
.v-no_change,.v-not_acted,.v-no_data{color:#5b6675}.small{font-size:12px;color:#5b6675}
.note{background:#fff8e1;border-left:4px solid #ffb300;padding:8px 12px;margin:12px 0}
ul.rules{margin:6px 0;padding-left:20px;color:#3b4654}
"""


def fmt_money(cents: int | float) -> str:
    return f"¥{cents / 100:,.2f}"


def fmt_duration(seconds: float, lang: str) -> str:
    s = int(round(seconds))
    h, m, sec = s // 3600, s // 60 % 60, s % 60
    if lang == "zh":
        return (f"{h}小时" if h else "") + (f"{m}分" if h or m else "") + f"{sec}秒"
    return (f"{h}h " if h else "") + (f"{m}m " if h or m else "") + f"{sec}s"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | int) -> str:
    if isinstance(x, int) or float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.1f}"


def _clock(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _offset(s: float) -> str:
    n = int(s)
    return f"+{n // 3600}:{n // 60 % 60:02d}:{n % 60:02d}"


def _secs(x: float | None, by: str | None, lang: str) -> str:
    if x is None:
        return "–"
    out = f"{x:.1f}{text(lang, 's')}"
    return out + (f" · {escape(by)}" if by else "")


def _effect(e: Effect | None, lang: str) -> tuple[str, str]:
    if e is None:
        return "–", ""
    v = f'<span class="v-{e.verdict}">{escape(text(lang, "v_" + e.verdict))}</span>'
    if e.before is None:
        return "–", v
    if e.metric == "units_2min":
        fig = text(lang, "eff_units").format(b=_num(e.before), a=_num(e.after or 0))
    else:
        fig = text(lang, "eff_online").format(b=_num(e.before), a=_num(e.after or 0),
                                              rb=_num(e.extra_before or 0),
                                              ra=_num(e.extra_after or 0))
    if e.change is not None:
        fig += f" ({e.change * 100:+.0f}%)"
    return escape(fig), v


def render_html(rep: Report, charts: Sequence[Chart], lang: str = "zh",
                notes: Sequence[str] = ()) -> str:
    """The page. ``charts`` are embedded as data: URIs; ``notes`` shown as warnings on top."""
    def t(key: str) -> str:
        return escape(text(lang, key))

    s = rep.summary
    parts: list[str] = [
        f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        f"img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{t('title')} · {escape(rep.room_id)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{t('title')} · {escape(rep.room_id)}</h1>",
        f'<div class="meta">{t("session")} {escape(rep.session_id)} · {_clock(s.started_ts)} → '
        f"{_clock(s.ended_ts)} · {rep.events:,} {t('events')}</div>",
    ]
    for note in list(notes) + rep.notes:
        parts.append(f'<div class="note">{escape(note)}</div>')
    cards = [
        ("duration", fmt_duration(s.duration_s, lang)), ("peak_online", _num(s.peak_online)),
        ("avg_online", _num(round(s.avg_online, 1))), ("viewer_minutes", _num(round(s.viewer_minutes))),
        ("interactions", _num(s.interactions)), ("chats", _num(s.chats)), ("likes", _num(s.likes)),
        ("cart_adds", _num(s.cart_adds)), ("orders_created", _num(s.orders_created)),
        ("orders_paid", _num(s.orders_paid)), ("orders_cancelled", _num(s.orders_cancelled)),
        ("units", _num(s.units)), ("gmv", fmt_money(s.gmv_cents)), ("buyers", _num(s.buyers)),
        ("unique_viewers", "–" if s.unique_viewers is None else _num(s.unique_viewers)),
        ("conv_uv", _pct(s.conv_buyers_viewers)), ("conv_cart", _pct(s.conv_orders_cart)),
        ("gpm", "–" if s.gpm_cents is None else fmt_money(s.gpm_cents)),
    ]
    parts.append(f"<h2>{t('summary')}</h2><div class=\"cards\" id=\"summary\">")
    for key, val in cards:
        parts.append(f'<div class="card" data-k="{key}"><div class="k">{t(key)}</div>'
                     f'<div class="v">{escape(val)}</div></div>')
    parts.append("</div>")
    parts.append(f"<h2>{t('charts')}</h2>")
    for ch in charts:
        b64 = base64.b64encode(ch.png).decode("ascii")
        parts.append(f'<img alt="{escape(ch.title)}" data-file="{escape(ch.name)}" '
                     f'src="data:image/png;base64,{b64}">')
    # per SKU
    parts.append(f"<h2>{t('skus')}</h2><table id=\"skus\"><tr><th>{t('sku')}</th><th>{t('role')}</th>"
                 f"<th>{t('price')}</th><th>{t('on_air')}</th><th>{t('cart_adds')}</th>"
                 f"<th>{t('orders')}</th><th>{t('units')}</th><th>{t('gmv')}</th>"
                 f"<th>{t('conversion')}</th><th>{t('sellouts')}</th><th>{t('held')}</th></tr>")
    for k in rep.skus:
        held = "–" if not k.held_periods else text(lang, "held_fmt").format(
            n=k.held_periods, s=fmt_duration(k.held_s, lang))
        parts.append(
            f'<tr data-sku="{escape(k.sku_id)}"><td>{escape(k.name)}<div class="small">{escape(k.sku_id)}</div></td>'
            f"<td>{t('role_' + k.role)}</td><td class=n>{fmt_money(k.price_cents)}</td>"
            f"<td class=n>{escape(fmt_duration(k.on_air_s, lang))}</td><td class=n>{_num(k.cart_adds)}</td>"
            f"<td class=n>{_num(k.orders)}</td><td class=n>{_num(k.units)}</td>"
            f"<td class=n>{fmt_money(k.gmv_cents)}</td><td class=n>{_pct(k.conversion)}</td>"
            f"<td class=n>{k.sellouts}</td><td>{escape(held)}</td></tr>")
    parts.append("</table>")
    # cues
    parts.append(f"<h2>{t('cues')}</h2>")
    if not rep.cues:
        parts.append(f"<p>{t('no_cues')}</p>")
    else:
        parts.append(f"<table id=\"cues\"><tr><th>{t('time')}</th><th>{t('kind')}</th>"
                     f"<th>{t('headline')}</th><th>{t('ack')}</th><th>{t('done')}</th>"
                     f"<th>{t('dismiss')}</th><th>{t('effect')}</th><th>{t('verdict')}</th></tr>")
        for r in rep.cues:
            c = r.cue
            head = (c.texts.get(lang) or {}).get("headline") or c.headline
            fig, verdict = _effect(r.effect, lang)
            parts.append(
                f'<tr data-cue="{escape(c.cue_id)}"><td class=n>{_offset(r.offset_s)}</td>'
                f'<td>{t("kind_" + c.kind)}<div class="sev-{escape(c.severity)}">'
                f"{t('sev_' + c.severity)}</div></td><td>{escape(head)}</td>"
                f"<td>{_secs(r.ack_s, r.ack_by, lang)}</td><td>{_secs(r.done_s, r.done_by, lang)}</td>"
                f"<td>{_secs(r.dismissed_s, r.dismissed_by, lang)}</td><td>{fig}</td><td>{verdict}</td></tr>")
        parts.append("</table>")
    parts.append(f"<p class=\"small\">{t('reaction')}</p><h3>{t('rules')}</h3><ul class=\"rules\">"
                 f"<li>{t('rule_units')}</li><li>{t('rule_online')}</li><li>{t('rule_verdict')}</li>"
                 f"<li>{t('rule_defs')}</li></ul>")
    # comparison
    if rep.compare is not None:
        parts.append(f"<h2>{t('compare')}</h2><p>" + escape(text(lang, "compare_intro").format(
            a=rep.playbook_name, b=rep.compare_name or "B")) + "</p>")
        parts.append(f"<table id=\"compare\"><tr><th>{t('time')}</th><th></th>"
                     f"<th>A · {escape(rep.playbook_name)}</th><th>B · {escape(rep.compare_name or 'B')}</th></tr>")

        def cell(c: Cue | None) -> str:
            if c is None:
                return "<td class=\"small\">–</td>"
            head = (c.texts.get(lang) or {}).get("headline") or c.headline
            return (f"<td>{t('kind_' + c.kind)} <span class=\"sev-{escape(c.severity)}\">"
                    f"{t('sev_' + c.severity)}</span><div>{escape(head)}</div></td>")

        for row in rep.compare:
            parts.append(f"<tr data-side=\"{row.side}\"><td class=n>{_offset(row.offset_s)}</td>"
                         f"<td>{t('side_' + row.side)}</td>{cell(row.a)}{cell(row.b)}</tr>")
        parts.append("</table>")
    # dead letters
    parts.append(f"<h2>{t('deadletters')}</h2>")
    if not rep.deadletters:
        parts.append(f"<p>{t('no_deadletters')}</p>")
    else:
        parts.append(f"<table id=\"deadletters\"><tr><th>{t('reason')}</th><th>{t('count')}</th></tr>")
        for reason, n in rep.deadletters.most_common():
            parts.append(f"<tr><td>{escape(reason)}</td><td class=n>{n:,}</td></tr>")
        parts.append("</table>")
    parts.append("</main></body></html>\n")
    return "".join(parts)
