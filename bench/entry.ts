/**
 * The bench build of the gateway (bench/wrangler.bench.toml). It is the real
 * gateway (src/index.ts) plus what the load generator (bench/run.ts) needs:
 *
 *   BenchRoomObject   the real RoomObject, bound as ROOMS, counting how often the
 *                     runtime constructed it (wakes) and ran webSocketMessage, so the
 *                     idle scenario can prove that heartbeats do not wake the room.
 *   BaselineRoom      the platform's limit: a bare hibernatable-WebSocket Durable
 *                     Object with no policy, no decoding and no auth that relays every
 *                     message to every other socket of its room. GET /baseline/ws?room=…
 *   PartyRoom         the peer of issue 9 and 12: a partyserver (npm, devDependency)
 *                     `Server` with hibernation that broadcasts each message to the
 *                     other connections, the way partyserver's README writes one.
 *                     GET /parties/party-room/<room>, routed by routePartykitRequest.
 *   GET /bench/room-stats?tenant=&room=      counters of a gateway room (RPC)
 *   GET /bench/baseline-stats?room=          counters of a baseline room (RPC)
 *   GET /bench/party-stats?room=             counters of a partyserver room (RPC)
 *
 * Same workerd process, same machine: the three are measured under the same
 * conditions. Never deploy this build (partyserver is only a devDependency; the
 * gateway's own build, src/index.ts, never imports it).
 */
import { DurableObject } from "cloudflare:workers";
import { routePartykitRequest, Server, type Connection, type WSMessage } from "partyserver";
import type { Env } from "../src/env.ts";
import gateway, { RoomObject } from "../src/index.ts";

// Every class the gateway exports (RoomObject, DirectoryObject, MetricsObject, …).
export * from "../src/index.ts";

interface BenchEnv extends Env {
  BASELINE: DurableObjectNamespace<BaselineRoom>;
  FORWARDER: DurableObjectNamespace<BaselineForwarder>;
  /** Where BaselineForwarder posts (the bench origin's /bare path); set by bench/run/targets.ts when events to origins runs. */
  BENCH_ORIGIN_URL?: string;
  PARTY_ROOM: DurableObjectNamespace<PartyRoom>;
}

/** What the stats RPCs return. Counters live in the isolate, so they survive an object's eviction. */
export interface RoomStats {
  /** How many times the runtime constructed the object (first start + every wake), this one included. */
  constructed: number;
  /** webSocketMessage calls since the isolate started. */
  messages: number;
  /** alarm() runs since the isolate started. */
  alarms: number;
  /** Sockets the object holds now. */
  sockets: number;
  /** State batches the room sent (hot lane `state` mode); null when the build has none. */
  batchesSent: number | null;
  /** ms since this instance was constructed (small: it was woken for this call). */
  instanceAgeMs: number;
}

interface Count {
  constructed: number;
  messages: number;
  alarms: number;
}

/** Per object id. Module scope: kept while the isolate lives, across evictions of the objects. */
const gatewayCounts = new Map<string, Count>();
const baselineCounts = new Map<string, Count>();
const partyCounts = new Map<string, Count>();
const forwarderCounts = new Map<string, Count>();

function countFor(map: Map<string, Count>, id: DurableObjectId): Count {
  const key = id.toString();
  let c = map.get(key);
  if (!c) map.set(key, (c = { constructed: 0, messages: 0, alarms: 0 }));
  return c;
}

/** The real room object, counting constructions and webSocketMessage calls. */
export class BenchRoomObject extends RoomObject {
  private readonly count: Count;
  private readonly bornAt = Date.now();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.count = countFor(gatewayCounts, ctx.id);
    this.count.constructed++;
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    this.count.messages++;
    return super.webSocketMessage(ws, message);
  }

  override async alarm(...args: Parameters<RoomObject["alarm"]>): Promise<void> {
    this.count.alarms++;
    return super.alarm(...args);
  }

  async benchStats(): Promise<RoomStats> {
    const state = (this as unknown as { state?: { batchesSent?: unknown } }).state;
    return {
      constructed: this.count.constructed,
      messages: this.count.messages,
      alarms: this.count.alarms,
      sockets: this.ctx.getWebSockets().length,
      batchesSent: typeof state?.batchesSent === "number" ? state.batchesSent : null,
      instanceAgeMs: Date.now() - this.bornAt,
    };
  }
}

/**
 * What both bare objects share: accept hibernatable sockets (the gateway's
 * `ping` auto-response, so heartbeats never wake them), answer a close, count.
 */
abstract class BareSocketObject extends DurableObject<BenchEnv> {
  protected readonly count: Count;
  private readonly bornAt = Date.now();

  constructor(ctx: DurableObjectState, env: BenchEnv, counts: Map<string, Count>) {
    super(ctx, env);
    this.count = countFor(counts, ctx.id);
    this.count.constructed++;
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") return new Response("upgrade required", { status: 426 });
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1]);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    try {
      ws.close(code >= 1000 && code < 5000 && code !== 1005 && code !== 1006 ? code : 1000, "");
    } catch {
      // already closed
    }
  }

  async benchStats(): Promise<RoomStats> {
    return peerStats(this.count, this.ctx, this.bornAt);
  }
}

/** The baseline: accept, relay every message to every other socket, nothing else. */
export class BaselineRoom extends BareSocketObject {
  constructor(ctx: DurableObjectState, env: BenchEnv) {
    super(ctx, env, baselineCounts);
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    this.count.messages++;
    for (const other of this.ctx.getWebSockets()) {
      if (other === ws) continue;
      try {
        other.send(message);
      } catch {
        // closing socket: skip it
      }
    }
  }
}

/**
 * The platform's limit for events to origins: a bare hibernatable-WebSocket
 * Durable Object that POSTs every message, as received, to the bench origin. One
 * fetch per message, nothing else: no parsing, no signature, no ordering, no
 * batching, no durability, no answer to the client, no retry. What the gateway
 * does on top of that is its own cost. GET /baseline/forward?room=…
 */
export class BaselineForwarder extends BareSocketObject {
  constructor(ctx: DurableObjectState, env: BenchEnv) {
    super(ctx, env, forwarderCounts);
  }

  override async fetch(request: Request): Promise<Response> {
    if (!this.env.BENCH_ORIGIN_URL) return new Response("BENCH_ORIGIN_URL is not set", { status: 503 });
    return super.fetch(request);
  }

  override async webSocketMessage(_ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    this.count.messages++;
    try {
      const res = await fetch(this.env.BENCH_ORIGIN_URL!, { method: "POST", body: message });
      await res.body?.cancel();
    } catch {
      // the bench counts what arrived; a lost message shows there
    }
  }
}

/** Stats of a peer object (baseline, partyserver): it sends no state batches. */
function peerStats(count: Count, ctx: DurableObjectState, bornAt: number): RoomStats {
  return {
    constructed: count.constructed,
    messages: count.messages,
    alarms: count.alarms,
    sockets: ctx.getWebSockets().length,
    batchesSent: null,
    instanceAgeMs: Date.now() - bornAt,
  };
}

/**
 * partyserver as its users write it: hibernation on, every message broadcast to
 * the other connections, nothing else (no ping auto-response, no auth, nothing
 * sent on connect). The counters are the only addition, as in BaselineRoom.
 */
export class PartyRoom extends Server<BenchEnv> {
  static override options = { hibernate: true };
  private readonly count: Count;
  private readonly bornAt = Date.now();

  constructor(ctx: DurableObjectState, env: BenchEnv) {
    super(ctx, env);
    this.count = countFor(partyCounts, ctx.id);
    this.count.constructed++;
  }

  override onMessage(connection: Connection, message: WSMessage): void {
    this.count.messages++;
    this.broadcast(message, [connection.id]);
  }

  async benchStats(): Promise<RoomStats> {
    return peerStats(this.count, this.ctx, this.bornAt);
  }
}

/**
 * What routePartykitRequest may route to. Given the whole env it would map every
 * Durable Object binding to /parties/<binding>/<name>, the gateway's ROOMS and
 * DIRECTORY included (past the Worker's checks); given this, only PartyRoom.
 * Kept per env object: partyserver caches its routing table by that identity.
 */
const partyEnvs = new WeakMap<BenchEnv, { PARTY_ROOM: BenchEnv["PARTY_ROOM"] }>();

function partyEnv(env: BenchEnv): { PARTY_ROOM: BenchEnv["PARTY_ROOM"] } {
  let e = partyEnvs.get(env);
  if (!e) partyEnvs.set(env, (e = { PARTY_ROOM: env.PARTY_ROOM }));
  return e;
}

const PARTY_PREFIX = "/parties/party-room/";

const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/;

function bad(msg: string): Response {
  return Response.json({ code: "BAD_REQUEST", msg }, { status: 400 });
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname.startsWith(PARTY_PREFIX)) {
      if (!ROOM_RE.test(url.pathname.slice(PARTY_PREFIX.length))) return bad("missing or malformed room");
      return (await routePartykitRequest(request, partyEnv(env))) ?? bad("not a partyserver route");
    }
    switch (url.pathname) {
      case "/baseline/ws": {
        const room = url.searchParams.get("room") ?? "";
        if (!ROOM_RE.test(room)) return bad("missing or malformed room");
        return env.BASELINE.get(env.BASELINE.idFromName(room)).fetch(request);
      }
      case "/baseline/forward": {
        const room = url.searchParams.get("room") ?? "";
        if (!ROOM_RE.test(room)) return bad("missing or malformed room");
        return env.FORWARDER.get(env.FORWARDER.idFromName(room)).fetch(request);
      }
      case "/bench/baseline-stats": {
        const room = url.searchParams.get("room") ?? "";
        if (!ROOM_RE.test(room)) return bad("missing or malformed room");
        return Response.json(await env.BASELINE.get(env.BASELINE.idFromName(room)).benchStats());
      }
      case "/bench/party-stats": {
        const room = url.searchParams.get("room") ?? "";
        if (!ROOM_RE.test(room)) return bad("missing or malformed room");
        return Response.json(await env.PARTY_ROOM.get(env.PARTY_ROOM.idFromName(room)).benchStats());
      }
      case "/bench/room-stats": {
        const tenant = url.searchParams.get("tenant") ?? "";
        const room = url.searchParams.get("room") ?? "";
        if (!tenant || !ROOM_RE.test(room)) return bad("missing tenant or room");
        const stub = env.ROOMS.get(env.ROOMS.idFromName(`${tenant}/${room}`)) as unknown as DurableObjectStub<BenchRoomObject>;
        return Response.json(await stub.benchStats());
      }
      default:
        return gateway.fetch(request, env, ctx);
    }
  },
} satisfies ExportedHandler<BenchEnv>;
