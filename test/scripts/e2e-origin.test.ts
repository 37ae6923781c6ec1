/**
 * End to end, as separate processes: `wrangler dev` (the gateway, demo policy)
 * and the example origin (examples/origin/server.ts). A client chats through the
 * origin; the origin is killed, more events are sent, the origin is started
 * again, and every event reaches it exactly once after deduplication by id,
 * in order, each acked to the sender.
 *
 * The demo tenant's chat posts to 127.0.0.1:8788 (policies/default.yaml), so the
 * origin takes that port: stop `npm start` before running the tests.
 */
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, killGroup, portFree, stopGroup, waitHealthy, type Proc } from "../../bench/lib/proc.ts";
import { promisify } from "node:util";
import { ORIGIN_PORT, startGateway, startOrigin } from "./lib/demo-stack.ts";

const run = promisify(execFile);

/** Event ids of message events the origin processed (redeliveries are logged as such, not processed). */
function processedMessageIds(lines: string[]): string[] {
  const ids: string[] = [];
  for (const line of lines) {
    if (!/ hook msg_\S+: \S+\/\S+, \d+ event\(s\) \[/.test(line)) continue;
    for (const m of line.matchAll(/message chat:send (evt_[0-9a-z]+)/g)) ids.push(m[1]!);
  }
  return ids;
}

describe("end to end: gateway + example origin as processes", () => {
  let gateway: Proc | undefined;
  let origin: Proc | undefined;
  const originLines: string[] = [];
  let base = "";

  beforeAll(async () => {
    if (!(await portFree(ORIGIN_PORT))) throw new Error(`port ${ORIGIN_PORT} is busy (is npm start running?)`);
    const port = await freePort();
    base = `127.0.0.1:${port}`;
    gateway = await startGateway(port, mkdtempSync(join(tmpdir(), "wsprism-e2e-")));
    origin = startOrigin();
    await waitHealthy(`http://${base}/healthz`, gateway, 90_000);
    await waitHealthy(`http://127.0.0.1:${ORIGIN_PORT}/healthz`, origin, 20_000);
  }, 120_000);

  afterAll(async () => {
    await stopGroup(origin);
    await stopGroup(gateway);
  });

  it("loses nothing while the origin is down, and delivers each event once after dedup, in order", async () => {
    const room = `e2e-${Date.now().toString(36)}`;
    const ws = new WebSocket(`ws://${base}/v1/ws?tenant=demo&room=${room}&ticket=dev:alice`);
    const inbox: any[] = [];
    ws.onmessage = (ev) => typeof ev.data === "string" && inbox.push(JSON.parse(ev.data));
    await new Promise((resolve, reject) => ((ws.onopen = resolve), (ws.onerror = reject)));
    const waitFor = async (pred: (m: any) => boolean, n: number, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      while (inbox.filter(pred).length < n) {
        if (Date.now() > deadline) throw new Error(`timed out; inbox: ${JSON.stringify(inbox.slice(-10))}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return inbox.filter(pred);
    };
    const isAck = (m: any) => m.svc === "sys" && m.type === "ack";
    const send = (seq: number) =>
      ws.send(JSON.stringify({ v: 1, svc: "chat", type: "send", flags: 4, seq, data: { msg: `message ${seq}` } }));

    for (let seq = 1; seq <= 3; seq++) send(seq);
    await waitFor(isAck, 3, 15_000);

    // Origin down: events are accepted and wait in the room's durable outbox.
    await killGroup(origin);
    originLines.push(...origin!.lines);
    for (let seq = 4; seq <= 8; seq++) send(seq);
    await new Promise((r) => setTimeout(r, 2_500));
    expect(inbox.filter(isAck).length).toBe(3);

    origin = startOrigin();
    await waitHealthy(`http://127.0.0.1:${ORIGIN_PORT}/healthz`, origin, 20_000);
    const acks = await waitFor(isAck, 8, 45_000);
    expect(acks.map((a) => a.data.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    ws.close();
    await new Promise((r) => setTimeout(r, 300));
    originLines.push(...origin.lines);

    // Each event processed once: the origin deduplicates redeliveries by webhook-id
    // (and was not killed with a request in flight), so no id is processed twice.
    const ids = processedMessageIds(originLines);
    expect(ids.length).toBe(8);
    expect(new Set(ids).size).toBe(8);
    // The origin replied chat:delivered with each event's id: the same 8 ids, in send order, each once.
    const delivered = inbox.filter((m) => m.svc === "chat" && m.type === "delivered").map((m) => m.data.id);
    expect(delivered).toEqual(ids);
    // Other members see each message through the origin's broadcast (here alice herself), each once.
    const msgs = inbox.filter((m) => m.svc === "chat" && m.type === "msg").map((m) => m.data.msg);
    expect(msgs).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((s) => `message ${s}`));
  }, 90_000);

  it("examples/two-clients.mjs runs against the stack as the README says: chat through the origin, relay, echo, coalesced batches", async () => {
    const { stdout } = await run(process.execPath, ["examples/two-clients.mjs", `ws://${base}`], { timeout: 30_000 });
    expect(stdout).toMatch(/bob got \{[\s\S]*svc: 'chat',[\s\S]*type: 'msg'/);
    expect(stdout).toMatch(/alice got \{[\s\S]*type: 'delivered'/);
    expect(stdout).toMatch(/alice got \{[\s\S]*type: 'ack'/);
    expect(stdout).toContain("alice got hot frame");
    expect(stdout).toContain("alice got echo");
    expect(stdout).toContain("(20/20)");
  }, 40_000);
});
