// authpulse dashboard. Plain JS, no dependencies, no build step: it reads the
// coordinator's JSON API and draws tables and SVG charts with the DOM API.
// API text (ids, details) is only ever set as textContent, never as HTML.
// Views (by URL hash): "#/" the overview, "#/slo/<id>" one SLO.
// <body data-ready> is "loading" while a view renders, "true" once it is on
// screen, "auth" while asking for a token and "error" when the API failed;
// <body data-view> names the view ("overview", "slo:<id>"). Tests wait on them.
"use strict";

(() => {
  const TOKEN_KEY = "authpulse.api-token";
  const REFRESH_MS = 30000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const BURN_SHOWN = ["5m", "1h", "6h", "1d", "3d"];

  const main = document.getElementById("main");
  const updated = document.getElementById("updated");
  const authBox = document.getElementById("auth");
  const authForm = document.getElementById("auth-form");
  const authInput = document.getElementById("auth-token");
  const authMessage = document.getElementById("auth-message");
  const forgetButton = document.getElementById("forget-token");

  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let renderSeq = 0;
  let timer = null;

  // ---- API ----------------------------------------------------------------

  class AuthNeeded extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  class ApiFailed extends Error {
    constructor(path, status, message) {
      super(`${path}: ${status ? "HTTP " + status + ": " : ""}${message}`);
      this.status = status;
    }
  }

  async function api(path) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    let res;
    try {
      res = await fetch(path, { headers, cache: "no-store" });
    } catch (e) {
      throw new ApiFailed(path, 0, "coordinator unreachable (" + e.message + ")");
    }
    let body = null;
    try {
      body = await res.json();
    } catch (e) {
      body = null;
    }
    if (res.status === 401 || res.status === 403) {
      throw new AuthNeeded(res.status, (body && body.error) || res.statusText);
    }
    if (!res.ok) {
      throw new ApiFailed(path, res.status, (body && body.error) || res.statusText);
    }
    if (body === null) throw new ApiFailed(path, res.status, "the answer is not JSON");
    return body;
  }

  // ---- DOM helpers ----------------------------------------------------------

  // h("td", {class: "num"}, "text", childNode, ...): attributes set as
  // attributes (or properties for on*), strings as text nodes.
  function h(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }

  function s(tag, attrs, ...children) {
    return build(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function build(el, attrs, children) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function section(title, note, ...content) {
    return h("section", { class: "card" },
      h("h2", {}, title, note ? h("span", { class: "muted" }, note) : null),
      ...content);
  }

  function table(headers, rows) {
    return h("div", { class: "table-wrap" },
      h("table", {},
        h("thead", {}, h("tr", {}, headers.map((x) =>
          typeof x === "string" ? h("th", {}, x) : h("th", { class: x.class }, x.text)))),
        h("tbody", {}, rows)));
  }

  function badge(cls, text) {
    return h("span", { class: "badge " + cls }, text);
  }

  // ---- Formatting -----------------------------------------------------------

  // Digits that show an SLI against its objective: 99.9 → 3 decimals.
  function sliDigits(objective) {
    const frac = String(objective).split(".")[1] || "";
    return Math.min(4, Math.max(2, frac.length + 1));
  }

  function pct(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    return (v * 100).toFixed(digits) + "%";
  }

  function budgetText(v) {
    if (v === null || v === undefined) return "–";
    const p = Math.round(v * 1000) / 10;
    return (p < 0 ? "−" + Math.abs(p).toFixed(1) : p.toFixed(1)) + "%";
  }

  function burnText(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "0";
    if (v < 0.01) return "<0.01";
    return v >= 100 ? v.toFixed(0) + "×" : v >= 10 ? v.toFixed(1) + "×" : v.toFixed(2) + "×";
  }

  function burnClass(v) {
    if (v === null || v === undefined) return "burn";
    if (v >= 14.4) return "burn hot";
    if (v >= 6) return "burn warm";
    if (v > 1) return "burn spending";
    return "burn";
  }

  // Two units at most, the smaller left out when zero: "3d 4h", "6h", "25m".
  function durationText(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const d = Math.floor(seconds / 86400);
    const hrs = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const two = (a, ua, b, ub) => a + ua + (b ? " " + b + ub : "");
    if (d > 0) return two(d, "d", hrs, "h");
    if (hrs > 0) return two(hrs, "h", m, "m");
    if (m > 0) return m + "m";
    return Math.max(0, Math.round(seconds)) + "s";
  }

  function ago(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return "–";
    const secs = Math.max(0, (Date.now() - t) / 1000);
    return durationText(secs) + " ago";
  }

  function timeText(ms) {
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function axisTime(ms, spanMs) {
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, "0");
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (spanMs <= 86400000) return hm;
    const md = `${d.toLocaleString("en", { month: "short" })} ${d.getDate()}`;
    return spanMs <= 4 * 86400000 ? `${md} ${hm}` : md;
  }

  function budgetBar(v) {
    const width = Math.max(0, Math.min(1, v === null || v === undefined ? 0 : v));
    const cls = v === null || v === undefined ? "bar" : v <= 0.1 ? "bar bad" : v <= 0.5 ? "bar warn" : "bar";
    const fill = h("span", {});
    fill.style.width = (width * 100).toFixed(1) + "%";
    return h("div", { class: cls, role: "img", "aria-label": "error budget remaining " + budgetText(v) }, fill);
  }

  // Burn windows shortest first (the API's object keys come sorted by name).
  function burnWindows(rates) {
    const order = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];
    const rank = (w) => (order.includes(w) ? order.indexOf(w) : order.length);
    return Object.keys(rates).sort((a, b) => rank(a) - rank(b));
  }

  // When the budget runs out at the current 1h burn; "spent" once it has.
  function exhaustText(slo) {
    if (slo.total > 0 && slo.error_budget_remaining <= 0) return "spent";
    return durationText(slo.time_to_exhaustion_seconds);
  }

  function sliText(slo) {
    return pct(slo.sli_value, sliDigits(slo.objective));
  }

  function sliKind(slo) {
    if (slo.sli === "availability") return "availability";
    if (slo.sli && slo.sli.latency) return "latency ≤ " + slo.sli.latency.threshold_ms + " ms";
    return "";
  }

  // ---- Auth -----------------------------------------------------------------

  function askForToken(err) {
    stopTimer();
    main.replaceChildren();
    main.setAttribute("aria-busy", "false");
    authMessage.textContent = err.status === 403
      ? "The token was refused: " + err.message + ". A token with the read scope is needed."
      : token
        ? "The token was refused: " + err.message + "."
        : "This coordinator requires a bearer token with the read scope (" + err.message + ").";
    authBox.hidden = false;
    authInput.value = "";
    authInput.focus();
    updated.textContent = "";
    document.body.dataset.ready = "auth";
  }

  authForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = authInput.value.trim();
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, token);
    authBox.hidden = true;
    render();
  });

  forgetButton.addEventListener("click", () => {
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    render();
  });

  // ---- Views ----------------------------------------------------------------

  function currentView() {
    const m = location.hash.match(/^#\/slo\/(.+)$/);
    if (m) return { name: "slo", id: decodeURIComponent(m[1]) };
    return { name: "overview" };
  }

  async function render() {
    const seq = ++renderSeq;
    const view = currentView();
    document.body.dataset.ready = "loading";
    document.body.dataset.view = view.name === "slo" ? "slo:" + view.id : "overview";
    main.setAttribute("aria-busy", "true");
    forgetButton.hidden = !token;
    try {
      const content = view.name === "slo" ? await sloView(view.id) : await overview();
      if (seq !== renderSeq) return; // a newer render won
      authBox.hidden = true;
      main.replaceChildren(...content);
      main.setAttribute("aria-busy", "false");
      updated.textContent = "Updated " + timeText(Date.now()) + " · refreshes every " + REFRESH_MS / 1000 + " s";
      document.body.dataset.ready = "true";
      startTimer();
    } catch (err) {
      if (seq !== renderSeq) return;
      if (err instanceof AuthNeeded) {
        askForToken(err);
        return;
      }
      main.replaceChildren(section("Cannot load the dashboard", null,
        h("p", {}, err.message),
        h("p", { class: "muted small" }, "Retrying every " + REFRESH_MS / 1000 + " s.")));
      main.firstChild.classList.add("error-box");
      main.setAttribute("aria-busy", "false");
      document.body.dataset.ready = "error";
      document.body.dataset.error = err.message;
      startTimer();
    }
  }

  function startTimer() {
    stopTimer();
    timer = setTimeout(render, REFRESH_MS);
  }

  function stopTimer() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  window.addEventListener("hashchange", () => {
    window.scrollTo(0, 0);
    render();
  });

  // ---- Overview -------------------------------------------------------------

  async function overview() {
    const [slos, alerts, probes, agents, grid, gates] = await Promise.all([
      api("api/v1/slos"),
      api("api/v1/alerts"),
      api("api/v1/probes"),
      api("api/v1/agents"),
      api("api/v1/ui/grid"),
      api("api/v1/ui/gates"),
    ]);
    const out = [summary(slos.slos, alerts.alerts, agents.agents)];
    if (alerts.alerts.length) out.push(alertsSection(alerts.alerts));
    out.push(sloSection(slos.slos, alerts.alerts));
    if (gates.gates.length) out.push(gatesSection(gates.gates));
    out.push(gridSection(grid, probes.probes));
    out.push(agentsSection(agents.agents));
    return out;
  }

  function summary(slos, alerts, agents) {
    const count = (state) => slos.filter((x) => x.state === state).length;
    const up = agents.filter((a) => a.status === "up").length;
    const pill = (value, label) => h("div", { class: "pill" }, h("b", {}, String(value)), h("span", {}, label));
    return h("div", { class: "summary" },
      pill(slos.length, "SLOs"),
      pill(count("ok"), "ok"),
      pill(count("exhausted"), "budget exhausted"),
      pill(count("insufficient_data") + count("no_data"), "without enough data"),
      pill(alerts.length, alerts.length === 1 ? "alert firing" : "alerts firing"),
      pill(up + " / " + agents.length, "agents up"));
  }

  function alertsSection(alerts) {
    const rows = alerts.map((a) => h("tr", {},
      h("td", {}, badge(a.severity, a.severity)),
      h("td", {}, h("a", { href: "#/slo/" + encodeURIComponent(a.slo) }, a.slo)),
      h("td", {}, a.rule),
      h("td", { class: "num" }, a.factor !== undefined && a.factor !== null ? burnText(a.factor) : "–"),
      h("td", {}, ago(a.started_at)),
      h("td", { class: "muted" }, (a.held || []).map((x) => x.kind + " by " + x.by).join(", "))));
    return section("Firing alerts", null,
      table(["severity", "SLO", "rule", { text: "threshold", class: "num" }, "since", "held"], rows));
  }

  function sloSection(slos, alerts) {
    if (!slos.length) {
      return section("SLOs", null, h("p", { class: "muted" }, "The catalog defines no SLOs."));
    }
    const rows = slos.map((slo) => {
      const firing = alerts.filter((a) => a.slo === slo.id);
      return h("tr", { dataset: { sloId: slo.id } },
        h("td", { class: "slo-name" },
          h("a", { href: "#/slo/" + encodeURIComponent(slo.id) }, slo.id),
          h("span", { class: "muted" }, slo.description || sliKind(slo) + " · " + slo.window)),
        h("td", {}, badge(slo.state, slo.state.replace("_", " ")),
          firing.map((a) => [" ", badge(a.severity, a.severity)])),
        h("td", { class: "num" }, sliText(slo)),
        h("td", { class: "num" }, slo.objective + "%"),
        h("td", {}, h("div", { class: "budget" }, budgetBar(slo.error_budget_remaining),
          h("span", { class: "val" }, budgetText(slo.error_budget_remaining)))),
        h("td", {}, h("div", { class: "burns" }, BURN_SHOWN.map((w) => {
          const v = slo.burn_rates[w];
          return h("span", { class: burnClass(v), title: "burn rate over " + w }, burnText(v));
        }))),
        h("td", { class: "num" }, exhaustText(slo)),
        h("td", { class: "num" }, slo.window));
    });
    return section("SLOs", "burn rate = bad share ÷ allowed share; 1× spends the budget exactly over the window",
      table(["SLO", "state", { text: "SLI", class: "num" }, { text: "objective", class: "num" },
        "error budget", "burn rate " + BURN_SHOWN.join(" · "), { text: "exhausted in", class: "num" },
        { text: "window", class: "num" }], rows));
  }

  function gatesSection(gates) {
    const rows = gates.map((g) => {
      const decision = g.decision || "unknown";
      const reasons = (g.reasons || []).concat(g.notes || []);
      return h("tr", { dataset: { gateId: g.gate } },
        h("td", {}, h("b", {}, g.gate), g.description ? h("div", { class: "muted small" }, g.description) : null),
        h("td", {}, badge(decision, decision)),
        h("td", {}, (g.slos || []).map((x, i) => [i ? ", " : "",
          h("a", { href: "#/slo/" + encodeURIComponent(x.id) }, x.id)])),
        h("td", {}, reasons.length
          ? h("ul", { class: "reasons" }, reasons.map((r) => h("li", {}, String(r))))
          : h("span", { class: "muted" }, g.error || (decision === "pass" ? "no condition blocks" : "–"))));
    });
    return section("Deploy gates", "the decision GET /api/v1/gates/{id} gives a pipeline right now",
      table(["gate", "decision", "SLOs", "reasons"], rows));
  }

  function gridSection(grid, latest) {
    const regions = grid.regions;
    if (!grid.probes.length) {
      return section("Recent results", null, h("p", { class: "muted" }, "The catalog defines no probes."));
    }
    const series = new Map(grid.series.map((x) => [x.probe_id + "\u0000" + x.region, x.runs]));
    const last = new Map(latest.map((x) => [x.probe_id + "\u0000" + x.region, x]));
    const rows = grid.probes.map((p) => h("tr", { dataset: { probeId: p.id } },
      h("td", {}, h("b", {}, p.id), h("div", { class: "muted small" }, p.kind + " · every " + durationText(p.interval_seconds))),
      regions.map((r) => {
        const runsHere = !p.regions || p.regions.includes(r);
        const runs = series.get(p.id + "\u0000" + r) || [];
        const latestRun = last.get(p.id + "\u0000" + r);
        if (!runsHere && !runs.length && !latestRun) {
          return h("td", { class: "grid-cell na", title: p.id + " does not run in " + r }, "—");
        }
        return h("td", { class: "grid-cell", dataset: { region: r }, title: cellTooltip(p, r, runs, latestRun) },
          h("div", { class: "strip" }, runs.map((run) => h("i", { class: run.outcome, title: runTooltip(run) }))),
          latestLine(latestRun));
      })));
    return section("Recent results", "last " + durationText(grid.lookback_seconds) + " per probe and region, newest right; hover for details",
      table(["probe", ...regions], rows));
  }

  function latestLine(run) {
    if (!run) return h("div", { class: "cell-latest" }, "no results yet");
    const cls = "cell-latest " + run.outcome;
    const what = run.outcome === "failure" ? (run.failure_class || "failure") : run.outcome === "success" ? "ok" : run.outcome;
    return h("div", { class: cls }, what + " · " + Math.round(run.timings.total_ms) + " ms · " + ago(run.started_at));
  }

  function runTooltip(run) {
    return run.started_at + ": " + (run.outcome === "failure" ? "failure (" + (run.failure_class || "unknown") + ")" : run.outcome) +
      ", " + run.duration_ms.toFixed(1) + " ms" + (run.detail ? "\n" + run.detail : "");
  }

  function cellTooltip(p, region, runs, latest) {
    const lines = [p.id + " in " + region];
    if (latest) {
      lines.push("latest: " + latest.outcome + (latest.failure_class ? " (" + latest.failure_class + ")" : "") +
        " at " + latest.started_at + ", " + latest.timings.total_ms.toFixed(1) + " ms");
      if (latest.detail) lines.push(latest.detail);
      for (const st of latest.steps || []) {
        lines.push("  step " + st.name + ": " + st.outcome + (st.failure_class ? " (" + st.failure_class + ")" : "") +
          (st.detail ? " – " + st.detail : ""));
      }
    }
    const failed = runs.filter((r) => r.outcome === "failure");
    lines.push(failed.length + " of " + runs.length + " recent runs failed");
    const lastFail = failed[failed.length - 1];
    if (lastFail && (!latest || latest.outcome !== "failure")) {
      lines.push("last failure: " + (lastFail.failure_class || "failure") + " at " + lastFail.started_at +
        (lastFail.detail ? " – " + lastFail.detail : ""));
    }
    return lines.join("\n");
  }

  function agentsSection(agents) {
    if (!agents.length) {
      return section("Agents", null, h("p", { class: "muted" }, "No agent has connected yet."));
    }
    const rows = agents.map((a) => h("tr", { dataset: { agentId: a.agent_id } },
      h("td", {}, h("b", {}, a.agent_id)),
      h("td", {}, a.region),
      h("td", {}, badge(a.status, a.status)),
      h("td", {}, a.version),
      h("td", {}, ago(a.last_seen)),
      h("td", { class: "num" }, h("span", { class: a.clock_skew_ok ? "" : "badge warn" }, a.clock_skew_ms + " ms")),
      h("td", { class: "num" }, String(a.spool_depth)),
      h("td", { class: "num" }, a.dropped_total ? h("span", { class: "badge warn" }, String(a.dropped_total)) : "0"),
      h("td", { class: "num" }, String(a.stored_total))));
    return section("Agents", null, table(["agent", "region", "status", "version", "last seen",
      { text: "clock skew", class: "num" }, { text: "spool", class: "num" }, { text: "dropped", class: "num" },
      { text: "stored", class: "num" }], rows));
  }

  // ---- One SLO --------------------------------------------------------------

  async function sloView(id) {
    const [slos, alerts, probes, history] = await Promise.all([
      api("api/v1/slos"),
      api("api/v1/alerts"),
      api("api/v1/probes"),
      api("api/v1/ui/slos/" + encodeURIComponent(id) + "/history"),
    ]);
    const slo = slos.slos.find((x) => x.id === id);
    if (!slo) throw new ApiFailed("api/v1/slos", 404, "no SLO `" + id + "` in the catalog");
    // Latency percentiles for plain probes (journey steps have none of their own).
    const plain = history.probes.filter((p) => !p.includes("/"));
    const latency = (await Promise.all(plain.map((p) =>
      api("api/v1/probes/" + encodeURIComponent(p) + "/latency?window=1h").catch((e) => {
        if (e instanceof AuthNeeded) throw e;
        return null; // percentiles are extra; the view stands without them
      })))).filter((l) => l !== null);
    const digits = sliDigits(slo.objective);
    const firing = alerts.alerts.filter((a) => a.slo === id);
    const kpi = (label, value, extra) => h("div", { class: "kpi" }, h("span", {}, label), h("b", {}, value), extra || null);
    const out = [
      h("a", { class: "back", href: "#/" }, "← all SLOs"),
      h("h1", { dataset: { sloId: slo.id } }, slo.id, " ", badge(slo.state, slo.state.replace("_", " ")),
        firing.map((a) => [" ", badge(a.severity, a.severity + " alert")])),
      h("div", { class: "muted" }, (slo.description ? slo.description + " · " : "") + sliKind(slo) + " · " +
        (slo.budgeting === "occurrences" ? "occurrences" : "timeslices of " + durationText(slo.budgeting.timeslices.slice_seconds)) +
        " · window " + slo.window),
      h("div", { class: "kpis" },
        kpi("SLI over the window", pct(slo.sli_value, digits)),
        kpi("objective", slo.objective + "%"),
        kpi("error budget remaining", budgetText(slo.error_budget_remaining), budgetBar(slo.error_budget_remaining)),
        kpi("exhausted in (at the 1h burn)", exhaustText(slo)),
        kpi(slo.error_budget.unit === "events" ? "bad / total runs" : "bad / total slices", slo.bad + " / " + slo.total),
        kpi("coverage", slo.coverage === null ? "–" : pct(slo.coverage, 1))),
      section("Burn rates", "bad share ÷ allowed share per window; ≥ 14.4× pages, ≥ 6× is fast",
        h("div", { class: "burns" }, burnWindows(slo.burn_rates).map((w) =>
          h("span", { class: burnClass(slo.burn_rates[w]), title: "burn rate over " + w },
            w + " " + burnText(slo.burn_rates[w]))))),
      h("div", { class: "charts" },
        section("Error budget burn-down", history.window + ", bucket " + durationText(history.step_seconds),
          burnChart(history),
          h("div", { class: "legend" }, h("span", {}, h("i", {}), "budget remaining"),
            h("span", {}, h("i", { class: "ideal" }), "even spend over the window"))),
        section("SLI over time", "per bucket, " + (history.unit === "slices" ? "good slices / slices" : "good runs / runs"),
          sliChart(history, digits),
          h("div", { class: "legend" }, h("span", {}, h("i", { class: "good" }), "meets objective"),
            h("span", {}, h("i", { class: "bad" }), "below objective"),
            h("span", {}, h("i", { class: "objective" }), "objective " + slo.objective + "%")))),
    ];
    if (slo.regions.length) {
      out.push(section("Regions", null, table(["region", { text: "SLI", class: "num" }, { text: "good / total", class: "num" },
        "error budget", { text: "burn 1h", class: "num" }],
      slo.regions.map((r) => h("tr", {},
        h("td", {}, r.region),
        h("td", { class: "num" }, pct(r.sli_value, digits)),
        h("td", { class: "num" }, r.good + " / " + r.total),
        h("td", {}, h("div", { class: "budget" }, budgetBar(r.error_budget_remaining),
          h("span", { class: "val" }, budgetText(r.error_budget_remaining)))),
        h("td", { class: "num" }, h("span", { class: burnClass(r.burn_rate_1h) }, burnText(r.burn_rate_1h))))))));
    }
    out.push(probesSection(history.probes, latency, probes.probes));
    return out;
  }

  function probesSection(ids, latency, latest) {
    const byId = new Map(latency.map((l) => [l.probe_id, l]));
    const ms = (v) => (v === null || v === undefined ? "–" : v.toFixed(1) + " ms");
    const rows = ids.map((id) => {
      const l = byId.get(id);
      const probeId = id.split("/")[0];
      const runs = latest.filter((x) => x.probe_id === probeId);
      return h("tr", {},
        h("td", {}, h("b", {}, id)),
        h("td", {}, runs.length ? runs.map((r) => [badge(r.outcome, r.region), " "]) : h("span", { class: "muted" }, "no results")),
        h("td", { class: "num" }, l ? String(l.all.count) : "–"),
        h("td", { class: "num" }, l ? ms(l.all.p50_ms) : "–"),
        h("td", { class: "num" }, l ? ms(l.all.p95_ms) : "–"),
        h("td", { class: "num" }, l ? ms(l.all.p99_ms) : "–"));
    });
    return section("Probes", "latency over the last hour",
      table(["probe", "latest per region", { text: "runs", class: "num" }, { text: "p50", class: "num" },
        { text: "p95", class: "num" }, { text: "p99", class: "num" }], rows));
  }

  // ---- Charts ---------------------------------------------------------------

  const W = 720;
  const H = 240;
  const PAD = { left: 52, right: 14, top: 12, bottom: 28 };

  function chartFrame(cls, label) {
    return s("svg", { class: "chart " + cls, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  }

  function timeAxis(svg, x0, x1, x) {
    const span = x1 - x0;
    const ticks = 6;
    for (let i = 0; i <= ticks; i++) {
      const t = x0 + (span * i) / ticks;
      const px = x(t);
      svg.append(s("text", { x: px, y: H - 8, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" },
        axisTime(t, span)));
    }
  }

  function burnChart(hist) {
    const x0 = hist.window_start_ms;
    const x1 = Math.max(hist.window_end_ms, hist.now_ms);
    const pts = hist.budget;
    const lo = Math.min(0, ...pts.map((p) => p.remaining));
    const hi = 1;
    const x = (t) => PAD.left + ((t - x0) / (x1 - x0 || 1)) * (W - PAD.left - PAD.right);
    const y = (v) => PAD.top + ((hi - v) / (hi - lo || 1)) * (H - PAD.top - PAD.bottom);
    const svg = chartFrame("burn", "error budget remaining over the window");
    // Horizontal grid at 100 %, 50 %, 0 % (and the overspent floor).
    const levels = [1, 0.5, 0];
    if (lo < 0) levels.push(lo);
    for (const v of levels) {
      svg.append(s("line", { class: v === 0 ? "zero" : "gridline", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
      svg.append(s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, budgetText(v)));
    }
    // Spending the budget evenly: 100 % at the start, 0 % at the end.
    svg.append(s("line", { class: "ideal", x1: x(x0), y1: y(1), x2: x(hist.window_end_ms), y2: y(0) }));
    const line = pts.map((p, i) => (i ? "L" : "M") + x(p.t_ms).toFixed(1) + "," + y(p.remaining).toFixed(1)).join(" ");
    const base = y(Math.max(lo, 0));
    const lastX = x(pts[pts.length - 1].t_ms).toFixed(1);
    svg.append(s("path", { class: "area", d: `${line} L${lastX},${base.toFixed(1)} L${x(pts[0].t_ms).toFixed(1)},${base.toFixed(1)} Z` }));
    svg.append(s("path", { class: "line", d: line }));
    const end = pts[pts.length - 1];
    svg.append(s("circle", { class: "dot", cx: x(end.t_ms), cy: y(end.remaining), r: 3.5 }));
    for (const p of pts) {
      svg.append(s("circle", { class: "dot-hit", cx: x(p.t_ms), cy: y(p.remaining), r: 6 },
        s("title", {}, timeText(p.t_ms) + ": " + budgetText(p.remaining) + " of the error budget left")));
    }
    timeAxis(svg, x0, x1, x);
    return svg;
  }

  function sliChart(hist, digits) {
    const buckets = hist.sli_buckets;
    const x0 = hist.window_start_ms;
    const x1 = Math.max(hist.window_end_ms, hist.now_ms);
    const objective = hist.objective / 100;
    const values = buckets.filter((b) => b.sli !== null).map((b) => b.sli);
    // The interesting range is near the objective: from a bit under the worst
    // bucket (or the objective) to 100 %.
    const worst = Math.min(objective, ...values);
    const lo = Math.max(0, 1 - (1 - worst) * 1.25);
    const hi = 1;
    const x = (t) => PAD.left + ((t - x0) / (x1 - x0 || 1)) * (W - PAD.left - PAD.right);
    const y = (v) => PAD.top + ((hi - v) / (hi - lo || 1)) * (H - PAD.top - PAD.bottom);
    const svg = chartFrame("sli", "SLI per bucket over the window");
    for (const v of [hi, (hi + lo) / 2, lo]) {
      svg.append(s("line", { class: "gridline", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
      svg.append(s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, pct(v, Math.max(1, digits - 1))));
    }
    const floor = y(lo);
    for (const b of buckets) {
      const left = x(b.start_ms) + 0.5;
      const width = Math.max(1, x(b.end_ms) - x(b.start_ms) - 1);
      const title = timeText(b.start_ms) + " – " + timeText(b.end_ms) + ": " +
        (b.sli === null ? "no data" : pct(b.sli, digits) + " (" + b.good + " good of " + b.total + ")");
      if (b.sli === null) {
        svg.append(s("rect", { class: "empty", x: left, y: floor - 2, width, height: 2 }, s("title", {}, title)));
        continue;
      }
      const top = y(Math.max(lo, b.sli));
      svg.append(s("rect", {
        class: b.sli >= objective ? "good" : "bad",
        x: left, y: top, width, height: Math.max(1, floor - top),
      }, s("title", {}, title)));
    }
    svg.append(s("line", { class: "objective", x1: PAD.left, x2: W - PAD.right, y1: y(objective), y2: y(objective) }));
    timeAxis(svg, x0, x1, x);
    return svg;
  }

  render();
})();
