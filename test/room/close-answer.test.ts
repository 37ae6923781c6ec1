/**
 * The answer to a client's close: its own code, or nothing when the connection
 * is already gone (1005, 1006, 1015: answering then only raises "Network
 * connection lost"; the room used to answer them with 1000).
 */
import { describe, expect, it } from "vitest";
import { closeAnswer } from "../../src/room/members.ts";

describe("closeAnswer", () => {
  it("echoes a code a close frame may carry", () => {
    for (const code of [1000, 1001, 1008, 3000, 4000, 4999]) expect(closeAnswer(code)).toBe(code);
  });
  it("sends nothing for 1005, 1006 and 1015", () => {
    for (const code of [1005, 1006, 1015]) expect(closeAnswer(code)).toBeNull();
  });
  it("answers 1000 to a code outside the close frame's range", () => {
    for (const code of [0, 999, 5000, 65535]) expect(closeAnswer(code)).toBe(1000);
  });
});
