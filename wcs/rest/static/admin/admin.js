// The admin page: polls the REST API every 2 s and draws what it finds.
// Every value from the server goes into the page as text, never as markup.
"use strict";

const POLL_MS = 2000;
const HISTORY = 30; // samples per sparkline: a minute
const KEY = "wcsAdminKey";
const history = new Map(); // mediaSessionId -> [{t, octets, packets, lost}]

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(method, body) {
  const headers = {"Content-Type": "application/json"};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = "Bearer " + key;
  const response = await fetch("/rest-api/" + method,
                               {method: "POST", headers, body: JSON.stringify(body || {})});
  const text = await response.text();
  const value = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error((value && value.message) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return value;
}

function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

// Rates between the last two samples of a stream's counters.
function sample(stream) {
  const m = stream.metrics;
  if (!m) return;
  const samples = history.get(stream.mediaSessionId) || [];
  samples.push({t: performance.now() / 1000, octets: m.octets, packets: m.packets, lost: m.lost});
  if (samples.length > HISTORY + 1) samples.shift();
  history.set(stream.mediaSessionId, samples);
}

function rates(mediaSessionId) {
  const samples = history.get(mediaSessionId) || [];
  const kbps = [], loss = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i], dt = b.t - a.t;
    if (dt <= 0) continue;
    kbps.push(Math.max(0, b.octets - a.octets) * 8 / dt / 1000);
    if (b.lost !== null && a.lost !== null) {
      const lost = Math.max(0, b.lost - a.lost), got = Math.max(0, b.packets - a.packets);
      loss.push(lost + got ? 100 * lost / (lost + got) : 0);
    }
  }
  return {kbps, loss};
}

function sparkline(values, kind, max) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark " + kind);
  svg.setAttribute("viewBox", `0 0 ${HISTORY} 24`);
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(max, ...values) || 1;
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", values.map((v, i) =>
    `${i + HISTORY - values.length},${(23 - 22 * v / top).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}

function streamRow(stream) {
  const {kbps, loss} = rates(stream.mediaSessionId);
  const now = kbps.length ? kbps[kbps.length - 1] : 0;
  const lossNow = loss.length ? loss[loss.length - 1] : null;
  return el("div", {class: "stream", "data-stream": stream.mediaSessionId},
    el("span", {text: `${stream.name} (${stream.status}, ${stream.mediaProvider}` +
                      `${stream.videoCodec ? ", " + stream.videoCodec : ""})`}),
    sparkline(kbps, "bitrate", 100),
    el("span", {class: "kbps", text: `${now.toFixed(0)} kbit/s`}),
    sparkline(loss, "loss", 5),
    el("span", {class: "lossNow", text: lossNow === null ? "loss n/a" : `${lossNow.toFixed(1)} % lost`}),
    stream.recordName && stream.record ? el("span", {text: "● rec"}) : "",
    el("button", {type: "button", class: "terminateStream", text: "Stop",
                  onclick: () => act("stream/terminate", {mediaSessionId: stream.mediaSessionId})}));
}

function roomBox(room) {
  const box = el("div", {class: "room" + (room.idle ? " idle" : ""), "data-room": room.name},
    el("h3", {},
       el("span", {class: "roomName", text: room.name}),
       el("small", {text: room.idle ? "idle" : `${room.participants.length} participant(s)`}),
       el("button", {type: "button", class: "terminateRoom", text: "Terminate room",
                     onclick: () => act("room/terminate", {name: room.name})})));
  for (const participant of room.participants) {
    const row = el("div", {class: "participant", "data-login": participant.login},
      el("span", {class: "login", text: participant.login}), " ",
      el("button", {type: "button", class: "kick", text: "Kick",
                    onclick: () => act("room/kick", {name: room.name, login: participant.login})}),
      " ",
      el("button", {type: "button", class: "disconnect", text: "Disconnect",
                    onclick: () => act("connection/terminate", {sessionId: participant.sessionId})}));
    for (const stream of participant.streams) {
      sample(stream);
      row.append(streamRow(stream));
    }
    box.append(row);
  }
  return box;
}

function size(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

async function download(record) {
  // With the key in a header: a plain link could not carry it.
  const key = sessionStorage.getItem(KEY);
  const response = await fetch(record.url, {headers: key ? {Authorization: "Bearer " + key} : {}});
  if (!response.ok) { setStatus(`download failed: ${response.status}`, true); return; }
  const link = el("a", {href: URL.createObjectURL(await response.blob()), download: record.fileName});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

function recordRow(record) {
  return el("tr", {"data-file": record.fileName},
    el("td", {}, el("a", {href: "#", text: record.fileName,
                          onclick: (e) => { e.preventDefault(); download(record); }})),
    el("td", {text: size(record.size)}),
    el("td", {text: new Date(record.modified).toLocaleString()}),
    el("td", {}, el("button", {type: "button", class: "deleteRecord", text: "Delete",
                               onclick: () => act("record/delete", {fileName: record.fileName})})));
}

async function act(method, body) {
  const answer = document.getElementById("actionAnswer");
  try {
    await api(method, body);
    answer.textContent = `${method}: done`;
    answer.className = "";
  } catch (e) {
    answer.textContent = `${method}: ${e.message}`;
    answer.className = "error";
  }
  refresh();
}

let polling = false;
async function refresh() {
  if (polling) return;
  polling = true;
  try {
    const summaries = await api("room/find_all");
    const rooms = (await Promise.all(summaries.map(r =>
      api("room/find", {name: r.name}).catch(e => e.status === 404 ? null : Promise.reject(e)))))
      .filter(Boolean);
    document.getElementById("rooms").replaceChildren(...rooms.map(roomBox));
    document.getElementById("noRooms").hidden = rooms.length > 0;
    document.getElementById("roomCount").textContent = `(${rooms.length})`;
    const records = await api("record/find_all");
    document.querySelector("#records tbody").replaceChildren(...records.map(recordRow));
    setStatus("connected");
  } catch (e) {
    setStatus(e.status === 401 ? "enter the API key" : `error: ${e.message}`, true);
  } finally {
    polling = false;
  }
}

document.getElementById("keyForm").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("keyInput").value);
  document.getElementById("keyInput").value = "";
  setStatus("connecting");
  refresh();
});

document.getElementById("drainBtn").addEventListener("click", async () => {
  const answer = document.getElementById("drainAnswer");
  try {
    answer.textContent = "draining: " + JSON.stringify(await api("server/drain"));
    answer.className = "";
  } catch (e) {
    answer.textContent = `drain: ${e.status} ${e.message}`;
    answer.className = "error";
  }
});

refresh();
setInterval(refresh, POLL_MS);
