/**
 * Structured logs: one JSON object per line, always with `event` and `trace_id`.
 * Never log tickets, secrets or message payloads.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface LogFields {
  trace_id: string;
  tenant?: string;
  room?: string;
  sid?: string;
  user?: string;
  [key: string]: unknown;
}

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
let threshold = RANK.info;

/**
 * Set the lowest level written, from the `WSPRISM_LOG_LEVEL` var (`debug`, `info`,
 * `warn`, `error`; default `info`). Called by the Worker and each object with
 * their env; an unknown value keeps `info`.
 */
export function configureLogs(level: string | undefined): void {
  threshold = level !== undefined && level in RANK ? RANK[level as LogLevel] : RANK.info;
}

export function log(level: LogLevel, event: string, fields: LogFields): void {
  if (RANK[level] < threshold) return;
  const line = JSON.stringify({ ts: new Date().toISOString(), level, event, ...fields });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

/** 32 hex chars, as W3C trace ids. */
export function newTraceId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}
