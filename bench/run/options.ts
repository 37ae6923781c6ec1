/**
 * bench/run.ts's command line (--full, --only, --via-proxy, --out) and the
 * profile it selects: every part's sizes and durations, quick or --full.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { OriginCfg } from "../lib/origins.ts";

export const ALL = ["micro", "idle", "fanout", "state", "ext", "recovery", "storm", "origin"] as const;
export type Part = (typeof ALL)[number];

export type Runtime = "workerd" | "wrangler";

export interface Options {
  full: boolean;
  viaProxy: boolean;
  /** --origin-rates: the events-to-origins steps instead of the profile's (null: the profile's). */
  originRates: number[] | null;
  /** workerd: the bench build served by workerd itself (bench/lib/workerd.ts); wrangler: through `wrangler dev`. */
  runtime: Runtime;
  out: string;
  parts: Set<Part>;
}

/** The options, or exits (0 after --help, 2 on an unknown part). */
export function parseOptions(root: string): Options {
  const { values: opts } = parseArgs({
    options: {
      full: { type: "boolean", default: false },
      only: { type: "string" },
      "via-proxy": { type: "boolean", default: false },
      runtime: { type: "string", default: "workerd" },
      "origin-rates": { type: "string" },
      out: { type: "string", default: join(root, "bench/results/latest.json") },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (opts.help) {
    console.log("usage: npm run bench [-- --full] [-- --only micro,idle,fanout,state,ext,recovery,storm,origin] [-- --runtime workerd|wrangler] [-- --origin-rates 8000,32000] [-- --via-proxy] [-- --out file.json]");
    process.exit(0);
  }
  const parts = new Set<Part>(
    opts.only
      ? opts.only.split(",").map((s) => {
          const p = s.trim() as Part;
          if (!ALL.includes(p)) {
            console.error(`--only: unknown part "${s}" (one of ${ALL.join(", ")})`);
            process.exit(2);
          }
          return p;
        })
      : ALL,
  );
  const runtime = opts.runtime as Runtime;
  if (runtime !== "workerd" && runtime !== "wrangler") {
    console.error(`--runtime: "${opts.runtime}" is not workerd or wrangler`);
    process.exit(2);
  }
  if (opts["via-proxy"] && runtime !== "wrangler") {
    console.error("--via-proxy: only with --runtime wrangler (workerd alone has no proxy)");
    process.exit(2);
  }
  let originRates: number[] | null = null;
  if (opts["origin-rates"] !== undefined) {
    originRates = opts["origin-rates"].split(",").map((r) => Number(r.trim()));
    if (originRates.some((r) => !Number.isInteger(r) || r < 1 || r > 1_000_000)) {
      console.error(`--origin-rates: "${opts["origin-rates"]}" is not a list of events/s (integers, comma-separated)`);
      process.exit(2);
    }
  }
  return { full: opts.full!, viaProxy: opts["via-proxy"]!, runtime, originRates, out: opts.out!, parts };
}

/** The sizes and durations of every part, quick or --full. */
export function makeProfile(FULL: boolean) {
  return {
    name: FULL ? "full" : "quick",
    /** The target's load point (issue 4): 48,000 deliveries/s. */
    // Relay fan-out: the four targets (gateway, gateway with coalesce, partyserver,
    // baseline) take turns in slices in mirrored order (ABCD DCBA), slices x sliceMs
    // measured each; keep slices even so that every target gets the same mean position.
    // (At saturation a slice leaves a backlog: the drain after it is capped, and the
    // mirrored order spreads what is left over every target.)
    fanout: { rooms: 4, clients: 25, hz: 20, slices: FULL ? 6 : 2, sliceMs: 5_000, warmMs: 400, drainMs: FULL ? 10_000 : 3_000 },
    /** A quarter of the rate: latency below saturation. */
    fanoutLight: { rooms: 4, clients: 25, hz: 5, slices: FULL ? 8 : 4, sliceMs: FULL ? 2_500 : 1_500, warmMs: 400, drainMs: 4_000 },
    /** --full only: twice the rate, to see which side saturates first. */
    fanoutHeavy: FULL ? { rooms: 4, clients: 25, hz: 40, slices: 2, sliceMs: 5_000, warmMs: 400, drainMs: 10_000 } : null,
    state: {
      rooms: FULL ? 4 : 2,
      clients: FULL ? 16 : 10,
      hz: 60,
      tickHz: 20,
      warmMs: FULL ? 2_000 : 1_000,
      durMs: FULL ? 20_000 : 5_000,
      drainMs: 3_000,
    },
    ext: { rooms: 4, clients: FULL ? 10 : 5, hz: 10, warmMs: FULL ? 2_000 : 1_000, durMs: FULL ? 20_000 : 5_000, drainMs: 8_000 },
    /**
     * Resume with recovery (SPEC section 10, tenant bench-recovery): ext relays with the
     * log off, on, and on at its byte cap, in mirrored turns; then the replay of 100
     * missed ~1 KB messages on resume, `repeats` times.
     */
    recovery: {
      rooms: 2,
      clients: 10,
      hz: 20,
      slices: FULL ? 6 : 2,
      sliceMs: FULL ? 5_000 : 3_000,
      warmMs: 400,
      drainMs: FULL ? 30_000 : 15_000,
      padBytes: 100,
      logBytes: 4 * 1024 * 1024, // bench-recovery's max_bytes (the default)
      fillBytes: 1024,
      replay: { repeats: FULL ? 21 : 9, messages: 100, bytes: 1024, timeoutMs: 15_000 },
    },
    /** The connection storm (issue 9): one user per socket; storms per target, ABBA. */
    // (Quick: 500 sockets a storm, so the default run stays within ~3 minutes while the
    // gateway opens a few dozen sockets/s on a busy 2-core machine.)
    storm: {
      sockets: FULL ? 1_000 : 500,
      concurrency: 50,
      rooms: 10,
      slices: FULL ? 4 : 2,
      timeoutMs: 15_000,
      deadlineMs: FULL ? 180_000 : 45_000,
      goneMaxMs: 15_000,
    },
    /**
     * Events to origins (issue 11): 100 clients over 10 rooms, open loop, gateway vs
     * Pushpin at each rate, and the bare forwarding object (one unbounded fetch per
     * message: the platform's floor) up to baselineMaxRate, where the targets are
     * judged; past ~2,000/s its unbounded fetches pile up and leave a backlog that
     * would spill into the next step. Quick: the first four rates, 3 s windows.
     */
    origin: {
      rates: FULL ? [500, 1_000, 2_000, 4_000, 8_000, 16_000] : [500, 1_000, 2_000, 4_000],
      clients: 100,
      rooms: 10,
      baselineMaxRate: 1_000,
      warmMs: FULL ? 2_000 : 1_000,
      windowMs: FULL ? 5_000 : 3_000,
      drainMs: FULL ? 8_000 : 5_000,
      connectMs: 30_000,
      settleMaxMs: FULL ? 30_000 : 10_000,
    } satisfies OriginCfg,
    idle: { conns: FULL ? 2_000 : 200, perRoom: 100, pingEveryMs: FULL ? 5_000 : 2_000, holdMs: FULL ? 30_000 : 4_500, settleMs: FULL ? 3_000 : 1_500 },
    /** Before each measured run: wait at most this long for other processes to calm down. */
    quietMaxMs: FULL ? 15_000 : 1_200,
    /** …and for workerd to work off what a saturated run left queued. */
    settleMaxMs: FULL ? 120_000 : 15_000,
  };
}

export type Profile = ReturnType<typeof makeProfile>;
