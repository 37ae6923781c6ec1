/**
 * The state lane ticks at the tenant's tick_hz (SPEC: one batch per member per
 * tick). Every other fixture uses 20 Hz, which is also the code's fallback of
 * 50 ms; tenant `slow-tick` uses 4 Hz, so a room that ignored the configured
 * rate would send about five times as many batches, closer together.
 */
import { describe, expect, it } from "vitest";
import { connect, uniqueRoom } from "../helpers/ws.ts";

const join = (user: string, room: string) => connect({ tenant: "slow-tick", room, ticket: `dev:${user}` });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("state tick rate", () => {
  it("tick_hz 4: batches come every 250 ms while states change, not every 50 ms", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    const b = await join("bob", room);
    const arrivals: number[] = [];
    b.ws.addEventListener("message", (ev: MessageEvent) => {
      if (typeof ev.data !== "string") arrivals.push(Date.now());
    });
    const started = Date.now();
    let v = 0;
    while (Date.now() - started < 1200) {
      a.sendHot(3, 1, [v++ & 0xff]);
      await sleep(10);
    }
    await sleep(300);
    expect(v).toBeGreaterThan(40); // a new state every ~10 ms: every tick has one to send
    // 1.5 s at 4 Hz: about 6 batches (20 Hz would give about 30).
    expect(arrivals.length).toBeGreaterThanOrEqual(3);
    expect(arrivals.length).toBeLessThanOrEqual(Math.ceil(1500 / 250) + 1);
    // Consecutive batches are a tick apart: 250 ms on average, and never near 50 ms
    // (a late tick is followed by an early one, the cadence keeps whole ticks).
    const gaps = arrivals.slice(1).map((t, i) => t - arrivals[i]!);
    expect((arrivals.at(-1)! - arrivals[0]!) / gaps.length).toBeGreaterThanOrEqual(200);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(125);
  });
});
