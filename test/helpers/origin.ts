/** Control of the programmable test origin (test/fixtures/origin-worker.mjs). */
export interface OriginRequest {
  path: string;
  method: string;
  headers: Record<string, string>;
  body: string;
  json: any;
  at: number;
}

export interface Step {
  status?: number;
  body?: unknown;
  delayMs?: number;
  /** Answer a `reject` action for every message event of the request. */
  rejectMessages?: { code: string; msg: string };
}

/** Script the origin's answers for a room (or, with `path`, for one service's URL path in it). */
export async function script(room: string, responses: Step[], dflt?: Step, path?: string): Promise<void> {
  const res = await fetch("http://origin.test/__control/script", {
    method: "POST",
    body: JSON.stringify({ room, path, responses, default: dflt ?? null }),
  });
  if (!res.ok) throw new Error("origin control failed");
}

export async function originLog(room: string): Promise<OriginRequest[]> {
  return (await (await fetch(`http://origin.test/__control/log?room=${encodeURIComponent(room)}`)).json()) as OriginRequest[];
}

/** Poll the origin's log until `pred` holds. */
export async function waitForLog(
  room: string,
  pred: (log: OriginRequest[]) => boolean,
  timeoutMs = 5000,
): Promise<OriginRequest[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = await originLog(room);
    if (pred(log)) return log;
    if (Date.now() > deadline) throw new Error(`origin log never matched: ${JSON.stringify(log.map((l) => l.json))}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** All events the origin received, deduplicated by event id, in arrival order. */
export function uniqueEvents(log: OriginRequest[]): any[] {
  const seen = new Set<string>();
  const out: any[] = [];
  for (const req of log) for (const ev of req.json?.events ?? []) if (!seen.has(ev.id)) (seen.add(ev.id), out.push(ev));
  return out;
}
