"use strict";
// The status page's script: it only calls the status API (docs/openapi.json), relative to the
// page's own path, so it works at "/" (archiver serve), behind the signing proxy and on a stage.
(function () {
  const BASE = location.pathname.replace(/\/+$/, "");
  const RUNS = 20;
  const DAYS = 14;
  const POLL_MS = 1000;
  const REFRESH_MS = 15000;
  const ACTIVE = new Set(["pending", "running"]);
  const nf = new Intl.NumberFormat("en");
  const $ = (id) => document.getElementById(id);
  const ui = {
    main: $("main"), tableName: $("table-name"), tables: $("tables"), select: $("table-select"), health: $("health"),
    title: $("run-title"), bar: $("bar"), fill: $("bar-fill"), figures: $("run-figures"), meta: $("run-meta"),
    news: $("run-news"), batch: $("batch-size"), dry: $("btn-dry"), run: $("btn-run"), cancel: $("btn-cancel"),
    answer: $("answer"), rows: $("history-rows"),
  };
  const st = { tables: null, table: ui.main.dataset.table, followed: null, chain: 0, samples: [], timer: null, announced: {} };

  // -- the API --------------------------------------------------------------------------------
  async function api(method, path, params, body) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null) query.set(k, String(v));
    const url = BASE + path + (query.toString() ? "?" + query.toString() : "");
    const init = { method: method, headers: { Accept: "application/json" }, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    try {
      const resp = await fetch(url, init);
      let data = null;
      try { data = await resp.json(); } catch (e) { data = null; }
      return { status: resp.status, body: data || {} };
    } catch (e) {
      return { status: 0, body: { error: "the status API cannot be reached" } };
    }
  }
  // With several tables (GET /tables answered), every call names the selected one.
  const tableParam = () => (st.tables ? { table: st.table } : {});

  // -- formatting (the same words as the server-rendered history) ------------------------------
  const count = (n) => (n === null || n === undefined ? "–" : nf.format(n));
  function duration(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms < 1000) return ms + " ms";
    const s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    let min = Math.floor(Math.round(s) / 60);
    const sec = Math.round(s) % 60;
    if (min < 60) return min + " min " + sec + " s";
    const h = Math.floor(min / 60);
    min = min % 60;
    return h + " h " + min + " min";
  }
  const when = (iso) => (iso ? iso.slice(0, 19).replace("T", " ") : "–");
  const shortId = (id) => String(id || "").slice(0, 8);
  const kindLabel = (r) => r.kind + (r.dry_run ? " · dry run" : "");
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function say(node, text, tone) {
    node.textContent = text;
    node.className = node.id === "answer" ? "answer " + (tone || "info") : node.className;
  }

  // -- the history table ---------------------------------------------------------------------
  function historyRow(r) {
    const tr = el("tr", { "data-job": r.job_id });
    tr.append(el("td", { class: "when", title: r.run_date || "" }, when(r.run_date)));
    tr.append(el("td", { class: "job", title: r.job_id }, shortId(r.job_id)));
    tr.append(el("td", {}, kindLabel(r)));
    const td = el("td");
    td.append(el("span", { class: "state state-" + r.state }, r.state));
    tr.append(td);
    tr.append(el("td", { class: "num" }, count(r.eligible)));
    tr.append(el("td", { class: "num" }, count(r.archived)));
    tr.append(el("td", { class: "num" }, count(r.failed)));
    tr.append(el("td", { class: "num" }, duration(r.duration_ms)));
    tr.append(el("td", { class: r.error ? "text error" : "text" }, r.error || r.message || ""));
    return tr;
  }
  function renderHistory(runs) {
    const rows = runs.map(historyRow);
    if (!rows.length) {
      const tr = el("tr");
      tr.append(el("td", { colspan: "9" }, "No runs yet."));
      rows.push(tr);
    }
    ui.rows.replaceChildren(...rows);
  }
  // The followed run's row keeps step with its progress between two refreshes of the list.
  function updateHistory(run) {
    const row = ui.rows.querySelector('tr[data-job="' + CSS.escape(run.job_id) + '"]');
    if (row) row.replaceWith(historyRow(run));
  }

  // -- charts: bars in inline SVG, one per day, oldest on the left -----------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  // A round step (1, 2 or 5 times a power of ten) giving at most five gridlines above zero.
  function scale(v) {
    if (v <= 0) return { max: 1, steps: 1 };
    const raw = v / 4;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
    const steps = Math.ceil(v / step);
    return { max: steps * step, steps: steps };
  }
  function barChart(container, points, opts) {
    const W = 560, H = 210, L = 56, R = 8, T = 10, B = 28;
    const values = points.map((p) => p.value).filter((v) => v !== null);
    const { max, steps } = scale(Math.max(0, ...values));
    const total = values.reduce((a, b) => a + b, 0);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": opts.labelledby });
    const desc = svg("desc", {}, opts.describe(points, total));
    root.append(desc);
    for (let i = 0; i <= steps; i++) {
      const y = T + (H - T - B) * (1 - i / steps);
      root.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y, y2: y }));
      const label = i === 0 ? "0" : values.some((v) => v) ? opts.tick((max * i) / steps) : "";
      root.append(svg("text", { class: "axis", x: L - 6, y: y + 4, "text-anchor": "end" }, label));
    }
    const slot = (W - L - R) / Math.max(1, points.length);
    points.forEach((p, i) => {
      const x = L + i * slot;
      if (p.value) {
        const h = ((H - T - B) * p.value) / max;
        const bar = svg("rect", { class: opts.cls, x: x + slot * 0.18, width: slot * 0.64, y: H - B - h, height: h, rx: 2 });
        bar.append(svg("title", {}, p.label + ": " + opts.tip(p.value)));
        root.append(bar);
      }
      const every = Math.ceil(points.length / 7);
      if ((points.length - 1 - i) % every === 0) {
        root.append(svg("text", { class: "axis", x: x + slot / 2, y: H - 9, "text-anchor": "middle" }, p.label.slice(5)));
      }
    });
    if (!values.some((v) => v)) {
      root.append(svg("text", { class: "empty", x: (W + L) / 2, y: H / 2, "text-anchor": "middle" }, opts.empty));
    }
    container.replaceChildren(root);
  }
  function renderStats(stats) {
    const t = stats.totals;
    $("stats").hidden = false;
    $("days").textContent = String(stats.days);
    $("sum-archived").textContent = count(t.archived);
    $("sum-runs").textContent = count(t.runs);
    $("sum-failures").textContent = count(t.failures + t.partial) +
      (t.runs ? " (" + Math.round((100 * (t.failures + t.partial)) / t.runs) + "%)" : "");
    $("sum-avg").textContent = duration(t.avg_duration_ms);
    const rows = (side) => (side.exists ? (side.exact ? "" : "≈ ") + count(side.rows) : "no table");
    $("sum-live").textContent = rows(stats.tables.live);
    $("sum-archive").textContent = rows(stats.tables.archive);
    const days = stats.per_day.slice().reverse();
    barChart($("chart-archived"), days.map((d) => ({ label: d.day, value: d.archived })), {
      cls: "bar-a", labelledby: "chart-archived-h", empty: "Nothing archived in these days",
      tick: (v) => nf.format(Math.round(v)), tip: (v) => count(v) + " rows",
      describe: (pts, total) => count(total) + " rows archived over " + pts.length + " days",
    });
    barChart($("chart-time"), days.map((d) => ({ label: d.day, value: d.avg_duration_ms })), {
      cls: "bar-b", labelledby: "chart-time-h", empty: "No finished runs in these days",
      tick: (v) => duration(Math.round(v)), tip: (v) => duration(v) + " on average",
      describe: (pts) => "average run time per day over " + pts.length + " days",
    });
  }

  // -- the current run: progress, rate, time left --------------------------------------------
  function rate(run) {
    const now = performance.now();
    st.samples.push({ t: now, p: run.processed });
    st.samples = st.samples.filter((s) => now - s.t <= 15000);
    const first = st.samples[0];
    const seconds = (now - first.t) / 1000;
    return seconds >= 1.5 ? (run.processed - first.p) / seconds : null;
  }
  function renderRun(run) {
    const active = ACTIVE.has(run.state);
    const pct = Math.max(0, Math.min(100, Math.round(run.percent_complete || 0)));
    const what = run.dry_run ? "Dry run" : "Run";
    ui.title.textContent = what + " " + shortId(run.job_id) + ": " + run.state + (run.cancel_requested && active ? " (cancel requested)" : "");
    ui.bar.hidden = false;
    ui.figures.hidden = false;
    ui.bar.className = "bar" + (active ? "" : run.state === "succeeded" ? " done" : run.state === "failed" ? " failed" : " stopped");
    ui.fill.style.width = pct + "%";
    ui.bar.setAttribute("aria-valuenow", String(pct));
    ui.bar.setAttribute("aria-valuetext", pct + "% (" + run.state + ")");
    $("fig-percent").textContent = pct + "%";
    $("fig-rows").textContent = count(run.processed) + " of " + count(run.eligible);
    $("fig-batches").textContent = count(run.batches);
    let perSecond = null;
    if (active) perSecond = rate(run);
    else if (run.duration_ms) perSecond = (run.dry_run ? run.eligible : run.processed) / (run.duration_ms / 1000);
    $("fig-rate").textContent = perSecond === null ? (active ? "measuring…" : "–") : nf.format(Math.round(perSecond)) + " rows/s";
    let left = "–";
    if (!active) left = run.state === "succeeded" ? "done" : "stopped";
    else if (perSecond && run.eligible !== null) left = "about " + duration(Math.max(0, ((run.eligible - run.processed) / perSecond) * 1000));
    $("fig-left").textContent = left;
    ui.meta.textContent = "Job " + run.job_id + " · batch size " + count(run.batch_size) + " · started " + when(run.started_at || run.run_date) +
      (run.error ? " · " + run.error : run.message ? " · " + run.message : "");
    ui.cancel.disabled = !active;
    ui.cancel.dataset.job = active ? run.job_id : "";
  }
  function finished(run) {
    if (run.dry_run && run.state === "succeeded") {
      return "Dry run " + shortId(run.job_id) + " finished: " + count(run.eligible) + " rows would be archived; nothing was moved.";
    }
    const base = (run.dry_run ? "Dry run " : "Run ") + shortId(run.job_id) + " " + run.state + ": " +
      count(run.archived) + " of " + count(run.eligible) + " rows archived in " + duration(run.duration_ms) + ".";
    return base + (run.error ? " Error: " + run.error : "");
  }
  // One polling chain at a time: a new one (another run, or a cancel) retires the previous.
  function follow(jobId, again) {
    if (st.followed === jobId && !again) return;
    if (st.followed !== jobId) st.samples = [];
    st.followed = jobId;
    st.chain += 1;
    clearTimeout(st.timer);
    poll(st.chain);
  }
  async function poll(chain) {
    const jobId = st.followed;
    if (!jobId) return;
    const answer = await api("GET", "/runs/" + encodeURIComponent(jobId));
    if (chain !== st.chain) return;
    if (answer.status !== 200) {
      say(ui.news, "Lost track of run " + shortId(jobId) + ": " + describe(answer));
      st.followed = null;
      return;
    }
    const run = answer.body;
    renderRun(run);
    updateHistory(run);
    if (ACTIVE.has(run.state)) {
      st.timer = setTimeout(() => poll(chain), POLL_MS);
      return;
    }
    st.followed = null;
    if (!st.announced[jobId]) {
      st.announced[jobId] = true;
      const words = finished(run);
      say(ui.news, words);
      if (ui.answer.dataset.job === jobId) say(ui.answer, words, run.state === "succeeded" ? "ok" : "bad");
    }
    refresh();
  }

  // -- refreshing everything else ------------------------------------------------------------
  // Refreshes may overlap (a run ends while the timer fires): only the latest one is shown.
  async function refresh() {
    const mine = (st.refreshes = (st.refreshes || 0) + 1);
    const [runs, stats, health] = await Promise.all([
      api("GET", "/runs", Object.assign({ limit: RUNS }, tableParam())),
      api("GET", "/stats", Object.assign({ days: DAYS }, tableParam())),
      api("GET", "/health"),
    ]);
    if (mine !== st.refreshes) return;
    renderHealth(health);
    if (runs.status === 200) {
      renderHistory(runs.body.runs);
      const active = runs.body.runs.find((r) => ACTIVE.has(r.state));
      if (active) follow(active.job_id);
      else if (!st.followed) showIdle(runs.body.runs[0]);
    }
    if (stats.status === 200) renderStats(stats.body);
  }
  function showIdle(last) {
    ui.cancel.disabled = true;
    if (!last) {
      ui.title.textContent = "No run is active, and none has run yet.";
      ui.bar.hidden = true;
      ui.figures.hidden = true;
      ui.meta.textContent = "";
      return;
    }
    renderRun(last);
    ui.title.textContent = "No run is active. Last: " + (last.dry_run ? "dry run " : "run ") + shortId(last.job_id) + ", " + last.state + ".";
  }
  function renderHealth(answer) {
    const h = answer.body;
    ui.health.hidden = false;
    if (answer.status === 0 || !("status" in h)) {
      ui.health.textContent = "Health: " + (h.error || "unknown");
      ui.health.className = "health bad";
      return;
    }
    const ok = h.status === "ok";
    ui.health.textContent = ok
      ? "Healthy · last successful run " + (h.last_successful_run ? when(h.last_successful_run) : "never")
      : h.status === "not_migrated" ? "Schema not migrated: run archiver migrate" : "Database unavailable";
    ui.health.className = "health " + (ok ? "ok" : "bad");
  }

  // -- the controls --------------------------------------------------------------------------
  const LABELS = { batch_size: "batch size", dry_run: "dry run", table: "table" };
  function describe(answer) {
    const b = answer.body || {};
    if (answer.status === 0) return "the status API cannot be reached; is it running?";
    if (answer.status === 422 && Array.isArray(b.details) && b.details.length) {
      return b.details.map((d) => (LABELS[d.loc[d.loc.length - 1]] || d.loc.join(".")) + ": " + d.msg).join("; ");
    }
    return b.error || "HTTP " + answer.status;
  }
  function refusal(answer) {
    const b = answer.body || {};
    switch (answer.status) {
      case 409:
        return "Refused (409 Conflict): a run of this table is already running" +
          (b.job_id && b.job_id !== "unknown" ? " (job " + shortId(b.job_id) + ", " + b.state + ")" : "") +
          ". Only one run at a time: wait for it to finish, or cancel it first.";
      case 422: return "Not started (422): " + describe(answer) + ".";
      case 400: return "Bad request (400): " + describe(answer) + ".";
      case 502: return "The archive function could not be started (502): " + describe(answer) + ".";
      case 503: return "Unavailable (503): " + describe(answer) + ".";
      default: return "Failed (" + (answer.status || "no answer") + "): " + describe(answer) + ".";
    }
  }
  function batchSize() {
    const text = ui.batch.value.trim();
    if (text === "" && !ui.batch.validity.badInput) return undefined;
    const n = Number(text);
    return text === "" ? text : Number.isFinite(n) ? n : text;  // the API explains what is wrong
  }
  async function start(dryRun) {
    const body = Object.assign({ dry_run: dryRun }, tableParam());
    const size = batchSize();
    if (size !== undefined) body.batch_size = size;
    say(ui.answer, dryRun ? "Starting a dry run…" : "Starting a run…", "info");
    const answer = await api("POST", "/runs", undefined, body);
    if (answer.status === 202) {
      ui.answer.dataset.job = answer.body.job_id;
      say(ui.answer, (dryRun ? "Dry run " : "Run ") + shortId(answer.body.job_id) +
        " started in the background (" + answer.body.state + "). Its progress shows above.", "info");
      follow(answer.body.job_id);
      refresh();
      return;
    }
    say(ui.answer, refusal(answer), "bad");
  }
  async function cancel() {
    const jobId = ui.cancel.dataset.job;
    if (!jobId) return;
    say(ui.answer, "Asking run " + shortId(jobId) + " to stop…", "info");
    const answer = await api("POST", "/runs/" + encodeURIComponent(jobId) + "/cancel");
    ui.answer.dataset.job = jobId;
    if (answer.status === 202) {
      say(ui.answer, "Cancel requested: run " + shortId(jobId) + " stops after its current batch; rows already moved stay archived.", "ok");
    } else if (answer.status === 200) {
      say(ui.answer, "Run " + shortId(jobId) + " was cancelled before it moved anything.", "ok");
    } else if (answer.status === 409) {
      say(ui.answer, "Nothing to cancel (409): run " + shortId(jobId) + " has already ended (" + (answer.body.state || "finished") + ").", "bad");
    } else {
      say(ui.answer, refusal(answer), "bad");
    }
    follow(jobId, true);
  }

  // -- tables: GET /tables when the API serves several; else the one table the page names -----
  async function loadTables() {
    const answer = await api("GET", "/tables");
    if (answer.status !== 200 || !Array.isArray(answer.body.tables) || !answer.body.tables.length) return;
    st.tables = answer.body.tables.map((t) => t.table);
    const wanted = decodeURIComponent((location.hash.match(/table=([^&]+)/) || [])[1] || "");
    st.table = st.tables.includes(wanted) ? wanted : st.tables.includes(st.table) ? st.table : st.tables[0];
    ui.select.replaceChildren(...answer.body.tables.map((t) => {
      const label = t.table + " · " + String(t.mode).replace("_", " ") + " at " + t.schedule_time;
      const option = el("option", { value: t.table }, label);
      option.selected = t.table === st.table;
      return option;
    }));
    ui.tables.hidden = st.tables.length < 2;
    ui.tableName.textContent = st.table;
  }
  ui.select.addEventListener("change", () => {
    st.table = ui.select.value;
    ui.tableName.textContent = st.table;
    history.replaceState(null, "", "#table=" + encodeURIComponent(st.table));
    st.followed = null;
    st.chain += 1;
    clearTimeout(st.timer);
    say(ui.answer, "", "info");
    refresh();
  });
  ui.dry.addEventListener("click", () => start(true));
  ui.run.addEventListener("click", () => start(false));
  ui.cancel.addEventListener("click", cancel);
  $("controls").addEventListener("submit", (e) => { e.preventDefault(); start(false); });

  (async function init() {
    say(ui.answer, "", "info");
    await loadTables();
    ui.dry.disabled = false;
    ui.run.disabled = false;
    await refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  })();
})();
