/**
 * readBoundedText (src/protocol/http.ts): how origin answers and auth answers
 * are read. Bounded whatever the peer declares: an empty answer is not read, a
 * declared length within bounds is read in one call, a declared length over the
 * bound or a malformed one is refused unread, an undeclared body is read in
 * chunks up to the bound.
 */
import { describe, expect, it } from "vitest";
import { readBoundedText } from "../../src/protocol/http.ts";

const streamOf = (...chunks: string[]) =>
  new ReadableStream<Uint8Array>({
    start(c) {
      for (const s of chunks) c.enqueue(new TextEncoder().encode(s));
      c.close();
    },
  });
const answer = (body: BodyInit | null, length?: string) => new Response(body, length === undefined ? {} : { headers: { "Content-Length": length } });

describe("readBoundedText", () => {
  it("an empty answer (Content-Length: 0) is the empty string", async () => {
    expect(await readBoundedText(answer("", "0"), 10)).toBe("");
  });

  it("a declared length within the bound is read whole, UTF-8 decoded", async () => {
    expect(await readBoundedText(answer('{"a":"é"}'), 100)).toBe('{"a":"é"}');
    expect(await readBoundedText(answer("12345", "5"), 5)).toBe("12345");
  });

  it("a declared length over the bound is refused without reading", async () => {
    expect(await readBoundedText(answer("123456", "6"), 5)).toBeNull();
    // The declaration alone decides: a short body that claims more than the bound is not read.
    expect(await readBoundedText(answer("abc", "9"), 5)).toBeNull();
  });

  it("a malformed Content-Length is refused", async () => {
    for (const bad of ["abc", "-1", "1e3", "5 5"]) expect(await readBoundedText(answer("12345", bad), 100)).toBeNull();
  });

  it("an undeclared body is read in chunks up to the bound, and refused past it", async () => {
    expect(await readBoundedText(answer(streamOf("ab", "cd", "e")), 5)).toBe("abcde");
    expect(await readBoundedText(answer(streamOf("ab", "cd", "ef")), 5)).toBeNull();
  });
});
