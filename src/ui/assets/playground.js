// /ui/playground: runs the pasted rule over the journal (POST
// /api/v1/backtest) and shows load errors at their line, or the alerts
// the rule would have raised on a timeline.
"use strict";
(function () {
  const cw = window.cw;
  const form = document.getElementById("playground");
  const source = document.getElementById("source");
  const gutter = document.getElementById("gutter");
  const result = document.getElementById("result");
  const run = document.getElementById("run");
  let marked = new Set();

  function numberLines() {
    const n = source.value.split("\n").length;
    let text = "";
    for (let i = 1; i <= n; i++) text += (marked.has(i) ? "▶" : "") + i + "\n";
    gutter.textContent = text;
    gutter.scrollTop = source.scrollTop;
  }
  source.addEventListener("input", () => { marked = new Set(); numberLines(); });
  source.addEventListener("scroll", () => { gutter.scrollTop = source.scrollTop; });
  numberLines();

  function goToLine(line) {
    const lines = source.value.split("\n");
    let start = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    source.focus();
    source.setSelectionRange(start, start + (lines[line - 1] || "").length);
  }

  function showErrors(body) {
    const errors = body.errors || [];
    result.appendChild(cw.el("h2", {}, "The rule does not load"));
    if (body.error) result.appendChild(cw.el("p", { class: "flash error" }, body.error));
    const list = cw.el("ol", { class: "errors", id: "errors" });
    const lines = source.value.split("\n");
    for (const e of errors) {
      const li = cw.el("li", { "data-line": e.line || "" });
      const where = e.line ? "line " + e.line + (e.col ? ", col " + e.col : "") : "rule";
      const link = cw.el("button", { type: "button", class: "link" }, where);
      link.addEventListener("click", () => goToLine(e.line));
      li.appendChild(link);
      li.appendChild(document.createTextNode(": " + e.message));
      if (e.line && lines[e.line - 1] !== undefined) {
        li.appendChild(cw.el("pre", { class: "mono excerpt" }, e.line + " | " + lines[e.line - 1]));
      }
      list.appendChild(li);
      if (e.line) marked.add(e.line);
    }
    result.appendChild(list);
    numberLines();
    if (errors[0] && errors[0].line) goToLine(errors[0].line);
  }

  function keyOf(a) {
    const k = a.key || {};
    const parts = Object.keys(k).map((n) => n + "=" + k[n]);
    return parts.length ? parts.join(" ") : a.rule;
  }

  function timeline(alerts, fromMs, toMs) {
    const keys = [...new Set(alerts.map(keyOf))];
    const rowH = 22, left = 4, width = 600;
    const svg = cw.svg("svg", { id: "timeline", role: "img", "aria-label": "would-be alerts over time",
      viewBox: "0 0 " + width + " " + (keys.length * rowH + 24), preserveAspectRatio: "none" });
    const x = (ms) => left + ((ms - fromMs) / Math.max(toMs - fromMs, 1)) * (width - 2 * left);
    keys.forEach((k, i) => {
      svg.appendChild(cw.svg("line", { x1: left, x2: width - left, y1: i * rowH + 12, y2: i * rowH + 12, class: "lane" }));
    });
    for (const a of alerts) {
      const at = Date.parse(a.at || a.starts_at);
      const i = keys.indexOf(keyOf(a));
      const dot = cw.svg("circle", { cx: x(at).toFixed(1), cy: i * rowH + 12, r: 6, class: "mark " + a.status });
      dot.appendChild(cw.svg("title", {}, (a.at || a.starts_at) + " " + a.status + " " + keyOf(a) + ": " + (a.summary || "")));
      svg.appendChild(dot);
    }
    const axis = keys.length * rowH + 20;
    svg.appendChild(cw.svg("text", { x: left, y: axis, class: "axis" }, cw.time(fromMs)));
    svg.appendChild(cw.svg("text", { x: width - left, y: axis, class: "axis end" }, cw.time(toMs)));
    return svg;
  }

  function showAlerts(body, fromMs, toMs) {
    const alerts = body.alerts || [];
    result.appendChild(cw.el("h2", {}, alerts.length + " alert transition(s) over " + body.callbacks + " callback(s)"));
    result.appendChild(cw.el("p", { class: "hint" }, "in " + body.elapsed_ms + " ms" +
      (body.truncated ? "; stopped early at the backtest budget, so this is a partial answer" : "")));
    if (!alerts.length) {
      result.appendChild(cw.el("p", { class: "empty" }, "The rule would not have fired."));
      return;
    }
    const fig = cw.el("figure", { class: "chart" });
    fig.appendChild(timeline(alerts, fromMs, toMs));
    result.appendChild(fig);
    const table = cw.el("table", { class: "alerts", id: "backtest-alerts" });
    const head = cw.el("tr");
    for (const h of ["at", "status", "key", "summary"]) head.appendChild(cw.el("th", {}, h));
    table.appendChild(cw.el("thead")).appendChild(head);
    const tb = table.appendChild(cw.el("tbody"));
    for (const a of alerts) {
      const tr = cw.el("tr", { class: "state-" + a.status });
      for (const c of [a.at || a.starts_at, a.status, keyOf(a), a.summary || ""]) tr.appendChild(cw.el("td", {}, c));
      tb.appendChild(tr);
    }
    const wrap = cw.el("div", { class: "scroll" });
    wrap.appendChild(table);
    result.appendChild(wrap);
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    marked = new Set();
    numberLines();
    while (result.firstChild) result.removeChild(result.firstChild);
    result.appendChild(cw.el("p", { class: "hint", id: "running" }, "Running…"));
    run.disabled = true;
    const since = document.getElementById("since").value;
    const toMs = Date.now();
    const span = { "15m": 900e3, "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3 }[since] || 3600e3;
    let r;
    try {
      r = await cw.json("POST", "/api/v1/backtest",
        { name: document.getElementById("name").value, source: source.value, since });
    } catch (e) {
      r = { status: 0, body: { error: "the daemon did not answer: " + e } };
    } finally {
      run.disabled = false;
    }
    while (result.firstChild) result.removeChild(result.firstChild);
    if (r.status === 200 && r.body) showAlerts(r.body, toMs - span, toMs);
    else if (r.status === 400 && r.body && r.body.errors) showErrors(r.body);
    else {
      let msg = (r.body && r.body.error) || ("HTTP " + r.status);
      if (r.status === 429) msg += " (another backtest is running; try again in " + (r.headers.get("Retry-After") || "a few") + " s)";
      result.appendChild(cw.el("p", { class: "flash error", id: "backtest-error" }, msg));
    }
  });
})();
