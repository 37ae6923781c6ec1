/** onMessage wildcards (issue 19 item 9: `onMessage("*", fn)` used to never fire). */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { setup } from "./fake.ts";

beforeEach(() => {
  vi.useFakeTimers({ now: new Date("2026-01-01T00:00:00Z") });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("onMessage wildcards", () => {
  it('"*" as the svc is a wildcard: onMessage("*", fn) and onMessage("*", "*", fn) get every message, a non-function is refused', async () => {
    const { client, connect } = setup();
    const s = await connect();
    const all = vi.fn();
    const all3 = vi.fn();
    const msgs = vi.fn();
    client.onMessage("*", all);
    client.onMessage("*", "*", all3);
    client.onMessage("*", "msg", msgs);
    s.recv(JSON.stringify({ v: 1, svc: "chat", type: "msg", data: 1 }));
    s.recv(JSON.stringify({ v: 1, svc: "game", type: "move", data: 2 }));
    s.sys("joined", { room: "r1" });
    expect(all.mock.calls.map((c) => c[1].type)).toEqual(["msg", "move", "joined"]);
    expect(all3).toHaveBeenCalledTimes(3);
    expect(msgs).toHaveBeenCalledTimes(1);
    expect(() => client.onMessage("chat", "msg", undefined as never)).toThrow(TypeError);
  });
});
