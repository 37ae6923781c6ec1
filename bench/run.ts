/**
 * The performance harness: `npm run bench` (quick, under 2 minutes) or
 * `npm run bench -- --full` (longer, larger). See docs/performance.md.
 *
 *  1. compiles the policies and runs the microbenchmarks (bench/micro.ts);
 *  2. starts the example origin on 127.0.0.1:8788 (the demo tenant's chat URL;
 *     only when the ext scenario runs, so e.g. `--only storm` leaves 8788 alone)
 *     and `wrangler dev -c bench/wrangler.bench.toml` (the real gateway plus the
 *     BaselineRoom object, the partyserver PartyRoom and counters, bench/entry.ts)
 *     on a free port, with a temporary --persist-to;
 *  3. runs the scenarios against the gateway AND the baseline, alternating which
 *     goes first: idle connections, hot relay fan-out, hot `state` mode, ext lane,
 *     connection storm (the storm against partyserver too); then events to
 *     origins, the gateway against Pushpin (bench/lib/origins.ts: the bench
 *     origin, bench/origin.ts, and Pushpin each on free ports; Pushpin skipped,
 *     with a note, when it is not installed);
 *  4. prints one table (gateway, baseline, gateway/baseline; partyserver and
 *     gateway/partyserver where measured) and a verdict per target, writes
 *     bench/results/latest.json, and stops everything it started (whole process
 *     groups).
 *
 * Options:
 *   --full              longer and larger runs (2000 idle connections, 30 s windows)
 *   --only a,b          only these: micro, idle, fanout, state, ext, storm, origin
 *   --via-proxy         connect through wrangler's proxy port instead of the
 *                       runtime's own port (an extra process hop for both targets)
 *   --out <file>        JSON results (default bench/results/latest.json)
 *
 * Linux only (it reads /proc for RSS and CPU). Everything listens on 127.0.0.1.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { closeAll, connectAll } from "./lib/clients.ts";
import {
  exePath,
  freePort,
  machineCpu,
  groupPids,
  listeningPorts,
  portFree,
  sleep,
  startGroup,
  stopGroup,
  waitHealthy,
  workerdPids,
  type Proc,
} from "./lib/proc.ts";
import {
  extLane,
  fanoutInterleaved,
  idleConnect,
  idleHold,
  quiet,
  stateMode,
  type BenchEnv,
  type ExtResult,
  type IdleResult,
  type IdleSet,
  type IdleVariant,
  type Kind,
  type LoadResult,
  type RoomStatsView,
  type StateExtra,
} from "./lib/scenarios.ts";
import type { MicroResult, Summary } from "./lib/stats.ts";
import { STORM_TENANT, stormInterleaved, type StormResult, type StormTarget } from "./lib/storm.ts";
import { highestClean, measureClockOffset, originSteps, type OriginCfg, type OriginStep, type OriginTarget } from "./lib/origins.ts";
import { originTable, originVerdicts } from "./lib/origins-report.ts";
import { pushpinProblem, startPushpin, type Pushpin } from "./lib/pushpin.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const NODE = process.execPath;
/** Must match the demo tenant's services.chat.url in policies/default.yaml. */
const ORIGIN_PORT = 8788;
const ALL = ["micro", "idle", "fanout", "state", "ext", "storm", "origin"] as const;
type Part = (typeof ALL)[number];

// ---------------------------------------------------------------------------
// Options and profiles

const { values: opts } = parseArgs({
  options: {
    full: { type: "boolean", default: false },
    only: { type: "string" },
    "via-proxy": { type: "boolean", default: false },
    out: { type: "string", default: join(ROOT, "bench/results/latest.json") },
    help: { type: "boolean", short: "h", default: false },
  },
  strict: true,
});
if (opts.help) {
  console.log("usage: npm run bench [-- --full] [-- --only micro,idle,fanout,state,ext,storm,origin] [-- --via-proxy] [-- --out file.json]");
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

const FULL = opts.full;
const profile = {
  name: FULL ? "full" : "quick",
  /** The target's load point (issue 4): 48,000 deliveries/s. */
  // Relay fan-out: gateway and baseline take turns in slices (ABBA), slices x sliceMs measured each.
  // (At saturation a slice leaves a backlog: the drain after it is capped, and the
  // ABBA order spreads what is left over both targets.)
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
   * Pushpin at each rate. Quick: the first four rates, 3 s windows (~2 minutes).
   */
  origin: {
    rates: FULL ? [500, 1_000, 2_000, 4_000, 8_000, 16_000] : [500, 1_000, 2_000, 4_000],
    clients: 100,
    rooms: 10,
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

// ---------------------------------------------------------------------------
// Output helpers

const t0 = Date.now();
function say(line: string): void {
  console.log(`[bench ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${line}`);
}

function fmt(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return "-";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US");
  return x.toFixed(digits);
}

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return a / b;
}

interface Row {
  scenario: string;
  metric: string;
  gateway: string;
  baseline: string;
  ratio: string;
  /** partyserver and gateway/partyserver: only the storm measures it so far ("" elsewhere). */
  party: string;
  partyRatio: string;
}

const rows: Row[] = [];
function row(scenario: string, metric: string, g: number | null | undefined, b: number | null | undefined, digits = 1, showRatio = true): void {
  row3(scenario, metric, g, b, undefined, digits, showRatio);
}
/** A row with partyserver's value and ratio too (undefined: no partyserver column in this row). */
function row3(
  scenario: string,
  metric: string,
  g: number | null | undefined,
  b: number | null | undefined,
  p: number | null | undefined,
  digits = 1,
  showRatio = true,
): void {
  const r = showRatio ? ratio(g, b) : null;
  const rp = showRatio ? ratio(g, p) : null;
  rows.push({
    scenario,
    metric,
    gateway: fmt(g, digits),
    baseline: b === undefined ? "" : fmt(b, digits),
    ratio: r === null ? "" : r.toFixed(2),
    party: p === undefined ? "" : fmt(p, digits),
    partyRatio: rp === null ? "" : rp.toFixed(2),
  });
}
function textRow(scenario: string, metric: string, g: string, b = "", r = "", p = ""): void {
  rows.push({ scenario, metric, gateway: g, baseline: b, ratio: r, party: p, partyRatio: "" });
}

interface Verdict {
  target: string;
  value: string;
  met: boolean | null;
}
const verdicts: Verdict[] = [];

/** The table, in Markdown; the partyserver columns only when some row has them. */
function printTable(): string {
  const head: Row = { scenario: "scenario", metric: "metric", gateway: "gateway", baseline: "baseline", ratio: "gw/base", party: "partyserver", partyRatio: "gw/party" };
  const cols: Array<keyof Row> = ["scenario", "metric", "gateway", "baseline", "ratio"];
  if (rows.some((r) => r.party !== "" || r.partyRatio !== "")) cols.push("party", "partyRatio");
  const all = [head, ...rows];
  const w = cols.map((c) => Math.max(...all.map((r) => r[c].length)));
  // The first two columns are text (left-aligned), the others numbers.
  const line = (r: Row) => `| ${cols.map((c, i) => (i < 2 ? r[c].padEnd(w[i]!) : r[c].padStart(w[i]!))).join(" | ")} |`;
  const sep = `|${cols.map((_, i) => (i < 2 ? "-".repeat(w[i]! + 2) : `${"-".repeat(w[i]! + 1)}:`)).join("|")}|`;
  return [line(head), sep, ...rows.map(line)].join("\n");
}

function latencyRows(scenario: string, what: string, g: Summary | null, b: Summary | null, p?: Summary): void {
  row3(scenario, `${what} p50 (ms)`, g?.p50, b === null ? undefined : b.p50, p?.p50, 2);
  row3(scenario, `${what} p99 (ms)`, g?.p99, b === null ? undefined : b.p99, p?.p99, 2);
  row3(scenario, `${what} max (ms)`, g?.max, b === null ? undefined : b.max, p?.max, 1);
}

// ---------------------------------------------------------------------------
// Processes

let wrangler: Proc | undefined;
let origin: Proc | undefined;
/** The bench origin of "events to origins" (bench/origin.ts), and Pushpin in front of it. */
let sink: Proc | undefined;
let pushpin: Pushpin | undefined;
let persistDir: string | undefined;
let stopping = false;

async function cleanup(): Promise<void> {
  stopping = true;
  await pushpin?.stop();
  await stopGroup(sink);
  await stopGroup(origin);
  await stopGroup(wrangler);
  if (wrangler?.proc.pid !== undefined && groupPids(wrangler.proc.pid).length > 0) {
    say(`warning: processes of group ${wrangler.proc.pid} survived SIGKILL`);
  }
  if (persistDir) rmSync(persistDir, { recursive: true, force: true });
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    say(`${signal}: stopping wrangler, the origins and Pushpin`);
    void cleanup().then(() => process.exit(130));
  });
}

/** The runtime's own port (the miniflare entry in the user worker's workerd), to skip wrangler's proxy hop. */
async function directPort(pgid: number, proxyPort: number, inspectorPort: number): Promise<number | null> {
  for (const pid of workerdPids(pgid)) {
    for (const port of listeningPorts(pid)) {
      if (port === proxyPort || port === inspectorPort) continue;
      try {
        const res = await fetch(`http://127.0.0.1:${port}/bench/baseline-stats?room=bench-probe`, { signal: AbortSignal.timeout(1_500) });
        if (!res.ok) continue;
        const body = (await res.json()) as { constructed?: unknown };
        if (typeof body.constructed === "number") return port;
      } catch {
        // not ours
      }
    }
  }
  return null;
}

/** `[[section]]` entries of a wrangler TOML file, as "section name" (migrations excluded). */
function tomlBindings(file: string): Set<string> {
  const out = new Set<string>();
  let section: string | null = null;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const header = /^\s*\[\[([^\]]+)\]\]\s*(#.*)?$/.exec(line);
    if (header) {
      section = header[1]!.trim() === "migrations" ? null : header[1]!.trim();
      continue;
    }
    if (/^\s*\[[^[]/.test(line)) section = null;
    const name = /^\s*(?:name|binding)\s*=\s*"([^"]+)"/.exec(line);
    if (section && name) out.add(`${section} ${name[1]}`);
  }
  return out;
}

/** Every binding of wrangler.toml must exist in the bench config too (the gateway reads them). */
function checkBenchConfig(): string | null {
  const main = tomlBindings(join(ROOT, "wrangler.toml"));
  const bench = tomlBindings(join(ROOT, "bench/wrangler.bench.toml"));
  const missing = [...main].filter((b) => !bench.has(b));
  return missing.length === 0
    ? null
    : `bench/wrangler.bench.toml lacks binding(s) of wrangler.toml: ${missing.join(", ")}. Add them (and their classes to its migration), then run again.`;
}

function workerdVersion(pgid: number): string {
  const pid = workerdPids(pgid)[0];
  const exe = pid === undefined ? null : exePath(pid);
  if (!exe) return "unknown";
  const r = spawnSync(exe, ["--version"], { encoding: "utf8", timeout: 5_000 });
  return (r.stdout || r.stderr || "unknown").trim();
}

function wranglerVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, "node_modules/wrangler/package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

// ---------------------------------------------------------------------------

interface Results {
  date: string;
  profile: string;
  machine: Record<string, unknown>;
  target: { via: string; base: string };
  config: typeof profile;
  micro: MicroResult[] | null;
  idle: IdleResult[] | null;
  fanout: LoadResult[] | null;
  fanoutLight: LoadResult[] | null;
  fanoutHeavy: LoadResult[] | null;
  state: Array<LoadResult & { state: StateExtra | null }> | null;
  ext: ExtResult | { skipped: string } | null;
  storm: StormResult[] | null;
  origin: { pushpin: string; clockOffsetMs: number; steps: OriginStep[] } | null;
  verdicts: Verdict[];
  table: Row[];
  durationS: number;
}

async function main(): Promise<number> {
  if (process.platform !== "linux") {
    console.error("bench/run.ts reads /proc (RSS, CPU): Linux only");
    return 2;
  }
  let exitCode = 0;
  const results: Results = {
    date: new Date().toISOString(),
    profile: profile.name,
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? "unknown",
      memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
      kernel: os.release(),
      node: process.version,
      wrangler: wranglerVersion(),
      loadavgAtStart: os.loadavg(),
    },
    target: { via: "", base: "" },
    config: profile,
    micro: null,
    idle: null,
    fanout: null,
    fanoutLight: null,
    fanoutHeavy: null,
    state: null,
    ext: null,
    storm: null,
    origin: null,
    verdicts,
    table: rows,
    durationS: 0,
  };
  say(`profile ${profile.name}; ${os.cpus().length} cores (${results.machine.cpuModel}), node ${process.version}`);

  // 1. Policies, then the microbenchmarks (they import the compiled policy).
  const build = spawnSync(NODE, ["scripts/compile-policies.ts"], { cwd: ROOT, encoding: "utf8" });
  if (build.status !== 0) {
    console.error(`the policies do not compile:\n${build.stderr}`);
    return 1;
  }
  if (parts.has("micro")) {
    say("microbenchmarks (Node, the real codec and compiled demo policy)");
    // Imported only now: it loads the compiled policy. (A variable path: the Node type
    // check does not follow it into src/, which is typed for workerd.)
    const microModule = "./micro.ts";
    const { runMicro } = (await import(microModule)) as { runMicro: () => MicroResult[] };
    const before = machineCpu();
    const g0 = process.cpuUsage();
    const micro = runMicro();
    const after = machineCpu();
    const own = process.cpuUsage(g0);
    const wall = after.totalMs - before.totalMs; // jiffies of all cores
    const otherPct = wall > 0 ? (100 * (after.busyMs - before.busyMs - (own.user + own.system) / 1000)) / (wall / os.cpus().length) : 0;
    if (otherPct >= 25) say(`  other processes used ${otherPct.toFixed(0)}% of a core during the microbenchmarks: expect them slower than usual`);
    results.micro = micro;
    for (const m of micro) {
      textRow("micro (Node)", `${m.name} (ns/${m.per}, best round; median)`, `${fmt(m.ns)}; ${fmt(m.medianNs)}`);
      if (m.targetNs !== null) verdicts.push({ target: `${m.name} <= ${m.targetNs} ns/frame`, value: `${fmt(m.ns)} ns`, met: m.ns <= m.targetNs });
    }
  }
  const load = [...parts].some((p) => p !== "micro");
  if (!load) return finish(results, exitCode);
  const configProblem = checkBenchConfig();
  if (configProblem) {
    console.error(`\nERROR: ${configProblem}\n`);
    finish(results, 1);
    return 1;
  }

  // 2. The example origin on 8788 (ext lane) and the bench gateway.
  const secret = `whsec_${randomBytes(24).toString("base64")}`;
  let extSkipped: string | null = null;
  if (parts.has("ext")) {
    if (!(await portFree(ORIGIN_PORT))) {
      extSkipped = `port ${ORIGIN_PORT} is busy (npm start or the e2e test running?): the demo tenant's chat webhooks go to http://127.0.0.1:${ORIGIN_PORT}/hooks/chat, so the ext scenario needs that port`;
      console.error(`\nERROR: ${extSkipped}. Skipping the ext scenario; the run will exit non-zero.\n`);
      exitCode = 1;
    } else {
      origin = startGroup("origin", NODE, ["examples/origin/server.ts"], {
        ...process.env,
        HOST: "127.0.0.1",
        PORT: String(ORIGIN_PORT),
        WSPRISM_WEBHOOK_SECRET: secret,
        WSPRISM_API_KEY: "",
        PUSH_EVERY_MS: "0",
      }, ROOT);
    }
  }
  // The bench origin for events to origins, on a free port the bench build writes
  // into the bench-origin tenant's URL (BENCH_ORIGIN_PORT, bench/build-policies.ts).
  let sinkPort: number | null = null;
  if (parts.has("origin")) {
    sinkPort = await freePort();
    sink = startGroup("bench-origin", NODE, ["bench/origin.ts"], { ...process.env, PORT: String(sinkPort) }, ROOT);
  }
  const port = await freePort();
  const inspector = await freePort();
  persistDir = mkdtempSync(join(os.tmpdir(), "wsprism-bench-"));
  say(`starting wrangler dev -c bench/wrangler.bench.toml on 127.0.0.1:${port}`);
  wrangler = startGroup(
    "wrangler",
    NODE,
    [
      join(ROOT, "node_modules/wrangler/bin/wrangler.js"),
      "dev",
      "-c", "bench/wrangler.bench.toml",
      "--ip", "127.0.0.1",
      "--port", String(port),
      "--inspector-port", String(inspector),
      "--persist-to", persistDir,
      "--show-interactive-dev-session=false",
      "--log-level", "warn",
      "--var", "WSPRISM_ALLOW_DEV_AUTH:1",
      "--var", `DEMO_WEBHOOK_SECRET:${secret}`,
      "--var", `BENCH_ORIGIN_SECRET:${secret}`,
    ],
    {
      ...process.env,
      CI: "1",
      WRANGLER_SEND_METRICS: "false",
      NO_COLOR: "1",
      ...(sinkPort !== null ? { BENCH_ORIGIN_PORT: String(sinkPort) } : {}),
    },
    ROOT,
  );
  const pgid = wrangler.proc.pid!;
  await waitHealthy(`http://127.0.0.1:${port}/healthz`, wrangler, 120_000);
  if (origin) await waitHealthy(`http://127.0.0.1:${ORIGIN_PORT}/healthz`, origin, 20_000);
  let pushpinMissing: string | null = null;
  if (sink && sinkPort !== null) {
    await waitHealthy(`http://127.0.0.1:${sinkPort}/healthz`, sink, 20_000);
    pushpinMissing = pushpinProblem();
    if (pushpinMissing) say(`${pushpinMissing}: events to origins runs against the gateway only`);
    else {
      try {
        pushpin = await startPushpin(sinkPort);
        say(`${pushpin.version} on ${pushpin.base} (WebSocket-over-HTTP to the bench origin on 127.0.0.1:${sinkPort})`);
      } catch (err) {
        pushpinMissing = `Pushpin did not start: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`;
        say(`${pushpinMissing}; events to origins runs against the gateway only`);
      }
    }
  }
  let base = `127.0.0.1:${port}`;
  let via = "wrangler's proxy port";
  if (!opts["via-proxy"]) {
    const direct = await directPort(pgid, port, inspector);
    if (direct !== null) {
      base = `127.0.0.1:${direct}`;
      via = "the runtime's own port (wrangler's proxy hop skipped)";
    } else say("could not find the runtime's own port; going through wrangler's proxy");
  }
  results.target = { via, base };
  results.machine.workerd = workerdVersion(pgid);
  say(`ready: workerd ${results.machine.workerd}; clients connect to ${base} (${via})`);

  const env: BenchEnv = {
    base,
    pids: () => workerdPids(pgid),
    runId: Date.now().toString(36),
    log: say,
  };
  const gatewayStats = async (room: string, tenant = "demo") => {
    try {
      const res = await fetch(`http://${base}/bench/room-stats?tenant=${tenant}&room=${encodeURIComponent(room)}`, { signal: AbortSignal.timeout(5_000) });
      return res.ok ? ((await res.json()) as RoomStatsView) : null;
    } catch {
      return null;
    }
  };
  /** Counters of a baseline (`baseline-stats`) or partyserver (`party-stats`) room. */
  const peerStats = async (room: string, which: "baseline" | "party" = "baseline") => {
    try {
      const res = await fetch(`http://${base}/bench/${which}-stats?room=${encodeURIComponent(room)}`, { signal: AbortSignal.timeout(5_000) });
      return res.ok ? ((await res.json()) as RoomStatsView) : null;
    } catch {
      return null;
    }
  };
  const baselineStats = (room: string) => peerStats(room, "baseline");

  // Warm-up: both code paths compiled before anything is measured. Through the
  // storm's tenant when only the storm runs: the demo tenant's open/close events
  // become webhooks to 127.0.0.1:8788, which may be someone else's server then.
  const demoScenarios = (["idle", "fanout", "state", "ext"] as const).some((p) => parts.has(p));
  // partyserver only where it is measured (the storm, so far).
  await warmUp(env, demoScenarios ? "demo" : STORM_TENANT, parts.has("storm"));

  // Alternate which target goes first, scenario by scenario.
  let flip = false;
  const order = (): Kind[] => ((flip = !flip) ? ["gateway", "baseline"] : ["baseline", "gateway"]);

  // 3a. Idle connections. The sets are opened one after the other and all held
  // open together, so each RSS delta is that set's own.
  if (parts.has("idle")) {
    const c = profile.idle;
    const g: IdleVariant = { kind: "gateway", tag: "g", label: "gateway", sessionsPerUser: 1 };
    const gs: IdleVariant = { kind: "gateway", tag: "s", label: "gateway, 8 sessions per user", sessionsPerUser: 8 };
    const b: IdleVariant = { kind: "baseline", tag: "b", label: "baseline", sessionsPerUser: 1 };
    const sets: IdleSet[] = [];
    for (const v of order()[0] === "gateway" ? [g, gs, b] : [b, g, gs]) {
      say(`idle: ${c.conns} connections, ${v.label}`);
      sets.push(await idleConnect(env, v, c));
    }
    say(`idle: every connection pings every ${c.pingEveryMs} ms for ${c.holdMs} ms`);
    await idleHold(env, sets, c, (kind, room) => (kind === "gateway" ? gatewayStats(room) : baselineStats(room)));
    for (const set of sets) await closeAll(set.conns, 5_000);
    const res = sets.map((x) => x.result);
    results.idle = res;
    const rg = sets.find((x) => x.variant === g)!.result;
    const rs = sets.find((x) => x.variant === gs)!.result;
    const rb = sets.find((x) => x.variant === b)!.result;
    const sc = `idle ${c.conns} conns`;
    row(sc, "connected", rg.connected, rb.connected, 0, false);
    row(sc, "workerd RSS growth per conn (KiB)", rg.kibPerConn, rb.kibPerConn, 1);
    row(sc, "  same, 8 sessions per user (KiB)", rs.kibPerConn, rb.kibPerConn, 1);
    row(sc, "pings sent", rg.pings + rs.pings, rb.pings, 0, false);
    row(sc, "pongs received", rg.pongs + rs.pongs, rb.pongs, 0, false);
    row(sc, "webSocketMessage calls in the rooms", (rg.roomMessages ?? NaN) + (rs.roomMessages ?? NaN), rb.roomMessages, 0, false);
    row(sc, "rooms", rg.rooms + rs.rooms, rb.rooms, 0, false);
    row(sc, "room wakes while idle (constructions after the first)", (rg.roomWakesWhileIdle ?? NaN) + (rs.roomWakesWhileIdle ?? NaN), rb.roomWakesWhileIdle, 0, false);
    row(sc, "alarm() runs in the rooms", (rg.roomAlarms ?? NaN) + (rs.roomAlarms ?? NaN), undefined, 0, false);
    for (const r of res) if (r.note) textRow(sc, `${r.label}: note`, r.note);
    const msgs = (rg.roomMessages ?? NaN) + (rs.roomMessages ?? NaN);
    verdicts.push({
      target: "idle: heartbeats do not wake the room (webSocketMessage stays 0 while every ping gets its pong)",
      value: `${Number.isNaN(msgs) ? "?" : msgs} calls, ${rg.pongs + rs.pongs}/${rg.pings + rs.pings} pongs`,
      met: msgs === 0 && rg.pings > 0 && rg.pongs === rg.pings && rs.pongs === rs.pings && rg.connected === c.conns,
    });
  }

  // 3b. Hot relay fan-out: the target's load point, then a quarter of it.
  if (parts.has("fanout")) {
    const points = [
      { key: "fanout" as const, cfg: profile.fanout, scenario: "fan" },
      { key: "fanoutLight" as const, cfg: profile.fanoutLight, scenario: "fanl" },
      ...(profile.fanoutHeavy ? [{ key: "fanoutHeavy" as const, cfg: profile.fanoutHeavy, scenario: "fanh" }] : []),
    ];
    for (const p of points) {
      const c = p.cfg;
      const first = order()[0]!;
      await settle(env);
      say(
        `fan-out: ${c.rooms} rooms x ${c.clients} clients x ${c.hz} Hz, gateway and baseline in turns, ${c.slices} x ${c.sliceMs / 1000} s each, ${first} first`,
      );
      const res = await fanoutInterleaved(env, c, p.scenario, first);
      results[p.key] = res;
      const { g, b } = split(res);
      const sc = `relay ${c.rooms}x${c.clients}x${c.hz}Hz`;
      loadRows(sc, g, b);
      if (p.key === "fanoutHeavy") continue;
      const thr = ratio(g.deliveredPerS, b.deliveredPerS);
      const p99 = ratio(g.latency.p99, b.latency.p99);
      const sat = saturated(g) || saturated(b);
      const tag = `${sc}${sat ? ", saturated: the offered load exceeds what workerd delivers on this machine" : ""}${busyNote(g, b)}`;
      verdicts.push({ target: `relay throughput >= 0.9 x baseline (${tag})`, value: thr === null ? "-" : `${thr.toFixed(3)} (${fmt(g.deliveredPerS, 0)} vs ${fmt(b.deliveredPerS, 0)} frames/s)`, met: thr === null ? null : thr >= 0.9 });
      // Saturated, latency is the time spent queued, which grows with the slice length: no verdict.
      verdicts.push({
        target: `relay p99 latency <= 1.25 x baseline (${tag})`,
        value: `${p99 === null ? "-" : p99.toFixed(2)} (${fmt(g.latency.p99, 2)} vs ${fmt(b.latency.p99, 2)} ms)${sat ? "; not judged: saturated, latency is queueing time" : ""}`,
        met: p99 === null || sat ? null : p99 <= 1.25,
      });
    }
  }

  // 3c. Hot state mode.
  if (parts.has("state")) {
    const c = profile.state;
    const res = await pair(env, order(), (kind) => {
      say(`state: ${kind}, ${c.rooms} rooms x ${c.clients} clients sending svc 3 at ${c.hz} Hz (tick ${c.tickHz} Hz), ${c.durMs / 1000} s`);
      return stateMode(env, kind, c, gatewayStats);
    });
    results.state = res;
    const { g, b } = split(res);
    const sc = `state ${c.rooms}x${c.clients}x${c.hz}Hz`;
    const st = g.state;
    if (!g.ok && st?.unsupported) {
      textRow(sc, "gateway", g.note ?? "refused");
      verdicts.push({ target: "state: exactly one batch frame per member per tick", value: `not measured: ${g.note}`, met: null });
    } else {
      row(sc, "connected", g.connected, b.connected, 0, false);
      row(sc, "frames in/s (sent)", g.sentPerS, b.sentPerS, 0);
      row(sc, "frames out/s (gw: batch frames)", g.deliveredPerS, b.deliveredPerS, 0);
      row(sc, "states delivered/s", st?.statesPerS, b.deliveredPerS, 0);
      row(sc, "ticks/s per room", st?.ticksPerS, undefined, 2);
      row(sc, "batch frames / member / tick", st?.batchesPerMemberPerTick, undefined, 3);
      row(sc, "inner states / batch (mean)", st?.innerPerBatch.mean, undefined, 2);
      row(sc, "inner states / batch (max)", st?.innerPerBatch.max, undefined, 0);
      row(sc, "superseded states sent", st?.supersededSent, undefined, 0);
      row(sc, "drops (gw: batches sent - received)", g.drops, b.drops, 0, false);
      latencyRows(sc, "latency (gw: newest state)", g.latency, b.latency);
      cpuRows(sc, g, b);
      errorRows(sc, g, b);
      const per = st?.batchesPerMemberPerTick ?? null;
      verdicts.push({
        target: `state: exactly one batch frame per member per tick, whatever the input rate${busyNote(g, b)}`,
        value: `${fmt(per, 3)} per member per tick (${c.hz} Hz in, ${c.tickHz} Hz tick), ${st?.doubleBatches ?? "?"} doubled, ${st?.supersededSent ?? "?"} superseded sent`,
        met: per === null || !st ? null : Math.abs(per - 1) < 0.01 && st.doubleBatches === 0 && st.supersededSent === 0,
      });
    }
    for (const r of res) if (r.note && !(r.kind === "gateway" && st?.unsupported)) textRow(sc, `${r.kind}: note`, r.note);
  }

  // 3d. Ext lane through the example origin (gateway only: the baseline has no origin).
  if (parts.has("ext")) {
    const c = profile.ext;
    const sc = `ext ${c.rooms}x${c.clients}x${c.hz}Hz`;
    if (extSkipped) {
      results.ext = { skipped: extSkipped };
      textRow(sc, "not run", `port ${ORIGIN_PORT} busy`);
      verdicts.push({ target: "ext lane: every event acknowledged", value: "not run", met: null });
    } else {
      say(`ext: ${c.rooms} rooms x ${c.clients} clients x ${c.hz} Hz chat:send with ACK_REQUESTED, through the example origin`);
      await settle(env);
      const e = await extLane(env, c);
      results.ext = e;
      row(sc, "events sent/s", e.sentPerS, undefined, 0);
      row(sc, "events acked/s", e.ackedPerS, undefined, 0);
      row(sc, "unacked after drain", e.unacked, undefined, 0);
      latencyRows(sc, "send -> sys.ack", e.ackLatency, null);
      row(sc, "chat:msg broadcasts received/s", e.broadcastPerS, undefined, 0);
      latencyRows(sc, "send -> chat:msg broadcast", e.broadcastLatency, null);
      row(sc, "workerd CPU (% of a core)", e.cpu?.workerdPct, undefined, 0);
      if (Object.keys(e.errors).length > 0) textRow(sc, "sys.error", JSON.stringify(e.errors));
      if (e.note) textRow(sc, "note", e.note);
      verdicts.push({ target: "ext lane: every event acknowledged", value: `${e.unacked} unacked`, met: e.unacked === 0 && e.connected > 0 });
    }
  }
  // 3e. The connection storm. Last: its thousands of sessions (and their directory
  // objects) stay in workerd's memory after it, where they would blur idle's RSS.
  if (parts.has("storm")) {
    const c = profile.storm;
    const first = order()[0]!;
    const targets: StormTarget[] = first === "gateway" ? ["gateway", "party", "baseline"] : ["baseline", "party", "gateway"];
    const sc = `storm ${c.sockets}/${c.concurrency}/${c.rooms}`;
    say(`storm: ${c.sockets} sockets, ${c.concurrency} in flight, ${c.rooms} rooms, one user each; ${c.slices} storms per target in turns, ${targets.join(", ")} first`);
    const res = await stormInterleaved(env, c, targets, () => settle(env), (kind, room) =>
      kind === "gateway" ? gatewayStats(room, STORM_TENANT) : peerStats(room, kind),
    );
    results.storm = res;
    const g = res.find((r) => r.kind === "gateway")!;
    const b = res.find((r) => r.kind === "baseline")!;
    const p = res.find((r) => r.kind === "party");
    if (res.some((r) => r.connected === 0)) exitCode = 1;
    const failures = (r: StormResult) => Object.entries(r.failures).map(([k, n]) => `${n}x${k}`).join(", ") || "0";
    textRow(sc, "sockets ready / attempted", `${g.connected} / ${g.attempted}`, `${b.connected} / ${b.attempted}`, "", p ? `${p.connected} / ${p.attempted}` : "");
    textRow(sc, "failures (HTTP status, or timeout/closed/error/deadline)", failures(g), failures(b), "", p ? failures(p) : "");
    row3(sc, "sockets/s (ready / wall time)", g.socketsPerS, b.socketsPerS, p?.socketsPerS, 0);
    latencyRows(sc, "upgrade -> authed (base, party: open)", g.ready, b.ready, p?.ready);
    const perStorm = (r: StormResult) => r.slices.map((x) => fmt(x.socketsPerS, 0)).join(" / ");
    textRow(sc, "sockets/s per storm", perStorm(g), perStorm(b), "", p ? perStorm(p) : "");
    row3(sc, "workerd CPU per socket (ms)", g.cpuMsPerSocket, b.cpuMsPerSocket, p?.cpuMsPerSocket, 2);
    row3(sc, "other processes CPU (%)", g.otherPct, b.otherPct, p?.otherPct, 0, false);
    if (res.some((r) => r.leftOpen !== 0)) {
      textRow(sc, "sockets still held after closing", String(g.leftOpen ?? "?"), String(b.leftOpen ?? "?"), "", p ? String(p.leftOpen ?? "?") : "");
    }
    for (const r of res) if (r.firstError) textRow(sc, `${r.kind}: first failure`, r.firstError.slice(0, 120));
    // The issue's targets are against partyserver. Without it (a build or run that
    // has no partyserver) the bare object stands in: it does less than partyserver,
    // so it is the harder reference. The baseline's ratios stay in the table.
    const ref = p ?? b;
    const refName = p ? "partyserver" : "the bare baseline";
    const busy = res.some((r) => r.otherPct >= 25)
      ? `; machine busy: other processes used ${res.map((r) => `${r.otherPct.toFixed(0)}%`).join(" / ")} of a core (${res.map((r) => r.kind).join(" / ")})`
      : "";
    const ok = g.connected === g.attempted;
    const thr = ratio(g.socketsPerS, ref.socketsPerS);
    const p99 = ratio(g.ready.p99, ref.ready.p99);
    const vsBase = (x: number | null) => (p && x !== null ? `; ${x.toFixed(2)} x the bare baseline` : "");
    verdicts.push({
      target: `storm: sockets/s >= 0.8 x ${refName}, every socket authed (${sc}, per-user limits on${busy})`,
      value: `${thr === null ? "-" : thr.toFixed(2)} (${fmt(g.socketsPerS, 0)} vs ${fmt(ref.socketsPerS, 0)} sockets/s${vsBase(ratio(g.socketsPerS, b.socketsPerS))}); ${g.attempted - g.connected} failed`,
      met: thr === null ? null : thr >= 0.8 && ok,
    });
    verdicts.push({
      target: `storm: p99 upgrade -> authed <= 1.5 x ${refName}'s upgrade -> open (${sc}${busy})`,
      value: `${p99 === null ? "-" : p99.toFixed(2)} (${fmt(g.ready.p99, 1)} vs ${fmt(ref.ready.p99, 1)} ms${vsBase(ratio(g.ready.p99, b.ready.p99))})`,
      met: p99 === null ? null : p99 <= 1.5 && ok,
    });
  }

  // 3f. Events to origins, the gateway against Pushpin. Last: a wedged gateway
  // leaves a durable backlog that workerd keeps working off after the step.
  if (parts.has("origin") && sinkPort !== null) {
    const c = profile.origin;
    const sinkBase = `127.0.0.1:${sinkPort}`;
    const clock = await measureClockOffset(sinkBase);
    const targets: OriginTarget[] = pushpin ? ["gateway", "pushpin"] : ["gateway"];
    const first = order()[0]!;
    say(
      `origin: ${c.clients} clients in ${c.rooms} rooms send chat:send open loop at ${c.rates.map((r) => r.toLocaleString("en-US")).join(", ")} events/s; ` +
        `${targets.length > 1 ? `gateway and Pushpin in turns (${first === "gateway" ? "gateway" : "Pushpin"} first)` : "gateway only"}, ${c.windowMs / 1000} s windows; ` +
        `clock offset to the origin ${clock.offsetMs.toFixed(3)} ms (rtt ${clock.rttMs.toFixed(2)} ms)`,
    );
    const pp = pushpin;
    const steps = await originSteps(
      {
        runId: env.runId,
        log: say,
        sinkBase,
        gatewayBase: base,
        pushpinBase: pp?.base ?? null,
        pids: { gateway: () => workerdPids(pgid), pushpin: () => pp?.pids() ?? [], sink: () => (sink?.proc.pid ? groupPids(sink.proc.pid).map((s) => s.pid) : []) },
        family: { gateway: () => groupPids(pgid).map((s) => s.pid), pushpin: () => pp?.pids() ?? [] },
        logs: { gateway: () => wrangler?.lines ?? [], pushpin: () => pp?.proc.lines ?? [] },
        clockOffsetMs: clock.offsetMs,
      },
      c,
      targets,
      first === "gateway",
    );
    results.origin = { pushpin: pp ? pp.version : `not measured: ${pushpinMissing}`, clockOffsetMs: clock.offsetMs, steps };
    if (steps.some((s) => s.target === "gateway" && s.connected === 0)) exitCode = 1;
    verdicts.push(...originVerdicts(steps, pp ? null : pushpinMissing));
  }
  return finish(results, exitCode);
}

function split<T extends { kind: Kind }>(res: T[]): { g: T; b: T } {
  return { g: res.find((r) => r.kind === "gateway")!, b: res.find((r) => r.kind === "baseline")! };
}

async function pair<T>(env: BenchEnv, kinds: Kind[], run: (kind: Kind) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (const kind of kinds) {
    await settle(env);
    out.push(await run(kind));
  }
  return out;
}

/** Before a measured run: the previous run's closes and backlog are done, the machine is calm (or we say it is not). */
async function settle(env: BenchEnv): Promise<void> {
  await sleep(500);
  const q = await quiet(env, profile.quietMaxMs, profile.settleMaxMs);
  if (q.settledMs > 2_000) say(`  waited ${(q.settledMs / 1000).toFixed(1)} s for workerd to work off the previous run's backlog`);
  if (q.workerdPct >= 15) say(`  workerd still busy (${q.workerdPct.toFixed(0)}% of a core) after ${(q.settledMs / 1000).toFixed(1)} s: running anyway`);
  if (q.otherPct >= 25) say(`  other processes use ${q.otherPct.toFixed(0)}% of a core (waited ${(q.waitedMs / 1000).toFixed(1)} s): running anyway`);
}

/** The target could not keep up: frames queued for more than 100 ms at the median. */
function saturated(r: LoadResult): boolean {
  return (r.latency.p50 ?? 0) > 100 || r.skippedSends > 0;
}

/** A warning when other processes took a share of the 2 cores during either window. */
function busyNote(g: LoadResult, b: LoadResult): string {
  const og = g.cpu?.otherPct ?? 0;
  const ob = b.cpu?.otherPct ?? 0;
  return og >= 25 || ob >= 25 ? `; machine busy: other processes used ${og.toFixed(0)}% / ${ob.toFixed(0)}% of a core during the gateway / baseline window` : "";
}

function cpuRows(sc: string, g: LoadResult, b: LoadResult): void {
  row(sc, "workerd CPU (% of a core)", g.cpu?.workerdPct, b.cpu?.workerdPct, 0);
  row(sc, "workerd CPU per frame in (us)", g.cpuUsPerSent, b.cpuUsPerSent, 1);
  row(sc, "workerd CPU per frame out (us)", g.cpuUsPerDelivered, b.cpuUsPerDelivered, 2);
  row(sc, "load generator CPU (%)", g.cpu?.loadgenPct, b.cpu?.loadgenPct, 0, false);
  row(sc, "other processes CPU (%)", g.cpu?.otherPct, b.cpu?.otherPct, 0, false);
}

function errorRows(sc: string, g: LoadResult, b: LoadResult): void {
  if (Object.keys(g.errors).length > 0 || Object.keys(b.errors).length > 0) {
    textRow(sc, "sys.error", JSON.stringify(g.errors), JSON.stringify(b.errors));
  }
  if (g.skippedSends > 0 || b.skippedSends > 0) row(sc, "sends the generator skipped (late)", g.skippedSends, b.skippedSends, 0, false);
}

function loadRows(sc: string, g: LoadResult, b: LoadResult): void {
  row(sc, "connected", g.connected, b.connected, 0, false);
  row(sc, "frames in/s (sent)", g.sentPerS, b.sentPerS, 0);
  row(sc, "delivered frames/s", g.deliveredPerS, b.deliveredPerS, 0);
  row(sc, "not received (lost, or queued when the drain ended)", g.drops, b.drops, 0, false);
  if (g.drain?.outcome !== "complete" || b.drain?.outcome !== "complete") {
    textRow(sc, "drain after the window", `${g.drain?.outcome} ${fmt((g.drain?.ms ?? 0) / 1000, 1)} s`, `${b.drain?.outcome} ${fmt((b.drain?.ms ?? 0) / 1000, 1)} s`);
  }
  latencyRows(sc, "latency", g.latency, b.latency);
  cpuRows(sc, g, b);
  errorRows(sc, g, b);
  for (const r of [g, b]) if (r.note) textRow(sc, `${r.kind}: note`, r.note);
}

async function warmUp(env: BenchEnv, tenant: string, party: boolean): Promise<void> {
  const kinds: StormTarget[] = party ? ["gateway", "baseline", "party"] : ["gateway", "baseline"];
  for (const kind of kinds) {
    const room = `warm-${env.runId}`;
    const url = (u: string) =>
      kind === "gateway"
        ? `ws://${env.base}/v1/ws?tenant=${tenant}&room=${room}&ticket=dev:${u}`
        : kind === "party"
          ? `ws://${env.base}/parties/party-room/${room}`
          : `ws://${env.base}/baseline/ws?room=${room}`;
    const rep = await connectAll(
      ["w1", "w2", "w3"].map((u, idx) => ({ url: url(u), idx, room: 0, authed: kind === "gateway" })),
      { concurrency: 3, deadlineMs: 20_000 },
    );
    if (rep.conns.length === 0) throw new Error(`warm-up: cannot connect to the ${kind}: ${rep.firstError}`);
    const frame = Buffer.from([1, 1, 1, 0, ...new Array(16).fill(0)]);
    // The relay path only where it will be measured (the storm's tenant allows no hot frames).
    for (let i = 0; tenant === "demo" && i < 300; i++) {
      for (const c of rep.conns) c.ws.send(frame);
      if (i % 50 === 0) await sleep(5);
    }
    await sleep(300);
    await closeAll(rep.conns);
  }
}

function finish(results: Results, exitCode: number): number {
  results.durationS = (Date.now() - t0) / 1000;
  console.log("");
  if (rows.length > 0) console.log(printTable());
  if (results.origin) {
    console.log("");
    console.log(`events to origins (gateway vs ${results.origin.pushpin.startsWith("not measured") ? `Pushpin, ${results.origin.pushpin}` : results.origin.pushpin}):`);
    console.log(originTable(results.origin.steps));
    const steps = results.origin.steps;
    const high = (t: OriginTarget) => (steps.some((s) => s.target === t) ? `${highestClean(steps, t).toLocaleString("en-US")} events/s` : "not measured");
    console.log(`highest clean rate (every event at the origin, p99 < 1 s, at this rate and every lower one): gateway ${high("gateway")}, Pushpin ${high("pushpin")}`);
  }
  console.log("");
  for (const v of verdicts) console.log(`${v.met === null ? "[ n/a ]" : v.met ? "[ met ]" : "[ NOT met ]"} ${v.target}: ${v.value}`);
  const m = results.machine;
  console.log("");
  console.log(
    `machine: ${m.cpus} cores (${m.cpuModel}), shared by the load generator and the gateway; node ${m.node}; wrangler ${m.wrangler}; workerd ${m.workerd ?? "-"}; profile ${results.profile}; ${results.durationS.toFixed(0)} s`,
  );
  if (results.target.via) console.log(`clients connected to ${results.target.via}`);
  mkdirSync(dirname(opts.out!), { recursive: true });
  writeFileSync(opts.out!, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`results: ${opts.out}`);
  return exitCode;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  if (wrangler && wrangler.lines.length > 0) console.error(`last wrangler output:\n  ${wrangler.lines.slice(-20).join("\n  ")}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
