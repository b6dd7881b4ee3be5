// callwatch console: what every page shares. Pages work without it
// (forms post normally); it adds the CSRF header for scripts.
"use strict";
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const cw = {
    csrf: meta ? meta.content : "",
    // fetch with the session's CSRF token and JSON in and out; resolves
    // to {status, body, headers} and never throws on an HTTP error.
    async json(method, url, body) {
      const init = { method, headers: { "X-CSRF-Token": cw.csrf }, credentials: "same-origin" };
      if (body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      const r = await fetch(url, init);
      let parsed = null;
      try { parsed = await r.json(); } catch (_) { parsed = null; }
      return { status: r.status, body: parsed, headers: r.headers };
    },
    el(tag, attrs, text) {
      const e = document.createElement(tag);
      for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
      if (text !== undefined && text !== null) e.textContent = String(text);
      return e;
    },
    svg(tag, attrs, text) {
      const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
      for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
      if (text !== undefined) e.textContent = String(text);
      return e;
    },
    time(ms) {
      const d = new Date(ms);
      const p = (n) => String(n).padStart(2, "0");
      return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
    },
  };
  window.cw = cw;
  // Confirm before expiring a silence: it is not undone with a click.
  document.addEventListener("submit", (ev) => {
    const f = ev.target;
    if (f.action && /\/expire$/.test(f.action) && !window.confirm("Expire this silence now?")) {
      ev.preventDefault();
    }
  });
})();
