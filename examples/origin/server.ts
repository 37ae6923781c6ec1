/**
 * An example origin for wsPrism: a moderated chat behind signed webhooks.
 *
 *   npx node examples/origin/server.ts         (Node 22: runs this TypeScript as is)
 *
 * `npm start` runs it next to the gateway with matching secrets. Endpoints:
 *
 *   POST /hooks/chat            the webhook: verified (Standard Webhooks), deduplicated
 *                               on webhook-id, answered {"actions":[…]} (see chat.ts)
 *   GET  /healthz               200 ok
 *   POST /admin/fail?mode=500   simulate an outage: /hooks/chat answers 500 until
 *   POST /admin/fail?mode=off   switched off again (the gateway retries meanwhile)
 *
 * Every PUSH_EVERY_MS it also POSTs a `chat:system` line with the server time to
 * each room that had webhook traffic in the last 5 minutes, through the gateway's
 * HTTP API (POST /v1/tenants/:tenant/rooms/:room/messages, bearer WSPRISM_API_KEY).
 *
 * Environment:
 *   WSPRISM_WEBHOOK_SECRET  required: the whsec_… secret the gateway signs with
 *   WSPRISM_API_KEY         bearer key of the gateway's HTTP API (unset: no pushes)
 *   WSPRISM_GATEWAY_URL     default http://127.0.0.1:8787
 *   PORT                    default 8788 (0: any free port); HOST default 127.0.0.1
 *   PUSH_EVERY_MS           default 30000 (0: no pushes)
 *
 * A demo: /admin/fail has no authentication, so keep the origin on 127.0.0.1.
 */
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { Webhook } from "standardwebhooks";
import { ChatModerator, Lru, WebhookBody } from "./chat.ts";

/** Largest webhook body read (the gateway's batches are far smaller). */
const MAX_BODY_BYTES = 1024 * 1024;
/** Answers remembered by webhook-id, to answer a redelivery without processing it twice. */
const DEDUP_MAX_IDS = 10_000;
/** Rooms remembered for the periodic push, and for how long after their last webhook. */
const ACTIVE_ROOMS_MAX = 1_000;
const ACTIVE_FOR_MS = 5 * 60_000;
const PUSH_TIMEOUT_MS = 5_000;
const PUSH_CONCURRENCY = 8;

const TENANT_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/;

function log(line: string): void {
  console.log(`${new Date().toISOString().slice(11, 23)} ${line}`);
}

function fatal(msg: string): never {
  console.error(`example origin: ${msg}`);
  process.exit(2);
}

function intEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) fatal(`${name} must be an integer in ${min}..${max}, got ${JSON.stringify(raw)}`);
  return n;
}

// ---------------------------------------------------------------------------
// Configuration

const secret = process.env.WSPRISM_WEBHOOK_SECRET ?? "";
if (secret === "") fatal("set WSPRISM_WEBHOOK_SECRET to the whsec_… secret the gateway signs webhooks with (npm start does)");
let webhook: Webhook;
try {
  webhook = new Webhook(secret);
} catch (err) {
  fatal(`WSPRISM_WEBHOOK_SECRET is not a valid whsec_<base64> secret (${(err as Error).message})`);
}
const apiKey = process.env.WSPRISM_API_KEY ?? "";
const gatewayUrl = (process.env.WSPRISM_GATEWAY_URL || "http://127.0.0.1:8787").replace(/\/+$/, "");
const host = process.env.HOST || "127.0.0.1";
const port = intEnv("PORT", 8788, 0, 65_535);
const pushEveryMs = intEnv("PUSH_EVERY_MS", 30_000, 0, 86_400_000);

// ---------------------------------------------------------------------------
// State (all bounded)

const moderator = new ChatModerator();
/** webhook-id -> the JSON answer already given. */
const answered = new Lru<string>(DEDUP_MAX_IDS);
/** "<tenant>/<room>" -> last webhook time. */
const activeRooms = new Lru<{ tenant: string; room: string; last: number }>(ACTIVE_ROOMS_MAX);
let failMode: "off" | "500" = "off";

// ---------------------------------------------------------------------------
// HTTP

const app = new Hono();

app.get("/healthz", (c) => c.text("ok"));

app.post("/admin/fail", (c) => {
  const mode = c.req.query("mode");
  if (mode !== "500" && mode !== "off") return c.json({ error: "mode must be 500 or off" }, 400);
  failMode = mode;
  log(mode === "500" ? "admin: simulating an outage, /hooks/chat answers 500" : "admin: outage over, /hooks/chat answers again");
  return c.json({ fail: failMode });
});

app.post(
  "/hooks/chat",
  bodyLimit({
    maxSize: MAX_BODY_BYTES,
    // The rest of the body is not read: the connection cannot be reused.
    onError: (c) => c.json({ error: `body over ${MAX_BODY_BYTES} bytes` }, 413, { connection: "close" }),
  }),
  async (c) => {
    if (failMode === "500") {
      log(`hook ${short(c.req.header("webhook-id"))}: answered 500 (simulated outage)`);
      return c.json({ error: "simulated outage" }, 500);
    }
    const raw = await c.req.text();
    const headers = {
      "webhook-id": c.req.header("webhook-id") ?? "",
      "webhook-timestamp": c.req.header("webhook-timestamp") ?? "",
      "webhook-signature": c.req.header("webhook-signature") ?? "",
    };
    const id = headers["webhook-id"];
    if (id.length > 256) return c.json({ error: "webhook-id too long" }, 400);
    try {
      webhook.verify(raw, headers, { jsonParse: false });
    } catch (err) {
      log(`hook ${short(id)}: 401, signature rejected (${(err as Error).message})`);
      return c.json({ error: "invalid signature" }, 401);
    }

    // At least once: the gateway may deliver a batch again (a lost answer, a
    // timeout). Same webhook-id: the same answer, without processing it twice.
    const previous = answered.get(id);
    if (previous !== undefined) {
      log(`hook ${id}: redelivery, answered as before (not processed again)`);
      return c.body(previous, 200, { "content-type": "application/json" });
    }

    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      log(`hook ${id}: 400, body is not JSON`);
      return c.json({ error: "body is not JSON" }, 400);
    }
    const parsed = WebhookBody.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue ? issue.path.join(".") || "body" : "body";
      log(`hook ${id}: 400, unexpected body (${where})`);
      return c.json({ error: `unexpected body at ${where}` }, 400);
    }
    const body = parsed.data;
    const actions = moderator.handle(body);
    const answer = JSON.stringify({ actions });
    answered.set(id, answer);
    activeRooms.set(`${body.tenant}/${body.room}`, { tenant: body.tenant, room: body.room, last: Date.now() });

    const shown = body.events.slice(0, 8).map((e) => `${e.kind}${e.kind === "message" ? ` ${e.svc}:${e.type}` : ""} ${e.id}`);
    if (body.events.length > shown.length) shown.push(`… ${body.events.length - shown.length} more`);
    const kinds = actions.map((a) => a.action).join(",") || "none";
    log(`hook ${id}: ${body.tenant}/${body.room}, ${body.events.length} event(s) [${shown.join("; ")}] -> actions ${kinds}`);
    return c.body(answer, 200, { "content-type": "application/json" });
  },
);

app.notFound((c) => c.json({ error: "not found" }, 404));
app.onError((err, c) => {
  log(`error: ${err instanceof Error ? err.message : String(err)}`);
  return c.json({ error: "internal error" }, 500);
});

function short(id: string | undefined): string {
  return id ? id.slice(0, 64) : "(no webhook-id)";
}

// ---------------------------------------------------------------------------
// The periodic push through the gateway's HTTP API

let pushing = false;

async function pushTick(): Promise<void> {
  if (pushing) return; // the previous round is still running
  pushing = true;
  try {
    const now = Date.now();
    const due: { tenant: string; room: string }[] = [];
    for (const [key, r] of [...activeRooms.entries()]) {
      if (now - r.last > ACTIVE_FOR_MS) activeRooms.delete(key);
      else if (TENANT_RE.test(r.tenant) && ROOM_RE.test(r.room)) due.push(r);
    }
    const text = `server time ${new Date(now).toISOString().slice(11, 19)} UTC`;
    for (let i = 0; i < due.length; i += PUSH_CONCURRENCY) {
      await Promise.all(due.slice(i, i + PUSH_CONCURRENCY).map((r) => pushOne(r.tenant, r.room, text, now)));
    }
  } finally {
    pushing = false;
  }
}

async function pushOne(tenant: string, room: string, text: string, at: number): Promise<void> {
  const url = `${gatewayUrl}/v1/tenants/${tenant}/rooms/${room}/messages`;
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ svc: "chat", type: "system", data: { text, at } }),
      signal: AbortSignal.timeout(PUSH_TIMEOUT_MS),
    });
    const answer = (await readSome(res, 512)).replace(/\s+/g, " ");
    log(`push ${tenant}/${room}: ${res.status} ${answer}`);
  } catch (err) {
    const e = err as { name?: string; message?: string; cause?: { code?: string } };
    const why = e.name === "TimeoutError" ? `no answer within ${PUSH_TIMEOUT_MS} ms` : (e.cause?.code ?? e.message ?? String(err));
    log(`push ${tenant}/${room}: failed (${why})`);
  }
}

/** At most `max` bytes of an answer body, as text; the rest is not read. */
async function readSome(res: Response, max: number): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (total < max) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      total += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).subarray(0, max).toString("utf8");
}

// ---------------------------------------------------------------------------
// Start and stop

const server = serve({ fetch: app.fetch, hostname: host, port }, (info) => {
  log(`example origin listening on http://${host}:${info.port} (POST /hooks/chat, GET /healthz)`);
  if (pushEveryMs === 0) log("periodic push disabled (PUSH_EVERY_MS=0)");
  else if (apiKey === "") log("periodic push disabled: WSPRISM_API_KEY is not set");
  else log(`pushing a chat:system line every ${pushEveryMs} ms to active rooms via ${gatewayUrl}`);
});
server.on("error", (err: NodeJS.ErrnoException) => {
  console.error(`example origin: cannot listen on ${host}:${port}: ${err.code ?? err.message}`);
  process.exit(1);
});

const timer = pushEveryMs > 0 && apiKey !== "" ? setInterval(() => void pushTick().catch(() => {}), pushEveryMs) : undefined;

function stop(signal: string): void {
  log(`${signal}: stopping`);
  if (timer) clearInterval(timer);
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
}
process.once("SIGINT", () => stop("SIGINT"));
process.once("SIGTERM", () => stop("SIGTERM"));
