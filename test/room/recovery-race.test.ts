/**
 * SPEC section 10 under a live stream: a publisher sends chat at ~100 msg/s
 * while another member drops and resumes 20 times at random points. Across all
 * its connections, what the resuming client saw (each connection's frames up
 * to the moment it dropped it, replayed then live) must be the publisher's
 * sequence exactly: offsets with no gap and no duplicate, payloads in order,
 * byte for byte what an always-connected member got. Tenant `rec-race`: like
 * `rec`, with max_messages 1000 so a slow reconnect is not `too_many`.
 */
import { describe, expect, it } from "vitest";
import { connect, uniqueRoom, type TestClient } from "../helpers/ws.ts";

const join = (user: string, room: string, extra: Record<string, string> = {}) =>
  connect({ tenant: "rec-race", room, ticket: `dev:${user}`, ...extra });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const chatTexts = (c: TestClient) => c.texts.filter((t) => JSON.parse(t).svc === "chat");
const offOf = (t: string) => JSON.parse(t).off as number;

describe("resume under a live stream", () => {
  it("20 drops and resumes at random points while chat flows at 100 msg/s: no gap, no duplicate, the publisher's order", { timeout: 60_000 }, async () => {
    const room = uniqueRoom();
    const sid = "alice-race";
    let alice = await join("alice", room, { sid });
    const bob = await join("bob", room);
    const carol = await join("carol", room); // always connected: the reference
    const epoch = alice.authed.data.epoch as string;
    expect(alice.authed.data.off).toBe(0);

    // The publisher: chat n = 1, 2, … every ~10 ms until told to stop.
    let stop = false;
    let sent = 0;
    const publisher = (async () => {
      while (!stop) {
        bob.send({ v: 1, svc: "chat", type: "say", data: { n: ++sent } });
        await sleep(10);
      }
    })();

    const seen: string[] = []; // what the resuming client saw, across its connections
    const schedule: string[] = []; // for the failure message
    for (let i = 0; i < 20; i++) {
      const stay = 10 + Math.floor(Math.random() * 140);
      const away = Math.floor(Math.random() * 60);
      const code = Math.random() < 0.5 ? 4000 : 1001; // the SDK's timeout close or a "going away" drop (a 1000 would end the session)
      const waitClosed = Math.random() < 0.5; // or reconnect at once (the room may still hold the old socket)
      await sleep(stay);
      // What this connection delivered up to now is what the app saw; anything later on it is dropped with it.
      seen.push(...chatTexts(alice));
      const last = seen.length > 0 ? offOf(seen.at(-1)!) : 0;
      alice.close(code);
      if (waitClosed) await alice.closed().catch(() => undefined);
      await sleep(away);
      alice = await join("alice", room, { sid, resume: `${epoch}.${last}` });
      const a = alice.authed.data;
      schedule.push(`#${i} stay ${stay} close ${code}${waitClosed ? " (waited)" : ""} away ${away}: from ${last}, head ${a.off}, ${a.recovered ? `count ${a.count}` : a.reason}`);
      expect(a, schedule.join("\n")).toMatchObject({ epoch, recovered: true, count: a.off - last });
    }
    await sleep(100);
    stop = true;
    await publisher;

    // Everything sent reaches the last connection and the reference.
    const deadline = Date.now() + 10_000;
    while ((chatTexts(carol).length < sent || (chatTexts(alice).length > 0 ? offOf(chatTexts(alice).at(-1)!) : 0) < sent) && Date.now() < deadline) await sleep(20);
    seen.push(...chatTexts(alice));

    const all = Array.from({ length: sent }, (_, i) => i + 1);
    const reference = chatTexts(carol);
    expect(reference.map((t) => JSON.parse(t).data.n), "the reference got every message once, in order").toEqual(all);
    const why = `${sent} sent\n${schedule.join("\n")}`;
    expect(seen.map(offOf), why).toEqual(all); // offsets: no gap, no duplicate
    expect(seen.map((t) => JSON.parse(t).data.n), why).toEqual(all); // payloads: the publisher's order
    expect(seen, why).toEqual(reference); // byte for byte
    expect(sent).toBeGreaterThan(100);
  });
});
