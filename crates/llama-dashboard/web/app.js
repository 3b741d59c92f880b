// llama-dashboard's web page: four views (overview, models, logs, settings) over the JSON API,
// kept live by the server-sent events at /api/events. Everything shown is put in the page with
// textContent or as element attributes, never parsed as HTML, so nothing a model file or a log
// line holds can run. The API key, when the server needs one, is asked for once and kept in
// this tab's sessionStorage; it is sent as X-API-Key and never shown.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "llama-dashboard-api-key";
const CHART_POINTS = 150;
const LOG_ROWS = 1000;
const LEVELS = ["debug", "info", "warn", "error", "critical"];

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra) {
  const h = Object.assign({}, extra);
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) h["X-API-Key"] = key;
  return h;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (response.status === 401) {
    // Ask for the key (once, however many calls are waiting), then try again with it.
    const sent = init.headers["X-API-Key"] !== undefined;
    await waitForKey(sent ? "The server refused that key; check the file it named." : "");
    return api(method, path, body);
  }
  if (!response.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(response.status, err.code || "error", err.message || `${method} ${path} answered ${response.status}`);
  }
  return data;
}

// The calls waiting for the user to give the key: one promise they all wait on.
let keyWanted = null;

function waitForKey(problem) {
  if (problem) {
    $("key-error").textContent = problem;
    $("key-error").hidden = false;
  }
  if (!keyWanted) {
    let resolve;
    const promise = new Promise((r) => { resolve = r; });
    keyWanted = { promise, resolve };
    $("key-form").hidden = false;
    $("key-input").focus();
  }
  return keyWanted.promise;
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORE, key);
  $("key-input").value = "";
  $("key-error").hidden = true;
  $("key-form").hidden = true;
  const waiting = keyWanted;
  keyWanted = null;
  if (waiting) waiting.resolve();
});

function notify(message, isError) {
  const box = $("notice");
  box.textContent = message;
  box.className = isError ? "notice error" : "notice";
  box.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { box.hidden = true; }, isError ? 8000 : 3000);
}

// Runs an action from a button: disables it meanwhile and reports failures, prefixed with
// `subject` (what the action was on) when given.
async function act(button, work, subject) {
  if (button) button.disabled = true;
  try {
    return await work();
  } catch (e) {
    notify(subject ? `${subject}: ${e.message}` : e.message, true);
    return null;
  } finally {
    if (button) button.disabled = false;
  }
}

// ---------- DOM helpers ----------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function bytes(n) {
  if (!n) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function fixed(n, digits) {
  return typeof n === "number" && isFinite(n) ? n.toFixed(digits) : "–";
}

function time(unix) {
  return unix ? new Date(unix * 1000).toLocaleTimeString() : "";
}

function parseParams(model) {
  try { return JSON.parse(model.params || "{}") || {}; } catch (_) { return {}; }
}

// ---------- live events ----------

// Server-sent events read with fetch, so the API key header can be sent (EventSource cannot).
const events = {
  controller: null,
  backoff: 500,
  handlers: {},
  on(name, fn) { (this.handlers[name] = this.handlers[name] || []).push(fn); },
  async start() {
    const controller = new AbortController();
    this.controller = controller;
    try {
      const response = await fetch("/api/events", { headers: headers({ Accept: "text/event-stream" }), signal: controller.signal });
      if (response.status === 401) {
        setLive(false);
        const sent = sessionStorage.getItem(KEY_STORE) !== null;
        await waitForKey(sent ? "The server refused that key; check the file it named." : "");
        if (this.controller === controller) this.start();
        return;
      }
      if (!response.ok || !response.body) throw new Error(`events answered ${response.status}`);
      setLive(true);
      this.backoff = 500;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          this.dispatch(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
    } catch (e) {
      if (controller.signal.aborted) return;
    }
    if (controller.signal.aborted) return;
    setLive(false);
    setTimeout(() => { if (this.controller === controller) this.start(); }, this.backoff);
    this.backoff = Math.min(this.backoff * 2, 10000);
  },
  dispatch(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (!data.length) return;
    let payload;
    try { payload = JSON.parse(data.join("\n")); } catch (_) { return; }
    for (const fn of this.handlers[name] || []) fn(payload);
  },
};

function setLive(on) {
  const pill = $("live");
  pill.textContent = on ? "live" : "reconnecting…";
  pill.className = on ? "pill good" : "pill warn";
}

// ---------- charts ----------

// A line chart of the last CHART_POINTS samples, one line per series, newest on the right.
// `max` fixes the top of the scale (percentages); null follows the data. The canvas carries
// its number of points in `data-points`.
class Chart {
  constructor(canvas, max, colors) {
    this.canvas = canvas;
    this.max = max;
    this.colors = colors || ["--accent"];
    this.series = this.colors.map(() => []);
  }
  // Replaces every point: `rows` holds one array of values (one per series) per sample.
  set(rows) {
    const kept = rows.slice(-CHART_POINTS);
    this.series = this.colors.map((_, s) => kept.map((row) => row[s] || 0));
    this.draw();
  }
  push(values) {
    this.series.forEach((points, s) => {
      points.push(values[s] || 0);
      if (points.length > CHART_POINTS) points.shift();
    });
    this.draw();
  }
  draw() {
    const c = this.canvas;
    const count = this.series[0].length;
    c.setAttribute("data-points", String(count));
    const ctx = c.getContext("2d");
    const w = c.width;
    const h = c.height;
    const style = getComputedStyle(document.body);
    const color = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    ctx.clearRect(0, 0, w, h);
    const top = this.max || Math.max(1, ...this.series.flat()) * 1.15;
    ctx.strokeStyle = color("--grid", "#ddd");
    ctx.lineWidth = 1;
    ctx.fillStyle = color("--muted", "#888");
    ctx.font = "11px sans-serif";
    for (let i = 0; i <= 4; i += 1) {
      const y = Math.round(h - (h - 14) * (i / 4)) - 0.5;
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(w, y);
      ctx.stroke();
      if (i > 0) ctx.fillText((top * i / 4).toFixed(top < 10 ? 1 : 0), 4, y + 12);
    }
    if (count < 2) return;
    const step = w / (CHART_POINTS - 1);
    const x0 = w - step * (count - 1);
    this.series.forEach((points, s) => {
      ctx.strokeStyle = color(this.colors[s], "#36c");
      ctx.lineWidth = 2;
      ctx.beginPath();
      points.forEach((v, i) => {
        const x = x0 + i * step;
        const y = h - (h - 14) * Math.min(1, Math.max(0, v / top));
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    });
  }
}

const charts = {
  cpu: new Chart($("chart-cpu"), 100),
  mem: new Chart($("chart-mem"), 100),
  gpu: new Chart($("chart-gpu"), 100, ["--accent", "--good"]),
  tps: new Chart($("chart-tps"), null),
};

function gpuMemoryPercent(m) {
  return m.gpu_memory_total > 0 ? (100 * (m.gpu_memory_used || 0)) / m.gpu_memory_total : 0;
}

// One sample as the values of each chart.
function chartValues(m) {
  return {
    cpu: [m.cpu_usage || 0],
    mem: [m.memory_usage || 0],
    gpu: [m.gpu_usage || 0, gpuMemoryPercent(m)],
    tps: [m.tokens_per_second || 0],
  };
}

function showFigures(m) {
  $("fig-cpu").textContent = `${fixed(m.cpu_usage, 1)} %`;
  $("fig-mem").textContent = `${fixed(m.memory_usage, 1)} %`;
  $("fig-gpu").textContent = m.gpu_memory_total > 0
    ? `${fixed(m.gpu_usage, 0)} % · ${bytes(m.gpu_memory_used * 1048576)} of ${bytes(m.gpu_memory_total * 1048576)}`
    : "none";
  $("fig-tps").textContent = fixed(m.tokens_per_second || 0, 1);
  $("fig-models").textContent = String(m.active_models ?? "–");
  $("fig-llama").textContent = m.llama_memory_used > 0
    ? `${fixed(m.llama_cpu_usage, 1)} % · ${bytes(m.llama_memory_used * 1048576)}`
    : "–";
}

function addSample(m) {
  const values = chartValues(m);
  for (const [name, chart] of Object.entries(charts)) chart.push(values[name]);
  showFigures(m);
}

async function loadHistory() {
  const rows = await api("GET", `/api/metrics/history?limit=${CHART_POINTS}`);
  const oldestFirst = rows.slice().reverse().map(chartValues);
  for (const [name, chart] of Object.entries(charts)) chart.set(oldestFirst.map((v) => v[name]));
  if (rows.length) showFigures(rows[0]);
}

events.on("metrics", addSample);

// ---------- llama-server ----------

function showServer(s) {
  const state = s.state || "unknown";
  const pill = $("server-state");
  pill.textContent = `llama-server: ${state}`;
  pill.className = `pill ${state === "ready" ? "good" : state === "failed" || state === "crashed" ? "bad" : "warn"}`;
  const parts = [`State: ${state}`];
  if (s.pid) parts.push(`pid ${s.pid}`);
  if (s.url) parts.push(s.url);
  if (s.reason) parts.push(s.reason);
  if (s.restart_in_ms) parts.push(`restarting in ${(s.restart_in_ms / 1000).toFixed(1)} s`);
  $("server-detail").textContent = parts.join(" · ");
}

async function loadServer() {
  const answer = await api("GET", "/api/server");
  showServer(answer.server || {});
}

events.on("server", showServer);
for (const verb of ["start", "stop", "restart"]) {
  const button = $(`server-${verb}`);
  button.addEventListener("click", () => act(button, async () => {
    const answer = await api("POST", `/api/server/${verb}`);
    if (answer && answer.server) showServer(answer.server);
  }));
}

// ---------- recent requests ----------

function requestRow(r) {
  return el("tr", {},
    el("td", { text: time(r.started_at) }),
    el("td", { text: r.model }),
    el("td", { text: r.endpoint }),
    el("td", { text: r.status }),
    el("td", { text: fixed(r.ttft_ms, 1) }),
    el("td", { text: r.tokens ?? "–" }),
    el("td", { text: fixed(r.tokens_per_second, 1) }),
    el("td", { text: r.cancelled ? "yes" : "" }));
}

async function loadRequests() {
  const rows = await api("GET", "/api/requests");
  const body = $("requests").tBodies[0];
  body.replaceChildren(...rows.slice(-20).reverse().map(requestRow));
}

events.on("request", (r) => {
  const body = $("requests").tBodies[0];
  body.prepend(requestRow(r));
  while (body.rows.length > 20) body.lastChild.remove();
});

// ---------- models ----------

let models = [];
let detailId = null;
// Why the last load or unload of a model failed, by id (from the live `model` events).
const failures = {};

function modelRow(m) {
  const p = parseParams(m);
  const loaded = m.status === "loaded" || m.status === "loading";
  const star = el("button", {
    class: "star", title: m.favorite ? "Remove from favorites" : "Add to favorites",
    text: m.favorite ? "★" : "☆",
    "data-action": "favorite",
  });
  star.addEventListener("click", () => act(star, () => api("POST", `/api/models/${encodeURIComponent(m.id)}/favorite`), m.name));
  const toggle = el("button", { text: loaded ? "Unload" : "Load", "data-action": loaded ? "unload" : "load" });
  toggle.addEventListener("click", () => act(toggle, () =>
    api("POST", `/api/models/${encodeURIComponent(m.id)}/${loaded ? "unload" : "load"}`), m.name));
  const details = el("button", { text: "Details", "data-action": "details" });
  details.addEventListener("click", () => showDetail(m.id));
  return el("tr", { "data-model-id": m.id },
    el("td", {}, star),
    el("td", { class: "name", text: m.name, title: m.model_path || "" }),
    el("td", { text: m.type }),
    el("td", { text: [p.size_label, p.parameter_label].filter(Boolean).join(" · ") || "–" }),
    el("td", { text: m.quantization || "–" }),
    el("td", { text: bytes(m.file_size) }),
    el("td", { text: m.ctx_size || "–" }),
    el("td", { class: `status status-${m.status}`, text: m.status, title: failures[m.id] || "" }),
    el("td", { class: "actions" }, toggle, details));
}

function renderModels() {
  const onlyFavorites = $("only-favorites").checked;
  const shown = models.filter((m) => !onlyFavorites || m.favorite);
  $("models").tBodies[0].replaceChildren(...shown.map(modelRow));
  const loaded = models.filter((m) => m.status === "loaded").length;
  $("models-summary").textContent = `${models.length} models, ${loaded} loaded`;
  if (detailId) showDetail(detailId);
}

function showDetail(id) {
  const m = models.find((x) => x.id === id);
  const box = $("model-detail");
  if (!m) { box.hidden = true; detailId = null; return; }
  detailId = id;
  $("detail-name").textContent = m.name;
  const fields = [
    ["Id", m.id], ["File", m.model_path], ["Status", m.status], ["Type", m.type],
    ["Quantization", m.quantization], ["File size", bytes(m.file_size)],
    ["Context length", m.ctx_size], ["Embedding size", m.embedding_size],
    ["Blocks", m.block_count], ["Heads", m.head_count], ["KV heads", m.head_count_kv],
    ["FFN size", m.ffn_dim], ["Batch size", m.batch_size], ["Threads", m.threads],
    ["Launch parameters", m.parameters],
  ];
  for (const [k, v] of Object.entries(parseParams(m))) fields.push([k, typeof v === "object" ? JSON.stringify(v) : v]);
  $("detail-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v ?? "–" })]));
  box.hidden = false;
}

async function loadModels() {
  models = await api("GET", "/api/models");
  renderModels();
}

events.on("model", (e) => {
  if (e.action === "deleted") {
    models = models.filter((m) => m.id !== e.id);
  } else if (e.model) {
    const i = models.findIndex((m) => m.id === e.model.id);
    if (i >= 0) models[i] = e.model; else models.push(e.model);
    if (e.model.status === "error" && e.reason) {
      failures[e.model.id] = e.reason;
      notify(`${e.model.name}: ${e.reason}`, true);
    } else {
      delete failures[e.model.id];
    }
  }
  renderModels();
});
events.on("catalog", () => { loadModels().catch(() => {}); });

$("scan").addEventListener("click", (e) => act(e.currentTarget, async () => {
  const report = await api("POST", "/api/scan");
  notify(`Scan: ${report.added ?? 0} added, ${report.updated ?? 0} updated, ${report.unchanged ?? 0} unchanged`);
  await loadModels();
}));
$("cleanup").addEventListener("click", (e) => act(e.currentTarget, async () => {
  const report = await api("POST", "/api/cleanup");
  notify(`Cleanup: ${report.removed ?? 0} removed`);
  await loadModels();
}));
$("only-favorites").addEventListener("change", renderModels);

// ---------- logs ----------

for (const level of LEVELS) {
  $("log-levels").append(el("label", {},
    el("input", { type: "checkbox", checked: true, value: level, "data-level": level, onchange: loadLogs }),
    ` ${level}`));
}

function logFilter() {
  const levels = [...document.querySelectorAll("#log-levels input:checked")].map((i) => i.value);
  return { levels, source: $("log-source").value };
}

// Adds a source seen in the log to the source filter's choices.
function knowSource(source) {
  const select = $("log-source");
  if (!source || [...select.options].some((o) => o.value === source)) return;
  select.append(el("option", { value: source, text: source }));
}

function logRow(entry) {
  knowSource(entry.source);
  return el("div", { class: `log-row level-${entry.level}`, "data-level": entry.level, "data-id": entry.id },
    el("span", { class: "log-time", text: time(entry.timestamp) }),
    el("span", { class: "log-level", text: entry.level }),
    el("span", { class: "log-source", text: entry.source || "" }),
    el("span", { class: "log-message", text: entry.message }));
}

function scrollLogs() {
  if ($("log-follow").checked) {
    const list = $("log-list");
    list.scrollTop = list.scrollHeight;
  }
}

async function loadLogs() {
  const { levels, source } = logFilter();
  const list = $("log-list");
  if (!levels.length) { list.replaceChildren(); return; }
  const query = new URLSearchParams({ limit: "500", level: levels.join(",") });
  if (source) query.set("source", source);
  try {
    const rows = await api("GET", `/api/logs?${query}`);
    list.replaceChildren(...rows.slice().reverse().map(logRow));
    scrollLogs();
  } catch (e) {
    notify(e.message, true);
  }
}

events.on("log", (entry) => {
  knowSource(entry.source);
  if (currentPage() !== "logs") return;
  const { levels, source } = logFilter();
  if (!levels.includes(entry.level) || (source && entry.source !== source)) return;
  const list = $("log-list");
  list.append(logRow(entry));
  while (list.childElementCount > LOG_ROWS) list.firstChild.remove();
  scrollLogs();
});
$("log-source").addEventListener("change", loadLogs);
$("log-clear").addEventListener("click", (e) => {
  if (!confirm("Delete every log entry?")) return;
  act(e.currentTarget, async () => {
    await api("DELETE", "/api/logs");
    await loadLogs();
  });
});

// ---------- settings ----------

let savedSettings = {};

const SETTING_HELP = {
  serverPath: "llama-server executable",
  baseModelsPath: "models folder (scanned, and served by llama-server)",
  host: "dashboard host name",
  port: "dashboard port",
  ctx_size: "context size per model (0: the model's own)",
  batch_size: "batch size",
  threads: "CPU threads",
  llama_server_enabled: "start llama-server with the dashboard",
  llama_server_host: "address llama-server listens on",
  llama_server_port: "port llama-server listens on",
  llama_server_metrics: "llama-server's /metrics (tokens/s)",
  models_max: "most models loaded at once (0: no limit)",
  idle_unload_seconds: "unload a model unused this long (0: never)",
};

function renderSettings(config) {
  savedSettings = config;
  const fields = Object.keys(config).sort().map((key) => {
    const value = config[key];
    let input;
    if (typeof value === "boolean") {
      input = el("input", { type: "checkbox", checked: value });
    } else if (typeof value === "number") {
      input = el("input", { type: "number", value: String(value), step: "1" });
    } else {
      input = el("input", { type: "text", value: value === null ? "" : String(value) });
    }
    input.name = key;
    input.id = `setting-${key}`;
    input.setAttribute("data-kind", typeof value);
    return el("div", { class: "setting" },
      el("label", { htmlFor: input.id, text: key }),
      input,
      el("span", { class: "muted", text: SETTING_HELP[key] || "" }));
  });
  $("settings-fields").replaceChildren(...fields);
}

async function loadSettings() {
  renderSettings(await api("GET", "/api/config"));
}

// Shows the server's refusal next to the form and marks the setting it names (`key`).
function settingsError(message) {
  $("settings-saved").hidden = true;
  $("settings-error").textContent = message;
  $("settings-error").hidden = !message;
  const named = /`([^`]+)`/.exec(message || "");
  for (const input of $("settings-fields").querySelectorAll("input")) {
    const bad = named !== null && input.name === named[1];
    input.classList.toggle("invalid", bad);
    if (bad) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
  }
}

$("settings-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const changes = {};
  for (const input of $("settings-fields").querySelectorAll("input")) {
    const kind = input.getAttribute("data-kind");
    let value;
    if (kind === "boolean") value = input.checked;
    else if (kind === "number") value = input.value.trim() === "" ? input.value : Number(input.value);
    else value = input.value;
    if (JSON.stringify(value) !== JSON.stringify(savedSettings[input.name])) changes[input.name] = value;
  }
  if (!Object.keys(changes).length) { settingsError(""); $("settings-saved").hidden = false; return; }
  act(e.submitter, async () => {
    try {
      renderSettings(await api("PATCH", "/api/config", changes));
      settingsError("");
      $("settings-saved").hidden = false;
    } catch (err) {
      settingsError(err.message);
    }
  });
});

$("settings-reset").addEventListener("click", (e) => {
  if (!confirm("Return every setting to its default?")) return;
  act(e.currentTarget, async () => {
    renderSettings(await api("PUT", "/api/config", {}));
    settingsError("");
    $("settings-saved").hidden = false;
  });
});

// ---------- pages ----------

const PAGES = {
  overview: () => Promise.all([loadHistory(), loadServer(), loadRequests()]),
  models: loadModels,
  logs: loadLogs,
  settings: loadSettings,
};

function currentPage() {
  const name = location.hash.replace(/^#\/?/, "");
  return PAGES[name] ? name : "overview";
}

function show(name) {
  for (const page of Object.keys(PAGES)) {
    $(`page-${page}`).hidden = page !== name;
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.getAttribute("data-page") === name);
  }
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · llama-dashboard`;
  PAGES[name]().catch((e) => { notify(e.message, true); });
}

window.addEventListener("hashchange", () => show(currentPage()));
loadServer().catch(() => {});
show(currentPage());
events.start();
