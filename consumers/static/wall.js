// The lead's wall (总控墙): one tile per room of the token, rooms that need attention first.
// A critical cue unacknowledged past the playbook's [wall] escalate_after_s makes its tile flash
// and plays a short beep (WebAudio oscillator, no sound file; a mute switch, remembered).
"use strict";

(() => {
  const { t, el } = LC;
  const $ = (id) => document.getElementById(id);
  const WINDOW_MS = 10 * 60 * 1000;
  const DEFAULT_ESCALATE_S = 30;
  const rooms = new Map(); // room_id -> {stats, series: [[ts, online]], cues: Map, states: Map, tile, parts}
  let order = [];
  let escalateAfter = {};
  let muted = localStorage.getItem("livecue.wall.muted") === "1";
  let audio = null;
  let beeps = 0;
  const beeped = new Set(); // cue ids already escalated (one beep each)
  let dirty = false;

  // -- formatting ------------------------------------------------------------------------------
  const nf = (v, d = 0) => (typeof v === "number" && isFinite(v))
    ? v.toLocaleString(LC.lang === "en" ? "en-US" : "zh-CN", { maximumFractionDigits: d }) : "—";
  function money(cents) {
    if (typeof cents !== "number") return "—";
    const yuan = cents / 100;
    if (LC.lang === "zh" && yuan >= 10000) return "¥" + nf(yuan / 10000, 1) + "万";
    if (LC.lang === "en" && yuan >= 10000) return "¥" + nf(yuan / 1000, 1) + "k";
    return "¥" + nf(yuan, 0);
  }
  function dur(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    return s < 60 ? s + t("sec") : s < 3600 ? Math.floor(s / 60) + t("min") + (s % 60 ? (s % 60) + t("sec") : "")
      : Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + t("min");
  }
  const age = (ms) => t("ago", { n: dur(ms) });

  function room(id) {
    let r = rooms.get(id);
    if (!r) {
      r = { id, stats: null, series: [], cues: new Map(), states: new Map(), seen: new Map(), tile: null, parts: null };
      rooms.set(id, r);
    }
    return r;
  }

  // -- per-room attention ----------------------------------------------------------------------
  const RANK = { info: 1, warn: 2, critical: 3 };
  function cueTime(r, c) { return c.emitted_at || r.seen.get(c.cue_id) || Date.now(); }
  function openCues(r) {
    const out = [];
    for (const c of r.cues.values()) {
      const st = r.states.get(c.cue_id);
      if (st && (st.state === "done" || st.state === "dismissed")) continue;
      out.push(c);
    }
    return out;
  }
  // What the tile shows and how it sorts: the newest open cue; the oldest unacknowledged
  // critical cue (its wait decides the order and the escalation).
  function attention(r, now) {
    const open = openCues(r);
    let newest = null, worst = 0, critical = null;
    for (const c of open) {
      if (!newest || (c.seq ?? 0) > (newest.seq ?? 0)) newest = c;
      worst = Math.max(worst, RANK[c.severity] || 0);
      if (c.severity === "critical" && !r.states.get(c.cue_id)) {
        if (!critical || cueTime(r, c) < cueTime(r, critical)) critical = c;
      }
    }
    const limit = (escalateAfter[r.id] ?? DEFAULT_ESCALATE_S) * 1000;
    const escalated = critical && now - cueTime(r, critical) >= limit ? critical : null;
    return { newest, worst, critical, escalated };
  }

  // -- sound -----------------------------------------------------------------------------------
  function beep() {
    if (muted) return;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
      const t0 = audio.currentTime;
      const osc = audio.createOscillator(), gain = audio.createGain();
      osc.type = "square";
      osc.frequency.setValueAtTime(880, t0);
      osc.frequency.setValueAtTime(660, t0 + 0.15);
      gain.gain.setValueAtTime(0.0001, t0);
      gain.gain.exponentialRampToValueAtTime(0.25, t0 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.35);
      osc.connect(gain).connect(audio.destination);
      osc.start(t0);
      osc.stop(t0 + 0.4);
      beeps += 1;
      document.body.dataset.beeps = String(beeps);
    } catch (e) { /* no audio device: the flashing tile still shows it */ }
  }
  function setMuted(m) {
    muted = m;
    localStorage.setItem("livecue.wall.muted", m ? "1" : "0");
    const b = $("mute");
    b.setAttribute("aria-pressed", m ? "true" : "false");
    b.textContent = m ? t("muted") : t("mute");
  }

  // -- tiles -----------------------------------------------------------------------------------
  function makeTile(r) {
    const tile = el("section", "tile");
    tile.dataset.room = r.id;
    const head = el("div", "t-head");
    const name = el("span", "t-room", r.id);
    name.title = r.id;
    const tier = el("span", "t-tier", t("tier_none"));
    head.append(name, tier);
    const online = el("div", "t-online");
    const ov = el("b", "", "—");
    const spark = el("canvas");
    online.append(ov, spark);
    const gmv = el("div", "t-gmv");
    const sku = el("div", "t-sku");
    const cue = el("div", "t-cue none");
    const foot = el("div", "t-foot");
    const stamp = el("span", "", "");
    foot.append(stamp);
    const a = el("a", "", t("review"));
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.hidden = true;  // until the room has a review (LC.watchReviews)
    foot.append(a);
    tile.append(head, online, gmv, sku, cue, foot);
    r.tile = tile;
    r.parts = { tier, ov, spark, gmv, sku, cue, stamp, review: a };
    showReview(r);
  }

  function showReview(r) {
    const href = LC.reviewHref(r.id);
    r.parts.review.hidden = !href;
    if (href) r.parts.review.href = href;
    else r.parts.review.removeAttribute("href");
  }

  function fillTile(r, att, now) {
    const p = r.parts, st = r.stats;
    const tierName = st && ["hot", "warm", "cold"].includes(st.tier) ? st.tier : "none";
    p.tier.className = "t-tier " + tierName;
    p.tier.textContent = t("tier_" + tierName);
    p.ov.textContent = st ? nf(st.online) : "—";
    p.gmv.replaceChildren(t("gmv_min") + " ", el("b", "", st ? money(st.gmv_cents_per_min) : "—"));
    const skus = st && Array.isArray(st.skus) ? st.skus : [];
    const onAir = skus.find((s) => s.on_air) || skus.find((s) => st && s.sku_id === st.on_air_sku);
    p.sku.replaceChildren();
    if (onAir) {
      p.sku.append(el("span", "name", onAir.name), " · ");
      if (onAir.held) p.sku.append(el("span", "held", t("held")));
      else p.sku.append(t("stock_short") + " ", el("span", onAir.stock === 0 ? "zero" : "", nf(onAir.stock)));
    } else p.sku.textContent = t("on_air") + " —";
    const c = att.newest;
    p.cue.replaceChildren();
    if (!c) {
      p.cue.className = "t-cue none";
      p.cue.textContent = t("no_open_cue");
    } else {
      const sev = ["info", "warn", "critical"].includes(c.severity) ? c.severity : "info";
      p.cue.className = "t-cue sev-" + sev;
      p.cue.dataset.cueId = c.cue_id;
      const top = el("div", "c-top");
      const kind = t("kind_" + c.kind);
      top.append(el("span", "sev", t("sev_" + sev)), el("span", "", kind === "kind_" + c.kind ? c.kind : kind));
      const stt = r.states.get(c.cue_id);
      if (stt) top.append(el("span", "state", "✓ " + t("state_" + stt.state)));
      top.append(el("span", "age", age(now - cueTime(r, c))));
      p.cue.append(top, el("div", "hl", LC.cueText(c, "headline")));
      // the cue that makes the tile flash, when it is not the newest one
      const e = att.escalated;
      if (e && e.cue_id !== c.cue_id) {
        p.cue.classList.add("with-esc");
        const k = t("kind_" + e.kind);
        p.cue.append(el("div", "esc-line", `⚠ ${t("sev_critical")} ${k === "kind_" + e.kind ? e.kind : k} · `
          + t("waiting", { n: dur(now - cueTime(r, e)) })));
      }
    }
    r.tile.classList.toggle("open-critical", att.worst === 3);
    r.tile.classList.toggle("open-warn", att.worst === 2);
    r.tile.classList.toggle("escalated", !!att.escalated);
    p.stamp.textContent = st && typeof st.ts === "number"
      ? new Date(st.ts).toLocaleTimeString(LC.lang === "en" ? "en-GB" : "zh-CN", { hour12: false }) : "";
    if (p.review) p.review.textContent = t("review");
    drawSpark(p.spark, r.series);
  }

  function drawSpark(canvas, series) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    if (series.length < 2) return;
    let lo = Infinity, hi = -Infinity;
    for (const [, v] of series) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (hi === lo) { hi += 1; lo -= 1; }
    // the last 10 minutes, or the whole show when it is younger than that
    const t1 = series[series.length - 1][0], t0 = Math.max(series[0][0], t1 - WINDOW_MS);
    const span = Math.max(1, t1 - t0);
    const x = (ts) => ((ts - t0) / span) * w, y = (v) => h - 2 - ((v - lo) / (hi - lo)) * (h - 4);
    g.beginPath();
    series.forEach(([ts, v], i) => (i ? g.lineTo(x(ts), y(v)) : g.moveTo(x(ts), y(v))));
    g.strokeStyle = "#4cc2ff";
    g.lineWidth = 1.5;
    g.stroke();
  }

  // Rooms with an unacknowledged critical cue first (longest waiting first), then rooms with an
  // open warning, then an open info cue, then quiet rooms; room id breaks ties (stable wall).
  function sortKey(r, att) {
    if (att.critical) return [0, cueTime(r, att.critical), r.id];
    return [4 - att.worst, 0, r.id];
  }
  function cmp(a, b) {
    for (let i = 0; i < 3; i++) { if (a[i] < b[i]) return -1; if (a[i] > b[i]) return 1; }
    return 0;
  }

  function render() {
    dirty = false;
    const now = Date.now();
    const box = $("tiles");
    const list = [];
    let escalations = 0;
    for (const r of rooms.values()) {
      if (!r.tile) makeTile(r);
      const att = attention(r, now);
      if (att.escalated) {
        escalations += 1;
        if (!beeped.has(att.escalated.cue_id)) { beeped.add(att.escalated.cue_id); beep(); }
      }
      fillTile(r, att, now);
      list.push([sortKey(r, att), r]);
    }
    list.sort((a, b) => cmp(a[0], b[0]));
    const ids = list.map(([, r]) => r.id);
    if (ids.join("\u0000") !== order.join("\u0000")) {
      order = ids;
      box.replaceChildren(...list.map(([, r]) => r.tile));
    }
    const esc = $("escalations");
    esc.hidden = escalations === 0;
    esc.textContent = "⚠ " + escalations + " " + t("escalated");
    document.body.dataset.escalations = String(escalations);
    fit();
  }
  // A few rooms (the demo's two) would sit small in a corner of the wall screen: zoom the grid
  // (up to 2.5x) with the number of columns that lets the tiles grow most and still fit. With 50
  // rooms on 1920 x 1080 the zoom is 1: the 10 x 5 grid of the stylesheet.
  let fitted = "";
  function fit() {
    const n = rooms.size, box = $("tiles");
    const W = window.innerWidth, H = window.innerHeight - 44;  // the grid's box: 10/8 px padding, 8 px gaps
    if (!n || W <= 0 || H <= 0) return;
    let k = 1, cols = 0, rows = 0;
    for (let c = 1; c <= n; c++) {
      const r = Math.ceil(n / c), z = Math.min(W / (c * 186 + 12), H / (r * 206 + 8), 2.5);
      if (z > k) { k = z; cols = c; rows = r; }
    }
    const key = `${n} ${W} ${H}`;
    if (key === fitted) return;
    fitted = key;
    box.style.zoom = k > 1 ? k.toFixed(3) : "";
    box.style.height = k > 1 ? `calc((100vh - 44px) / ${k.toFixed(3)})` : "";
    box.style.gridTemplateColumns = k > 1 ? `repeat(${cols}, minmax(0, 1fr))` : "";
    // rows fill the height, up to a third taller than a 50-room tile (a tall empty cue box reads as broken)
    box.style.gridAutoRows = k > 1 ? `${Math.min(264, Math.floor((H / k - 16 - 8 * (rows - 1)) / rows))}px` : "";
  }
  window.addEventListener("resize", () => { fitted = ""; soon(); });

  function soon() {
    if (dirty) return;
    dirty = true;
    requestAnimationFrame(render);
  }

  // -- banner & status ---------------------------------------------------------------------------
  let bannerTimer = null;
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

  function addPoint(r, ts, v) {
    if (typeof ts !== "number" || typeof v !== "number") return;
    const s = r.series;
    if (s.length && ts <= s[s.length - 1][0]) return;
    s.push([ts, v]);
    while (s.length && s[0][0] < ts - WINDOW_MS) s.shift();
  }

  const token = LC.takeToken();
  LC.onReviews(() => { for (const r of rooms.values()) if (r.parts) showReview(r); });
  LC.watchReviews(token);
  const link = new LC.Link(token, {
    onHello(m, again) {
      escalateAfter = (m.wall && m.wall.escalate_after_s) || {};
      $("who").textContent = `${m.by} · ${m.role}`;
      for (const id of m.rooms) room(id);
      $("rooms-n").textContent = t("rooms_n", { n: m.rooms.length });
      status("live");
      if (again) banner(t("banner_back", { n: 0 }), "ok", 4000);
      else $("banner").hidden = true;
      soon();
    },
    onCue(c) {
      const r = room(c.room_id);
      if (r.cues.has(c.cue_id)) return;
      r.cues.set(c.cue_id, c);
      r.seen.set(c.cue_id, Date.now());
      if (r.cues.size > 100) {
        const old = r.cues.keys().next().value;
        r.cues.delete(old);
        r.seen.delete(old);
      }
      soon();
    },
    onDown(n, s) { status("offline"); banner(t("banner_lost", { n, s }), "bad"); },
    onAuthFailed() { status("offline"); banner(t("banner_auth"), "bad"); },
    on: {
      stats(m) {
        const r = room(m.room_id);
        r.stats = m;
        addPoint(r, m.ts, m.online);
        soon();
      },
      stats_history(m) {
        const r = room(m.room_id);
        for (const p of m.points || []) addPoint(r, p.ts, p.online);
        soon();
      },
      cue_state(m) {
        room(m.room_id).states.set(m.cue_id, m);
        soon();
      },
    },
  });

  $("mute").addEventListener("click", () => setMuted(!muted));
  $("lang").addEventListener("click", () => LC.setLang(LC.lang === "zh" ? "en" : "zh"));
  LC.onLang(() => {
    $("lang").textContent = t("lang");
    setMuted(muted);
    $("rooms-n").textContent = rooms.size ? t("rooms_n", { n: rooms.size }) : "";
    document.title = t("title_wall");
    soon();
  });
  LC.setLang(LC.lang);
  setMuted(muted);
  document.body.dataset.beeps = "0";
  setInterval(soon, 1000); // ages, escalation
  if (!token) {
    status("offline");
    banner(t("banner_no_token"), "bad");
  } else {
    link.connect();
  }
})();
