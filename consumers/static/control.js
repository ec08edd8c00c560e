// Control-room screen (场控台): tier, live figures with 10-minute charts, lineup, cue feed.
"use strict";

(() => {
  const { t, el } = LC;
  const WINDOW_MS = 10 * 60 * 1000;
  const SERIES = { online: "k-online", chat_per_min: "k-chat", likes_per_min: "k-likes", gmv_cents_per_min: "k-gmv" };
  const rooms = new Map(); // room_id -> {stats, series: {field: [[ts, v]]}, cues: Map(cue_id -> cue), states: Map}
  let current = null;
  let canAck = false;
  let bannerTimer = null;

  const $ = (id) => document.getElementById(id);
  const roomSelect = $("room");

  function room(id) {
    let r = rooms.get(id);
    if (!r) {
      r = { stats: null, series: {}, cues: new Map(), states: new Map() };
      for (const f of Object.keys(SERIES)) r.series[f] = [];
      rooms.set(id, r);
    }
    return r;
  }

  // -- formatting ----------------------------------------------------------------------------
  const nf = (v, d = 0) => (typeof v === "number" && isFinite(v))
    ? v.toLocaleString(LC.lang === "en" ? "en-US" : "zh-CN", { maximumFractionDigits: d, minimumFractionDigits: d }) : "—";
  function money(cents) {
    if (typeof cents !== "number") return "—";
    const yuan = cents / 100;
    if (LC.lang === "zh" && yuan >= 10000) return "¥" + nf(yuan / 10000, 1) + "万";
    return "¥" + nf(yuan, yuan < 100 ? 2 : 0);
  }
  function eta(s) {
    if (typeof s !== "number" || !isFinite(s)) return "—";
    const m = Math.floor(s / 60), sec = Math.round(s % 60);
    return m ? `${m}${LC.lang === "en" ? " min " : "分"}${sec}${t("sec")}` : `${sec}${t("sec")}`;
  }
  const pct = (x) => (typeof x === "number" && isFinite(x)) ? nf(x * 100, 1) + "%" : "—";
  const clock = (ms) => (typeof ms === "number") ? new Date(ms).toLocaleTimeString(LC.lang === "en" ? "en-GB" : "zh-CN", { hour12: false }) : "";
  function fmtKpi(field, v) {
    if (field === "gmv_cents_per_min") return money(v);
    return nf(v, field === "online" ? 0 : (v < 10 ? 1 : 0));
  }

  // -- banner & status -----------------------------------------------------------------------
  function banner(text, kind, hideAfter) {
    const b = $("banner");
    clearTimeout(bannerTimer);
    b.textContent = text;
    b.className = "banner " + kind;
    b.hidden = false;
    if (hideAfter) bannerTimer = setTimeout(() => { b.hidden = true; }, hideAfter);
  }
  function status(kind) {
    const s = $("status");
    s.className = "status " + kind;
    s.dataset.t = kind === "live" ? "live" : kind === "offline" ? "offline" : "connecting";
    s.textContent = t(s.dataset.t);
  }

  // -- stats -----------------------------------------------------------------------------------
  function addPoint(r, p) {
    if (typeof p.ts !== "number") return;
    for (const f of Object.keys(SERIES)) {
      if (typeof p[f] !== "number") continue;
      const s = r.series[f];
      if (s.length && p.ts <= s[s.length - 1][0]) continue;
      s.push([p.ts, p[f]]);
      while (s.length && s[0][0] < p.ts - WINDOW_MS) s.shift();
    }
  }

  function renderStats() {
    const r = current && rooms.get(current);
    const st = r && r.stats;
    const tier = $("tier");
    const tierName = st && ["hot", "warm", "cold"].includes(st.tier) ? st.tier : "none";
    tier.className = "tier " + tierName;
    tier.dataset.t = "tier_" + tierName;
    tier.textContent = t(tier.dataset.t);
    const skus = (st && Array.isArray(st.skus)) ? st.skus : [];
    const onAir = skus.find((s) => s.on_air) || skus.find((s) => st && s.sku_id === st.on_air_sku);
    $("onair").textContent = onAir ? onAir.name : (st && st.on_air_sku) || "—";
    for (const [field, id] of Object.entries(SERIES)) {
      const box = $(id);
      box.querySelector(".k-value").textContent = st ? fmtKpi(field, st[field]) : "—";
      const trend = box.querySelector(".k-trend");
      const series = r ? r.series[field] : [];
      let change = null;
      if (field === "online" && st && typeof st.online_trend === "number") change = st.online_trend;
      else if (series.length > 1) {
        const last = series[series.length - 1];
        const ref = series.find((p) => p[0] >= last[0] - 60000) || series[0];
        if (ref[1] > 0) change = (last[1] - ref[1]) / ref[1];
      }
      trend.textContent = change === null ? t("last_10") : (change >= 0 ? "▲ " : "▼ ") + nf(Math.abs(change) * 100, 0) + "%";
      trend.className = "k-trend " + (change === null ? "" : change >= 0 ? "up" : "down");
      drawSpark(box.querySelector("canvas"), series, field === "gmv_cents_per_min" ? "#f5b942" : "#4cc2ff");
    }
    $("funnel").textContent = st
      ? `${t("cart")} ${nf(st.cart_adds_per_min, 1)} · ${t("orders")} ${nf(st.orders_per_min, 1)} · ${t("intent")} ${nf(st.intent_per_min, 1)}`
      : "";
    renderLineup();
  }

  function drawSpark(canvas, series, colour) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const g = canvas.getContext("2d");
    g.scale(dpr, dpr);
    g.clearRect(0, 0, w, h);
    g.strokeStyle = "rgba(255,255,255,0.06)";
    g.lineWidth = 1;
    for (let i = 1; i < 4; i++) { g.beginPath(); g.moveTo(0, (h * i) / 4); g.lineTo(w, (h * i) / 4); g.stroke(); }
    if (series.length < 2) return;
    const t1 = series[series.length - 1][0], t0 = t1 - WINDOW_MS;
    let lo = Infinity, hi = -Infinity;
    for (const [, v] of series) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (hi === lo) { hi += 1; lo -= 1; }
    lo = Math.min(lo, 0) === 0 && lo > 0 ? lo * 0.9 : lo;
    const x = (ts) => ((ts - t0) / WINDOW_MS) * w;
    const y = (v) => h - 3 - ((v - lo) / (hi - lo)) * (h - 8);
    g.beginPath();
    series.forEach(([ts, v], i) => (i ? g.lineTo(x(ts), y(v)) : g.moveTo(x(ts), y(v))));
    g.strokeStyle = colour;
    g.lineWidth = 2;
    g.lineJoin = "round";
    g.stroke();
    g.lineTo(x(t1), h);
    g.lineTo(x(series[0][0]), h);
    g.closePath();
    const grad = g.createLinearGradient(0, 0, 0, h);
    grad.addColorStop(0, colour + "55");
    grad.addColorStop(1, colour + "00");
    g.fillStyle = grad;
    g.fill();
  }

  // -- lineup ----------------------------------------------------------------------------------
  function activeCueSkus(r) {
    const out = new Map(); // sku_id -> highest severity
    const rank = { info: 1, warn: 2, critical: 3 };
    for (const c of r.cues.values()) {
      const st = r.states.get(c.cue_id);
      if (st && (st.state === "done" || st.state === "dismissed")) continue;
      for (const s of [c.sku_id, c.target_sku_id]) {
        if (typeof s !== "string") continue;
        if (!out.has(s) || rank[c.severity] > rank[out.get(s)]) out.set(s, c.severity);
      }
    }
    return out;
  }

  function renderLineup() {
    const tbody = $("lineup").querySelector("tbody");
    const r = current && rooms.get(current);
    const skus = (r && r.stats && Array.isArray(r.stats.skus)) ? r.stats.skus : [];
    const hl = r ? activeCueSkus(r) : new Map();
    tbody.replaceChildren();
    $("lineup-empty").hidden = skus.length > 0;
    for (const s of skus) {
      const tr = el("tr");
      if (s.on_air) tr.classList.add("on-air");
      if (hl.has(s.sku_id)) tr.classList.add("cued", "sev-" + hl.get(s.sku_id));
      const role = el("td");
      role.append(el("span", "role-tag role-" + String(s.role).replace(/[^a-z_]/g, ""), t("role_" + s.role)));
      tr.append(role);
      const name = el("td", "sku-name");
      name.append(el("span", "", s.name));
      name.append(el("small", "muted", " " + s.sku_id));
      tr.append(name);
      const air = el("td");
      if (s.on_air) air.append(el("span", "live-dot", "LIVE"));
      tr.append(air);
      const stock = el("td", "num", nf(s.stock));
      if (s.held) stock.append(el("span", "held", " " + t("held")));
      if (s.stock === 0) stock.classList.add("zero");
      tr.append(stock);
      tr.append(el("td", "num", nf(s.cart_adds_per_min, 1)));
      tr.append(el("td", "num", nf(s.orders_per_min, 1)));
      tr.append(el("td", "num", pct(s.conversion)));
      // A held SKU (憋单) is at 0 on purpose: its ETA is the hold, not "0 s".
      const e = el("td", "num", s.held ? t("held") : s.stock === 0 ? t("sold_out") : eta(s.eta_s));
      if (s.held) e.classList.add("held-eta");
      else if (typeof s.eta_s === "number" && s.eta_s < 120) e.classList.add("soon");
      tr.append(e);
      tbody.append(tr);
    }
  }

  // -- cues ------------------------------------------------------------------------------------
  function evidenceValue(v) {
    if (typeof v === "number") return nf(v, Number.isInteger(v) ? 0 : 2);
    if (typeof v === "string") return v;
    if (Array.isArray(v)) return v.map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join(" · ");
    return JSON.stringify(v);
  }

  function cueCard(r, c) {
    const st = r.states.get(c.cue_id);
    const state = st ? st.state : "new";
    const sev = ["info", "warn", "critical"].includes(c.severity) ? c.severity : "info";
    const li = el("li", `cue sev-${sev} state-${state}`);
    li.dataset.cueId = c.cue_id;
    const head = el("div", "c-head");
    head.append(el("span", "sev-tag", t("sev_" + sev)));
    head.append(el("span", "kind", t("kind_" + c.kind) === "kind_" + c.kind ? c.kind : t("kind_" + c.kind)));
    const skuNames = new Map(((r.stats && r.stats.skus) || []).map((s) => [s.sku_id, s.name]));
    if (c.sku_id) head.append(el("span", "sku", skuNames.get(c.sku_id) || c.sku_id));
    if (c.target_sku_id) head.append(el("span", "sku target", "→ " + (skuNames.get(c.target_sku_id) || c.target_sku_id)));
    head.append(el("span", "spacer"));
    head.append(el("time", "", clock(c.emitted_at || c.ts)));
    li.append(head);
    li.append(el("div", "c-headline", LC.cueText(c, "headline")));
    const detail = LC.cueText(c, "detail");
    if (detail) li.append(el("div", "c-detail", detail));
    if (c.evidence && typeof c.evidence === "object") {
      const figs = LC.figures(c);
      if (figs.length) {
        const ul = el("ul", "figures");
        for (const [label, value, unit] of figs) {
          const item = el("li");
          item.append(el("span", "f-label", label), el("b", "f-value", value));
          if (unit) item.append(el("span", "f-unit", unit));
          ul.append(item);
        }
        li.append(ul);
      }
      const raw = el("details", "raw");
      raw.append(el("summary", "", t("raw_evidence")));
      const dl = el("dl", "evidence");
      for (const [k, v] of Object.entries(c.evidence)) {
        const item = el("div");
        item.append(el("dt", "", k), el("dd", "", evidenceValue(v)));
        dl.append(item);
      }
      raw.append(dl);
      li.append(raw);
    }
    const foot = el("div", "c-foot");
    const badge = el("span", "state-badge", t("state_" + state));
    if (st && st.by) badge.textContent += ` · ${st.by}`;
    foot.append(badge);
    if (canAck) {
      const acts = el("div", "c-actions");
      for (const a of ["ack", "done", "dismiss"]) {
        const b = el("button", "btn act-" + a, t(a));
        b.type = "button";
        b.dataset.act = a;
        b.disabled = state === "done" || state === "dismissed" || (a === "ack" && state === "acked");
        b.addEventListener("click", () => {
          if (link.send({ type: a, cue_id: c.cue_id, room_id: c.room_id })) {
            for (const x of acts.querySelectorAll("button")) x.disabled = true;
            li.classList.add("pending");
          }
        });
        acts.append(b);
      }
      foot.append(acts);
    }
    li.append(foot);
    return li;
  }

  function renderCues() {
    const ol = $("cues");
    const r = current && rooms.get(current);
    ol.replaceChildren();
    const list = r ? [...r.cues.values()].sort((a, b) => (b.seq ?? 0) - (a.seq ?? 0)) : [];
    $("cues-empty").hidden = list.length > 0;
    const target = canAck ? newestOpen(r) : null;
    $("keys-hint").hidden = !target;
    const open = r ? list.filter((c) => { const s = r.states.get(c.cue_id); return !s || s.state === "acked"; }).length : 0;
    $("cue-count").textContent = list.length ? `${open} / ${list.length}` : "";
    for (const c of list) {
      const card = cueCard(r, c);
      if (target && c.cue_id === target.cue_id) card.classList.add("kbd-target");
      ol.append(card);
    }
  }

  // -- keyboard: A ack, D done, X dismiss the newest open cue of the room on screen ---------------
  function newestOpen(r) {
    if (!r) return null;
    let best = null;
    for (const c of r.cues.values()) {
      const st = r.states.get(c.cue_id);
      if (st && (st.state === "done" || st.state === "dismissed")) continue;
      if (!best || (c.seq ?? 0) > (best.seq ?? 0)) best = c;
    }
    return best;
  }
  const KEYS = { a: "ack", d: "done", x: "dismiss" };
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat || !canAck) return;
    const tag = ev.target && ev.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    const act = KEYS[ev.key.toLowerCase()];
    const r = current && rooms.get(current);
    const c = act && newestOpen(r);
    if (!c) return;
    const st = r.states.get(c.cue_id);
    if (act === "ack" && st && st.state === "acked") return;
    ev.preventDefault();
    if (link.send({ type: act, cue_id: c.cue_id, room_id: c.room_id })) {
      const li = document.querySelector(`#cues .cue.kbd-target`);
      if (li) {
        li.classList.add("pending");
        for (const b of li.querySelectorAll("button")) b.disabled = true;
      }
    }
  });

  // -- wiring ----------------------------------------------------------------------------------
  function selectRoom(id) {
    current = id;
    roomSelect.value = id;
    showReview();
    renderStats();
    renderCues();
  }

  function showReview() {
    const href = current ? LC.reviewHref(current) : null;
    $("review").hidden = !href;
    if (href) $("review").href = href;
  }

  const token = LC.takeToken();
  LC.onReviews(showReview);
  LC.watchReviews(token);
  const link = new LC.Link(token, {
    onHello(m, again) {
      canAck = !!m.can_ack;
      document.body.classList.toggle("read-only", !canAck);
      $("who").textContent = `${m.by} · ${m.role}`;
      roomSelect.replaceChildren();
      for (const id of m.rooms) { room(id); roomSelect.append(el("option", "", id)); }
      roomSelect.disabled = m.rooms.length < 2;
      selectRoom(m.rooms.includes(current) ? current : m.rooms[0]);
      $("room").title = current;
      status("live");
      if (again) banner(t("banner_back", { n: 0 }), "ok", 5000);
      else $("banner").hidden = true;
      document.title = t("title_control") + " · " + current;
    },
    onCue(c) {
      const r = room(c.room_id);
      if (r.cues.has(c.cue_id)) return; // duplicates are dropped by cue_id
      r.cues.set(c.cue_id, c);
      if (r.cues.size > 300) r.cues.delete(r.cues.keys().next().value);
      if (c.room_id === current) { renderCues(); renderLineup(); }
    },
    onDown(n, s) {
      status("offline");
      banner(t("banner_lost", { n, s }), "bad");
    },
    onAuthFailed() {
      status("offline");
      banner(t("banner_auth"), "bad");
    },
    on: {
      stats(m) {
        const r = room(m.room_id);
        r.stats = m;
        addPoint(r, m);
        if (m.room_id === current) renderStats();
      },
      stats_history(m) {
        const r = room(m.room_id);
        for (const p of m.points || []) addPoint(r, p);
        if (m.room_id === current) renderStats();
      },
      cue_state(m) {
        const r = room(m.room_id);
        r.states.set(m.cue_id, m);
        if (m.room_id === current) { renderCues(); renderLineup(); }
      },
      resumed(m) {
        const b = $("banner");
        if (!b.hidden && b.classList.contains("ok")) {
          banner(t("banner_back", { n: m.cues }) + (m.gap ? " " + t("banner_gap") : ""), m.gap ? "warn" : "ok", 5000);
        }
      },
      error(m) {
        document.querySelectorAll(".cue.pending").forEach((li) => li.classList.remove("pending"));
        if (current) renderCues();
        banner(`${t("error")}: ${m.message}`, "warn", 4000);
      },
    },
  });

  roomSelect.addEventListener("change", () => selectRoom(roomSelect.value));
  $("lang").addEventListener("click", () => LC.setLang(LC.lang === "zh" ? "en" : "zh"));
  LC.onLang(() => { $("lang").textContent = t("lang"); renderStats(); renderCues(); });
  LC.setLang(LC.lang);
  window.addEventListener("resize", () => renderStats());
  if (!token) {
    status("offline");
    banner(t("banner_no_token"), "bad");
  } else {
    link.connect();
  }
})();
