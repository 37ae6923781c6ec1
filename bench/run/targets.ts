/**
 * The processes the bench starts and stops: the bench build (the gateway, the
 * baseline and partyserver in one workerd), served by workerd itself (default,
 * bench/lib/workerd.ts) or by `wrangler dev` (--runtime wrangler), the example origin
 * on 8788 (ext), the bench origin and Pushpin (events to origins). Each runs in
 * its own process group, killed at the end, also on Ctrl-C.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { pushpinProblem, startPushpin, type Pushpin } from "../lib/pushpin.ts";
import { exePath, freePort, groupPids, listeningPorts, portFree, startGroup, stopGroup, waitHealthy, workerdPids, type Proc } from "../lib/proc.ts";
import type { RoomStatsView } from "../scenarios/common.ts";
import { prepareWorkerd } from "../lib/workerd.ts";
import type { Part, Runtime } from "./options.ts";
import { say } from "./report.ts";

/** Must match the demo tenant's services.chat.url in policies/default.yaml. */
export const ORIGIN_PORT = 8788;

/** The runtime: `workerd serve` or `wrangler dev` (its process group holds every workerd of the bench build). */
let runtime: Proc | undefined;
let origin: Proc | undefined;
/** The bench origin of "events to origins" (bench/origin.ts), and Pushpin in front of it. */
let sink: Proc | undefined;
let pushpin: Pushpin | undefined;
let persistDir: string | undefined;
let stopping = false;

export async function cleanup(): Promise<void> {
  stopping = true;
  await pushpin?.stop();
  await stopGroup(sink);
  await stopGroup(origin);
  await stopGroup(runtime);
  if (runtime?.proc.pid !== undefined && groupPids(runtime.proc.pid).length > 0) {
    say(`warning: processes of group ${runtime.proc.pid} survived SIGKILL`);
  }
  if (persistDir) rmSync(persistDir, { recursive: true, force: true });
}

/** Stop everything on SIGINT/SIGTERM/SIGHUP, then exit 130. */
export function stopOnSignals(): void {
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      if (stopping) return;
      say(`${signal}: stopping the runtime, the origins and Pushpin`);
      void cleanup().then(() => process.exit(130));
    });
  }
}

/** The runtime's last lines, for the error message of a failed run. */
export function runtimeTail(): string[] {
  return runtime?.lines.slice(-20) ?? [];
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
export function checkBenchConfig(root: string): string | null {
  const main = tomlBindings(join(root, "wrangler.toml"));
  const bench = tomlBindings(join(root, "bench/wrangler.bench.toml"));
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

export function wranglerVersion(root: string): string {
  try {
    return (JSON.parse(readFileSync(join(root, "node_modules/wrangler/package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

/** What the parts need of the started processes. */
export interface Targets {
  /** host:port the clients connect to, and how (direct, or through wrangler's proxy). */
  base: string;
  via: string;
  /** The runtime's process group: its workerd processes are the targets' CPU and RSS. */
  pgid: number;
  workerd: string;
  /** Why the ext scenario cannot run (8788 busy), or null. */
  extSkipped: string | null;
  /** The bench origin's port (events to origins), or null when that part does not run. */
  sinkPort: number | null;
  pushpin: Pushpin | undefined;
  /** Why Pushpin is not measured, or null. */
  pushpinMissing: string | null;
  sinkPids: () => number[];
  runtimeLines: () => string[];
}

/**
 * Start the example origin on 8788 (only when ext runs: a busy port skips ext
 * instead), the bench origin and Pushpin (only when origin runs), and `wrangler
 * dev` on the bench build, then find the runtime's own port unless viaProxy.
 */
export async function startTargets(root: string, node: string, parts: Set<Part>, how: { viaProxy: boolean; runtime: Runtime }): Promise<Targets> {
  const { viaProxy } = how;
  const secret = `whsec_${randomBytes(24).toString("base64")}`;
  let extSkipped: string | null = null;
  if (parts.has("ext")) {
    if (!(await portFree(ORIGIN_PORT))) {
      extSkipped = `port ${ORIGIN_PORT} is busy (npm start or the e2e test running?): the demo tenant's chat webhooks go to http://127.0.0.1:${ORIGIN_PORT}/hooks/chat, so the ext scenario needs that port`;
      console.error(`\nERROR: ${extSkipped}. Skipping the ext scenario; the run will exit non-zero.\n`);
    } else {
      origin = startGroup("origin", node, ["examples/origin/server.ts"], {
        ...process.env,
        HOST: "127.0.0.1",
        PORT: String(ORIGIN_PORT),
        WSPRISM_WEBHOOK_SECRET: secret,
        WSPRISM_API_KEY: "",
        PUSH_EVERY_MS: "0",
      }, root);
    }
  }
  // The bench origin for events to origins, on a free port the bench build writes
  // into the bench-origin tenant's URL (BENCH_ORIGIN_PORT, bench/build-policies.ts).
  let sinkPort: number | null = null;
  if (parts.has("origin")) {
    sinkPort = await freePort();
    sink = startGroup("bench-origin", node, ["bench/origin.ts"], { ...process.env, PORT: String(sinkPort) }, root);
  }
  const port = await freePort();
  persistDir = mkdtempSync(join(os.tmpdir(), "wsprism-bench-"));
  const vars: Record<string, string> = { WSPRISM_ALLOW_DEV_AUTH: "1", DEMO_WEBHOOK_SECRET: secret, BENCH_ORIGIN_SECRET: secret };
  if (sinkPort !== null) vars.BENCH_ORIGIN_URL = `http://127.0.0.1:${sinkPort}/bare`;
  const buildEnv = { ...process.env, ...(sinkPort !== null ? { BENCH_ORIGIN_PORT: String(sinkPort) } : {}) };
  let inspector = -1;
  if (how.runtime === "workerd") {
    say(`bundling bench/wrangler.bench.toml (wrangler deploy --dry-run) and serving it with workerd on 127.0.0.1:${port}`);
    const w = prepareWorkerd({ root, node, toml: "bench/wrangler.bench.toml", dir: persistDir, port, vars, env: buildEnv });
    runtime = startGroup("workerd", w.bin, w.args, process.env, w.cwd);
  } else {
    inspector = await freePort();
    say(`starting wrangler dev -c bench/wrangler.bench.toml on 127.0.0.1:${port}`);
    runtime = startGroup(
      "wrangler",
      node,
      [
        join(root, "node_modules/wrangler/bin/wrangler.js"),
        "dev",
        "-c", "bench/wrangler.bench.toml",
        "--ip", "127.0.0.1",
        "--port", String(port),
        "--inspector-port", String(inspector),
        "--persist-to", persistDir,
        "--show-interactive-dev-session=false",
        "--log-level", "warn",
        ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
      ],
      { ...buildEnv, CI: "1", WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
      root,
    );
  }
  const pgid = runtime.proc.pid!;
  await waitHealthy(`http://127.0.0.1:${port}/healthz`, runtime, 120_000);
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
  let via = how.runtime === "workerd" ? "workerd serve (no wrangler dev harness)" : "wrangler's proxy port";
  if (how.runtime === "wrangler" && !viaProxy) {
    const direct = await directPort(pgid, port, inspector);
    if (direct !== null) {
      base = `127.0.0.1:${direct}`;
      via = "the runtime's own port (wrangler's proxy hop skipped)";
    } else say("could not find the runtime's own port; going through wrangler's proxy");
  }
  const sinkProc = sink;
  return {
    base,
    via,
    pgid,
    workerd: workerdVersion(pgid),
    extSkipped,
    sinkPort,
    pushpin,
    pushpinMissing,
    sinkPids: () => (sinkProc?.proc.pid ? groupPids(sinkProc.proc.pid).map((s) => s.pid) : []),
    runtimeLines: () => runtime?.lines ?? [],
  };
}

/** Counters of a gateway room (`room-stats`; the bench subclass of RoomObject), or null. */
export async function gatewayStats(base: string, room: string, tenant = "demo"): Promise<RoomStatsView | null> {
  try {
    const res = await fetch(`http://${base}/bench/room-stats?tenant=${tenant}&room=${encodeURIComponent(room)}`, { signal: AbortSignal.timeout(5_000) });
    return res.ok ? ((await res.json()) as RoomStatsView) : null;
  } catch {
    return null;
  }
}

/** Counters of a baseline (`baseline-stats`) or partyserver (`party-stats`) room, or null. */
export async function peerStats(base: string, room: string, which: "baseline" | "party" = "baseline"): Promise<RoomStatsView | null> {
  try {
    const res = await fetch(`http://${base}/bench/${which}-stats?room=${encodeURIComponent(room)}`, { signal: AbortSignal.timeout(5_000) });
    return res.ok ? ((await res.json()) as RoomStatsView) : null;
  } catch {
    return null;
  }
}
