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
 *  - 2xx: actions applied, `sys.ack` to senders that asked. 5xx/408/429/timeout/
 *    network: retried with exponential backoff and full jitter for `retry_for_s`,
 *    then given up (ORIGIN_UNAVAILABLE + dead letter). Other statuses: not
 *    retried, senders get ORIGIN_REJECTED.
 */
import type { Env } from "../env.ts";
import { readSecret } from "../env.ts";
import { log } from "../observability/log.ts";
import { getTenant, type CompiledService, type TenantPolicy } from "../policy/index.ts";
import { errorFrame, relayFrame, sysFrame } from "../protocol/envelope.ts";
import { readBoundedText } from "../protocol/http.ts";
import type { AlarmMux } from "../room/alarms.ts";
import type { RoomApi } from "../room/context.ts";
import { deliverMessage, kick, ORIGIN_SENDER } from "../room/deliver.ts";
import { safeSend } from "../room/members.ts";
import { parseActions, type OriginAction } from "./actions.ts";
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
/** Largest origin answer read; a larger one counts as an invalid answer. */
export const MAX_ANSWER_BYTES = 1024 * 1024;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** Batches handled in one alarm run before yielding (the alarm re-fires at once). */
const MAX_BATCHES_PER_RUN = 50;
const LEASE_MARGIN_MS = 2_000;
/** The longest `timeout_ms` a policy may set: the lease of a service the policy no longer knows. */
const MAX_TIMEOUT_MS = 60_000;

export interface RoomMeta {
  tenant: string;
  room: string;
}

export interface BridgeHost extends RoomApi {
  readonly alarms: AlarmMux;
  /** The room's tenant and name (stored when the first session joins). */
  meta(): RoomMeta | undefined;
}

type Outcome = { kind: "ok"; body: string } | { kind: "retry"; why: string } | { kind: "rejected"; status: number };

export class OriginBridge {
  readonly outbox: Outbox;
  private readonly host: BridgeHost;
  private readonly env: Env;
  /** Streams whose last POST failed and is being retried (an outage: buffer, never shed). */
  private readonly failing = new Set<string>();
  /** Streams with a run in progress in this instance (after a wake: none; their alarms resume them). */
  private readonly active = new Set<string>();

  /** `keepAlive` holds the object while a stream runs (ctx.waitUntil): no eviction with rows in memory. */
  constructor(host: BridgeHost, storage: DurableObjectStorage, env: Env, keepAlive: (p: Promise<unknown>) => void) {
    this.host = host;
    this.env = env;
    this.outbox = new Outbox(storage);
    this.keepAlive = keepAlive;
  }

  private readonly keepAlive: (p: Promise<unknown>) => void;

  /**
   * Queue an event for `svc`: "ok", or why it was refused. A message for a
   * healthy stream that sends at once is held in memory while it is in flight
   * (see outbox.ts); everything else is written to storage before the caller
   * answers anyone, and before any POST goes out (the runtime's output gate holds
   * requests until earlier writes are durable).
   */
  enqueue(svc: string, service: OriginService, event: OriginEvent, ack: boolean): PushResult {
    const healthy = !this.failing.has(svc);
    const durable = event.kind !== "message" || service.batch_ms > 0 || !healthy;
    if (durable) this.persist(svc);
    // A stream in an outage buffers; a healthy one that cannot keep up sheds.
    const pushed = this.outbox.push(svc, event, ack, Date.now(), healthy, durable);
    if (pushed !== "ok") return pushed;
    // A stream in flight takes this event with its next batch.
    if (this.active.has(svc)) return "ok";
    if (service.batch_ms > 0) this.host.alarms.scheduleBy(streamAlarm(svc), Date.now() + service.batch_ms);
    else this.keepAlive(this.runStream(svc)); // idle: send at once
    return "ok";
  }

  /**
   * Make a stream's memory rows durable; if there were any (a batch may be in
   * flight), its lease deadline makes sure a restart finds and resumes them.
   */
  private persist(svc: string): void {
    if (this.outbox.persist(svc)) this.host.alarms.scheduleBy(streamAlarm(svc), Date.now() + this.leaseMs(svc));
  }

  /** Alarm entry point: resume these streams (or all with events). */
  async run(which: string[] | "all"): Promise<void> {
    const svcs = which === "all" ? this.outbox.streams() : which;
    // A stream whose request is still in flight here: its deadline fired early; move its lease on.
    for (const svc of svcs) if (this.active.has(svc)) this.host.alarms.schedule(streamAlarm(svc), Date.now() + this.leaseMs(svc));
    await Promise.all(svcs.map((svc) => this.runStream(svc)));
  }

  /** How long a request of this stream may take before the alarm retries it. */
  private leaseMs(svc: string): number {
    const meta = this.host.meta();
    const service = meta ? getTenant(meta.tenant)?.serviceMap.get(svc) : undefined;
    return (service?.kind === "origin" ? service.timeout_ms : MAX_TIMEOUT_MS) + LEASE_MARGIN_MS;
  }

  /** Deliver a stream's batches until it is empty or must wait; never throws. */
  private async runStream(svc: string): Promise<void> {
    if (this.active.has(svc)) return;
    this.active.add(svc);
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
          this.host.alarms.schedule(streamAlarm(svc), Date.now() + wait);
          return;
        }
      }
      this.outbox.persist(svc);
      this.host.alarms.schedule(streamAlarm(svc), Date.now()); // yield, then go on
    } catch (err) {
      this.host.counters.inc("wsprism_internal_errors_total", {});
      log("error", "origin.stream_failed", { trace_id: "-", svc, error: String(err) });
      try {
        this.outbox.persist(svc);
      } finally {
        this.host.alarms.schedule(streamAlarm(svc), Date.now() + BACKOFF_BASE_MS);
      }
    } finally {
      this.active.delete(svc);
    }
  }

  /** One batch of a stream: null = nothing to do; >0 = try again in that many ms; 0 = continue. */
  private async step(svc: string): Promise<number | null> {
    const meta = this.host.meta();
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
    if (this.outbox.isStored(batch.id)) this.host.alarms.scheduleBy(streamAlarm(batch.svc), Date.now() + this.leaseMs(batch.svc));
    if (batch.attempts > 1) this.host.counters.inc("wsprism_origin_retries_total", { tenant: t.id, svc: batch.svc });
    const outcome = await post(this.env, service, batch.id, body);
    this.host.counters.inc("wsprism_origin_requests_total", { tenant: t.id, svc: batch.svc, outcome: outcome.kind });

    if (outcome.kind !== "retry") this.failing.delete(batch.svc);
    if (outcome.kind === "ok") {
      this.outbox.finish(batch.svc, batch.id, rows);
      this.applyAnswer(t, meta, batch, rows, outcome.body);
      return 0;
    }
    if (outcome.kind === "rejected") {
      this.outbox.finish(batch.svc, batch.id, rows);
      log("warn", "origin.rejected", { trace_id: batch.id, tenant: t.id, room: meta.room, svc: batch.svc, status: outcome.status });
      this.notifySenders(rows, "ORIGIN_REJECTED", `origin answered ${outcome.status}`);
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
    this.host.counters.inc("wsprism_origin_dead_letters_total", { tenant: t?.id ?? "-", svc }, rows.length);
    log("error", "origin.dead_letter", { trace_id: batchId, tenant: t?.id, svc, events: rows.length, why });
    this.notifySenders(rows, "ORIGIN_UNAVAILABLE", "origin unavailable; event given up");
  }

  /** sys.error to the connected senders of the message events of a batch. */
  private notifySenders(rows: OutboxRow[], code: "ORIGIN_REJECTED" | "ORIGIN_UNAVAILABLE", msg: string): void {
    for (const r of rows) {
      if (r.kind !== "message") continue;
      const seq = r.seq ?? undefined;
      for (const ws of this.senderOf(r)) {
        const att = this.host.members.get(ws);
        if (att) this.host.sendError(ws, att, code, msg, seq);
      }
    }
  }

  /**
   * The socket that sent an event, if it is still connected: answers (reply,
   * reject, acks, errors) go to that connection only (SPEC section 6), never to
   * whoever holds the sid now. The connection is the event's trace id (minted
   * per upgrade), kept in the row's `cid` (read from the event itself for rows
   * written before that column).
   */
  private senderOf(r: OutboxRow): WebSocket[] {
    let cid: unknown = r.cid;
    if (cid === null) {
      try {
        cid = (JSON.parse(r.event) as { trace_id?: unknown }).trace_id;
      } catch {
        return [];
      }
    }
    const out: WebSocket[] = [];
    for (const [ws, att] of this.host.members.all()) if (att.sid === r.sid && att.trace === cid) out.push(ws);
    return out;
  }

  private applyAnswer(t: TenantPolicy, meta: RoomMeta, batch: BatchState, rows: OutboxRow[], body: string): void {
    const { actions, invalid, malformed } = parseActions(body);
    if (malformed || invalid > 0) {
      this.host.counters.inc("wsprism_origin_invalid_answers_total", { tenant: t.id, svc: batch.svc });
      log("warn", "origin.invalid_answer", { trace_id: batch.id, tenant: t.id, room: meta.room, svc: batch.svc, malformed, invalid });
    }
    const byId = new Map(rows.map((r) => [r.event_id, r]));
    const rejected = new Set<string>();
    for (const a of actions) {
      try {
        this.apply(meta, a, byId, rejected);
      } catch (err) {
        log("error", "origin.action_failed", { trace_id: batch.id, tenant: t.id, action: a.action, error: String(err) });
      }
    }
    for (const r of rows) {
      if (r.ack !== 1 || rejected.has(r.event_id) || r.seq === null) continue;
      const frame = sysFrame("ack", { seq: r.seq });
      for (const ws of this.senderOf(r)) safeSend(ws, frame);
    }
  }

  private apply(meta: RoomMeta, a: OriginAction, byId: Map<string, OutboxRow>, rejected: Set<string>): void {
    switch (a.action) {
      case "reply": {
        const ev = byId.get(a.to);
        if (!ev) return; // an unknown event: ignored
        const frame = relayFrame(a.svc, a.type, meta.room, a.data, ORIGIN_SENDER);
        for (const ws of this.senderOf(ev)) safeSend(ws, frame);
        return;
      }
      case "broadcast":
        deliverMessage(this.host, meta.room, { svc: a.svc, type: a.type, data: a.data, exclude: a.exclude });
        return;
      case "send":
        deliverMessage(this.host, meta.room, {
          svc: a.svc,
          type: a.type,
          data: a.data,
          to: "sid" in a ? { sid: a.sid } : { user: a.user },
        });
        return;
      case "reject": {
        const ev = byId.get(a.to);
        if (!ev) return;
        rejected.add(ev.event_id);
        for (const ws of this.senderOf(ev)) {
          const att = this.host.members.get(ws);
          if (att) safeSend(ws, errorFrame(a.code, a.msg, ev.seq ?? undefined, att.trace));
        }
        return;
      }
      case "kick":
        kick(this.host, "sid" in a ? { sid: a.sid } : { user: a.user }, a.reason);
        return;
    }
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
      return { kind: "ok", body: text ?? "{\"actions\":\"too large\"}" };
    }
    await res.body?.cancel();
    if (res.status >= 500 || res.status === 408 || res.status === 429) return { kind: "retry", why: `status ${res.status}` };
    return { kind: "rejected", status: res.status };
  } catch (err) {
    const name = (err as { name?: string }).name;
    return { kind: "retry", why: name === "TimeoutError" || name === "AbortError" ? "timeout" : "network error" };
  }
}

