// LiveCue screens: shared pieces (token, language, safe DOM helpers, the reconnecting link).
// Everything that comes from events is put on the page with textContent, never innerHTML.
"use strict";

const LC = (() => {
  const STRINGS = {
    zh: {
      title_control: "LiveCue 场控台", title_host: "LiveCue 提词屏",
      online: "在线人数", chat: "弹幕 / 分", likes: "点赞 / 分", gmv: "GMV / 分",
      cart: "加购 / 分", orders: "下单 / 分", intent: "购买意向 / 分", unpaid: "未付款占比",
      tier_hot: "高人气", tier_warm: "中人气", tier_cold: "低人气", tier_none: "等待数据",
      lineup: "排品", cues: "提示", role: "角色", sku: "商品", on_air: "在讲", stock: "库存",
      conv: "转化率", eta: "售罄预计", price: "价格",
      role_traffic_driver: "引流款", role_giveaway: "福利款", role_hero: "爆款", role_profit: "利润款",
      ack: "确认", done: "完成", dismiss: "忽略",
      state_acked: "已确认", state_done: "已完成", state_dismissed: "已忽略", state_new: "新提示",
      by: "操作人", no_cues: "暂无提示。有新提示时会出现在这里。", no_lineup: "等待排品数据…",
      connecting: "正在连接…", live: "实时", offline: "连接中断",
      banner_lost: "连接已断开，正在重连（第 {n} 次，{s} 秒后）…",
      banner_back: "已重新连接，补发 {n} 条提示。", banner_gap: "部分较早的提示已过期，无法补发。",
      banner_auth: "令牌无效或已过期，请向负责人获取新的链接。",
      banner_no_token: "链接中缺少令牌（#token=…）。请使用 livecue token 生成的链接。",
      room: "直播间", held: "憋单", sold: "已售", waiting: "等待提示…", last_10: "近 10 分钟",
      kind_push_stock: "上库存", kind_release_orders: "放单", kind_switch_to_traffic_driver: "切引流款",
      kind_switch_to_profit: "切利润款", kind_unpaid_orders: "催付款", kind_answer_questions: "答疑",
      sev_info: "提示", sev_warn: "注意", sev_critical: "紧急", lang: "EN", error: "错误",
      min: "分", sec: "秒", viewer_mode: "只读", sold_out: "已售罄",
      ev_intent: "求购弹幕", ev_missed: "没抢到", ev_held: "已憋单", ev_cart: "加购", ev_units: "销量",
      ev_stock: "库存", ev_eta: "预计售罄", ev_demand: "需求", ev_online: "在线", ev_down: "人气下滑",
      ev_on_air: "已讲", ev_target_stock: "引流款库存", ev_target_stock_profit: "利润款库存",
      ev_tier: "人气", ev_intent_share: "求购占比", ev_unpaid_share: "未付款占比", ev_unpaid: "未付款",
      ev_orders: "订单", ev_chat: "弹幕",
      u_msgs_pm: "条/分", u_times_pm: "次/分", u_units_pm: "件/分", u_units: "件", u_s: "秒",
      u_people: "人", u_orders: "单", u_pm: "/分", raw_evidence: "原始数据",
      keys_hint: "快捷键（最新提示）：A 确认 · D 完成 · X 忽略", review: "复盘报告",
      title_wall: "LiveCue 总控墙", mute: "静音", muted: "已静音", open_cue: "待处理",
      no_open_cue: "无待处理提示", ago: "{n}前", waiting: "已等{n}", escalated: "超时未确认", rooms_n: "{n} 个直播间",
      stock_short: "库存", gmv_min: "GMV/分",
    },
    en: {
      title_control: "LiveCue Control Room", title_host: "LiveCue Host Cue",
      online: "Online", chat: "Chat / min", likes: "Likes / min", gmv: "GMV / min",
      cart: "Cart adds / min", orders: "Orders / min", intent: "Purchase intent / min", unpaid: "Unpaid share",
      tier_hot: "HOT", tier_warm: "WARM", tier_cold: "COLD", tier_none: "NO DATA",
      lineup: "Lineup", cues: "Cues", role: "Role", sku: "SKU", on_air: "On air", stock: "Stock",
      conv: "Conversion", eta: "Sell-out ETA", price: "Price",
      role_traffic_driver: "Traffic driver", role_giveaway: "Giveaway", role_hero: "Hero", role_profit: "Profit",
      ack: "Ack", done: "Done", dismiss: "Dismiss",
      state_acked: "Acknowledged", state_done: "Done", state_dismissed: "Dismissed", state_new: "New",
      by: "by", no_cues: "No cues yet. New cues will appear here.", no_lineup: "Waiting for the lineup…",
      connecting: "Connecting…", live: "Live", offline: "Offline",
      banner_lost: "Connection lost, reconnecting (attempt {n}, in {s} s)…",
      banner_back: "Reconnected; {n} missed cues replayed.", banner_gap: "Some older cues expired and could not be replayed.",
      banner_auth: "Token invalid or expired; ask for a new link.",
      banner_no_token: "The link has no token (#token=…). Use a link made by livecue token.",
      room: "Room", held: "Held", sold: "Sold", waiting: "Waiting for cues…", last_10: "last 10 min",
      kind_push_stock: "Push stock", kind_release_orders: "Release orders",
      kind_switch_to_traffic_driver: "Switch to traffic driver", kind_switch_to_profit: "Switch to profit SKU",
      kind_unpaid_orders: "Unpaid orders", kind_answer_questions: "Answer questions",
      sev_info: "Info", sev_warn: "Warning", sev_critical: "Critical", lang: "中文", error: "Error",
      min: "min", sec: "s", viewer_mode: "read-only", sold_out: "Sold out",
      ev_intent: "Intent chats", ev_missed: "Missed it", ev_held: "Held for", ev_cart: "Cart adds",
      ev_units: "Selling", ev_stock: "Stock", ev_eta: "Sells out in", ev_demand: "Demand",
      ev_online: "Online", ev_down: "Cooling for", ev_on_air: "On air for",
      ev_target_stock: "Driver stock", ev_target_stock_profit: "Profit SKU stock", ev_tier: "Popularity",
      ev_intent_share: "Intent share", ev_unpaid_share: "Unpaid share", ev_unpaid: "Unpaid",
      ev_orders: "Orders", ev_chat: "Chat",
      u_msgs_pm: "/min", u_times_pm: "/min", u_units_pm: "units/min", u_units: "units", u_s: "s",
      u_people: "viewers", u_orders: "orders", u_pm: "/min", raw_evidence: "Raw evidence",
      keys_hint: "Keys (newest cue): A ack · D done · X dismiss", review: "Review",
      title_wall: "LiveCue Wall", mute: "Mute", muted: "Muted", open_cue: "Open",
      no_open_cue: "No open cue", ago: "{n} ago", waiting: "waiting {n}", escalated: "Unacknowledged", rooms_n: "{n} rooms",
      stock_short: "Stock", gmv_min: "GMV/min",
    },
  };

  let lang = localStorage.getItem("livecue.lang") === "en" ? "en" : "zh";
  const langListeners = [];

  function t(key, vars) {
    let s = (STRINGS[lang] && STRINGS[lang][key]) || STRINGS.zh[key] || key;
    if (vars) for (const k of Object.keys(vars)) s = s.replace("{" + k + "}", String(vars[k]));
    return s;
  }

  function setLang(l) {
    lang = l === "en" ? "en" : "zh";
    localStorage.setItem("livecue.lang", lang);
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
    for (const f of langListeners) f(lang);
  }

  // A cue's text in the current language: texts[lang] when present, else the cue's own fields.
  function cueText(cue, field) {
    const tx = cue && cue.texts && cue.texts[lang];
    if (tx && typeof tx[field] === "string" && tx[field]) return tx[field];
    return typeof cue[field] === "string" ? cue[field] : "";
  }

  // The token travels in the URL fragment (never sent to the server); kept for reloads in
  // sessionStorage and removed from the address bar.
  function takeToken() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    let tok = params.get("token");
    if (tok) {
      sessionStorage.setItem("livecue.token", tok);
      history.replaceState(null, "", location.pathname + location.search);
    } else {
      tok = sessionStorage.getItem("livecue.token");
    }
    if (params.get("lang")) setLang(params.get("lang"));
    return tok;
  }

  // Evidence as the controller reads it: per cue kind, the 3-4 figures that justify the cue,
  // each [label, value, unit] in the current language. Raw keys stay behind a details toggle.
  const EVIDENCE = {
    intent_per_min: ["ev_intent", "u_msgs_pm", 0], missed_per_min: ["ev_missed", "u_msgs_pm", 0],
    held_s: ["ev_held", "u_s", 0], cart_adds_per_min: ["ev_cart", "u_times_pm", 1],
    units_per_min: ["ev_units", "u_units_pm", 1], stock: ["ev_stock", "u_units", 0],
    eta_s: ["ev_eta", "u_s", 0], demand_per_min: ["ev_demand", "u_pm", 0],
    online: ["ev_online", "u_people", 0], down_s: ["ev_down", "u_s", 0],
    on_air_s: ["ev_on_air", "u_s", 0], target_stock: ["ev_target_stock", "u_units", 0],
    unpaid: ["ev_unpaid", "u_orders", 0], orders: ["ev_orders", "u_orders", 0],
    intent_share: ["ev_intent_share", "%", 0], unpaid_share: ["ev_unpaid_share", "%", 0],
    chat_per_min: ["ev_chat", "u_msgs_pm", 0],
  };
  const PICK = {
    push_stock: ["eta_s", "stock", "units_per_min", "cart_adds_per_min", "intent_per_min", "missed_per_min"],
    release_orders: ["intent_per_min", "missed_per_min", "held_s", "cart_adds_per_min"],
    switch_to_traffic_driver: ["online", "tier", "down_s", "target_stock"],
    switch_to_profit: ["online", "tier", "on_air_s", "target_stock"],
    unpaid_orders: ["unpaid_share", "unpaid", "orders"],
  };
  const TIERS = ["hot", "warm", "cold"];

  function num(v, d) {
    return v.toLocaleString(lang === "en" ? "en-US" : "zh-CN", { maximumFractionDigits: d });
  }

  function figures(cue) {
    const ev = cue && cue.evidence && typeof cue.evidence === "object" ? cue.evidence : {};
    let keys = PICK[cue.kind] || Object.keys(EVIDENCE);
    if (cue.kind === "push_stock" && typeof ev.eta_s !== "number") {  // sold out, still wanted
      keys = ["stock", "cart_adds_per_min", "intent_per_min", "missed_per_min", "demand_per_min"];
    }
    const out = [];
    for (const k of keys) {
      if (out.length >= 4) break;
      if (k === "tier") {
        if (TIERS.includes(ev.tier)) {
          const now = t("tier_" + ev.tier);
          out.push([t("ev_tier"), TIERS.includes(ev.prev_tier) && ev.prev_tier !== ev.tier
            ? t("tier_" + ev.prev_tier) + " → " + now : now, ""]);
        }
        continue;
      }
      const v = ev[k], spec = EVIDENCE[k];
      if (typeof v !== "number" || !isFinite(v) || !spec) continue;
      let label = t(spec[0]);
      if (k === "target_stock" && cue.kind === "switch_to_profit") label = t("ev_target_stock_profit");
      if (spec[1] === "%") out.push([label, num(v * 100, 0), "%"]);
      else out.push([label, num(spec[2] ? Math.round(v * 10) / 10 : Math.round(v), spec[2]), t(spec[1])]);
    }
    return out;
  }

  // Links to each room's latest review (consumers/report_access.py): /reports/ wants the
  // token, and a navigation cannot send it in a header, so the screen asks /reports/~links with
  // the token in the Authorization header and gets links signed for minutes, only for rooms
  // that have a review. Asked again every 15 s: a review appears within seconds of a show's
  // end (the reporter follows shows), and a button never keeps a link past its expiry.
  let reviewLinks = {};
  const reviewListeners = [];
  function watchReviews(token) {
    const load = () => fetch("/reports/~links", { headers: { Authorization: "Bearer " + token }, cache: "no-store" })
      .then((r) => (r.ok ? r.json() : null))
      .then((j) => {
        if (!j || typeof j.links !== "object" || j.links === null) return;
        reviewLinks = j.links;
        for (const f of reviewListeners) f();
      })
      .catch(() => {});
    load();
    setInterval(load, 15000);
  }
  function reviewHref(room) {
    const h = Object.prototype.hasOwnProperty.call(reviewLinks, room) ? reviewLinks[room] : null;
    return typeof h === "string" && h.startsWith("/reports/") ? h : null;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // The link to the gateway: auth with the upgrade, then resume from the last seq of each room; reconnects
  // with exponential backoff and jitter. Auth refusals (1008) stop retrying.
  class Link {
    constructor(token, handlers) {
      this.token = token;
      this.h = handlers;
      this.lastSeq = {};
      this.attempt = 0;
      this.ws = null;
      this.stopped = false;
      this.everConnected = false;
    }
    connect() {
      const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
      // The token rides the upgrade as a subprotocol beside livecue.v1 (a page cannot set headers
      // on a WebSocket): the gateway checks it at once, so a flood of idle sockets from this
      // screen's own address (one NAT, one proxy) cannot crowd it out before it speaks. A token
      // that is not a header token (a mangled link) goes in the first message instead, and the
      // gateway answers it with bad_token.
      const upgrade = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(this.token);
      const ws = upgrade ? new WebSocket(url, ["livecue.v1", "livecue.bearer." + this.token]) : new WebSocket(url);
      this.ws = ws;
      if (!upgrade) ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: this.token }));
      ws.onmessage = (ev) => {
        let m;
        try { m = JSON.parse(ev.data); } catch (e) { return; }
        if (!m || typeof m.type !== "string") return;
        if (m.type === "hello") {
          const rooms = {};
          for (const r of m.rooms) rooms[r] = r in this.lastSeq ? this.lastSeq[r] : -1;
          ws.send(JSON.stringify({ type: "resume", rooms }));
          const again = this.everConnected;
          this.everConnected = true;
          this.attempt = 0;
          this.h.onHello(m, again);
        } else if (m.type === "cue") {
          if (typeof m.seq === "number" && m.seq > (this.lastSeq[m.room_id] ?? -1)) this.lastSeq[m.room_id] = m.seq;
          this.h.onCue(m);
        } else if (m.type === "error" && (m.code === "bad_token" || m.code === "expired" || m.code === "wrong_room")) {
          this.stopped = true;
          this.h.onAuthFailed(m);
        } else if (this.h.on && this.h.on[m.type]) {
          this.h.on[m.type](m);
        }
      };
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        this.ws = null;
        if (this.stopped) return;
        this.attempt += 1;
        const delay = Math.min(10000, 500 * 2 ** Math.min(this.attempt - 1, 5)) * (0.8 + 0.4 * Math.random());
        this.h.onDown(this.attempt, Math.round(delay / 100) / 10, ev.code);
        setTimeout(() => this.connect(), delay);
      };
    }
    send(obj) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(JSON.stringify(obj)); return true; }
      return false;
    }
  }

  return { t, setLang, cueText, takeToken, el, Link, figures, reviewHref, watchReviews, onReviews: (f) => reviewListeners.push(f), get lang() { return lang; }, onLang: (f) => langListeners.push(f) };
})();
