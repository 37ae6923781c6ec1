// wsPrism live demo: the SDK in a browser, no framework, no external requests.
//
//  - connection: WsPrismClient with a dev ticket `dev:<name>` (npm start allows them);
//  - presence:   client.members: the gateway's presence sync right after authed
//                (everyone already in the room), then sys.presence joins and leaves;
//  - chat:       chat:send {msg} with ack, handled by the example origin, which
//                broadcasts chat:msg {user,msg,at} and chat:system {text,at} or
//                rejects (banned words; three strikes kick);
//  - cursors:    hot lane svc 3 (mode state, 20 Hz tick), op 1, payload
//                [x:u16 LE][y:u16 LE][color:u8], x and y scaled to 0..65535 of the
//                canvas, sent at most every 50 ms; the frame's seq carries the
//                sender's clock (ms, mod 2^32) for the state latency readout;
//  - trails:     hot lane svc 4 (mode relay, coalesce: true): every move, drawn
//                as a fading path (trail.js);
//  - resume:     the demo tenant has recovery on (SPEC section 10): after a drop the
//                SDK reconnects with its position and the chat missed meanwhile is
//                replayed into the log, then a "recovered N messages" line (none when
//                nothing was missed, e.g. after a gateway restart); a failed
//                resume shows "resync: <reason>" (the demo keeps no chat history to
//                refetch, so what was missed then stays missing).
import { WsPrismClient } from "./sdk/index.js";
import { OP_TRAIL, SVC_TRAIL, Trails } from "./trail.js";

const TENANT = "demo";
const SVC_STATE = 3; // state, 20 Hz
const OP_DOT = 1;
const SEND_EVERY_MS = 50; // <= 20 Hz
const MAX_CHAT_LINES = 300;
const NAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;
const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/;
const PALETTE = ["#3b5bdb", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#9c6b30", "#495057"];
const CLOSE_WHY = { 1000: "normal", 1006: "connection lost", 4000: "no answer from the gateway", 1008: "policy", 4003: "kicked", 4004: "session replaced by another tab" };

const $ = (id) => /** @type {any} */ (document.getElementById(id));
const el = {
  joinForm: $("join"),
  name: $("name"),
  room: $("room"),
  status: $("status"),
  rtt: $("rtt"),
  stateLatency: $("state-latency"),
  notice: $("notice"),
  noticeText: $("notice-text"),
  rejoin: $("rejoin"),
  canvas: /** @type {HTMLCanvasElement} */ ($("canvas")),
  dots: $("remote-dots"),
  presence: $("presence"),
  memberCount: $("member-count"),
  log: $("chat-log"),
  chatForm: $("chat-form"),
  chatInput: $("chat-input"),
};

// --- Settings: ?room= (and ?name=, ?gateway=), else per-tab defaults ---------------

const params = new URLSearchParams(location.search);
const NAME_KEY = "wsprism-demo-name";
let name = pick(params.get("name"), NAME_RE) ?? pick(sessionStorage.getItem(NAME_KEY), NAME_RE) ?? randomName();
let room = pick(params.get("room"), ROOM_RE) ?? "lobby";
const gateway = params.get("gateway") || location.origin;
sessionStorage.setItem(NAME_KEY, name);

function pick(v, re) {
  return typeof v === "string" && re.test(v) ? v : null;
}
function randomName() {
  return `guest-${1000 + Math.floor(Math.random() * 9000)}`;
}
function colorIndex(user) {
  let h = 2166136261;
  for (let i = 0; i < user.length; i++) h = Math.imul(h ^ user.charCodeAt(i), 16777619);
  return (h >>> 0) % PALETTE.length;
}
const colorOf = (index) => PALETTE[index % PALETTE.length];

// --- State ---------------------------------------------------------------------------

/** @type {WsPrismClient | null} */
let client = null;
let kickedReason = null;
let lastClose = null;
/** Other tabs' dots by sender slot: x, y in 0..1, color index. */
const remote = new Map();
/** Slots whose first state frame since our authed was seen (that one may be an old snapshot). */
const seenSince = new Set();
const trails = new Trails();
const latencies = [];
/** This tab's pointer in 0..1, or null before the first move. */
let me = null;
let lastSentAt = -Infinity;
let sendTimer = null;
let framesSent = 0;
/** Resume outcomes since the page loaded: {event: "recovered", count} or {event: "resync", reason}. */
const resumes = [];

// --- Connection ------------------------------------------------------------------------

function connect() {
  const old = client;
  client = null;
  old?.close(1000, "leaving");
  kickedReason = null;
  lastClose = null;
  remote.clear();
  seenSince.clear();
  trails.clear();
  latencies.length = 0;

  const c = new WsPrismClient({
    url: gateway,
    tenant: TENANT,
    room,
    getTicket: () => `dev:${name}`,
    heartbeatMs: 2000,
    backoff: { baseMs: 250, maxMs: 5000 },
  });
  client = c;
  const mine = (fn) => (...args) => {
    if (client === c) fn(...args);
  };

  c.on("status", mine(() => renderStatus()));
  c.on("authed", mine(() => {
    kickedReason = null;
    remote.clear();
    seenSince.clear();
    latencies.length = 0;
    if (me) sendDot();
    renderStatus();
    renderPresence();
    invalidate();
  }));
  c.on("presence", mine((p) => {
    if (p.event === "leave" && !c.members.has(p.slot)) {
      remote.delete(p.slot);
      seenSince.delete(p.slot);
      trails.drop(p.slot);
      invalidate();
    }
    renderPresence();
  }));
  c.on("kicked", mine(({ reason }) => {
    kickedReason = reason || "no reason given";
    addLine("error", `you were kicked: ${kickedReason}`);
  }));
  c.on("close", mine((info) => {
    lastClose = info;
    if (!info.willReconnect) {
      remote.clear();
      invalidate();
    }
    renderStatus();
  }));
  // Resume (SPEC section 10): `recovered` comes after the replayed frames went through
  // the handlers below, so the missed chat lines are already in the log.
  c.on("recovered", mine(({ count }) => {
    resumes.push({ event: "recovered", count });
    if (count > 0) addLine("local", `recovered ${count} message${count === 1 ? "" : "s"}`, null, undefined, "recovered");
  }));
  c.on("resync", mine(({ reason }) => {
    resumes.push({ event: "resync", reason });
    addLine("local", `resync: ${reason} (chat sent while you were away is not shown)`, null, undefined, "resync");
  }));
  c.on("error", mine((e) => {
    if (e.seq === undefined) addLine("error", `${e.code}: ${e.msg}`); // errors with a seq reject their send
  }));

  c.on("members", mine(() => {
    renderPresence();
    invalidate();
  }));

  // Cursors: every inner frame of the state batches.
  c.onHot(SVC_STATE, OP_DOT, mine((sender, payload, seq) => {
    if (payload.byteLength < 5) return;
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    remote.set(sender, { x: dv.getUint16(0, true) / 65535, y: dv.getUint16(2, true) / 65535, color: dv.getUint8(4) });
    if (seenSince.has(sender) && seq !== null) {
      const age = ((Date.now() >>> 0) - seq) >>> 0; // wraps with the u32 clock
      if (age < 10_000) {
        latencies.push(age);
        if (latencies.length > 20) latencies.shift();
      }
    }
    seenSince.add(sender);
    invalidate();
  }));

  // Trails: relayed one by one, or several in one batch frame when the room is busy;
  // the SDK hands each frame to this handler with its sender's slot either way.
  c.onHot(SVC_TRAIL, OP_TRAIL, mine((sender, payload) => {
    trails.receive(sender, payload);
    invalidate();
  }));

  // Chat through the example origin.
  c.onMessage("chat", "msg", mine((data) => {
    if (data && typeof data.msg === "string") addLine("msg", data.msg, String(data.user ?? "?"), data.at);
  }));
  c.onMessage("chat", "system", mine((data) => {
    const text = typeof data === "string" ? data : typeof data?.text === "string" ? data.text : JSON.stringify(data);
    addLine("system", text, null, data?.at);
  }));

  addLine("local", `joining ${TENANT}/${room} as ${name}`);
  renderStatus();
  renderPresence();
  invalidate();
}

function userOf(slot) {
  return client?.members.get(slot)?.user ?? null;
}

// --- Cursor -------------------------------------------------------------------------------

function onPointer(ev) {
  const r = el.canvas.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) return;
  const clamp = (v) => Math.min(1, Math.max(0, v));
  me = { x: clamp((ev.clientX - r.left) / r.width), y: clamp((ev.clientY - r.top) / r.height) };
  invalidate();
  if (client) trails.send(client, me.x, me.y);
  if (sendTimer !== null) return; // the pending send takes the newest position
  const wait = lastSentAt + SEND_EVERY_MS - performance.now();
  if (wait <= 0) sendDot();
  else
    sendTimer = setTimeout(() => {
      sendTimer = null;
      sendDot();
    }, wait);
}

function sendDot() {
  if (!client || !me) return;
  lastSentAt = performance.now();
  const buf = new Uint8Array(5);
  const dv = new DataView(buf.buffer);
  dv.setUint16(0, Math.round(me.x * 65535), true);
  dv.setUint16(2, Math.round(me.y * 65535), true);
  dv.setUint8(4, colorIndex(name));
  if (client.sendHot(SVC_STATE, OP_DOT, buf, { seq: Date.now() >>> 0 })) framesSent++;
}

// --- Rendering --------------------------------------------------------------------------

const ctx = el.canvas.getContext("2d");
const W = el.canvas.width;
const H = el.canvas.height;
const dpr = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
el.canvas.width = W * dpr;
el.canvas.height = H * dpr;
let frameRequested = false;

function invalidate() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => {
    frameRequested = false;
    draw();
    renderDots();
  });
}

function draw() {
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = "#eceef3";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let x = 40; x < W; x += 40) ctx.moveTo(x + 0.5, 0), ctx.lineTo(x + 0.5, H);
  for (let y = 40; y < H; y += 40) ctx.moveTo(0, y + 0.5), ctx.lineTo(W, y + 0.5);
  ctx.stroke();
  ctx.font = "600 13px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  // Fading trails under the dots; keep redrawing while one is still fading out.
  if (trails.draw(ctx, W, H, (slot) => colorOf(remote.get(slot)?.color ?? colorIndex(userOf(slot) ?? "")))) invalidate();
  for (const [slot, d] of remote) dot(d.x * W, d.y * H, colorOf(d.color), userOf(slot) ?? `slot ${slot}`, true);
  if (me) dot(me.x * W, me.y * H, colorOf(colorIndex(name)), `${name} (you)`, false);
  if (remote.size === 0 && !me) {
    ctx.fillStyle = "#9aa1b1";
    ctx.textAlign = "center";
    ctx.fillText("move the mouse here; other tabs in this room see your dot", W / 2, H / 2);
    ctx.textAlign = "start";
  }
}

function dot(x, y, color, label, filled) {
  ctx.beginPath();
  ctx.arc(x, y, 8, 0, Math.PI * 2);
  if (filled) {
    ctx.fillStyle = color;
    ctx.fill();
  } else {
    ctx.lineWidth = 3;
    ctx.strokeStyle = color;
    ctx.stroke();
  }
  const tx = x + 14 > W - ctx.measureText(label).width - 4 ? x - 14 - ctx.measureText(label).width : x + 14;
  ctx.lineWidth = 4;
  ctx.strokeStyle = "rgba(255,255,255,0.9)";
  ctx.strokeText(label, tx, y);
  ctx.fillStyle = color;
  ctx.fillText(label, tx, y);
}

function renderDots() {
  const items = [];
  for (const [slot, d] of [...remote].sort((a, b) => a[0] - b[0])) {
    const li = document.createElement("li");
    li.dataset.testid = "remote-dot";
    li.dataset.slot = String(slot);
    const user = userOf(slot);
    if (user !== null) li.dataset.user = user;
    li.dataset.x = d.x.toFixed(4);
    li.dataset.y = d.y.toFixed(4);
    li.append(swatch(colorOf(d.color)), `${user ?? `slot ${slot}`}  ${Math.round(d.x * 100)}%, ${Math.round(d.y * 100)}%`);
    items.push(li);
  }
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "no other cursors in this room yet";
    items.push(li);
  }
  el.dots.replaceChildren(...items);
}

function swatch(color) {
  const s = document.createElement("span");
  s.className = "sw";
  s.style.background = color;
  return s;
}

function renderPresence() {
  const c = client;
  const own = c?.session?.slot;
  const items = [];
  const members = c && c.status === "open" ? [...c.members].sort((a, b) => a[0] - b[0]) : [];
  for (const [slot, m] of members) {
    const li = document.createElement("li");
    li.dataset.testid = "member";
    li.dataset.user = m.user;
    li.dataset.slot = String(slot);
    const who = document.createElement("span");
    who.textContent = m.user;
    li.append(swatch(colorOf(colorIndex(m.user))), who);
    if (slot === own) {
      const you = document.createElement("span");
      you.className = "me";
      you.textContent = "you";
      li.append(you);
    }
    const s = document.createElement("span");
    s.className = "slot";
    s.textContent = `slot ${slot}`;
    li.append(s);
    items.push(li);
  }
  el.presence.replaceChildren(...items);
  // Not connected: who is there is unknown, not zero.
  el.memberCount.textContent = c?.status === "open" ? String(members.length) : "–";
}

function renderStatus() {
  let state = client ? client.status : "closed";
  let text = state;
  const closeText = lastClose ? `${lastClose.code}${CLOSE_WHY[lastClose.code] ? ` ${CLOSE_WHY[lastClose.code]}` : ""}` : "";
  if (state === "closed" && kickedReason !== null) {
    state = "kicked";
    text = `kicked: ${kickedReason}`;
  } else if (state === "open" && client?.session) {
    text = `open · ${client.session.user} · slot ${client.session.slot}`;
  } else if (state === "closed" && lastClose) {
    text = `closed (${closeText})`;
  } else if (state === "reconnecting" && lastClose) {
    text = `reconnecting (${closeText})`;
  }
  el.status.dataset.status = state;
  el.status.textContent = text;
  el.status.title = text;

  if (state === "kicked") showNotice(`You were kicked from ${room}: ${kickedReason}`, "Rejoin");
  else if (state === "closed") showNotice(`Disconnected from ${room}${lastClose ? ` (${closeText})` : ""}.`, "Reconnect");
  else el.notice.hidden = true;
  if (state !== "open") renderPresence();
}

function showNotice(text, button) {
  el.noticeText.textContent = text;
  el.rejoin.textContent = button;
  el.notice.hidden = false;
}

function addLine(kind, text, user = null, at = undefined, event = undefined) {
  const stick = el.log.scrollHeight - el.log.scrollTop - el.log.clientHeight < 40;
  const li = document.createElement("li");
  li.dataset.testid = "chat-line";
  li.dataset.kind = kind;
  if (event) li.dataset.event = event;
  li.className = kind === "msg" ? "" : kind === "error" || kind === "pending" ? kind : "system";
  const time = document.createElement("time");
  const when = typeof at === "number" ? new Date(at) : new Date();
  time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  li.append(time);
  if (user !== null) {
    li.dataset.user = user;
    if (user === name) li.classList.add("mine");
    const who = document.createElement("span");
    who.className = "who";
    who.style.color = colorOf(colorIndex(user));
    who.textContent = user;
    li.append(who);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(body);
  el.log.append(li);
  while (el.log.children.length > MAX_CHAT_LINES) el.log.firstElementChild.remove();
  if (stick) el.log.scrollTop = el.log.scrollHeight;
  return li;
}

function renderReadouts() {
  const rtt = client?.status === "open" ? client.rtt : null;
  el.rtt.textContent = rtt === null || rtt === undefined ? "–" : `${rtt} ms`;
  if (latencies.length === 0) el.stateLatency.textContent = "–";
  else {
    const sorted = [...latencies].sort((a, b) => a - b);
    el.stateLatency.textContent = `${sorted[Math.floor(sorted.length / 2)]} ms`;
  }
}

// --- Wiring -----------------------------------------------------------------------------

el.name.value = name;
el.room.value = room;

el.joinForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const n = el.name.value.trim();
  const r = el.room.value.trim();
  el.name.classList.toggle("invalid", !NAME_RE.test(n));
  el.room.classList.toggle("invalid", !ROOM_RE.test(r));
  if (!NAME_RE.test(n)) return addLine("error", "name: 1–32 letters, digits, '.', '_' or '-'");
  if (!ROOM_RE.test(r)) return addLine("error", "room: letters, digits and _ . : @ - (starting with a letter or digit)");
  if (r !== room) el.log.replaceChildren();
  name = n;
  room = r;
  sessionStorage.setItem(NAME_KEY, name);
  const url = new URL(location.href);
  url.searchParams.set("room", room);
  if (url.searchParams.has("name")) url.searchParams.set("name", name);
  history.replaceState(null, "", url);
  connect();
});

el.rejoin.addEventListener("click", () => connect());

el.chatForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const msg = el.chatInput.value.trim();
  if (!msg || !client) return;
  el.chatInput.value = "";
  // Shown at once, marked, until the ack: the origin's chat:msg broadcast is the real line.
  const line = addLine("pending", msg, name);
  line.querySelector(".text").dataset.mark = client.status === "open" ? "sending…" : "queued: sent on reconnect";
  try {
    client.send("chat", "send", { msg }, { ack: true }).then(
      () => line.remove(),
      (err) => {
        line.remove();
        addLine("error", `not delivered: ${err?.message ?? err}`);
      },
    );
  } catch (err) {
    line.remove();
    addLine("error", `not sent: ${err?.message ?? err}`);
  }
});

el.canvas.addEventListener("pointermove", onPointer);
el.canvas.addEventListener("pointerdown", onPointer);

setInterval(renderReadouts, 500);

// For the browser tests (test/browser/demo.test.ts) and curious consoles.
window.__demo = {
  get client() {
    return client;
  },
  get name() {
    return name;
  },
  get room() {
    return room;
  },
  status: () => el.status.dataset.status,
  members: () => (client ? [...client.members].map(([slot, m]) => ({ slot, user: m.user, sid: m.sid })) : []),
  remoteDots: () => [...remote].map(([slot, d]) => ({ slot, user: userOf(slot), x: d.x, y: d.y, color: d.color })),
  framesSent: () => framesSent,
  stateLatencies: () => [...latencies],
  trailFrames: () => trails.frames,
  resumes: () => resumes.map((r) => ({ ...r })),
  position: () => client?.position ?? null,
};

connect();
