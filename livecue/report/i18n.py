"""The review's words in Chinese (default) and English."""

from __future__ import annotations

from typing import Final

__all__ = ["LANGS", "STRINGS", "text"]

LANGS: Final = ("zh", "en")

STRINGS: Final[dict[str, dict[str, str]]] = {
    "zh": {
        "title": "直播复盘", "room": "直播间", "session": "场次", "generated": "数据",
        "summary": "概览", "duration": "时长", "peak_online": "最高在线", "avg_online": "平均在线",
        "viewer_minutes": "观看人·分钟", "interactions": "互动", "chats": "弹幕", "likes": "点赞",
        "cart_adds": "加购", "orders_created": "下单", "orders_paid": "支付订单",
        "orders_cancelled": "取消订单", "units": "售出件数", "gmv": "GMV（已支付）", "buyers": "支付人数",
        "unique_viewers": "观看人数（估）", "conv_uv": "转化率 支付人数/观看人数",
        "conv_cart": "转化率 下单/加购", "gpm": "GPM（千次观看分钟GMV）",
        "charts": "分钟曲线", "chart_online": "在线人数（每分钟平均）",
        "chart_interactions": "互动（弹幕+点赞，每分钟）", "chart_gmv": "GMV（已支付，每分钟，元）",
        "axis_minutes": "开播后分钟", "unit_people": "人", "unit_per_min": "次/分", "unit_yuan": "元",
        "tier_hot": "高人气", "tier_warm": "中人气", "tier_cold": "低人气", "cue_marker": "提示",
        "sev_critical": "紧急", "sev_warn": "注意", "sev_info": "信息",
        "skus": "商品", "sku": "商品", "role": "角色", "price": "价格", "on_air": "讲解时长",
        "orders": "订单", "conversion": "下单/加购", "sellouts": "售罄", "held": "憋单",
        "held_fmt": "{n} 次 · {s}",
        "role_traffic_driver": "引流款", "role_giveaway": "福利款", "role_hero": "爆款",
        "role_profit": "利润款",
        "cues": "提示与反应", "time": "时间", "kind": "类型", "severity": "级别",
        "headline": "内容", "ack": "确认", "done": "完成", "dismiss": "忽略", "by": "由",
        "effect": "效果", "verdict": "结论", "no_cues": "本场没有提示。",
        "kind_push_stock": "补库存", "kind_release_orders": "放单",
        "kind_switch_to_traffic_driver": "切引流款", "kind_switch_to_profit": "切利润款",
        "kind_unpaid_orders": "催付款",
        "v_helped": "有效", "v_no_change": "无变化", "v_worse": "变差", "v_not_acted": "未执行",
        "v_no_data": "数据不足",
        "eff_units": "补货前2分钟 {b} 件 → 后2分钟 {a} 件",
        "eff_online": "在线 {b} → 3分钟后 {a}；互动 {rb} → {ra} 次/分",
        "rules": "规则",
        "rule_units": "补库存 / 放单：比较该商品库存恢复后 2 分钟与之前 2 分钟的售出件数。",
        "rule_online": "切引流款：比较提示 3 分钟后与提示时的在线人数（互动率：前一分钟弹幕+点赞）。",
        "rule_verdict": "变化 ≥ +10% 为有效，≤ −10% 为变差，其余为无变化；提示后 5 分钟内库存未恢复为未执行；"
                        "窗口超出直播结束为数据不足。",
        "rule_defs": "GMV 只计已支付且未取消的订单；观看人数 = 首次在线人数 + 进入人数（合同无观众 ID）；"
                     "GPM = GMV ÷ 观看人·分钟 × 1000；互动 = 弹幕 + 点赞。",
        "reaction": "反应时间从提示发出（无发出时间时用事件时间）算起。",
        "deadletters": "死信（无法使用的输入）", "reason": "原因", "count": "条数",
        "no_deadletters": "没有死信。",
        "compare": "剧本对比", "compare_intro": "同一场直播，剧本 A（{a}）与剧本 B（{b}）产生的提示：",
        "side_a": "仅 A", "side_b": "仅 B", "side_both": "两者",
        "note_no_cjk": "未安装中文字体（fonts-noto-cjk），图表标注改用英文。",
        "events": "事件", "s": "秒", "min": "分",
    },
    "en": {
        "title": "Show review", "room": "Room", "session": "Session", "generated": "Data",
        "summary": "Summary", "duration": "Duration", "peak_online": "Peak online",
        "avg_online": "Average online", "viewer_minutes": "Viewer-minutes",
        "interactions": "Interactions", "chats": "Chat messages", "likes": "Likes",
        "cart_adds": "Cart adds", "orders_created": "Orders created", "orders_paid": "Orders paid",
        "orders_cancelled": "Orders cancelled", "units": "Units sold", "gmv": "GMV (paid)",
        "buyers": "Buyers", "unique_viewers": "Unique viewers (est.)",
        "conv_uv": "Conversion buyers / viewers", "conv_cart": "Conversion orders / cart adds",
        "gpm": "GPM (GMV per 1000 viewer-minutes)",
        "charts": "Minute by minute", "chart_online": "Online viewers (average per minute)",
        "chart_interactions": "Interactions (chat + likes per minute)",
        "chart_gmv": "GMV (paid, per minute, yuan)", "axis_minutes": "minutes since start",
        "unit_people": "viewers", "unit_per_min": "per min", "unit_yuan": "yuan",
        "tier_hot": "hot", "tier_warm": "warm", "tier_cold": "cold", "cue_marker": "cue",
        "sev_critical": "critical", "sev_warn": "warn", "sev_info": "info",
        "skus": "SKUs", "sku": "SKU", "role": "Role", "price": "Price", "on_air": "On air",
        "orders": "Orders", "conversion": "Orders / cart adds", "sellouts": "Sell-outs",
        "held": "Held (憋单)", "held_fmt": "{n} × · {s}",
        "role_traffic_driver": "traffic driver", "role_giveaway": "giveaway", "role_hero": "hero",
        "role_profit": "profit",
        "cues": "Cues and reactions", "time": "Time", "kind": "Kind", "severity": "Severity",
        "headline": "Headline", "ack": "Acknowledged", "done": "Done", "dismiss": "Dismissed",
        "by": "by", "effect": "Effect", "verdict": "Verdict", "no_cues": "No cues in this show.",
        "kind_push_stock": "push stock", "kind_release_orders": "release orders",
        "kind_switch_to_traffic_driver": "switch to traffic driver",
        "kind_switch_to_profit": "switch to profit SKU", "kind_unpaid_orders": "unpaid orders",
        "v_helped": "helped", "v_no_change": "no change", "v_worse": "worse",
        "v_not_acted": "not acted on", "v_no_data": "too little data",
        "eff_units": "{b} units in the 2 min before stock came back → {a} in the 2 min after",
        "eff_online": "online {b} → {a} 3 min later; interactions {rb} → {ra} per min",
        "rules": "Rules",
        "rule_units": "push stock / release orders: units of the SKU sold in the 2 minutes after "
                      "its stock came back vs the 2 minutes before.",
        "rule_online": "switch to traffic driver: online viewers 3 minutes after the cue vs at "
                       "the cue (interaction rate: chat + likes in the minute before).",
        "rule_verdict": "helped at +10 % or more, worse at −10 % or less, otherwise no change; "
                        "not acted on when the stock did not come back within 5 minutes of the cue; "
                        "too little data when the window runs past the end of the show.",
        "rule_defs": "GMV counts paid, not cancelled orders only; unique viewers = first online "
                     "sample + viewers who entered (the contract has no viewer ids); GPM = GMV / "
                     "viewer-minutes × 1000; interactions = chat messages + likes.",
        "reaction": "Reaction times run from when the cue was sent (its event time when not known).",
        "deadletters": "Dead letters (inputs that could not be used)", "reason": "Reason",
        "count": "Count", "no_deadletters": "No dead letters.",
        "compare": "Playbook comparison",
        "compare_intro": "The same show through playbook A ({a}) and playbook B ({b}):",
        "side_a": "A only", "side_b": "B only", "side_both": "both",
        "note_no_cjk": "No CJK font installed (fonts-noto-cjk): chart labels are in English.",
        "events": "events", "s": "s", "min": "min",
    },
}


def text(lang: str, key: str) -> str:
    """The word for ``key`` in ``lang`` (English, then the key itself, when missing)."""
    return STRINGS.get(lang, STRINGS["en"]).get(key) or STRINGS["en"].get(key, key)
