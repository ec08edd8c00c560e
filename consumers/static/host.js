// Host cue screen (提词屏): one cue at a time, the headline in very large type, nothing else.
"use strict";

(() => {
  const { t } = LC;
  const $ = (id) => document.getElementById(id);
  const MAX_AGE_MS = 10 * 60 * 1000; // an unanswered cue older than this is not worth shouting
  const cues = new Map(); // cue_id -> cue
  const states = new Map(); // cue_id -> state

  function render() {
    const now = Date.now();
    let show = null;
    for (const c of cues.values()) {
      const st = states.get(c.cue_id);
      if (st === "done" || st === "dismissed") continue;
      if (c.emitted_at && now - c.emitted_at > MAX_AGE_MS) continue;
      if (!show || (c.seq ?? 0) > (show.seq ?? 0)) show = c;
    }
    const body = document.body;
    body.classList.remove("sev-info", "sev-warn", "sev-critical", "idle", "acked");
    if (!show) {
      body.classList.add("idle");
      $("headline").textContent = "";
      $("kind").textContent = "";
      return;
    }
    const sev = ["info", "warn", "critical"].includes(show.severity) ? show.severity : "info";
    body.classList.add("sev-" + sev);
    if (states.get(show.cue_id) === "acked") body.classList.add("acked");
    const kind = t("kind_" + show.kind);
    $("kind").textContent = (kind === "kind_" + show.kind ? show.kind : kind) + " · " + t("sev_" + sev);
    $("headline").textContent = LC.cueText(show, "headline");
    fit();
  }

  // Shrink the type until the headline fits the screen (≤ 60 characters, readable from 2 m).
  function fit() {
    const h = $("headline");
    let size = Math.min(window.innerWidth / 6, window.innerHeight / 3.2);
    h.style.fontSize = size + "px";
    while ((h.scrollWidth > window.innerWidth * 0.94 || h.scrollHeight > window.innerHeight * 0.78) && size > 24) {
      size *= 0.9;
      h.style.fontSize = size + "px";
    }
  }

  function banner(text) {
    const b = $("banner");
    b.textContent = text;
    b.className = "banner bad";
    b.hidden = !text;
  }

  const token = LC.takeToken();
  const link = new LC.Link(token, {
    onHello() { banner(""); },
    onCue(c) {
      if (cues.has(c.cue_id)) return;
      cues.set(c.cue_id, c);
      if (cues.size > 200) cues.delete(cues.keys().next().value);
      render();
    },
    onDown(n, s) { banner(t("banner_lost", { n, s })); },
    onAuthFailed() { banner(t("banner_auth")); },
    on: {
      cue_state(m) { states.set(m.cue_id, m.state); render(); },
    },
  });

  $("lang").addEventListener("click", () => LC.setLang(LC.lang === "zh" ? "en" : "zh"));
  LC.onLang(() => { $("lang").textContent = t("lang"); render(); });
  LC.setLang(LC.lang);
  window.addEventListener("resize", fit);
  setInterval(render, 30000);
  if (!token) banner(t("banner_no_token"));
  else link.connect();
})();
