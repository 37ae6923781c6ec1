/**
 * WebSocket clients for the load generator (the `ws` package: one Node process,
 * many sockets). Connections are opened with bounded concurrency; 429/503 answers
 * (handshake defender, room full) are retried after Retry-After, within a deadline.
 */
import WebSocket from "ws";
import { sleep } from "./proc.ts";

export type Handler = (data: Buffer, isBinary: boolean) => void;

export interface Conn {
  ws: WebSocket;
  /** Index of the client in its scenario, and of its room. */
  idx: number;
  room: number;
  /** Gateway only: the slot from sys.authed. */
  slot: number | null;
  /** Replaced by each scenario. */
  onMessage: Handler;
  closed: boolean;
}

export interface ConnectSpec {
  url: string;
  idx: number;
  room: number;
  /** Wait for `sys.authed` (gateway) before counting the connection as open. */
  authed: boolean;
}

export interface ConnectReport {
  conns: Conn[];
  failed: number;
  retries: number;
  /** Statuses of refused upgrades, e.g. {"429": 3}. */
  refused: Record<string, number>;
  firstError: string | null;
  ms: number;
}

/** Why an attempt failed: the HTTP status of a refused upgrade, or what happened instead. */
type FailReason = number | "timeout" | "closed" | "error";
type Attempt = { ok: true; conn: Conn } | { ok: false; status: number | null; reason: FailReason; retryAfterS: number | null; error: string };

function attempt(spec: ConnectSpec, timeoutMs: number): Promise<Attempt> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (a: Attempt) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(a);
    };
    const ws = new WebSocket(spec.url, { perMessageDeflate: false, handshakeTimeout: timeoutMs });
    ws.binaryType = "nodebuffer";
    const conn: Conn = { ws, idx: spec.idx, room: spec.room, slot: null, onMessage: () => {}, closed: false };
    const timer = setTimeout(() => {
      ws.terminate();
      done({ ok: false, status: null, reason: "timeout", retryAfterS: null, error: `no ${spec.authed ? "sys.authed" : "open"} within ${timeoutMs} ms` });
    }, timeoutMs);
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (!settled && spec.authed && !isBinary) {
        try {
          const m = JSON.parse(data.toString("utf8")) as { svc?: string; type?: string; data?: { slot?: number } };
          if (m.svc === "sys" && m.type === "authed") {
            conn.slot = m.data?.slot ?? null;
            ws.send("ping"); // as clients do at open (SPEC v1.2 section 2): the session arrives
            done({ ok: true, conn });
            return;
          }
        } catch {
          // not JSON
        }
      }
      conn.onMessage(data, isBinary);
    });
    ws.on("close", () => {
      conn.closed = true;
      done({ ok: false, status: null, reason: "closed", retryAfterS: null, error: "closed before it was ready" });
    });
    ws.on("error", (err) => done({ ok: false, status: null, reason: "error", retryAfterS: null, error: err.message }));
    ws.on("unexpected-response", (_req, res) => {
      const ra = Number(res.headers["retry-after"]);
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString("utf8").slice(0, 300)));
      res.on("end", () => {
        ws.terminate();
        done({ ok: false, status: res.statusCode ?? null, reason: res.statusCode ?? "error", retryAfterS: Number.isFinite(ra) ? ra : null, error: `HTTP ${res.statusCode} ${body.trim()}` });
      });
      res.on("error", () => done({ ok: false, status: res.statusCode ?? null, reason: res.statusCode ?? "error", retryAfterS: null, error: `HTTP ${res.statusCode}` }));
    });
    ws.on("open", () => {
      if (!spec.authed) done({ ok: true, conn });
    });
  });
}

/** Open every connection; at most `concurrency` handshakes at once; give up at `deadlineMs` from now. */
export async function connectAll(specs: ConnectSpec[], opts: { concurrency: number; deadlineMs: number; timeoutMs?: number }): Promise<ConnectReport> {
  const t0 = Date.now();
  const deadline = t0 + opts.deadlineMs;
  const conns: Conn[] = new Array(specs.length);
  const refused: Record<string, number> = {};
  let failed = 0;
  let retries = 0;
  let firstError: string | null = null;
  let next = 0;
  const worker = async () => {
    while (next < specs.length) {
      const spec = specs[next++]!;
      for (;;) {
        const a = await attempt(spec, opts.timeoutMs ?? 10_000);
        if (a.ok) {
          conns[spec.idx] = a.conn;
          break;
        }
        if (a.status !== null) refused[a.status] = (refused[a.status] ?? 0) + 1;
        const retryable = a.status === 429 || a.status === 503;
        const wait = Math.min(5_000, Math.max(200, (a.retryAfterS ?? 1) * 1000));
        if (retryable && Date.now() + wait < deadline) {
          retries++;
          await sleep(wait);
          continue;
        }
        failed++;
        firstError ??= a.error;
        break;
      }
      if (Date.now() > deadline) break;
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, specs.length) }, worker));
  return { conns: conns.filter(Boolean), failed: failed + (specs.length - next), retries, refused, firstError, ms: Date.now() - t0 };
}

export interface TimedReport {
  conns: Conn[];
  /** ms from the start of each upgrade to its socket being ready (sys.authed, or open), one per opened socket. */
  times: number[];
  /** Failed sockets by HTTP status ("409") or by what happened ("timeout", "closed", "error", "deadline": never started). */
  failures: Record<string, number>;
  firstError: string | null;
  /** From the first upgrade started to the last one settled. */
  wallMs: number;
}

/**
 * The connection storm's opener: every spec once, at most `concurrency` handshakes
 * in flight, each timed. No retries, unlike connectAll: in a storm a refusal (429,
 * 409, 503) is a result to report, not noise to wait out.
 */
export async function connectTimed(specs: ConnectSpec[], opts: { concurrency: number; timeoutMs: number; deadlineMs: number }): Promise<TimedReport> {
  const conns: Conn[] = [];
  const times: number[] = [];
  const failures: Record<string, number> = {};
  let firstError: string | null = null;
  let next = 0;
  const t0 = performance.now();
  let last = t0;
  const worker = async () => {
    while (next < specs.length && performance.now() - t0 < opts.deadlineMs) {
      const spec = specs[next++]!;
      const start = performance.now();
      const a = await attempt(spec, opts.timeoutMs);
      last = performance.now();
      if (a.ok) {
        conns.push(a.conn);
        times.push(last - start);
      } else {
        failures[a.reason] = (failures[a.reason] ?? 0) + 1;
        firstError ??= a.error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, specs.length) }, worker));
  if (next < specs.length) failures.deadline = specs.length - next;
  return { conns, times, failures, firstError, wallMs: last - t0 };
}

/** Close all (1000), wait for the closes up to waitMs, then terminate the rest. */
export async function closeAll(conns: Conn[], waitMs = 3_000): Promise<void> {
  for (const c of conns) {
    c.onMessage = () => {};
    try {
      if (!c.closed) c.ws.close(1000, "bench done");
    } catch {
      // already closing
    }
  }
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline && conns.some((c) => !c.closed)) await sleep(50);
  for (const c of conns) if (!c.closed) c.ws.terminate();
}

/** Parse a text frame as a JSON envelope, or null. */
export function envelope(data: Buffer): { svc?: string; type?: string; seq?: number; data?: any; from?: { user: string } } | null {
  try {
    return JSON.parse(data.toString("utf8"));
  } catch {
    return null;
  }
}
