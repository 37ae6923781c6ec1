/**
 * The example origin (examples/origin/server.ts), run as `npm start` runs it: a
 * child Node 22 process with native type stripping, on a free port, with a known
 * secret. Webhooks are signed here with the `standardwebhooks` library.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const NODE = join(ROOT, "node_modules/.bin/node");
const SECRET = "whsec_" + Buffer.from("example-origin-test-secret-0123456789").toString("base64");
const API_KEY = "test-origin-api-key";

interface Origin {
  proc: ChildProcess;
  base: string;
  output: () => string;
}

const started: ChildProcess[] = [];
const servers: Server[] = [];

afterAll(async () => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

async function startOrigin(env: Record<string, string> = {}): Promise<Origin> {
  const proc = spawn(NODE, ["examples/origin/server.ts"], {
    cwd: ROOT,
    env: { ...process.env, PORT: "0", WSPRISM_WEBHOOK_SECRET: SECRET, PUSH_EVERY_MS: "0", WSPRISM_API_KEY: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(proc);
  let out = "";
  proc.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  proc.stderr!.setEncoding("utf8").on("data", (s: string) => (out += s));
  const base = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`origin did not start:\n${out}`)), 15_000);
    const look = () => {
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(m[1]!);
      }
    };
    proc.stdout!.on("data", look);
    proc.once("close", (code) => {
      clearTimeout(timer);
      fail(new Error(`origin exited (${code}):\n${out}`));
    });
  });
  return { proc, base, output: () => out };
}

let n = 0;
const msgId = () => `msg_test${Date.now().toString(36)}${(n++).toString(36)}`;
const evtId = () => `evt_test${Date.now().toString(36)}${(n++).toString(36)}`;
const TS = 1764259200000;

function message(user: string, msg: unknown, extra: Record<string, unknown> = {}) {
  return {
    id: evtId(),
    kind: "message",
    user,
    sid: `${user}-tab`,
    svc: "chat",
    type: "send",
    seq: 1,
    data: { msg },
    ts: TS,
    trace_id: "0".repeat(32),
    ...extra,
  };
}

function lifecycle(kind: "open" | "close", user: string) {
  return { id: evtId(), kind, user, sid: `${user}-tab`, svc: "chat", type: kind, ts: TS, trace_id: "1".repeat(32) };
}

const batch = (room: string, events: unknown[]) => JSON.stringify({ tenant: "demo", room, events });

/** POST a webhook signed with `secret` (a fresh timestamp at every call, as a retry has). */
async function deliver(base: string, body: string, opts: { id?: string; secret?: string; headers?: Record<string, string> } = {}) {
  const id = opts.id ?? msgId();
  const now = new Date();
  const signature = new Webhook(opts.secret ?? SECRET).sign(id, now, body);
  const res = await fetch(`${base}/hooks/chat`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
      "webhook-signature": signature,
      ...opts.headers,
    },
    body,
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, text, json };
}

describe("examples/origin/server.ts", () => {
  let origin: Origin;
  beforeAll(async () => {
    origin = await startOrigin();
  });

  const alive = async () => {
    expect(origin.proc.exitCode).toBeNull();
    const res = await fetch(`${origin.base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("ok");
  };

  it("answers /healthz", alive);

  it("broadcasts a chat message to the room and replies delivered to the sender; open/close become system lines", async () => {
    const open = lifecycle("open", "bob");
    const hi = message("alice", "hello there");
    const close = lifecycle("close", "carol");
    const r = await deliver(origin.base, batch("lobby", [open, hi, close]));
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      actions: [
        { action: "broadcast", svc: "chat", type: "system", data: { text: "bob joined", at: TS } },
        { action: "broadcast", svc: "chat", type: "msg", data: { user: "alice", msg: "hello there", at: TS } },
        { action: "reply", to: hi.id, svc: "chat", type: "delivered", data: { id: hi.id } },
        { action: "broadcast", svc: "chat", type: "system", data: { text: "carol left", at: TS } },
      ],
    });
    // One log line per verified delivery, with the webhook id, the event count and the events.
    expect(origin.output()).toMatch(new RegExp(`hook msg_\\w+: demo/lobby, 3 event\\(s\\) \\[open ${open.id}; message chat:send ${hi.id}; close ${close.id}\\]`));
  });

  it("rejects a message with a banned word (any case, as a word) and does not broadcast it", async () => {
    const bad = message("dave", "buy cheap SPAM!");
    const ok = message("dave", "spammy is not a banned word");
    const r = await deliver(origin.base, batch("lobby", [bad, ok]));
    expect(r.status).toBe(200);
    expect(r.json.actions[0]).toMatchObject({ action: "reject", to: bad.id, code: "NOT_ALLOWED" });
    expect(r.json.actions[0].msg).toMatch(/spam/);
    expect(r.json.actions.slice(1).map((a: any) => a.action)).toEqual(["broadcast", "reply"]);
    expect(r.json.actions[1].data.msg).toBe("spammy is not a banned word");
  });

  it("kicks a user at the third strike", async () => {
    const answers = [];
    for (let i = 0; i < 3; i++) {
      const ev = message("mallory", `badword number ${i}`);
      const r = await deliver(origin.base, batch("lobby", [ev]));
      expect(r.status).toBe(200);
      answers.push(r.json.actions);
      expect(r.json.actions[0]).toMatchObject({ action: "reject", to: ev.id, code: "NOT_ALLOWED" });
    }
    expect(answers[0]).toHaveLength(1);
    expect(answers[1]).toHaveLength(1);
    expect(answers[2]).toHaveLength(2);
    expect(answers[2][1]).toMatchObject({ action: "kick", user: "mallory" });
    expect(typeof answers[2][1].reason).toBe("string");
  });

  it("rejects malformed chat:send events and other chat types", async () => {
    const empty = message("erin", "");
    const notText = message("erin", 42);
    const typing = message("erin", "x", { type: "typing" });
    const r = await deliver(origin.base, batch("lobby", [empty, notText, typing]));
    expect(r.status).toBe(200);
    expect(r.json.actions).toEqual([
      expect.objectContaining({ action: "reject", to: empty.id, code: "BAD_REQUEST" }),
      expect.objectContaining({ action: "reject", to: notText.id, code: "BAD_REQUEST" }),
      expect.objectContaining({ action: "reject", to: typing.id, code: "NOT_SUPPORTED" }),
    ]);
  });

  it("answers a redelivered webhook-id with the same actions, without processing it again", async () => {
    const first = message("eve", "spam 1");
    const body = batch("lobby", [first]);
    const id = msgId();
    const a = await deliver(origin.base, body, { id });
    expect(a.status).toBe(200);
    expect(a.json.actions).toEqual([expect.objectContaining({ action: "reject", to: first.id })]);
    // The gateway retries with the same id and body (and a fresh timestamp): twice.
    for (let i = 0; i < 2; i++) {
      const again = await deliver(origin.base, body, { id });
      expect(again.status).toBe(200);
      expect(again.text).toBe(a.text);
    }
    expect(origin.output()).toContain(`hook ${id}: redelivery`);
    // Strikes were counted once: the next banned message is strike 2 (no kick), the one after is 3.
    const second = await deliver(origin.base, batch("lobby", [message("eve", "spam 2")]));
    expect(second.json.actions.map((x: any) => x.action)).toEqual(["reject"]);
    expect(second.json.actions[0].msg).toContain("strike 2 of 3");
    const third = await deliver(origin.base, batch("lobby", [message("eve", "spam 3")]));
    expect(third.json.actions.map((x: any) => x.action)).toEqual(["reject", "kick"]);
  });

  it("answers 401 to a bad or missing signature, and processes nothing", async () => {
    const ev = message("frank", "spam");
    const body = batch("lobby", [ev]);
    const wrong = "whsec_" + Buffer.from("some-other-secret-entirely-0123456").toString("base64");
    expect((await deliver(origin.base, body, { secret: wrong })).status).toBe(401);
    // Signed, then tampered with.
    const id = msgId();
    const sig = new Webhook(SECRET).sign(id, new Date(), body);
    const now = String(Math.floor(Date.now() / 1000));
    const tampered = await fetch(`${origin.base}/hooks/chat`, {
      method: "POST",
      headers: { "webhook-id": id, "webhook-timestamp": now, "webhook-signature": sig },
      body: body.replace("frank", "grace"),
    });
    expect(tampered.status).toBe(401);
    // A stale timestamp (replay), and missing headers.
    const old = new Date(Date.now() - 10 * 60_000);
    const stale = await fetch(`${origin.base}/hooks/chat`, {
      method: "POST",
      headers: {
        "webhook-id": id,
        "webhook-timestamp": String(Math.floor(old.getTime() / 1000)),
        "webhook-signature": new Webhook(SECRET).sign(id, old, body),
      },
      body,
    });
    expect(stale.status).toBe(401);
    expect((await fetch(`${origin.base}/hooks/chat`, { method: "POST", body })).status).toBe(401);
    // None of these counted a strike for frank: his first banned message now is strike 1.
    const r = await deliver(origin.base, body);
    expect(r.json.actions[0].msg).toContain("strike 1 of 3");
    await alive();
  });

  it("answers 400 to a signed body that is not JSON or not a webhook, 413 to a huge one, and stays up", async () => {
    for (const bad of ["{not json", "", "null", "[]", JSON.stringify({ tenant: "demo", room: "x", events: "no" })]) {
      const r = await deliver(origin.base, bad);
      expect(r.status, bad).toBe(400);
    }
    const huge = batch("lobby", [message("gina", "x".repeat(1024 * 1024))]);
    expect((await deliver(origin.base, huge)).status).toBe(413);
    const garbage = await fetch(`${origin.base}/hooks/chat`, { method: "POST", body: "\u0000\u00ff garbage" });
    expect(garbage.status).toBe(401);
    expect((await fetch(`${origin.base}/nowhere`)).status).toBe(404);
    await alive();
  });

  it("simulates an outage with /admin/fail: 500s are not remembered, the retry is processed", async () => {
    expect((await fetch(`${origin.base}/admin/fail?mode=nope`, { method: "POST" })).status).toBe(400);
    expect((await fetch(`${origin.base}/admin/fail?mode=500`, { method: "POST" })).status).toBe(200);
    const ev = message("hana", "are you there?");
    const body = batch("lobby", [ev]);
    const id = msgId();
    expect((await deliver(origin.base, body, { id })).status).toBe(500);
    expect((await fetch(`${origin.base}/admin/fail?mode=off`, { method: "POST" })).status).toBe(200);
    const retry = await deliver(origin.base, body, { id });
    expect(retry.status).toBe(200);
    expect(retry.json.actions.map((a: any) => a.action)).toEqual(["broadcast", "reply"]);
  });
});

describe("examples/origin/server.ts periodic push", () => {
  it("POSTs a chat:system line to active rooms through the gateway API, and survives gateway errors", async () => {
    const got: { path: string; auth: string | undefined; body: any }[] = [];
    let calls = 0;
    const gateway = createServer((req: IncomingMessage, res) => {
      let text = "";
      req.setEncoding("utf8").on("data", (s: string) => (text += s));
      req.on("end", () => {
        calls++;
        got.push({ path: req.url ?? "", auth: req.headers.authorization, body: JSON.parse(text) });
        // The first push fails (the gateway is down or erroring): the origin carries on.
        if (calls === 1) {
          res.writeHead(500, { "content-type": "application/json" }).end('{"code":"INTERNAL","msg":"boom"}');
        } else {
          res.writeHead(202, { "content-type": "application/json" }).end('{"delivered":2}');
        }
      });
    });
    servers.push(gateway);
    await new Promise<void>((r) => gateway.listen(0, "127.0.0.1", r));
    const gw = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;

    const origin = await startOrigin({ PUSH_EVERY_MS: "150", WSPRISM_API_KEY: API_KEY, WSPRISM_GATEWAY_URL: gw });
    // No activity yet: no push.
    await new Promise((r) => setTimeout(r, 400));
    expect(got).toEqual([]);

    expect((await deliver(origin.base, batch("match:7", [lifecycle("open", "ivan")]))).status).toBe(200);
    const deadline = Date.now() + 10_000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(got.length).toBeGreaterThanOrEqual(2);
    for (const g of got) {
      expect(g.path).toBe("/v1/tenants/demo/rooms/match:7/messages");
      expect(g.auth).toBe(`Bearer ${API_KEY}`);
      expect(g.body).toMatchObject({ svc: "chat", type: "system", data: { text: expect.stringMatching(/^server time /) } });
      expect(typeof g.body.data.at).toBe("number");
    }
    expect(origin.output()).toContain("push demo/match:7: 500");
    expect(origin.output()).toContain("push demo/match:7: 202");

    // The gateway goes away: pushes fail, are logged, and the origin stays up.
    const closed = new Promise((r) => gateway.close(r));
    gateway.closeAllConnections();
    await closed;
    await new Promise((r) => setTimeout(r, 500));
    expect(origin.output()).toMatch(/push demo\/match:7: failed \(/);
    expect(origin.proc.exitCode).toBeNull();
    expect((await fetch(`${origin.base}/healthz`)).status).toBe(200);
  });

  it("refuses to start without a webhook secret", async () => {
    await expect(startOrigin({ WSPRISM_WEBHOOK_SECRET: "" })).rejects.toThrow(/exited \(2\)[\s\S]*WSPRISM_WEBHOOK_SECRET/);
  });
});
