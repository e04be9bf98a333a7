// printbridge dashboard: one card per printer, live from GET /api/v1/printers/stream/ (server-sent events).
// The browser's EventSource cannot send an Authorization header, so the stream is read with fetch() and a
// ReadableStream reader. The API token is kept in sessionStorage (this tab only); a 401 shows the form again.
"use strict";

const TOKEN_KEY = "printbridge.token";
const STREAM_URL = "/api/v1/printers/stream/";
const TEMP_WINDOW_MS = 10 * 60 * 1000; // the temperature chart shows the last 10 minutes
const COMMANDS_SHOWN = 5;
const ACTION_LABELS = { pause: "Pause", resume: "Resume", cancel: "Cancel" };

const cards = new Map(); // printer id -> Card
let token = sessionStorage.getItem(TOKEN_KEY);
let lastEventId = null;
let streamAbort = null;
let retryMs = 1000;

const $ = (id) => document.getElementById(id);

class Unauthorized extends Error {}

function authHeaders() {
  return { Authorization: `Bearer ${token}` };
}

async function api(method, path) {
  const resp = await fetch(path, { method, headers: authHeaders(), cache: "no-store" });
  if (resp.status === 401) {
    throw new Unauthorized(await detail(resp));
  }
  return resp;
}

async function detail(resp) {
  try {
    const body = await resp.json();
    return typeof body.detail === "string" ? body.detail : `HTTP ${resp.status}`;
  } catch (err) {
    return `HTTP ${resp.status}`;
  }
}

// -- sign in / out ----------------------------------------------------------------------------------------

function showLogin(message) {
  stopStream();
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  for (const card of cards.values()) card.remove();
  cards.clear();
  $("login").hidden = false;
  $("logout").hidden = true;
  $("empty").hidden = true;
  $("stream-error").hidden = true;
  setConnection("");
  const error = $("login-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("token").focus();
}

function signedIn() {
  $("login").hidden = true;
  $("logout").hidden = false;
  startStream();
}

function setConnection(text, live) {
  const el = $("connection");
  el.textContent = text;
  el.classList.toggle("live", Boolean(live));
}

// -- the event stream -------------------------------------------------------------------------------------

function stopStream() {
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
}

function startStream() {
  stopStream();
  const controller = new AbortController();
  streamAbort = controller;
  readStream(controller.signal).then(
    () => reconnect(controller, "stream ended"),
    (err) => {
      if (err instanceof Unauthorized) {
        showLogin(err.message === "Invalid token." ? "That token is not valid." : err.message);
      } else if (!controller.signal.aborted) {
        reconnect(controller, err.message || String(err));
      }
    },
  );
}

function reconnect(controller, why) {
  if (controller.signal.aborted || streamAbort !== controller) return;
  setConnection(`reconnecting (${why})`);
  setTimeout(() => {
    if (streamAbort === controller) startStream();
  }, retryMs);
  retryMs = Math.min(retryMs * 2, 15000);
}

async function readStream(signal) {
  const headers = { ...authHeaders(), Accept: "text/event-stream" };
  if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
  const resp = await fetch(STREAM_URL, { headers, signal, cache: "no-store" });
  if (resp.status === 401) throw new Unauthorized(await detail(resp));
  if (!resp.ok) throw new Error(await detail(resp));
  setConnection("live", true);
  retryMs = 1000;
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { name: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      let line = buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (event.data.length) dispatch(event.name, event.data.join("\n"));
        if (event.id !== null) lastEventId = event.id;
        event = { name: "message", data: [], id: null };
        continue;
      }
      if (line.startsWith(":")) continue; // heartbeat
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "event") event.name = text;
      else if (field === "data") event.data.push(text);
      else if (field === "id") event.id = text;
    }
  }
}

function dispatch(name, data) {
  const body = JSON.parse(data);
  if (name === "printers") {
    const seen = new Set(body.map((p) => p.id));
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.remove();
        cards.delete(id);
      }
    }
    for (const printer of body) upsert(printer);
    $("stream-error").hidden = true;
  } else if (name === "printer") {
    upsert(body);
  } else if (name === "deleted") {
    const card = cards.get(body.id);
    if (card) {
      card.remove();
      cards.delete(body.id);
    }
  } else if (name === "command") {
    const card = cards.get(body.printer_id);
    if (card) card.addCommand(body);
  } else if (name === "snapshot") {
    const card = cards.get(body.id);
    if (card) card.loadSnapshot();
  } else if (name === "error") {
    const el = $("stream-error");
    el.textContent = `The bridge closed the live stream: ${body.detail}`;
    el.hidden = false;
  }
  $("empty").hidden = cards.size > 0;
}

function upsert(printer) {
  let card = cards.get(printer.id);
  if (!card) {
    card = new Card(printer);
    cards.set(printer.id, card);
    insertSorted(card);
  }
  card.update(printer);
}

function insertSorted(card) {
  const list = $("printers");
  const after = [...list.children].find((el) => Number(el.dataset.printerId) > card.id);
  list.insertBefore(card.el, after || null);
}

// -- a printer's card -------------------------------------------------------------------------------------

class Card {
  constructor(printer) {
    this.id = printer.id;
    this.el = $("card-template").content.firstElementChild.cloneNode(true);
    this.el.dataset.printerId = String(printer.id);
    this.q = (sel) => this.el.querySelector(sel);
    this.printer = null;
    this.printId = undefined;
    this.temps = []; // {t, tool, bed}
    this.scores = []; // {t, p}
    this.snapshotUrl = null;
    this.cancelArmedUntil = 0;
    for (const button of this.el.querySelectorAll("button[data-action]")) {
      button.addEventListener("click", () => this.act(button.dataset.action, button));
    }
    this.loadCommands();
    if (printer.pic) this.loadSnapshot();
  }

  remove() {
    this.el.remove();
    if (this.snapshotUrl) URL.revokeObjectURL(this.snapshotUrl);
  }

  update(p) {
    const hadPic = this.printer && this.printer.pic;
    this.printer = p;
    const status = p.status;
    const online = status !== null;
    this.q(".name").textContent = p.name;
    const badge = this.q(".online");
    badge.textContent = online ? "online" : "offline";
    badge.className = `online badge ${online ? "on" : "off"}`;
    const state = online && status.state && typeof status.state.text === "string" ? status.state.text : "Offline";
    this.q(".state").textContent = state;
    const cp = p.current_print;
    const job = online && status.job && status.job.file ? status.job.file.name : null;
    this.q(".file").textContent = job || (cp && cp.filename) || "—";
    const progress = online && status.progress ? status.progress : {};
    const completion = cp && typeof progress.completion === "number" ? progress.completion : null;
    const bar = this.q(".progress");
    this.q(".progress-bar").style.width = `${completion === null ? 0 : Math.max(0, Math.min(100, completion))}%`;
    bar.setAttribute("aria-valuenow", completion === null ? "0" : String(completion));
    this.q(".progress-text").textContent = completion === null ? "not printing" : `${completion.toFixed(1)} %`;
    this.q(".time-left").textContent =
      cp && typeof progress.printTimeLeft === "number" ? `· ${duration(progress.printTimeLeft)} left` : "";
    this.updateTemps(online ? status.temperatures : null);
    this.updateScore(p);
    this.updateAlert(cp);
    this.updateButtons(online, cp, status);
    if (p.pic && !hadPic) this.loadSnapshot();
  }

  updateTemps(temps) {
    const el = this.q(".temps");
    el.replaceChildren();
    const now = Date.now();
    const tool = temps && temps.tool0 ? temps.tool0 : null;
    const bed = temps && temps.bed ? temps.bed : null;
    if (tool) el.append(tempSpan("tool", "Tool", tool));
    if (tool && bed) el.append(" · ");
    if (bed) el.append(tempSpan("bed", "Bed", bed));
    if (!tool && !bed) el.textContent = "No temperatures";
    if (tool || bed) {
      this.temps.push({ t: now, tool: tool ? tool.actual : null, bed: bed ? bed.actual : null });
    }
    this.temps = this.temps.filter((point) => now - point.t <= TEMP_WINDOW_MS);
    // the last 10 minutes, or since the page opened (at least a minute) while there is less
    const start = this.temps.length ? Math.min(this.temps[0].t, now - 60000) : now - TEMP_WINDOW_MS;
    drawChart(
      this.q(".temp-chart"),
      start,
      now,
      [
        { color: cssVar("--tool"), points: this.temps.map((s) => [s.t, s.tool]) },
        { color: cssVar("--bed"), points: this.temps.map((s) => [s.t, s.bed]) },
      ],
      { label: (v) => `${v.toFixed(0)} °C` },
    );
  }

  updateScore(p) {
    const cp = p.current_print;
    this.q(".score").textContent = cp ? p.normalized_p.toFixed(2) : "—";
    this.q(".watching").textContent = p.not_watching_reason ? `(${p.not_watching_reason})` : cp ? "(watching)" : "";
    const printId = cp ? cp.id : null;
    if (printId !== this.printId) {
      this.printId = printId;
      this.scores = [];
      if (printId !== null) this.loadScores(printId);
    } else if (printId !== null) {
      const last = this.scores[this.scores.length - 1];
      if (!last || last.p !== p.normalized_p) this.scores.push({ t: Date.now(), p: p.normalized_p });
    }
    this.drawScores();
  }

  async loadScores(printId) {
    try {
      const resp = await api("GET", `/api/v1/printers/${this.id}/scores/`);
      if (!resp.ok) return;
      const body = await resp.json();
      if (body.print_id !== this.printId) return;
      const loaded = body.points.map((point) => ({ t: Date.parse(point.t), p: point.p }));
      const newer = this.scores.filter((s) => !loaded.length || s.t > loaded[loaded.length - 1].t);
      this.scores = [...loaded, ...newer];
      this.drawScores();
    } catch (err) {
      if (err instanceof Unauthorized) showLogin(err.message);
    }
  }

  drawScores() {
    const canvas = this.q(".score-chart");
    const cp = this.printer && this.printer.current_print;
    const start = cp ? Date.parse(cp.started_at) : Date.now();
    const points = this.scores.map((s) => [s.t, s.p]);
    if (points.length) points.push([Date.now(), points[points.length - 1][1]]);
    canvas.dataset.points = String(this.scores.length);
    canvas.dataset.last = this.scores.length ? String(this.scores[this.scores.length - 1].p) : "";
    drawChart(canvas, start, Date.now(), [{ color: cssVar("--score"), points, step: true }], {
      yMin: 0,
      yMax: 1,
      guides: [1 / 3, 2 / 3],
      label: (v) => v.toFixed(1),
    });
  }

  updateAlert(cp) {
    const banner = this.q(".alert-banner");
    const outstanding =
      cp && cp.alerted_at && (!cp.alert_acknowledged_at || cp.alerted_at > cp.alert_acknowledged_at);
    banner.hidden = !outstanding;
    if (outstanding) {
      this.q(".alert-text").textContent = `Alerted at ${new Date(cp.alerted_at).toLocaleTimeString()}${
        cp.paused_at ? "; the print was paused" : ""
      }.`;
    }
    const mute = this.q('button[data-action="mute"]');
    const muted = Boolean(cp && cp.alert_muted_at);
    mute.textContent = muted ? "Unmute alerts" : "Mute alerts";
    mute.dataset.muted = muted ? "true" : "false";
  }

  updateButtons(online, cp, status) {
    const flags = online && status.state && status.state.flags ? status.state.flags : {};
    const busy = this.el.classList.contains("busy");
    this.q('button[data-action="pause"]').disabled = busy || !cp || !online || flags.paused === true;
    this.q('button[data-action="resume"]').disabled = busy || !cp || !online || flags.paused !== true;
    this.q('button[data-action="cancel"]').disabled = busy || !cp || !online;
  }

  async act(action, button) {
    const result = this.q(".action-result");
    let path;
    let label;
    if (action === "cancel" && Date.now() > this.cancelArmedUntil) {
      this.cancelArmedUntil = Date.now() + 4000;
      button.textContent = "Really cancel?";
      setTimeout(() => {
        button.textContent = ACTION_LABELS.cancel;
      }, 4000);
      return;
    }
    if (action === "mute") {
      const mute = button.dataset.muted !== "true";
      path = `mute_current_print?mute_alert=${mute}`;
      label = mute ? "Mute" : "Unmute";
    } else if (action === "acknowledge") {
      path = "acknowledge_alert";
      label = "Acknowledge";
    } else {
      path = `${action}_print`;
      label = ACTION_LABELS[action];
      button.textContent = ACTION_LABELS[action];
    }
    this.el.classList.add("busy");
    for (const b of this.el.querySelectorAll("button[data-action]")) b.disabled = true;
    result.className = "action-result pending";
    result.textContent = `${label}: waiting for the printer…`;
    try {
      const resp = await api("POST", `/api/v1/printers/${this.id}/${path}`);
      if (!resp.ok) {
        result.className = "action-result failed";
        result.textContent = `${label} failed: ${await detail(resp)}`;
      } else {
        const body = await resp.json();
        result.className = `action-result ${body.succeeded ? "ok" : "failed"}`;
        result.textContent = body.succeeded
          ? `${label}: ${action === "mute" || action === "acknowledge" ? "done" : "acknowledged by the printer"}`
          : `${label} failed: ${body.error}`;
        upsert(body.printer);
      }
    } catch (err) {
      if (err instanceof Unauthorized) {
        showLogin(err.message);
        return;
      }
      result.className = "action-result failed";
      result.textContent = `${label} failed: ${err.message || err}`;
    } finally {
      this.el.classList.remove("busy");
      for (const b of this.el.querySelectorAll("button[data-action]")) b.disabled = false;
      if (this.printer) this.update(this.printer);
    }
  }

  async loadCommands() {
    try {
      const resp = await api("GET", `/api/v1/printers/${this.id}/commands/?limit=${COMMANDS_SHOWN}`);
      if (!resp.ok) return;
      const rows = await resp.json();
      const list = this.q(".commands");
      const shown = new Set([...list.children].map((li) => li.dataset.cmdId));
      for (const row of rows.reverse()) {
        if (!shown.has(row.cmd_id)) this.addCommand(row);
      }
    } catch (err) {
      if (err instanceof Unauthorized) showLogin(err.message);
    }
  }

  addCommand(row) {
    const list = this.q(".commands");
    const existing = [...list.children].find((li) => li.dataset.cmdId === row.cmd_id);
    const li = existing || document.createElement("li");
    li.dataset.cmdId = row.cmd_id;
    li.replaceChildren();
    const when = new Date(row.sent_at).toLocaleTimeString();
    li.append(`${when} ${row.cmd} (${row.initiator}): `);
    const outcome = document.createElement("span");
    outcome.className = `outcome-${row.outcome}`;
    outcome.textContent = row.outcome || "waiting";
    li.append(outcome);
    if (row.error) li.append(` — ${row.error}`);
    if (row.latency_ms !== null && row.latency_ms !== undefined) li.append(` (${row.latency_ms.toFixed(1)} ms)`);
    if (!existing) list.prepend(li);
    while (list.children.length > COMMANDS_SHOWN) list.lastElementChild.remove();
  }

  async loadSnapshot() {
    // /pic needs the Authorization header, so an <img src> cannot load it: fetch it and show a blob URL.
    try {
      const resp = await api("GET", `/api/v1/printers/${this.id}/pic`);
      if (!resp.ok) return;
      const url = URL.createObjectURL(await resp.blob());
      const img = this.q(".snapshot");
      img.src = url;
      img.hidden = false;
      this.q(".no-snapshot").hidden = true;
      if (this.snapshotUrl) URL.revokeObjectURL(this.snapshotUrl);
      this.snapshotUrl = url;
      this.el.dataset.snapshots = String(Number(this.el.dataset.snapshots || 0) + 1);
    } catch (err) {
      if (err instanceof Unauthorized) showLogin(err.message);
    }
  }
}

function tempSpan(kind, label, temp) {
  const span = document.createElement("span");
  span.className = kind;
  const actual = typeof temp.actual === "number" ? temp.actual.toFixed(1) : "?";
  const target = typeof temp.target === "number" ? temp.target.toFixed(0) : "?";
  span.textContent = `${label} ${actual} / ${target} °C`;
  return span;
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min`;
  return `${s} s`;
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// A small line chart: series of [time, value] points between t0 and t1. Without yMin/yMax the range fits
// the data. `guides` are dashed horizontal lines (the failure score's 1/3 and 2/3 thresholds); `label`
// formats the top and bottom values written at the left edge.
function drawChart(canvas, t0, t1, series, { yMin, yMax, guides = [], label = String } = {}) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300;
  const height = canvas.clientHeight || 60;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = cssVar("--border");
  ctx.lineWidth = 1;
  ctx.strokeRect(0.5, 0.5, width - 1, height - 1);
  const values = series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => typeof v === "number"));
  if (!values.length && yMin === undefined) return;
  let lo = yMin !== undefined ? yMin : Math.min(...values);
  let hi = yMax !== undefined ? yMax : Math.max(...values);
  if (hi - lo < 1e-9) {
    lo -= 1;
    hi += 1;
  }
  const span = Math.max(t1 - t0, 1);
  const x = (t) => ((t - t0) / span) * (width - 4) + 2;
  const y = (v) => height - 3 - ((v - lo) / (hi - lo)) * (height - 6);
  ctx.setLineDash([3, 3]);
  for (const g of guides) {
    ctx.beginPath();
    ctx.moveTo(0, Math.round(y(g)) + 0.5);
    ctx.lineTo(width, Math.round(y(g)) + 0.5);
    ctx.stroke();
  }
  ctx.setLineDash([]);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let started = false;
    let prevY = null;
    for (const [t, v] of s.points) {
      if (typeof v !== "number") {
        started = false;
        continue;
      }
      if (!started) {
        ctx.moveTo(x(t), y(v));
        started = true;
      } else {
        if (s.step && prevY !== null) ctx.lineTo(x(t), prevY);
        ctx.lineTo(x(t), y(v));
      }
      prevY = y(v);
    }
    ctx.stroke();
  }
  ctx.fillStyle = cssVar("--muted");
  ctx.font = "10px system-ui, sans-serif";
  ctx.fillText(label(hi), 4, 11);
  ctx.fillText(label(lo), 4, height - 4);
}

// -- start ------------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    signedIn();
  });
  $("logout").addEventListener("click", () => showLogin(""));
  if (token) signedIn();
  else showLogin("");
});
