/**
 * The bench's origin for "events to origins" (bench/lib/origins.ts): one Node
 * process (node:http) that both targets deliver client events to, and that only
 * records when each event arrived. It verifies nothing and answers at once, so
 * what is measured is the path from the client to here.
 *
 *   POST /gw…   the gateway's webhooks (docs/origins.md): JSON {events: [...]},
 *               answered 200 with an empty body (every event accepted, no action).
 *   POST /bare… the bare forwarder's requests (bench/entry.ts, BaselineForwarder):
 *               one client frame per request, as the client sent it; answered 200
 *               with an empty body.
 *   POST /pp…   Pushpin's WebSocket-over-HTTP requests (Content-Type
 *               application/websocket-events: OPEN, TEXT <hex length>, CLOSE, …),
 *               answered 200 with OPEN to an OPEN and CLOSE to a CLOSE.
 *   GET /count?tag=t&tag=u  {unique: [n, m]} events of each tag so far (cheap: polled while draining)
 *   GET /stats?tag=t        counts, POSTs and latency summary (ms, this process's clock)
 *   GET /clock              {now}: epoch ms with sub-ms precision, to measure the offset
 *   GET /healthz            200
 *
 * Each client message's data is {r: tag, c: client, n: number, t: send time in
 * epoch ms (performance.timeOrigin + performance.now() of the load generator)}.
 * The arrival time is taken when the request body has been read.
 *
 * Listens on 127.0.0.1:$PORT only. Bounded: bodies up to 8 MiB, 512 tags.
 */
import { createServer, type ServerResponse } from "node:http";

const PORT = Number(process.env.PORT);
if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) {
  console.error("bench/origin.ts: PORT must be a port number");
  process.exit(2);
}
const MAX_BODY = 8 * 1024 * 1024;
const MAX_TAGS = 512;
const TAG_RE = /^[A-Za-z0-9_-]{1,40}$/;

const epochNow = () => performance.timeOrigin + performance.now();

interface Tag {
  unique: number;
  duplicates: number;
  /** POSTs that carried at least one event of this tag. */
  posts: number;
  /** Seen (client, number) pairs: the gateway delivers at least once. */
  seen: Set<number>;
  /** Arrival - send time, ms, one per unique event. */
  lat: number[];
}

const tags = new Map<string, Tag>();
/** Events that were not ours (unknown tag, malformed data, too many tags). */
let foreign = 0;
let badRequests = 0;

function tagOf(name: string): Tag | null {
  let t = tags.get(name);
  if (t) return t;
  if (tags.size >= MAX_TAGS) return null;
  t = { unique: 0, duplicates: 0, posts: 0, seen: new Set(), lat: [] };
  tags.set(name, t);
  return t;
}

/** Record one client event; returns its tag (for the POST count), or null. */
function record(data: unknown, arrival: number): Tag | null {
  if (typeof data !== "object" || data === null) return (foreign++, null);
  const d = data as { r?: unknown; c?: unknown; n?: unknown; t?: unknown };
  if (typeof d.r !== "string" || !TAG_RE.test(d.r) || !Number.isInteger(d.c) || !Number.isInteger(d.n) || typeof d.t !== "number") {
    foreign++;
    return null;
  }
  const c = d.c as number;
  const n = d.n as number;
  if (c < 0 || c >= 1 << 16 || n < 0 || n >= 2 ** 30) return (foreign++, null);
  const tag = tagOf(d.r);
  if (!tag) return (foreign++, null);
  const key = c * 2 ** 30 + n;
  if (tag.seen.has(key)) {
    tag.duplicates++;
    return tag;
  }
  tag.seen.add(key);
  tag.unique++;
  tag.lat.push(arrival - d.t);
  return tag;
}

function countPost(seen: Set<Tag>): void {
  for (const t of seen) t.posts++;
}

/** The gateway's webhook body: {tenant, room, events: [{kind, data, …}]}. */
/** The body as JSON, or undefined (counted as a bad request) when it is not JSON. */
function parseBody(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    badRequests++;
    return undefined;
  }
}

function onGateway(body: Buffer, arrival: number): void {
  const parsed = parseBody(body);
  if (parsed === undefined) return;
  const events = (parsed as { events?: unknown } | null)?.events;
  if (!Array.isArray(events)) {
    badRequests++;
    return;
  }
  const seen = new Set<Tag>();
  for (const ev of events) {
    if ((ev as { kind?: unknown } | null)?.kind !== "message") continue;
    const t = record((ev as { data?: unknown }).data, arrival);
    if (t) seen.add(t);
  }
  countPost(seen);
}

/** One client frame: {"v":1,"svc":…,"data":{r,c,n,t}}. */
function onBare(body: Buffer, arrival: number): void {
  const frame = parseBody(body);
  if (frame === undefined) return;
  const t = record((frame as { data?: unknown } | null)?.data, arrival);
  countPost(t ? new Set([t]) : new Set());
}

interface WsEvent {
  type: string;
  content: Buffer | null;
}

/**
 * Pushpin's WebSocket-over-HTTP body: events of the form `TYPE\r\n` or
 * `TYPE <hex length>\r\n<content>\r\n`. Returns null when malformed.
 */
function parseWsEvents(body: Buffer): WsEvent[] | null {
  const out: WsEvent[] = [];
  let i = 0;
  while (i < body.length) {
    const eol = body.indexOf("\r\n", i, "latin1");
    if (eol < 0) return null;
    const head = body.toString("latin1", i, eol);
    const sp = head.indexOf(" ");
    if (sp < 0) {
      out.push({ type: head, content: null });
      i = eol + 2;
      continue;
    }
    const hex = head.slice(sp + 1);
    if (!/^[0-9a-fA-F]{1,8}$/.test(hex)) return null;
    const len = parseInt(hex, 16);
    const start = eol + 2;
    if (start + len + 2 > body.length || body[start + len] !== 0x0d || body[start + len + 1] !== 0x0a) return null;
    out.push({ type: head.slice(0, sp), content: body.subarray(start, start + len) });
    i = start + len + 2;
  }
  return out;
}

/** Returns the answer body (OPEN for OPEN, CLOSE for CLOSE), or null when malformed. */
function onPushpin(body: Buffer, arrival: number): string | null {
  const events = parseWsEvents(body);
  if (!events) return null;
  let answer = "";
  const seen = new Set<Tag>();
  for (const ev of events) {
    if (ev.type === "OPEN") answer += "OPEN\r\n";
    else if (ev.type === "CLOSE") answer += "CLOSE\r\n";
    else if (ev.type === "TEXT" && ev.content) {
      let msg: unknown;
      try {
        msg = JSON.parse(ev.content.toString("utf8"));
      } catch {
        foreign++;
        continue;
      }
      // The client's envelope, as it sent it to both targets: the event is its data.
      const t = record((msg as { data?: unknown } | null)?.data, arrival);
      if (t) seen.add(t);
    }
  }
  countPost(seen);
  return answer;
}

function summary(lat: number[]): { n: number; p50: number | null; p99: number | null; max: number | null; mean: number | null } {
  if (lat.length === 0) return { n: 0, p50: null, p99: null, max: null, mean: null };
  const s = Float64Array.from(lat).sort();
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  let sum = 0;
  for (const x of s) sum += x;
  return { n: s.length, p50: q(0.5), p99: q(0.99), max: s[s.length - 1]!, mean: sum / s.length };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function onGet(res: ServerResponse, url: URL): void {
  const name = url.searchParams.get("tag") ?? "";
  switch (url.pathname) {
    case "/healthz":
      return json(res, 200, { ok: true });
    case "/clock":
      return json(res, 200, { now: epochNow() });
    case "/count":
      // ?tag=a&tag=b: unique events of each
      return json(res, 200, { unique: url.searchParams.getAll("tag").map((t) => tags.get(t)?.unique ?? 0) });
    case "/stats": {
      const t = tags.get(name);
      return json(res, 200, {
        unique: t?.unique ?? 0,
        duplicates: t?.duplicates ?? 0,
        posts: t?.posts ?? 0,
        latency: summary(t?.lat ?? []),
        foreign,
        badRequests,
      });
    }
    default:
      return json(res, 404, { error: "not found" });
  }
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://origin");
  if (req.method === "GET") {
    req.resume();
    return onGet(res, url);
  }
  if (req.method !== "POST") return json(res, 405, { error: "method not allowed" });
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  req.on("data", (c: Buffer) => {
    size += c.length;
    if (size > MAX_BODY) tooLarge = true;
    else chunks.push(c);
  });
  req.on("error", () => {
    // the client went away: nothing to answer
  });
  req.on("end", () => {
    const arrival = epochNow();
    try {
      if (tooLarge) return json(res, 413, { error: "too large" });
      const body = Buffer.concat(chunks, size);
      if (url.pathname.startsWith("/gw")) {
        onGateway(body, arrival);
        res.writeHead(200, { "content-length": 0 });
        return res.end();
      }
      if (url.pathname.startsWith("/bare")) {
        onBare(body, arrival);
        res.writeHead(200, { "content-length": 0 });
        return res.end();
      }
      if (url.pathname.startsWith("/pp")) {
        const answer = onPushpin(body, arrival);
        if (answer === null) {
          badRequests++;
          return json(res, 400, { error: "malformed websocket-events" });
        }
        res.writeHead(200, { "content-type": "application/websocket-events", "content-length": Buffer.byteLength(answer) });
        return res.end(answer);
      }
      json(res, 404, { error: "not found" });
    } catch (err) {
      // Never let a bad request take the origin down mid-run.
      badRequests++;
      if (!res.headersSent) json(res, 500, { error: String(err) });
      else res.destroy();
    }
  });
});
server.keepAliveTimeout = 30_000;
server.listen(PORT, "127.0.0.1", () => console.log(`bench origin on 127.0.0.1:${PORT}`));
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => server.close(() => process.exit(0)));
