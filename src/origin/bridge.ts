/**
 * The origin bridge: turns accepted ext events into signed webhook POSTs, with
 * at-least-once delivery from the durable outbox (outbox.ts), driven by the
 * room's alarm so retries survive eviction and restarts.
 *
 *  - One stream per (room, service): one request in flight each, events in the
 *    order accepted; a slow or failing service never delays another.
 *  - An idle stream sends at once (after `batch_ms`, default 0, if set); events
 *    that arrive while its request is in flight share the next one, up to
 *    `batch_max`. A batch keeps its webhook id across retries.
 *  - Each stream has its own alarm deadline (`outbox/<svc>`): its retry time, or
 *    its lease while a request is in flight, so that a request lost with the
 *    object is retried after an eviction.
 *  - 2xx: the answer is handed on. 5xx/408/429/timeout/network: retried with
 *    exponential backoff and full jitter for `retry_for_s`, then given up
 *    (ORIGIN_UNAVAILABLE + dead letter). Other statuses: not retried
 *    (ORIGIN_REJECTED).
 *
 * The bridge is a transport: it never touches sockets. How each batch settled
 * goes to the `onSettled` callback (room/answers.ts applies it), so origin/
 * never imports room/.
 */
import type { Env } from "../env.ts";
import { readSecret } from "../env.ts";
import { log } from "../observability/log.ts";
import type { Counters } from "../observability/metrics.ts";
import { getTenant, type CompiledService, type TenantPolicy } from "../policy/index.ts";
import { readBoundedText } from "../protocol/http.ts";
import { Outbox, type BatchState, type OriginEvent, type OutboxRow, type PushResult } from "./outbox.ts";
import { newMessageId, webhookHeaders } from "./sign.ts";

type OriginService = Extract<CompiledService, { kind: "origin" }>;

/** Alarm names: `outbox/<svc>` per stream. A deadline named `outbox` alone (before streams) resumes them all. */
export const OUTBOX_ALARM = "outbox";
const streamAlarm = (svc: string) => `${OUTBOX_ALARM}/${svc}`;

/** The streams an alarm's due names ask to run: null = none, "all" = every stream with events. */
export function dueStreams(due: string[]): string[] | "all" | null {
  if (due.includes(OUTBOX_ALARM)) return "all";
  const svcs = due.filter((n) => n.startsWith(`${OUTBOX_ALARM}/`)).map((n) => n.slice(OUTBOX_ALARM.length + 1));
  return svcs.length > 0 ? svcs : null;
}
/** Largest origin answer read; a larger one is unreadable (it fails closed, see room/answers.ts). */
export const MAX_ANSWER_BYTES = 1024 * 1024;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** Batches handled in one run before it goes on as a new task (an alarm that started it can return). */
const MAX_BATCHES_PER_RUN = 50;
const LEASE_MARGIN_MS = 2_000;
/** The longest `timeout_ms` a policy may set: the lease of a service the policy no longer knows. */
const MAX_TIMEOUT_MS = 60_000;

export interface RoomMeta {
  tenant: string;
  room: string;
}

/**
 * How a batch settled, reported once per batch after its rows left the outbox:
 * the origin answered (2xx, `body` unparsed, null when over MAX_ANSWER_BYTES),
 * or the batch failed for good.
 */
export type Settled =
  | { kind: "answered"; meta: RoomMeta; svc: string; batchId: string; rows: OutboxRow[]; body: string | null }
  | { kind: "failed"; code: "ORIGIN_REJECTED" | "ORIGIN_UNAVAILABLE"; msg: string; rows: OutboxRow[] };

/** Named deadlines that survive eviction (the room's AlarmMux fits). */
export interface Deadlines {
  /** Set `name`'s deadline (replacing any). */
  schedule(name: string, at: number): void;
  /** Set `name`'s deadline only if it has none or a later one. */
  scheduleBy(name: string, at: number): void;
}

export interface BridgeOptions {
  storage: DurableObjectStorage;
  env: Env;
  /** The room's tenant and name (stored when the first session joins). */
  meta: () => RoomMeta | undefined;
  counters: Counters;
  deadlines: Deadlines;
  /** Holds the object while a stream runs (ctx.waitUntil): no eviction with rows in memory. */
  keepAlive: (p: Promise<unknown>) => void;
  /**
   * Called synchronously inside the stream loop, in batch order: a stream's next
   * batch is not sent before the previous one's answer has been applied. A throw
   * is handled like any failure of the stream (counted, logged, retried later).
   */
  onSettled: (s: Settled) => void;
}

type Outcome = { kind: "ok"; body: string | null } | { kind: "retry"; why: string } | { kind: "rejected"; status: number };

export class OriginBridge {
  readonly outbox: Outbox;
  private readonly env: Env;
  private readonly meta: () => RoomMeta | undefined;
  private readonly counters: Counters;
  private readonly deadlines: Deadlines;
  private readonly keepAlive: (p: Promise<unknown>) => void;
  private readonly onSettled: (s: Settled) => void;
  /** Streams whose last POST failed and is being retried (an outage: buffer, never shed). */
  private readonly failing = new Set<string>();
  /** Streams with a run in progress in this instance (after a wake: none; their alarms resume them). */
  private readonly active = new Set<string>();

  constructor(o: BridgeOptions) {
    this.env = o.env;
    this.outbox = new Outbox(o.storage);
    this.meta = o.meta;
    this.counters = o.counters;
    this.deadlines = o.deadlines;
    this.keepAlive = o.keepAlive;
    this.onSettled = o.onSettled;
  }

  /**
   * Queue an event for `svc`: "ok", or why it was refused. A message for a
   * healthy stream that sends at once is held in memory while it is in flight
   * (see outbox.ts); everything else is written to storage before the caller
   * answers anyone, and before any POST goes out (the runtime's output gate holds
   * requests until earlier writes are durable).
   */
  enqueue(svc: string, service: OriginService, event: OriginEvent, ack: boolean, cid = event.trace_id): PushResult {
    const healthy = !this.failing.has(svc);
    const durable = event.kind !== "message" || service.batch_ms > 0 || !healthy;
    if (durable) this.persist(svc);
    // A stream in an outage buffers; a healthy one that cannot keep up sheds.
    const pushed = this.outbox.push(svc, event, ack, Date.now(), healthy, durable, cid);
    if (pushed !== "ok") return pushed;
    // A stream in flight takes this event with its next batch.
    if (this.active.has(svc)) return "ok";
    if (service.batch_ms > 0) this.deadlines.scheduleBy(streamAlarm(svc), Date.now() + service.batch_ms);
    else this.keepAlive(this.runStream(svc)); // idle: send at once
    return "ok";
  }

  /**
   * Make a stream's memory rows durable; if there were any (a batch may be in
   * flight), its lease deadline makes sure a restart finds and resumes them.
   */
  private persist(svc: string): void {
    if (this.outbox.persist(svc)) this.deadlines.scheduleBy(streamAlarm(svc), Date.now() + this.leaseMs(svc));
  }

  /** Alarm entry point: resume these streams (or all with events). */
  async run(which: string[] | "all"): Promise<void> {
    const svcs = which === "all" ? this.outbox.streams() : which;
    // A stream whose request is still in flight here: its deadline fired early; move its lease on.
    for (const svc of svcs) if (this.active.has(svc)) this.deadlines.schedule(streamAlarm(svc), Date.now() + this.leaseMs(svc));
    await Promise.all(svcs.map((svc) => this.runStream(svc)));
  }

  /** How long a request of this stream may take before the alarm retries it. */
  private leaseMs(svc: string): number {
    const meta = this.meta();
    const service = meta ? getTenant(meta.tenant)?.serviceMap.get(svc) : undefined;
    return (service?.kind === "origin" ? service.timeout_ms : MAX_TIMEOUT_MS) + LEASE_MARGIN_MS;
  }

  /** Deliver a stream's batches until it is empty or must wait; never throws. */
  private async runStream(svc: string): Promise<void> {
    if (this.active.has(svc)) return;
    this.active.add(svc);
    let more = false;
    try {
      for (let i = 0; i < MAX_BATCHES_PER_RUN; i++) {
        const wait = await this.step(svc);
        // Stream empty: its lease deadline, if any, is left to fire once (and find
        // nothing) rather than cleared, so a busy stream writes its alarm about once per
        // lease period instead of twice per POST.
        if (wait === null) return;
        if (wait > 0) {
          // Whatever waits for an alarm must survive eviction: write it first.
          this.outbox.persist(svc);
          this.deadlines.schedule(streamAlarm(svc), Date.now() + wait);
          return;
        }
      }
      more = true;
    } catch (err) {
      this.counters.inc("wsprism_internal_errors_total", {});
      log("error", "origin.stream_failed", { trace_id: "-", svc, error: String(err) });
      try {
        this.outbox.persist(svc);
      } finally {
        this.deadlines.schedule(streamAlarm(svc), Date.now() + BACKOFF_BASE_MS);
      }
    } finally {
      this.active.delete(svc);
    }
    // A long busy run goes on as a new task, so that an alarm that started it can
    // finish. Nothing is written for that: a healthy stream under load stays on
    // the memory path (writing here put every later event on the storage path,
    // one write per event and the output gate on every send, and past ~16,000
    // events/s the stream never caught up again).
    if (more) this.keepAlive(this.runStream(svc));
  }

  /** One batch of a stream: null = nothing to do; >0 = try again in that many ms; 0 = continue. */
  private async step(svc: string): Promise<number | null> {
    const meta = this.meta();
    const t = meta ? getTenant(meta.tenant) : undefined;
    const service = t?.serviceMap.get(svc);
    let batch = this.outbox.current(svc);
    const now = Date.now();
    if (!batch) {
      const run = this.outbox.headRun(svc, service?.kind === "origin" ? service.batch_max : 1000);
      if (run.length === 0) return null;
      if (!meta || !t || !service || service.kind !== "origin") {
        // The policy no longer routes this service to an origin: give its events up.
        const id = newMessageId();
        this.outbox.seal(run, id, now);
        this.giveUp(t, svc, id, run, "service no longer routed to an origin");
        return 0;
      }
      const due = run[0]!.created + service.batch_ms;
      if (run.length < service.batch_max && due > now) return due - now;
      batch = this.outbox.seal(run, newMessageId(), now);
    } else if (!meta || !t) {
      this.giveUp(t, svc, batch.id, this.outbox.rows(batch.id), "tenant no longer configured");
      return 0;
    }
    if (!service || service.kind !== "origin") {
      this.giveUp(t, svc, batch.id, this.outbox.rows(batch.id), "service no longer routed to an origin");
      return 0;
    }
    return this.attempt(t, meta!, batch, service);
  }

  private async attempt(t: TenantPolicy, meta: RoomMeta, batch: BatchState, service: OriginService): Promise<number> {
    const rows = this.outbox.rows(batch.id);
    if (rows.length === 0) {
      this.outbox.finish(batch.svc, batch.id, rows);
      return 0;
    }
    const body = `{"tenant":${JSON.stringify(meta.tenant)},"room":${JSON.stringify(meta.room)},"events":[${rows.map((r) => r.event).join(",")}]}`;
    batch.attempts += 1;
    // Lease: if the object dies mid-request, the stream's alarm fires after the
    // timeout and the batch is retried with the same webhook id. An earlier
    // deadline of the stream is kept: when it fires, run() moves it on. A batch
    // held in memory needs none: the object stays while its request runs, and
    // if the batch is written meanwhile, persist() sets the lease.
    if (this.outbox.isStored(batch.id)) this.deadlines.scheduleBy(streamAlarm(batch.svc), Date.now() + this.leaseMs(batch.svc));
    if (batch.attempts > 1) this.counters.inc("wsprism_origin_retries_total", { tenant: t.id, svc: batch.svc });
    const outcome = await post(this.env, service, batch.id, body);
    this.counters.inc("wsprism_origin_requests_total", { tenant: t.id, svc: batch.svc, outcome: outcome.kind });

    if (outcome.kind !== "retry") this.failing.delete(batch.svc);
    if (outcome.kind === "ok") {
      this.outbox.finish(batch.svc, batch.id, rows);
      this.onSettled({ kind: "answered", meta, svc: batch.svc, batchId: batch.id, rows, body: outcome.body });
      return 0;
    }
    if (outcome.kind === "rejected") {
      this.outbox.finish(batch.svc, batch.id, rows);
      log("warn", "origin.rejected", { trace_id: batch.id, tenant: t.id, room: meta.room, svc: batch.svc, status: outcome.status });
      this.onSettled({ kind: "failed", code: "ORIGIN_REJECTED", msg: `origin answered ${outcome.status}`, rows });
      return 0;
    }
    this.failing.add(batch.svc);
    const now = Date.now();
    if (now - batch.first >= service.retry_for_s * 1000) {
      this.giveUp(t, batch.svc, batch.id, rows, `retries exhausted (${outcome.why})`);
      return 0;
    }
    this.outbox.update(batch); // the attempt count drives the backoff
    const backoff = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (batch.attempts - 1));
    const wait = Math.max(50, Math.round(backoff * (0.5 + Math.random() * 0.5)));
    log("warn", "origin.retry", {
      trace_id: batch.id,
      tenant: t.id,
      room: meta.room,
      svc: batch.svc,
      attempt: batch.attempts,
      why: outcome.why,
      retry_in_ms: wait,
    });
    return Math.min(wait, batch.first + service.retry_for_s * 1000 - now + 1);
  }

  private giveUp(t: TenantPolicy | undefined, svc: string, batchId: string, rows: OutboxRow[], why: string): void {
    this.outbox.finish(svc, batchId, rows);
    this.counters.inc("wsprism_origin_dead_letters_total", { tenant: t?.id ?? "-", svc }, rows.length);
    log("error", "origin.dead_letter", { trace_id: batchId, tenant: t?.id, svc, events: rows.length, why });
    this.onSettled({ kind: "failed", code: "ORIGIN_UNAVAILABLE", msg: "origin unavailable; event given up", rows });
  }
}

/** POST one batch. Never throws. */
async function post(env: Env, service: OriginService, id: string, body: string): Promise<Outcome> {
  const secret = readSecret(env, service.secret_env);
  if (!secret) return { kind: "retry", why: `secret ${service.secret_env} is not set` };
  try {
    const headers = await webhookHeaders(secret, id, body);
    const res = await fetch(service.url, {
      method: "POST",
      headers,
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(service.timeout_ms),
    });
    if (res.status >= 200 && res.status < 300) {
      const text = await readBoundedText(res, MAX_ANSWER_BYTES);
      return { kind: "ok", body: text }; // null: over MAX_ANSWER_BYTES
    }
    await res.body?.cancel();
    if (res.status >= 500 || res.status === 408 || res.status === 429) return { kind: "retry", why: `status ${res.status}` };
    return { kind: "rejected", status: res.status };
  } catch (err) {
    const name = (err as { name?: string }).name;
    return { kind: "retry", why: name === "TimeoutError" || name === "AbortError" ? "timeout" : "network error" };
  }
}

