/**
 * Microbenchmarks of the hot lane's per-frame work, in Node (V8), on the real
 * code: `decodeHot` + `hotAllowed` (the compiled demo policy's bitmap) + the mode
 * lookup + `encodeOutbound`, i.e. everything the room does to a relayed frame
 * before handing the one outbound buffer to the runtime. Plus the `state` mode's
 * batch encoding (`encodeBatches`) per member per tick.
 *
 *   npx node bench/micro.ts [--json]      (run by `npm run bench` first)
 *
 * Needs src/policy/generated.ts (npm run build:policies; bench/run.ts compiles it).
 * Each case: a warm-up, then ROUNDS timed rounds of a fixed number of iterations.
 * The fastest round is reported (the machine is shared: slower rounds are rounds
 * that lost the CPU to something else), the median is kept too. Bounded: about
 * two seconds in total.
 */
import { getTenant, hotAllowed, type TenantPolicy } from "../src/policy/index.ts";
import { decodeHot, encodeClientHot, encodeOutbound } from "../src/protocol/hot.ts";
import { encodeBatches } from "../src/room/state.ts";

import type { MicroResult } from "./lib/stats.ts";

export type { MicroResult } from "./lib/stats.ts";

const ROUNDS = 11;
/** Distinct input frames cycled through (varying op and seq), so nothing is constant-folded. */
const INPUTS = 256;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Time `fn(iterations)` ROUNDS times after a warm-up; ns per iteration (fastest round, and median). */
function measure(iterations: number, fn: (n: number) => number): { ns: number; medianNs: number; sink: number } {
  let sink = fn(Math.max(1000, iterations >> 1)); // warm-up: let the JIT optimize
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    sink ^= fn(iterations);
    rounds.push(((performance.now() - t0) * 1e6) / iterations);
  }
  return { ns: Math.min(...rounds), medianNs: median(rounds), sink };
}

/** Client frames as the runtime hands them to the room: one ArrayBuffer each. */
function inputs(payloadBytes: number, withSeq: boolean): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (let i = 0; i < INPUTS; i++) {
    const payload = new Uint8Array(payloadBytes);
    for (let j = 0; j < payloadBytes; j++) payload[j] = (i + j) & 0xff;
    const frame = encodeClientHot(1, i & 0xff, payload, withSeq ? i * 7919 : undefined);
    out.push(frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.byteLength) as ArrayBuffer);
  }
  return out;
}

/** The relay path of src/room/hot.ts, minus the runtime's send: decode, allowlist, mode, encode. */
function relayLoop(t: TenantPolicy, bufs: ArrayBuffer[]): (n: number) => number {
  return (n) => {
    let sink = 0;
    for (let i = 0; i < n; i++) {
      const frame = decodeHot(bufs[i & (INPUTS - 1)]!);
      if ("error" in frame) throw new Error(frame.msg);
      if (!hotAllowed(t, frame.svc, frame.op)) throw new Error("not allowed");
      const mode = t.hotModes[frame.svc];
      if (mode?.mode !== "relay") throw new Error("svc 1 is not relay in the demo policy");
      const out = encodeOutbound(frame, (i & 0xff) + 1);
      sink = (sink + out[out.byteLength - 1]! + out.byteLength) | 0;
    }
    return sink;
  };
}

export function runMicro(): MicroResult[] {
  const t = getTenant("demo");
  if (!t) throw new Error("the compiled policies have no demo tenant (policies/default.yaml)");
  const results: MicroResult[] = [];
  let sink = 0;
  for (const [label, bytes, seq] of [
    ["8 B", 8, false],
    ["8 B + seq", 8, true],
    ["256 B", 256, false],
  ] as const) {
    const m = measure(100_000, relayLoop(t, inputs(bytes, seq)));
    sink ^= m.sink;
    results.push({ name: `hot relay: decode + allowlist + encode, ${label} payload`, ns: m.ns, medianNs: m.medianNs, per: "frame", targetNs: 1000 });
  }

  // state mode: one batch frame per member per tick, holding the other members' states.
  for (const [members, bytes] of [
    [25, 16],
    [100, 16],
  ] as const) {
    const frames: Uint8Array[] = [];
    for (let i = 0; i < members - 1; i++) {
      const f = decodeHot(encodeClientHot(3, 1, new Uint8Array(bytes).fill(i)));
      if ("error" in f) throw new Error(f.msg);
      frames.push(encodeOutbound(f, i + 1));
    }
    const m = measure(10_000, (n) => {
      let s = 0;
      for (let i = 0; i < n; i++) s = (s + encodeBatches(frames)[0]!.byteLength) | 0;
      return s;
    });
    sink ^= m.sink;
    results.push({
      name: `state batch encode: ${members - 1} inner states of ${bytes} B`,
      ns: m.ns,
      medianNs: m.medianNs,
      per: "batch (one member, one tick)",
      targetNs: null,
    });
  }
  if (sink === 0x7fffffff) console.log(""); // keep the results observable to the JIT
  return results;
}

// Node globals without the Node types (this file is type-checked with the Workers types, like src/).
const argv = (globalThis as { process?: { argv: string[] } }).process?.argv ?? [];
if ((import.meta as { url?: string }).url === `file://${argv[1]}`) {
  const results = runMicro();
  if (argv.includes("--json")) console.log(JSON.stringify(results, null, 2));
  else for (const r of results) console.log(`${r.name.padEnd(60)} ${r.ns.toFixed(1).padStart(9)} ns/${r.per} (median ${r.medianNs.toFixed(1)})`);
}
