/**
 * The options of `npm start` (scripts/start.ts), kept apart so that they can be
 * tested without starting anything:
 *
 *   npm start -- [--port N] [--origin-port M]
 *
 *   --port N         the gateway (wrangler dev); env WSPRISM_PORT; default 8787
 *   --origin-port M  the example origin; env WSPRISM_ORIGIN_PORT; default 8788
 *
 * Flags win over the environment. The demo policy (policies/default.yaml) posts
 * its webhooks to http://127.0.0.1:8788; with another origin port the policy
 * compiler (scripts/compile-policies.ts, also run by wrangler's [build]) rewrites
 * that URL when WSPRISM_ORIGIN_PORT is set, which npm start does for both.
 */
import { parseArgs } from "node:util";

export const DEFAULT_PORT = 8787;
export const DEFAULT_ORIGIN_PORT = 8788;
export const START_USAGE = "usage: npm start -- [--port N] [--origin-port M]   (env: WSPRISM_PORT, WSPRISM_ORIGIN_PORT)";

export type StartOptions = { ok: true; port: number; originPort: number } | { ok: false; error: string; help?: true };

/** A TCP port (1-65535) from its decimal text, or an error naming where it came from. */
export function parsePort(where: string, text: string): number | string {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65_535) {
    return `${where}: expected a port (1-65535), got ${JSON.stringify(text)}`;
  }
  return Number(text);
}

export function parseStartOptions(argv: string[], env: Record<string, string | undefined>): StartOptions {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: { port: { type: "string" }, "origin-port": { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  if (values.help) return { ok: false, error: START_USAGE, help: true };
  const pick = (flag: string, given: string | undefined, name: string, dflt: number): number | string => {
    if (given !== undefined) return parsePort(`--${flag}`, given);
    const fromEnv = env[name];
    return fromEnv === undefined || fromEnv === "" ? dflt : parsePort(name, fromEnv);
  };
  const port = pick("port", values.port, "WSPRISM_PORT", DEFAULT_PORT);
  if (typeof port === "string") return { ok: false, error: port };
  const originPort = pick("origin-port", values["origin-port"], "WSPRISM_ORIGIN_PORT", DEFAULT_ORIGIN_PORT);
  if (typeof originPort === "string") return { ok: false, error: originPort };
  if (port === originPort) return { ok: false, error: `the gateway and the origin ports must differ (both ${port})` };
  return { ok: true, port, originPort };
}

/** The demo's loopback origin URLs (http://127.0.0.1:8788…) moved to `originPort`; nothing else changes. */
export function rewriteOriginPort(text: string, originPort: number): string {
  if (originPort === DEFAULT_ORIGIN_PORT) return text;
  return text.replace(/http:\/\/127\.0\.0\.1:8788(?![0-9])/g, `http://127.0.0.1:${originPort}`);
}
