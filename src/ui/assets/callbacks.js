// /ui/callbacks: the newest callbacks, then each new one as the daemon
// journals it (server-sent events), and a per-minute chart.
"use strict";
(function () {
  const cw = window.cw;
  const MAX_ROWS = 200;
  const body = document.querySelector("#events tbody");
  const empty = document.getElementById("events-empty");
  const state = document.getElementById("live-state");
  const chart = document.getElementById("per-minute");
  const total = document.getElementById("per-minute-total");
  const query = new URLSearchParams();
  for (const k of ["sdkappid", "user", "platform", "command"]) {
    const v = new URLSearchParams(location.search).get(k);
    if (v) query.set(k, v);
  }
  const qs = query.toString();
  let newest = -1;
  let minutes = [];

  function row(e) {
    const tr = cw.el("tr", { "data-seq": e.seq });
    const cells = [cw.time(e.received_ms), e.sdkappid, e.command, e.event, e.user_id,
      e.role, e.platform, e.call_id, e.call_result];
    for (const c of cells) tr.appendChild(cw.el("td", {}, c === null || c === undefined ? "" : c));
    return tr;
  }

  function add(e, fresh) {
    if (e.seq <= newest) return;
    newest = e.seq;
    const tr = row(e);
    if (fresh) tr.classList.add("fresh");
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    empty.hidden = true;
  }

  function draw() {
    while (chart.firstChild) chart.removeChild(chart.firstChild);
    const n = Math.max(minutes.length, 1);
    const max = Math.max(1, ...minutes.map((m) => m.count));
    const w = 600 / n;
    let sum = 0;
    minutes.forEach((m, i) => {
      sum += m.count;
      const h = Math.max(m.count ? 1 : 0, (m.count / max) * 110);
      const bar = cw.svg("rect", { x: (i * w).toFixed(1), y: (120 - h).toFixed(1),
        width: Math.max(w - 1, 0.5).toFixed(1), height: h.toFixed(1), class: "bar" });
      bar.appendChild(cw.svg("title", {}, cw.time(m.minute_ms).slice(0, 5) + ": " + m.count));
      chart.appendChild(bar);
    });
    chart.appendChild(cw.svg("text", { x: 4, y: 12, class: "axis" }, "max " + max + "/min"));
    total.textContent = sum + " in the last " + minutes.length + " min";
  }

  async function loadChart() {
    const r = await cw.json("GET", "/api/v1/events/per_minute?minutes=60");
    if (r.status === 200 && r.body) {
      minutes = r.body.minutes || [];
      draw();
    }
  }

  function countLive(e) {
    // The chart counts every callback; the stream may be filtered.
    if (qs) return;
    const minute = Math.floor(e.received_ms / 60000) * 60000;
    const last = minutes[minutes.length - 1];
    if (last && last.minute_ms === minute) last.count += 1;
    else if (!last || last.minute_ms < minute) {
      minutes.push({ minute_ms: minute, count: 1 });
      if (minutes.length > 60) minutes.shift();
    }
    draw();
  }

  async function start() {
    const r = await cw.json("GET", "/api/v1/events/recent?limit=100" + (qs ? "&" + qs : ""));
    if (r.status === 200 && r.body) {
      const events = (r.body.events || []).slice().reverse();
      for (const e of events) add(e, false);
    }
    empty.hidden = body.rows.length > 0;
    loadChart();
    setInterval(loadChart, 60000);
    const es = new EventSource("/api/v1/events/stream" + (qs ? "?" + qs : ""));
    es.onopen = () => { state.textContent = "live"; state.className = "badge live"; };
    es.onerror = () => { state.textContent = "reconnecting"; state.className = "badge"; };
    es.addEventListener("callback", (m) => {
      let e;
      try { e = JSON.parse(m.data); } catch (_) { return; }
      add(e, true);
      countLive(e);
    });
    es.addEventListener("lagged", (m) => {
      let missed = "some";
      try { missed = JSON.parse(m.data).missed; } catch (_) { /* keep "some" */ }
      state.textContent = "live (skipped " + missed + ")";
    });
  }
  start();
})();
