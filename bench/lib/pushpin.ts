/**
 * Pushpin (Debian's `pushpin` package), the ext-lane peer of "events to origins":
 * a reverse proxy whose WebSocket-over-HTTP mode turns each client's WebSocket
 * messages into POSTs to an HTTP origin (one request in flight per connection;
 * what arrives meanwhile goes into the next one).
 *
 * The bench runs its own instance: a config in a temporary directory (its ipc
 * sockets in a run/ directory there, never /var/run), the client port and the
 * handler's HTTP control port chosen free, one route `* 127.0.0.1:<origin>,over_http`.
 * `pushpin` (the runner) starts condure (client connections), zurl (outgoing
 * HTTP), pushpin-proxy and pushpin-handler, each in its own process group, so the
 * CPU of "Pushpin" is the runner's process tree, and stopping it stops the runner
 * and then whatever of that tree survived, by pid.
 */
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import os from "node:os";
import { delimiter, dirname, join } from "node:path";
import { commOf, freePort, sleep, startGroup, stopGroup, treePids, waitHealthy, type Proc } from "./proc.ts";

export interface Pushpin {
  /** host:port clients connect to (condure). */
  base: string;
  version: string;
  /** The runner and every process it started (CPU). */
  pids: () => number[];
  proc: Proc;
  stop: () => Promise<void>;
}

/** The `pushpin` executable on PATH, or null. */
export function findPushpin(): string | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, "pushpin");
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

/** internal.conf of the installed Pushpin (Debian: /usr/lib/pushpin; a source build: <prefix>/lib/pushpin). */
function internalConf(bin: string): string | null {
  let prefix = "/usr";
  try {
    prefix = dirname(dirname(realpathSync(bin)));
  } catch {
    // keep /usr
  }
  for (const dir of [join(prefix, "lib/pushpin"), "/usr/lib/pushpin", "/usr/local/lib/pushpin"]) {
    if (existsSync(join(dir, "internal.conf"))) return join(dir, "internal.conf");
  }
  return null;
}

/**
 * Debian's internal.conf points the proxy at a system-wide zurl
 * (ipc:///var/run/zurl/zurl-in …); ours runs its own zurl, so every absolute ipc
 * path becomes one in the instance's run directory.
 */
export function patchInternal(text: string): string {
  return text.replace(/ipc:\/\/\/[^\s,]*\/(zurl-[a-z-]+)/g, "ipc://{rundir}/{ipc_prefix}$1");
}

function pushpinConf(dir: string, includeFile: string, httpPort: number, controlPort: number, logLevel: number): string {
  return `# Written by bench/lib/pushpin.ts for one bench run; see /etc/pushpin/pushpin.conf for every key.
[global]
include=${includeFile}
rundir=${join(dir, "run")}
ipc_prefix=pushpin-
port_offset=0
stats_connection_ttl=120

[runner]
# zurl too: Debian's default expects a system zurl service
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:${httpPort}
logdir=${join(dir, "log")}
# 1: warnings and errors only (the bench's default): at Pushpin's default (2) zurl
# logs two lines per POST, and the gateway runs with --log-level warn
log_level=${logLevel}
client_buffer_size=8192
client_maxconn=50000
condure_bin=condure
zurl_bin=zurl

[proxy]
routesfile=routes
debug=false
auto_cross_origin=false
accept_x_forwarded_protocol=false
set_x_forwarded_protocol=proto-only
accept_pushpin_route=false
log_from=false
log_user_agent=false
sig_iss=pushpin
sig_key=bench-only-not-a-secret
updates_check=off

[handler]
push_in_spec=ipc://{rundir}/{ipc_prefix}push-in
push_in_sub_specs=ipc://{rundir}/{ipc_prefix}push-in-sub
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port=${controlPort}
push_in_http_max_headers_size=10000
push_in_http_max_body_size=1000000
stats_spec=ipc://{rundir}/{ipc_prefix}stats
command_spec=ipc://{rundir}/{ipc_prefix}command
message_rate=2500
message_hwm=25000
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
stats_subscription_ttl=60
stats_report_interval=10
stats_format=tnetstring
`;
}

/** Why Pushpin cannot run here, or null. */
export function pushpinProblem(): string | null {
  const bin = findPushpin();
  if (!bin) return "pushpin is not installed (Debian: apt-get install pushpin)";
  if (!internalConf(bin)) return `cannot find Pushpin's internal.conf next to ${bin}`;
  return null;
}

/** Start Pushpin in front of the origin at 127.0.0.1:originPort; resolves once a request goes through it to the origin. */
export async function startPushpin(originPort: number, logLevel = 1): Promise<Pushpin> {
  const bin = findPushpin();
  const internal = bin ? internalConf(bin) : null;
  if (!bin || !internal) throw new Error(pushpinProblem() ?? "pushpin not found");
  const dir = mkdtempSync(join(os.tmpdir(), "wsprism-pushpin-"));
  mkdirSync(join(dir, "run"));
  mkdirSync(join(dir, "log"));
  const httpPort = await freePort();
  let controlPort = await freePort();
  while (controlPort === httpPort) controlPort = await freePort();
  writeFileSync(join(dir, "internal.conf"), patchInternal(readFileSync(internal, "utf8")));
  writeFileSync(join(dir, "pushpin.conf"), pushpinConf(dir, join(dir, "internal.conf"), httpPort, controlPort, logLevel));
  writeFileSync(join(dir, "routes"), `* 127.0.0.1:${originPort},over_http\n`);
  const v = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 5_000 });
  const version = (v.stdout || v.stderr || "unknown").trim();
  const proc = startGroup("pushpin", bin, ["--config", join(dir, "pushpin.conf"), "--merge-output"], process.env, dir);
  const root = proc.proc.pid!;
  /** Every process of the tree seen so far, with its command name (to never signal a reused pid). */
  const seen = new Map<number, string>();
  const pids = () => {
    const list = treePids(root);
    for (const pid of list) if (!seen.has(pid)) seen.set(pid, commOf(pid) ?? "");
    return list;
  };
  const stop = async () => {
    pids();
    await stopGroup(proc);
    // The runner stops its services on SIGTERM; these are the ones that did not stop.
    const left = () => [...seen].filter(([pid, comm]) => comm !== "" && commOf(pid) === comm).map(([pid]) => pid);
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      for (const pid of left()) {
        try {
          process.kill(pid, signal);
        } catch {
          // gone
        }
      }
      const deadline = Date.now() + 2_000;
      while (Date.now() < deadline && left().length > 0) await sleep(50);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Through condure, the proxy and zurl to the origin's /healthz: the whole path works.
    await waitHealthy(`http://127.0.0.1:${httpPort}/healthz`, proc, 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  pids();
  return { base: `127.0.0.1:${httpPort}`, version, pids, proc, stop };
}
