/**
 * `npm start`: the local demo. Compiles policies/*.yaml, then runs side by side,
 * with prefixed output:
 *
 *   [gateway]  wrangler dev on http://127.0.0.1:8787 (dev tickets allowed)
 *   [origin]   the example origin (examples/origin/server.ts) on http://127.0.0.1:8788,
 *              which the demo tenant's `chat` service posts its webhooks to
 *
 * Other ports: `npm start -- --port N --origin-port M` (or WSPRISM_PORT /
 * WSPRISM_ORIGIN_PORT); the demo policy's origin URL follows (start-options.ts).
 *
 * Both get the same webhook secret and API key. Ctrl-C (or SIGTERM) stops both;
 * if one of them exits, the other is stopped and this exits non-zero.
 *
 * Secrets: a `.dev.vars` file (or, without one, `.env` / `.env.local`, as wrangler
 * reads them) that sets DEMO_WEBHOOK_SECRET or DEMO_API_KEY wins; wrangler reads
 * it itself and the origin is given the same value. Otherwise the DEMO_* values
 * below are used. They are public, local-development-only values: never deploy
 * them (`wrangler secret put DEMO_WEBHOOK_SECRET` etc. for a deployment).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { constants } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseStartOptions, START_USAGE } from "./start-options.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const NODE = process.execPath;

const GATEWAY_HOST = "127.0.0.1";

// LOCAL DEVELOPMENT ONLY: well-known demo values, published in this repository.
const DEMO_DEFAULTS: Record<string, string> = {
  // whsec_ + base64("wsprism-demo-webhook-secret-local-only")
  DEMO_WEBHOOK_SECRET: "whsec_d3NwcmlzbS1kZW1vLXdlYmhvb2stc2VjcmV0LWxvY2FsLW9ubHk=",
  DEMO_API_KEY: "demo-api-key-local-only",
};

const STOP_GRACE_MS = 5_000;
const tty = process.stdout.isTTY === true;
const paint = (code: number, s: string) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);

function say(line: string): void {
  console.log(`${paint(1, "[start]")}   ${line}`);
}

// ---------------------------------------------------------------------------
// Secrets: the user's own files first, as wrangler reads them.

/** Minimal dotenv: KEY=VALUE lines, `export ` prefix, '…' / "…" quotes, # comments. */
function parseDotEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m) continue;
    let value = m[2]!;
    const q = value[0];
    if ((q === '"' || q === "'") && value.length >= 2 && value.endsWith(q)) value = value.slice(1, -1);
    else value = value.replace(/\s+#.*$/, "");
    out[m[1]!] = value;
  }
  return out;
}

function userVars(): { file: string | null; vars: Record<string, string> } {
  const devVars = join(ROOT, ".dev.vars");
  if (existsSync(devVars)) return { file: ".dev.vars", vars: parseDotEnv(readFileSync(devVars, "utf8")) };
  const vars: Record<string, string> = {};
  const found: string[] = [];
  for (const name of [".env", ".env.local"]) {
    const file = join(ROOT, name);
    if (!existsSync(file)) continue;
    Object.assign(vars, parseDotEnv(readFileSync(file, "utf8")));
    found.push(name);
  }
  return { file: found.length > 0 ? found.join(" + ") : null, vars };
}

// ---------------------------------------------------------------------------
// Children

interface Child {
  name: string;
  proc: ChildProcess;
  exited: Promise<number>;
}

const children: Child[] = [];
let stopping = false;

function run(name: string, color: number, args: string[], env: NodeJS.ProcessEnv): Child {
  const proc = spawn(NODE, args, {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so that stopping it also stops what it started
    // (wrangler runs workerd and esbuild).
    detached: process.platform !== "win32",
  });
  const prefix = paint(color, `[${name}]`.padEnd(9));
  for (const stream of [proc.stdout!, proc.stderr!]) {
    createInterface({ input: stream, crlfDelay: Infinity }).on("line", (line) => console.log(`${prefix} ${line}`));
  }
  const exited = new Promise<number>((ok) => {
    proc.once("error", (err) => {
      console.error(`${prefix} failed to start: ${err.message}`);
      ok(1);
    });
    proc.once("exit", (code, signal) => ok(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)));
  });
  const child = { name, proc, exited };
  children.push(child);
  void exited.then((code) => {
    if (stopping) return;
    say(`${name} exited (${code}); stopping the rest`);
    void stopAll(code === 0 ? 1 : code);
  });
  return child;
}

function signalGroup(proc: ChildProcess, signal: NodeJS.Signals): void {
  if (proc.pid === undefined) return;
  try {
    if (process.platform === "win32") proc.kill(signal);
    else process.kill(-proc.pid, signal); // the whole group it leads
  } catch {
    // already gone
  }
}

async function stopAll(exitCode: number): Promise<never> {
  stopping = true;
  for (const c of children) signalGroup(c.proc, "SIGTERM");
  const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), STOP_GRACE_MS).unref());
  const all = Promise.all(children.map((c) => c.exited));
  if ((await Promise.race([all, timeout])) === "timeout") say("still running: killing");
  // Whatever is left in the groups (a leader that exited may leave children behind).
  for (const c of children) signalGroup(c.proc, "SIGKILL");
  process.exit(exitCode);
}

let firstSignalAt = 0;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (stopping) {
      // npm forwards the terminal's Ctrl-C that this process got too: a repeat
      // within a second is the same Ctrl-C. A later one: do not wait.
      if (Date.now() - firstSignalAt < 1_000) return;
      for (const c of children) signalGroup(c.proc, "SIGKILL");
      process.exit(130);
    }
    firstSignalAt = Date.now();
    say(`${signal}: stopping the gateway and the origin`);
    void stopAll(0);
  });
}

// ---------------------------------------------------------------------------

function main(): void {
  const options = parseStartOptions(process.argv.slice(2), process.env);
  if (!options.ok) {
    if (options.help) {
      console.log(START_USAGE);
      process.exit(0);
    }
    console.error(`npm start: ${options.error}\n${START_USAGE}`);
    process.exit(2);
  }
  const { port, originPort } = options;
  // The policy compiler reads it, here and in wrangler's [build]: the demo's origin URL follows the origin.
  const portEnv = { WSPRISM_ORIGIN_PORT: String(originPort) };
  const build = spawnSync(NODE, ["scripts/compile-policies.ts"], { cwd: ROOT, stdio: "inherit", env: { ...process.env, ...portEnv } });
  if (build.status !== 0) {
    say("the policies do not compile; fix policies/*.yaml and run npm start again");
    process.exit(build.status ?? 1);
  }

  const { file, vars } = userVars();
  const secrets: Record<string, string> = {};
  const cliVars = ["WSPRISM_ALLOW_DEV_AUTH:1"];
  for (const [name, demo] of Object.entries(DEMO_DEFAULTS)) {
    const own = vars[name];
    if (own !== undefined && own !== "") {
      secrets[name] = own; // wrangler reads it from the file itself
      say(`${name}: from ${file}`);
    } else {
      secrets[name] = demo;
      cliVars.push(`${name}:${demo}`); // --var wins over the files in wrangler dev
    }
  }

  const gatewayUrl = `http://${GATEWAY_HOST}:${port}`;
  run("origin", 35, ["examples/origin/server.ts"], {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: String(originPort),
    WSPRISM_WEBHOOK_SECRET: secrets.DEMO_WEBHOOK_SECRET,
    WSPRISM_API_KEY: secrets.DEMO_API_KEY,
    WSPRISM_GATEWAY_URL: gatewayUrl,
  });
  const wrangler = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
  run(
    "gateway",
    36,
    [wrangler, "dev", "--ip", GATEWAY_HOST, "--port", String(port), ...cliVars.flatMap((v) => ["--var", v])],
    { ...process.env, ...portEnv, ...(tty ? { FORCE_COLOR: "1" } : {}) },
  );
  void announceWhenReady(gatewayUrl, `http://127.0.0.1:${originPort}`, port);
}

/** Print how to try it once both answer /healthz. */
async function announceWhenReady(gateway: string, origin: string, gatewayPort: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  const up = async (url: string) => {
    try {
      return (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) })).ok;
    } catch {
      return false;
    }
  };
  while (!stopping && Date.now() < deadline) {
    if ((await up(gateway)) && (await up(origin))) {
      say(`ready: gateway ${gateway}, example origin ${origin}.`);
      say(`  live demo page: ${gateway}/ (open it in two tabs or browsers). Or, in two terminals:`);
      say(`  npx wscat -c 'ws://127.0.0.1:${gatewayPort}/v1/ws?tenant=demo&room=lobby&ticket=dev:alice'`);
      say(`  then send {"v":1,"svc":"chat","type":"send","flags":4,"seq":1,"data":{"msg":"hi"}}`);
      say("  docs/origins.md explains the webhooks; Ctrl-C stops both.");
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

main();
