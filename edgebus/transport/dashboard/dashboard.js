// edgebus status page: polls the monitoring JSON once a second and redraws. The rate plots
// are kept here, in the page (the server keeps no history: it does nothing while no one looks).
// Text from the server is only ever set with textContent, never parsed as HTML.
"use strict";

const POLL_MS = 1000;
const HISTORY = 300; // points per plot: five minutes at one a second

const hist = { inMsgs: [], outMsgs: [], inBytes: [], outBytes: [] };
let prev = null; // last {t, cpu, varz} sample, for rates
let busy = false;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function setText(id, text, value) {
  const e = $(id);
  if (!e) return;
  e.textContent = text;
  if (value !== undefined) e.dataset.value = String(value);
}

const int = (n) => Math.round(n).toLocaleString("en-US");

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? int(n) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
}

function rate(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return n >= 100 || n === 0 ? int(n) : n.toFixed(1);
}

function clock(rfc) {
  const t = Date.parse(rfc);
  if (!t || t < 86400000) return "";
  return new Date(t).toLocaleTimeString("en-GB");
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function push(arr, v) {
  arr.push(v);
  if (arr.length > HISTORY) arr.shift();
}

function plot(id, data, unit) {
  const svg = $(id);
  const max = Math.max(1, ...data);
  // the x axis grows with the history, from one minute up to HISTORY points
  const span = Math.min(HISTORY, Math.max(60, data.length));
  const n = span - 1;
  const off = span - data.length;
  const pts = data.map((v, i) => `${((off + i) * 300 / n).toFixed(1)},${(58 - v / max * 54).toFixed(1)}`);
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  if (pts.length > 1) {
    const area = document.createElementNS(ns, "polygon");
    area.setAttribute("points", `${pts[0].split(",")[0]},60 ${pts.join(" ")} 300,60`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(area, line);
  }
  // the scale in HTML beside the caption: text inside a stretched SVG would be distorted
  setText(id.replace("plot-", "peak-"), data.length ? "peak " + unit(Math.max(...data)) : "");
}

function renderServer(varz, dashz) {
  document.title = varz.server_name + " · edgebus";
  setText("server-name", varz.server_name);
  setText("server-id", varz.server_id);
  setText("edgebus-version", "edgebus " + dashz.edgebus_version);
  setText("version", varz.version, varz.version);
  setText("uptime", varz.uptime);
  setText("mem", bytes(varz.mem), varz.mem);
  for (const k of ["nats", "websocket", "mqtt", "leaf"]) {
    setText("conn-" + k, int(dashz.connections[k]), dashz.connections[k]);
  }
  setText("connections", int(varz.connections), varz.connections);
  setText("subscriptions", int(varz.subscriptions), varz.subscriptions);
  setText("slow-consumers", int(varz.slow_consumers), varz.slow_consumers);
  setText("in-msgs", int(varz.in_msgs), varz.in_msgs);
  setText("out-msgs", int(varz.out_msgs), varz.out_msgs);
  setText("in-bytes", bytes(varz.in_bytes), varz.in_bytes);
  setText("out-bytes", bytes(varz.out_bytes), varz.out_bytes);
}

function renderTraffic(varz, dashz) {
  const t = dashz.now_ns / 1e9;
  if (prev && t > prev.t && varz.server_id === prev.varz.server_id) {
    const dt = t - prev.t;
    const r = (k) => Math.max(0, varz[k] - prev.varz[k]) / dt; // a counter reset is no traffic
    const now = { inMsgs: r("in_msgs"), outMsgs: r("out_msgs"), inBytes: r("in_bytes"), outBytes: r("out_bytes") };
    for (const k of Object.keys(hist)) push(hist[k], now[k]);
    setText("rate-in-msgs", rate(now.inMsgs) + " msg/s", now.inMsgs);
    setText("rate-out-msgs", rate(now.outMsgs) + " msg/s", now.outMsgs);
    setText("rate-in-bytes", bytes(now.inBytes) + "/s", now.inBytes);
    setText("rate-out-bytes", bytes(now.outBytes) + "/s", now.outBytes);
    const cpu = Math.max(0, dashz.cpu_ns - prev.cpu) / (dt * 1e9) * 100;
    setText("cpu", cpu.toFixed(1) + " %", cpu);
    setText("traffic-window", `last ${Math.round(hist.inMsgs.length * POLL_MS / 1000)} s`);
  }
  const msgs = (v) => rate(v) + "/s";
  const byts = (v) => bytes(v) + "/s";
  plot("plot-in-msgs", hist.inMsgs, msgs);
  plot("plot-out-msgs", hist.outMsgs, msgs);
  plot("plot-in-bytes", hist.inBytes, byts);
  plot("plot-out-bytes", hist.outBytes, byts);
  prev = { t, cpu: dashz.cpu_ns, varz };
}

function figure(label, value, text, key) {
  return el("div", {}, el("dt", {}, label), el("dd", { "data-k": key, "data-value": String(value) }, text));
}

// A mirror or source as nats-server's StreamSourceInfo gives it: `active` is how long ago (ns)
// the origin was last heard from, -1 for never; a minute of silence counts as inactive.
const SOURCE_SILENT_NS = 60e9;

function sourceRow(kind, s) {
  const heard = typeof s.active === "number" && s.active >= 0;
  const active = heard && s.active < SOURCE_SILENT_NS && !s.error;
  const err = s.error && (typeof s.error === "string" ? s.error : s.error.description || "error");
  const state = err ? "error: " + err : active ? "active" : "inactive";
  return el("tr", { "data-source": s.name, "data-kind": kind, "data-state": active ? "active" : "inactive" },
    el("td", {}, kind + " " + s.name + (s.external && s.external.api ? " (" + s.external.api + ")" : "")),
    el("td", { class: "num", "data-k": "lag", "data-value": String(s.lag) }, int(s.lag || 0)),
    el("td", { class: "state " + (active ? "connected" : "inactive") }, state),
    el("td", { class: "num" }, heard ? (s.active / 1e9).toFixed(1) + " s ago" : "never"));
}

function renderStreams(jsz) {
  const box = $("streams");
  if (!jsz || jsz.disabled) {
    setText("js-summary", "(not enabled)");
    box.replaceChildren(el("p", { class: "empty" }, "JetStream is not enabled on this server."));
    return;
  }
  setText("js-summary", `${int(jsz.streams)} streams · ${int(jsz.consumers)} consumers · ${int(jsz.messages)} msgs · ${bytes(jsz.bytes)}`);
  const cards = [];
  const all = [];
  for (const acc of jsz.account_details || []) {
    for (const s of acc.stream_detail || []) all.push([acc, s]);
  }
  // edgebus's own streams ($MQTT_...) after the user's
  all.sort(([, a], [, b]) => (a.name[0] === "$") - (b.name[0] === "$"));
  for (const [acc, s] of all) {
    const st = s.state || {};
    const internal = s.name[0] === "$";
    const card = el("article", { class: "stream" + (internal ? " internal" : ""), "data-stream": s.name, "data-account": acc.name },
      el("h3", {}, s.name, el("small", {}, (acc.name !== "$G" ? "  · account " + acc.name : "") + (internal ? "  · internal" : ""))),
      el("dl", { class: "figures" },
        figure("Messages", st.messages, int(st.messages || 0), "messages"),
        figure("Bytes", st.bytes, bytes(st.bytes || 0), "bytes"),
        figure("First seq", st.first_seq, int(st.first_seq || 0), "first_seq"),
        figure("Last seq", st.last_seq, int(st.last_seq || 0), "last_seq")));
    const cons = s.consumer_detail || [];
    if (cons.length) {
      card.append(el("div", { class: "scroll" }, el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "Consumer"), el("th", { class: "num" }, "Pending"),
          el("th", { class: "num" }, "Ack pending"), el("th", { class: "num" }, "Redelivered"))),
        el("tbody", {}, ...cons.map((c) => el("tr", { "data-consumer": c.name },
          el("td", {}, c.name),
          el("td", { class: "num", "data-k": "num_pending", "data-value": String(c.num_pending) }, int(c.num_pending || 0)),
          el("td", { class: "num", "data-k": "num_ack_pending", "data-value": String(c.num_ack_pending) }, int(c.num_ack_pending || 0)),
          el("td", { class: "num" }, int(c.num_redelivered || 0))))))));
    } else {
      card.append(el("p", { class: "note" }, "no consumers"));
    }
    const srcs = [];
    if (s.mirror) srcs.push(sourceRow("mirror", s.mirror));
    for (const src of s.sources || []) srcs.push(sourceRow("source", src));
    if (srcs.length) {
      card.append(el("div", { class: "scroll" }, el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "Origin"), el("th", { class: "num" }, "Lag"),
          el("th", {}, "State"), el("th", { class: "num" }, "Last seen"))),
        el("tbody", {}, ...srcs))));
    }
    cards.push(card);
  }
  box.replaceChildren(...(cards.length ? cards : [el("p", { class: "empty" }, "No streams.")]));
}

function renderLeaf(dashz, leafz) {
  // /leafz `remotes` (where present) lists the same remotes in the same order, with the
  // stream syncs over each: what waits to go up is their lag
  const syncs = (leafz.remotes || []).map((r) => (r.sync || []).filter((x) => x.direction === "up"));
  const rows = (dashz.leaf_remotes || []).map((r, i) => {
    const up = syncs[i] || [];
    const waiting = up.reduce((n, x) => n + (x.lag || 0), 0);
    let state = r.state;
    if (r.state === "retrying") state += r.attempts ? ` (attempt ${r.attempts})` : "";
    const since = clock(r.since);
    const row = el("tr", { "data-remote": r.url, "data-state": r.state },
      el("td", { class: "url" }, r.url + (r.hub ? " → " + r.hub : "")),
      el("td", { class: "state " + r.state }, state,
        el("span", { class: "since" }, since ? "since " + since : ""),
        r.state !== "connected" && r.last_error ? el("span", { class: "since error" }, r.last_error) : ""),
      el("td", { class: "num" }, r.rtt || "–"),
      el("td", { class: "num", "data-k": "backlog", "data-value": String(r.backlog_bytes), "data-msgs": String(waiting) },
        bytes(r.backlog_bytes), up.length ? el("span", { class: "since" }, int(waiting) + " msgs to sync") : ""));
    return row;
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "4", class: "empty" }, "No remotes configured.")));
  $("leaf-remotes").replaceChildren(...rows);
  const accepted = (leafz.leafs || []).filter((l) => !l.is_spoke).length;
  const hubs = (leafz.leafs || []).filter((l) => !l.is_spoke).map((l) => `${l.name || l.ip} (rtt ${l.rtt})`);
  setText("leaf-accepted", accepted ? `Accepted leaf connections: ${hubs.join(", ")}` : "");
}

function renderMQTT(dashz) {
  const m = dashz.mqtt;
  $("mqtt").hidden = false;
  for (const [id, k] of [["mqtt-clients", "clients"], ["mqtt-sessions", "sessions"],
                         ["mqtt-persistent", "persistent_sessions"], ["mqtt-retained", "retained"]]) {
    if (m) setText(id, int(m[k]), m[k]); else setText(id, "off");
  }
}

function renderLog(logz) {
  const items = (logz.lines || []).slice(-20).reverse().map((l) =>
    el("li", { class: l.level }, el("span", { class: "lvl" }, "[" + l.level + "]"), " ",
      clock(l.time), " ", l.text));
  if (!items.length) items.push(el("li", { class: "empty" }, "Nothing logged at warning level or above."));
  $("log-lines").replaceChildren(...items);
}

function setLive(text, cls) {
  const live = $("live");
  if (live.textContent !== text) live.textContent = text;
  live.className = cls;
}

async function poll() {
  // a slow answer: skip a tick rather than pile up requests; a hidden tab asks nothing
  if (busy || document.hidden) return;
  busy = true;
  try {
    const [varz, dashz, leafz, logz] = await Promise.all(
      [getJSON("varz"), getJSON("dashz"), getJSON("leafz"), getJSON("logz?limit=20")]);
    const jsz = dashz.jetstream ? await getJSON("jsz?streams=true&consumers=true") : null;
    renderServer(varz, dashz);
    renderTraffic(varz, dashz);
    renderStreams(jsz);
    renderLeaf(dashz, leafz);
    renderMQTT(dashz);
    renderLog(logz);
    // the status text changes only when the state does (a screen reader announces changes)
    setLive("live", "live ok");
    setText("updated", "updated " + new Date().toLocaleTimeString("en-GB"));
    document.body.dataset.updated = String(Date.now());
  } catch (e) {
    setLive("NO CONNECTION to server (" + e.message + ")", "live down");
  } finally {
    busy = false;
  }
}

poll();
setInterval(poll, POLL_MS);
document.addEventListener("visibilitychange", poll);
