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

export function log(level: LogLevel, event: string, fields: LogFields): void {
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
