"""The playbook as a value: every threshold, window, cooldown, lexicon and cue text of the core.

:class:`Playbook` is a frozen dataclass of frozen sections, one per TOML table of
``stream/playbooks/default.toml``; its default values *are* the shipped default (a unit test holds
the two equal). Loading, validation against files and per-room overlays live outside the core, in
:mod:`stream.playbook`; this module only declares the shape, each field's allowed range
(``field(metadata={"min": .., "max": ..})``), the cross-field rules (:meth:`Playbook.problems`)
and the compiled intent matchers.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "Playbook", "Windows", "Bounds", "Intent", "TierRules", "PushStock", "ReleaseOrders",
    "SwitchToTrafficDriver", "SwitchToProfit", "UnpaidOrders", "Wall", "CueText",
    "TEXT_KEYS", "PLACEHOLDERS", "LANGUAGES", "TIER_LABELS", "HEADLINE_MAX",
]

#: Languages a playbook may carry cue texts in (``language`` picks the one for headline/detail).
LANGUAGES: Final = ("zh", "en")
#: Hard limit of a cue headline (the host's screen); longer renders are cut with an ellipsis.
HEADLINE_MAX: Final = 60
#: One text pair per key; push_stock has two situations (selling out soon / already out).
TEXT_KEYS: Final = (
    "push_stock_soon", "push_stock_out", "release_orders", "switch_to_traffic_driver",
    "switch_to_profit", "unpaid_orders",
)
#: Every placeholder a cue text may use. Each cue fills all of them ("-" when not applicable).
PLACEHOLDERS: Final = (
    "sku_name", "sku_id", "sku_role", "stock", "eta_s", "units_per_min", "cart_adds_per_min",
    "intent_per_min", "missed_per_min", "intent_share_pct", "target_name", "target_id",
    "target_stock", "tier", "prev_tier", "down_s", "online", "on_air_s", "orders", "unpaid",
    "unpaid_share_pct", "window_min", "held_s", "baseline_share_pct",
)
#: How a tier reads in each language (used for the {tier} and {prev_tier} placeholders).
TIER_LABELS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType({
    "zh": MappingProxyType({"hot": "高人气", "warm": "中人气", "cold": "低人气"}),
    "en": MappingProxyType({"hot": "hot", "warm": "warm", "cold": "cold"}),
})


def _f(default: Any, lo: float | None = None, hi: float | None = None) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi})


@dataclass(frozen=True, slots=True)
class Windows:
    """Sliding windows built from buckets. Rates are per minute over ``short_ms``."""

    bucket_ms: int = _f(5_000, 100, 60_000)
    short_ms: int = _f(60_000, 1_000, 3_600_000)
    long_ms: int = _f(300_000, 1_000, 3_600_000)
    #: Bits of the per-bucket linear-counting bitmap for unique chatters (power of two).
    unique_bits: int = _f(2048, 64, 65_536)


@dataclass(frozen=True, slots=True)
class Bounds:
    """What the core rejects or forgets, so one room's memory stays bounded."""

    max_behind_ms: int = _f(600_000, 0, 86_400_000)
    max_ahead_ms: int = _f(3_600_000, 0, 86_400_000)
    #: Order ids are remembered this long after their last status, at most ``max_orders`` of them.
    order_horizon_ms: int = _f(1_800_000, 60_000, 86_400_000)
    max_orders: int = _f(20_000, 100, 1_000_000)
    #: SKUs remembered per session (re-announced lineups are merged; extra SKUs are ignored).
    max_skus: int = _f(400, 1, 10_000)


@dataclass(frozen=True, slots=True)
class Intent:
    """Purchase intent in chat: case-insensitive substring match of any word."""

    words: tuple[str, ...] = _f((
        "链接", "怎么买", "多少钱", "还有吗", "拍了", "没抢到", "上车", "买", "下单", "库存",
        "要了", "抢", "补货", "link", "how to buy", "how much", "price", "sold out", "in stock",
        "buy", "order", "restock", "missed it", "want one",
    ))
    #: "Missed it" words: the clearest signal to release more. They count as intent too.
    missed_words: tuple[str, ...] = _f((
        "没抢到", "没抢着", "抢不到", "没买到", "missed it", "missed out", "sold out already"))
    #: Extra weight of a missed-it chat in demand figures (1 + this, as it is intent as well).
    missed_weight: float = _f(2.0, 0.0, 100.0)


@dataclass(frozen=True, slots=True)
class TierRules:
    """Popularity tier (hot / warm / cold) from a score, with hysteresis and a minimum dwell.

    score = online_weight · online / base_online + (1 - online_weight) · ipv / base_ipv, each ratio
    capped at 3, where ipv = (chat + like_weight · likes) per minute per viewer (short window).
    ``baseline = "session"``: the bases are the session's own time-weighted means so far;
    ``"absolute"``: they are ``ref_online`` / ``ref_ipv``. Absolute floors apply in both modes.
    """

    baseline: str = _f("session")
    ref_online: int = _f(1_000, 1, 100_000_000)
    ref_ipv: float = _f(0.5, 0.0001, 1_000.0)
    online_weight: float = _f(0.7, 0.0, 1.0)
    like_weight: float = _f(0.1, 0.0, 10.0)
    hot_enter: float = _f(1.25, 0.0, 100.0)
    hot_exit: float = _f(1.1, 0.0, 100.0)
    cold_exit: float = _f(0.8, 0.0, 100.0)
    cold_enter: float = _f(0.65, 0.0, 100.0)
    #: Never hot below this many online; always cold at or below ``cold_max_online`` (0 = off).
    hot_min_online: int = _f(0, 0, 100_000_000)
    cold_max_online: int = _f(0, 0, 100_000_000)
    #: The tier stays warm for this long after session start (baseline warm-up).
    warmup_ms: int = _f(60_000, 0, 3_600_000)
    #: A new tier must be indicated this long before it is taken...
    confirm_ms: int = _f(5_000, 0, 600_000)
    #: ...and the current tier is kept at least this long (no flapping).
    dwell_ms: int = _f(30_000, 0, 3_600_000)


@dataclass(frozen=True, slots=True)
class PushStock:
    """A selling SKU runs out within ``eta_s``, or ran out (never stock_set) while demand lasts.

    One cue per selling episode: a warn ("sells out in ~N s") the first time the ETA is within
    ``eta_s``, then at most one critical escalation when it actually sells out while demand
    continues. Nothing else for that SKU until the episode ends (a stock_set puts stock back, or
    the condition has been false ``episode_end_ms``) and ``cooldown_ms`` has passed since its
    last cue; a falling ETA is the normal course of a sell-down, not a new situation.
    """

    enabled: bool = _f(True)
    eta_s: float = _f(30.0, 1.0, 3_600.0)
    min_units_per_min: float = _f(3.0, 0.0, 1e9)
    out_min_cart_adds_per_min: float = _f(3.0, 0.0, 1e9)
    out_min_intent_per_min: float = _f(10.0, 0.0, 1e9)
    cooldown_ms: int = _f(60_000, 0, 86_400_000)
    episode_end_ms: int = _f(30_000, 0, 86_400_000)


@dataclass(frozen=True, slots=True)
class ReleaseOrders:
    """A SKU at stock 0 after a stock_set (held back or batch gone) once demand has built.

    The link must have been empty ``min_hold_ms`` (憋单 is meant to let demand build), and over
    the whole buckets since it emptied (at most the short window): weighted intent (a missed-it
    chat counts 1 + ``intent.missed_weight``) at least ``min_intent_per_min`` and a share of chat
    of at least ``intent_vs_baseline`` × the session's baseline share (and ``min_intent_share``);
    or ``min_cart_adds_per_min`` cart adds of that SKU; or ``critical_missed_per_min``
    missed-it chats. The baseline is the weighted intent share of chat while the SKU on air had
    stock, once the session has ``baseline_min_ms`` of it; ``baseline_intent_share`` until then.
    """

    enabled: bool = _f(True)
    #: The link has been empty at least this long (from the stock_set 0 or the sell-out).
    min_hold_ms: int = _f(20_000, 0, 3_600_000)
    #: Weighted intent share of chat: at least this × the session's baseline share...
    intent_vs_baseline: float = _f(1.5, 1.0, 100.0)
    #: ...and never below this share...
    min_intent_share: float = _f(0.15, 0.0, 1.0)
    #: ...with at least this many weighted intent chats per minute.
    min_intent_per_min: float = _f(10.0, 0.0, 1e9)
    #: Baseline share assumed until the session has ``baseline_min_ms`` of selling time.
    baseline_intent_share: float = _f(0.16, 0.0, 1.0)
    baseline_min_ms: int = _f(60_000, 0, 86_400_000)
    #: Or cart adds per minute of that SKU while its link is empty.
    min_cart_adds_per_min: float = _f(5.0, 0.0, 1e9)
    #: Severity critical from this many missed-it chats per minute (demand has built, too).
    #: Worse (speak again within the cooldown) = turning critical.
    critical_missed_per_min: float = _f(10.0, 0.0, 1e9)
    cooldown_ms: int = _f(60_000, 0, 86_400_000)
    episode_end_ms: int = _f(30_000, 0, 86_400_000)


@dataclass(frozen=True, slots=True)
class SwitchToTrafficDriver:
    """The tier fell (to cold, or by ``min_drop`` levels) and stayed down ``after_ms`` while a
    non-traffic-driver SKU is on air, and a traffic driver with stock exists."""

    enabled: bool = _f(True)
    min_drop: int = _f(2, 1, 2)
    after_ms: int = _f(20_000, 0, 3_600_000)
    cooldown_ms: int = _f(120_000, 0, 86_400_000)
    episode_end_ms: int = _f(30_000, 0, 86_400_000)


@dataclass(frozen=True, slots=True)
class SwitchToProfit:
    """The room is hot and a traffic driver has been on air (while hot) for ``after_ms``."""

    enabled: bool = _f(True)
    after_ms: int = _f(180_000, 0, 86_400_000)
    cooldown_ms: int = _f(300_000, 0, 86_400_000)
    episode_end_ms: int = _f(30_000, 0, 86_400_000)


@dataclass(frozen=True, slots=True)
class UnpaidOrders:
    """Unpaid share of the orders created in the long window, leaving out the last ``grace_ms``
    (a fresh order is naturally unpaid for a while), is high, with enough orders."""

    enabled: bool = _f(True)
    grace_ms: int = _f(60_000, 0, 3_600_000)
    min_share: float = _f(0.4, 0.0, 1.0)
    min_orders: int = _f(10, 1, 1_000_000)
    cooldown_ms: int = _f(300_000, 0, 86_400_000)
    episode_end_ms: int = _f(60_000, 0, 86_400_000)
    worsen_factor: float = _f(1.5, 1.01, 1_000.0)


@dataclass(frozen=True, slots=True)
class Wall:
    """The operations lead's wall (not used by the core): a critical cue still unacknowledged
    ``escalate_after_s`` after it fired makes its room's tile flash and the wall beep."""

    escalate_after_s: float = _f(30.0, 1.0, 3_600.0)


@dataclass(frozen=True, slots=True)
class CueText:
    """A headline (≤ 60 characters once rendered, for the host) and a detail (the controller)."""

    headline: str
    detail: str


def _default_texts() -> Mapping[str, Mapping[str, CueText]]:
    zh = {
        "push_stock_soon": CueText(
            "{sku_name}快卖完！约{eta_s}秒售罄，上库存",
            "{sku_name}（{sku_id}）剩{stock}件，近1分钟卖{units_per_min}件/分，"
            "预计{eta_s}秒售罄。建议马上上库存。"),
        "push_stock_out": CueText(
            "{sku_name}已售罄，还有人要！上库存",
            "{sku_name}（{sku_id}）库存0，近1分钟加购{cart_adds_per_min}次/分，"
            "求购弹幕{intent_per_min}条/分（没抢到{missed_per_min}条/分）。建议上库存。"),
        "release_orders": CueText(
            "{sku_name}放单！大家都在等",
            "{sku_name}（{sku_id}）库存0已{held_s}秒，求购弹幕占{intent_share_pct}%"
            "（平时{baseline_share_pct}%；{intent_per_min}条/分，没抢到{missed_per_min}条/分），"
            "加购{cart_adds_per_min}次/分。建议放单。"),
        "switch_to_traffic_driver": CueText(
            "人气下滑，切引流款：{target_name}",
            "人气从{prev_tier}降到{tier}已{down_s}秒，在线{online}人，正在讲{sku_name}。"
            "建议切引流款{target_name}（库存{target_stock}）拉人气。"),
        "switch_to_profit": CueText(
            "人气高，切利润款：{target_name}",
            "当前{tier}，在线{online}人，引流款{sku_name}已讲{on_air_s}秒。"
            "建议切利润款{target_name}（库存{target_stock}）。"),
        "unpaid_orders": CueText(
            "未付款订单多，催付款！",
            "近{window_min}分钟{orders}单中{unpaid}单未付款（{unpaid_share_pct}%）。建议逼单催付。"),
    }
    en = {
        "push_stock_soon": CueText(
            "{sku_name} selling out in ~{eta_s}s: push stock",
            "{sku_name} ({sku_id}): {stock} left, selling {units_per_min}/min over the last "
            "minute; out in about {eta_s}s. Push more stock onto the link."),
        "push_stock_out": CueText(
            "{sku_name} sold out, still wanted: push stock",
            "{sku_name} ({sku_id}) is at 0: {cart_adds_per_min} cart adds/min, "
            "{intent_per_min} intent chats/min ({missed_per_min} missed-it/min). Push stock."),
        "release_orders": CueText(
            "Release {sku_name} now: they are waiting",
            "{sku_name} ({sku_id}) has been at 0 for {held_s}s: intent is {intent_share_pct}% "
            "of chat (usually {baseline_share_pct}%; {intent_per_min}/min, {missed_per_min} "
            "missed-it/min), {cart_adds_per_min} cart adds/min. Release a batch."),
        "switch_to_traffic_driver": CueText(
            "Room cooling: switch to {target_name}",
            "Popularity fell from {prev_tier} to {tier} {down_s}s ago, {online} online, "
            "{sku_name} on air. Switch to traffic driver {target_name} ({target_stock} in stock)."),
        "switch_to_profit": CueText(
            "Room is hot: switch to {target_name}",
            "Room {tier}, {online} online; traffic driver {sku_name} on air for {on_air_s}s. "
            "Switch to profit SKU {target_name} ({target_stock} in stock)."),
        "unpaid_orders": CueText(
            "Many unpaid orders: urge payment",
            "{unpaid} of {orders} orders in the last {window_min} min are unpaid "
            "({unpaid_share_pct}%). Urge buyers to pay."),
    }
    return MappingProxyType({"zh": MappingProxyType(zh), "en": MappingProxyType(en)})


def _alternation(words: tuple[str, ...]) -> re.Pattern[str] | None:
    # Longest first so the alternation prefers "how to buy" over "buy"; lower-cased text in,
    # so the pattern needs no IGNORECASE (which makes CPython's matcher ~4x slower).
    uniq = sorted({w.lower() for w in words if w}, key=lambda w: (-len(w), w))
    return re.compile("|".join(re.escape(w) for w in uniq)) if uniq else None


@dataclass(frozen=True, slots=True)
class Playbook:
    """Everything the core decides with. Defaults = ``stream/playbooks/default.toml``.

    ``stats_interval_ms``: a RoomStats snapshot per interval of event time. ``language`` picks the
    texts for ``Cue.headline``/``Cue.detail``; ``Cue.texts`` carries every language present.
    Window sizes are taken by a room at its ``session_start`` (a reload applies to the next
    session).
    """

    language: str = _f("zh")
    stats_interval_ms: int = _f(1_000, 100, 600_000)
    windows: Windows = field(default_factory=Windows)
    bounds: Bounds = field(default_factory=Bounds)
    intent: Intent = field(default_factory=Intent)
    tier: TierRules = field(default_factory=TierRules)
    push_stock: PushStock = field(default_factory=PushStock)
    release_orders: ReleaseOrders = field(default_factory=ReleaseOrders)
    switch_to_traffic_driver: SwitchToTrafficDriver = field(default_factory=SwitchToTrafficDriver)
    switch_to_profit: SwitchToProfit = field(default_factory=SwitchToProfit)
    unpaid_orders: UnpaidOrders = field(default_factory=UnpaidOrders)
    wall: Wall = field(default_factory=Wall)
    texts: Mapping[str, Mapping[str, CueText]] = field(default_factory=_default_texts)
    intent_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    missed_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Missed-it words count as intent as well: one search decides most chats.
        object.__setattr__(self, "intent_re",
                           _alternation(self.intent.words + self.intent.missed_words))
        object.__setattr__(self, "missed_re", _alternation(self.intent.missed_words))

    def __hash__(self) -> int:  # texts is a mapping; identity is enough for caches
        return id(self)

    def problems(self) -> list[tuple[str, str]]:
        """Cross-field rule violations as ``(key path, message)``; empty when the playbook is sound.

        Per-field ranges are declared in each field's metadata and checked by the loader.
        """
        out: list[tuple[str, str]] = []
        w = self.windows
        if self.language not in LANGUAGES:
            out.append(("language", f"must be one of {', '.join(LANGUAGES)}"))
        if w.short_ms % w.bucket_ms:
            out.append(("windows.short_ms", "must be a multiple of windows.bucket_ms"))
        if w.long_ms % w.bucket_ms:
            out.append(("windows.long_ms", "must be a multiple of windows.bucket_ms"))
        if w.long_ms < w.short_ms:
            out.append(("windows.long_ms", "must be at least windows.short_ms"))
        if w.short_ms // w.bucket_ms > 720 or w.long_ms // w.bucket_ms > 720:
            out.append(("windows.bucket_ms", "too small for the windows (at most 720 buckets)"))
        if w.unique_bits & (w.unique_bits - 1):
            out.append(("windows.unique_bits", "must be a power of two"))
        t = self.tier
        if t.baseline not in ("session", "absolute"):
            out.append(("tier.baseline", "must be session or absolute"))
        if not t.cold_enter <= t.cold_exit <= t.hot_exit <= t.hot_enter:
            out.append(("tier.hot_enter",
                        "need cold_enter <= cold_exit <= hot_exit <= hot_enter"))
        if not self.intent.words and not self.intent.missed_words:
            out.append(("intent.words", "must not be empty"))
        if self.language not in self.texts:
            out.append((f"texts.{self.language}", "missing texts for the playbook's language"))
        dummy = {p: "0" for p in PLACEHOLDERS}
        for lang, table in self.texts.items():
            if lang not in LANGUAGES:
                out.append((f"texts.{lang}", f"unknown language (expected {', '.join(LANGUAGES)})"))
                continue
            for key in TEXT_KEYS:
                if key not in table:
                    out.append((f"texts.{lang}.{key}", "missing"))
            for key, text in table.items():
                if key not in TEXT_KEYS:
                    out.append((f"texts.{lang}.{key}", "unknown cue text"))
                    continue
                for part in ("headline", "detail"):
                    tmpl = getattr(text, part)
                    problem = template_problem(tmpl, dummy)
                    if problem:
                        out.append((f"texts.{lang}.{key}.{part}", problem))
        return out


def template_problem(tmpl: str, values: Mapping[str, str]) -> str | None:
    """Why ``tmpl`` cannot be rendered with :data:`PLACEHOLDERS`, or None when it can."""
    try:
        for _, name, spec, conv in string.Formatter().parse(tmpl):
            if name is not None and name not in values:
                return f"unknown placeholder {{{name}}} (known: {', '.join(PLACEHOLDERS)})"
            if spec or conv:
                return "format specs and conversions are not supported in cue texts"
        tmpl.format_map(values)
    except (ValueError, IndexError, KeyError) as exc:
        return f"bad template: {exc}"
    return None


def section_fields(cls: type[Any]) -> list[str]:
    """Field names of a playbook section (excluding derived fields)."""
    return [f.name for f in fields(cls) if f.init]
