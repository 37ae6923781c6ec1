/**
 * End to end through real rooms: counters flushed by the room's RoomMetrics reach
 * /metrics, and the session gauge follows joins and leaves.
 */
import { exports } from "cloudflare:workers";
import { describe, it } from "vitest";
import { seriesKey } from "../../src/observability/prometheus.ts";
import { dev, uniqueRoom } from "../helpers/ws.ts";

async function scrape(): Promise<Map<string, number>> {
  const text = await (await exports.default.fetch("http://gw.test/metrics")).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

async function until(cond: (m: Map<string, number>) => boolean, timeoutMs = 8_000): Promise<Map<string, number>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const m = await scrape();
    if (cond(m)) return m;
    if (Date.now() > end) throw new Error(`metrics did not converge: ${JSON.stringify([...m].filter(([k]) => k.includes('"lobby"')))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("metrics from real rooms", () => {
  it("counts upgrades and messages, and the session gauge follows joins and leaves", async () => {
    const room = uniqueRoom("metrics");
    const up = seriesKey("wsprism_ws_upgrades_total", { tenant: "lobby", status: "101" });
    const ext = seriesKey("wsprism_ext_messages_total", { tenant: "lobby" });
    const sessions = seriesKey("wsprism_ws_sessions_active", { tenant: "lobby" });
    const base = await scrape();
    const b = (k: string) => base.get(k) ?? 0;

    const alice = await dev("alice", room);
    const bob = await dev("bob", room);
    alice.ws.send(JSON.stringify({ v: 1, svc: "chat", type: "send", data: { msg: "hi" } }));
    await bob.nextOf("chat", "send");
    await until((m) => m.get(up) === b(up) + 2 && m.get(ext) === b(ext) + 1 && m.get(sessions) === b(sessions) + 2);

    alice.ws.close(1000, "bye");
    await alice.closed();
    await until((m) => m.get(sessions) === b(sessions) + 1);
    bob.ws.close(1000, "bye");
    await bob.closed();
    // The last socket leaving flushes at once: the gauge drops without waiting for a TTL.
    await until((m) => m.get(sessions) === b(sessions), 3_000);
  });
});
