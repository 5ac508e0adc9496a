// The live plant board: facilities -> lines -> devices with their latest value, status
// and open anomalies (those of the last 15 minutes), live from the API's SSE stream;
// a device page (#/device/<id>) with a chart of its last 6 hours. Plain script, no
// build step: what a plant PC's browser can load from the API itself.
"use strict";

const OPEN_ANOMALY_MS = 15 * 60 * 1000;   // "open": detected in the last 15 minutes
const POLL_MS = 2000;                     // latest values: /devices every 2 s
const CHART_HOURS = 6;

const devices = new Map();    // device_id -> latest reading (GET /devices)
const anomalies = new Map();  // anomaly_id -> {device_id, type, severity, ts, ...}

async function getJson(path) {
  const response = await fetch(path, {headers: {Accept: "application/json"}});
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function loadDevices() {
  let after = "";
  const seen = new Set();
  for (;;) {
    const page = await getJson(`/devices?limit=1000&after=${encodeURIComponent(after)}`);
    for (const device of page.devices) { devices.set(device.device_id, device); seen.add(device.device_id); }
    if (!page.next_after) break;
    after = page.next_after;
  }
  for (const id of [...devices.keys()]) if (!seen.has(id)) devices.delete(id);
  document.getElementById("updated").textContent =
    `updated ${new Date().toLocaleTimeString()} (${devices.size} devices)`;
}

async function loadAnomalies() {
  const since = new Date(Date.now() - OPEN_ANOMALY_MS).toISOString();
  const answer = await getJson(`/anomalies?limit=1000&since=${encodeURIComponent(since)}`);
  for (const a of answer.anomalies) anomalies.set(a.anomaly_id, a);
}

function openAnomalies(deviceId) {
  const cutoff = Date.now() - OPEN_ANOMALY_MS;
  return [...anomalies.values()]
    .filter(a => (!deviceId || a.device_id === deviceId) && Date.parse(a.ts) >= cutoff)
    .sort((a, b) => Date.parse(b.ts) - Date.parse(a.ts));
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function formatValue(device) {
  return device.value === null ? "-" : `${Number(device.value).toFixed(2)} ${device.unit}`;
}

function age(ts) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
  return seconds < 120 ? `${seconds} s ago` : `${Math.round(seconds / 60)} min ago`;
}

function renderPlant() {
  const byFacility = new Map();
  for (const device of [...devices.values()].sort((a, b) => a.device_id.localeCompare(b.device_id))) {
    if (!byFacility.has(device.facility)) byFacility.set(device.facility, new Map());
    const lines = byFacility.get(device.facility);
    if (!lines.has(device.line)) lines.set(device.line, []);
    lines.get(device.line).push(device);
  }
  const plant = el("div");
  for (const [facility, lines] of [...byFacility].sort()) {
    const section = el("div", {class: "facility", "data-facility": facility}, el("h2", {}, facility));
    for (const [line, members] of [...lines].sort()) {
      const rows = members.map(device => {
        const open = openAnomalies(device.device_id);
        const silent = Date.now() - Date.parse(device.ts) > 5 * 60 * 1000;
        const row = el("tr", {"data-device": device.device_id,
                              class: open.length ? "alarm" : (silent ? "silent" : "")},
          el("td", {}, el("a", {href: `#/device/${encodeURIComponent(device.device_id)}`}, device.device_id)),
          el("td", {}, device.sensor_type),
          el("td", {class: "value"}, formatValue(device)),
          el("td", {class: "status"}, device.status || ""),
          el("td", {class: "seen"}, age(device.ts)),
          el("td", {class: "anomalies"}, open.length ? `${open.length} (${open[0].type})` : ""));
        return row;
      });
      const table = el("table", {},
        el("thead", {}, el("tr", {}, ...["device", "sensor", "value", "status", "last seen", "open anomalies"]
          .map(h => el("th", {}, h)))),
        el("tbody", {}, ...rows));
      section.append(el("div", {class: "line", "data-line": line}, el("h3", {}, `line ${line}`), table));
    }
    plant.append(section);
  }
  if (!devices.size) plant.append(el("p", {class: "muted"}, "No device has reported in the last 7 days."));
  document.getElementById("plant").replaceChildren(plant);
  renderFeed(document.getElementById("feed"), openAnomalies().slice(0, 30));
}

function renderFeed(list, items) {
  list.replaceChildren(...items.map(a => el("li", {class: a.severity, "data-anomaly-id": a.anomaly_id},
    `${new Date(a.ts).toLocaleTimeString()} ${a.device_id}: ${a.type} (${a.severity}) ${a.explanation || ""}`)));
}

// --- the device page -------------------------------------------------------------

async function renderDevice(deviceId) {
  const latest = await getJson(`/devices/${encodeURIComponent(deviceId)}/latest`).catch(() => null);
  document.getElementById("device-title").textContent = deviceId;
  document.getElementById("device-latest").textContent = latest
    ? `${formatValue(latest.reading)} ${latest.reading.status || ""} at ${new Date(latest.reading.ts).toLocaleTimeString()}` +
      ` (${latest.reading.facility} / line ${latest.reading.line}; from ${latest.source}, cache ${latest.cache})`
    : "no reading in the last 7 days";
  const to = new Date();
  const from = new Date(to.getTime() - CHART_HOURS * 3600 * 1000);
  const history = await getJson(`/devices/${encodeURIComponent(deviceId)}/readings?bucket=1m` +
    `&from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`);
  drawChart(document.getElementById("chart"), history.buckets, from, to, latest && latest.reading.unit);
  renderFeed(document.getElementById("device-anomalies"), openAnomalies(deviceId));
}

function drawChart(container, buckets, from, to, unit) {
  const W = 900, H = 260, M = {l: 56, r: 12, t: 12, b: 28};
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("id", "history");
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(svgNs, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  const points = buckets.filter(b => b.avg !== null);
  if (!points.length) {
    add("text", {x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#8a96a3"}, `no readings in ${CHART_HOURS} h`);
    container.replaceChildren(svg);
    return;
  }
  let lo = Math.min(...points.map(b => b.min)), hi = Math.max(...points.map(b => b.max));
  if (lo === hi) { lo -= 1; hi += 1; }
  const x = t => M.l + (Date.parse(t) - from.getTime()) / (to.getTime() - from.getTime()) * (W - M.l - M.r);
  const y = v => M.t + (hi - v) / (hi - lo) * (H - M.t - M.b);
  const band = points.map(b => `${x(b.start)},${y(b.max)}`).concat(
    [...points].reverse().map(b => `${x(b.start)},${y(b.min)}`)).join(" ");
  add("polygon", {points: band, fill: "#cfe3f7", stroke: "none"});
  add("polyline", {points: points.map(b => `${x(b.start)},${y(b.avg)}`).join(" "),
                   fill: "none", stroke: "#1f6fb2", "stroke-width": 1.5, "data-points": points.length});
  for (const v of [lo, (lo + hi) / 2, hi]) {
    add("text", {x: M.l - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11}, v.toFixed(1));
  }
  for (let i = 0; i <= CHART_HOURS; i++) {
    const t = new Date(from.getTime() + i * 3600 * 1000);
    add("text", {x: x(t.toISOString()), y: H - 8, "text-anchor": "middle", "font-size": 11},
        t.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}));
  }
  add("text", {x: M.l, y: M.t + 10, "font-size": 11, fill: "#4a5868"}, `min/avg/max per minute (${unit || ""})`);
  container.replaceChildren(svg);
}

// --- live updates --------------------------------------------------------------------

function listen() {
  const state = document.getElementById("stream-state");
  const source = new EventSource("/anomalies/stream");
  source.onopen = () => { state.textContent = "stream: live"; state.className = "state on"; };
  source.onerror = () => { state.textContent = "stream: reconnecting"; state.className = "state off"; };
  source.addEventListener("anomaly", event => {
    const a = JSON.parse(event.data);
    anomalies.set(a.anomaly_id, {...a, seq: Number(a.seq), score: Number(a.score)});
    render();
  });
}

function route() {
  const match = location.hash.match(/^#\/device\/(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

async function render() {
  const deviceId = route();
  document.getElementById("plant-view").hidden = deviceId !== null;
  document.getElementById("device-view").hidden = deviceId === null;
  if (deviceId === null) renderPlant(); else await renderDevice(deviceId);
}

async function tick() {
  try {
    await loadDevices();
    if (route() === null) renderPlant();
  } catch (error) {
    document.getElementById("updated").textContent = `update failed: ${error.message}`;
  }
}

async function start() {
  await Promise.all([loadDevices(), loadAnomalies()]).catch(error => {
    document.getElementById("updated").textContent = `load failed: ${error.message}`;
  });
  await render();
  listen();
  setInterval(tick, POLL_MS);
  setInterval(() => { if (route() !== null) render(); }, 10 * POLL_MS);
  window.addEventListener("hashchange", render);
}

start();
