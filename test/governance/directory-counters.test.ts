/**
 * The tenant caps (max_sessions_total, max_rooms_total) are decided from
 * running counters, not from scans of the tenant's rows (issue 19 item 7): an
 * admission reads a bounded number of rows however large the tenant is, and the
 * counters stay exact across admit, undo, renew, release, lease expiry and a
 * wake of the directory.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LEASE_MS, PENDING_LEASE_MS, type AdmitRequest, type AdmitResult, type DirectoryObject } from "../../src/governance/directory.ts";

let n = 0;
const fresh = () => env.DIRECTORY.get(env.DIRECTORY.idFromName(`t/counters-${Date.now()}-${n++}`));
type Stub = ReturnType<typeof fresh>;

const req = (user: string, sid: string, room: string, caps = 0): AdmitRequest => ({
  user,
  sid,
  room,
  cid: `c${n++}`,
  maxSessions: 0,
  onExceed: "deny",
  maxRoomsPerUser: 0,
  maxSessionsTotal: caps,
  maxRoomsTotal: caps,
});

/** Rows read by the SQL statements `fn` runs in the directory (every cursor's rowsRead). */
async function rowsReadBy<T>(stub: Stub, fn: (o: DirectoryObject) => Promise<T>): Promise<{ value: T; rowsRead: number }> {
  return runInDurableObject(stub, async (o: DirectoryObject) => {
    const sql = (o as unknown as { ctx: DurableObjectState }).ctx.storage.sql;
    const cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];
    const exec = sql.exec;
    sql.exec = function (this: SqlStorage, ...args: Parameters<SqlStorage["exec"]>) {
      const c = exec.apply(this, args);
      cursors.push(c);
      return c;
    } as SqlStorage["exec"];
    try {
      const value = await fn(o);
      return { value, rowsRead: cursors.reduce((sum, c) => sum + c.rowsRead, 0) };
    } finally {
      sql.exec = exec;
    }
  });
}

/** The tenant's live sockets and rooms, by scan (what the counters must equal). */
const scan = (stub: Stub, now: number) =>
  runInDurableObject(stub, (o: DirectoryObject) => {
    const sql = (o as unknown as { ctx: DurableObjectState }).ctx.storage.sql;
    return {
      sockets: sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM sockets WHERE lease >= ?", now).one().n,
      rooms: sql.exec<{ n: number }>("SELECT COUNT(DISTINCT room) AS n FROM sockets WHERE lease >= ?", now).one().n,
    };
  });

describe("tenant caps from running counters", () => {
  it("an admission under tenant caps reads a bounded number of rows, however many the tenant holds", async () => {
    const stub = fresh();
    const now = Date.now();
    // 400 sockets in 100 rooms, admitted without caps.
    await runInDurableObject(stub, async (o: DirectoryObject) => {
      const reqs = Array.from({ length: 400 }, (_, i) => req(`u${i}`, `s${i}`, `r${i % 100}`));
      for (let i = 0; i < reqs.length; i += 64) await o.admitMany(reqs.slice(i, i + 64), now);
    });
    // One more socket in an existing room and one in a new room, both with caps set.
    const one = await rowsReadBy(stub, (o) => o.admitMany([req("x", "sx", "r7", 1000)], now + 1));
    const two = await rowsReadBy(stub, (o) => o.admitMany([req("y", "sy", "new-room", 1000)], now + 2));
    expect(one.value[0]!.ok).toBe(true);
    expect(two.value[0]!.ok).toBe(true);
    // A scan reads >= 400 rows per count; the counters a handful.
    expect(one.rowsRead).toBeLessThan(40);
    expect(two.rowsRead).toBeLessThan(40);
    // And the caps still bite exactly: 402 sockets in 101 rooms.
    const full = await rowsReadBy(stub, (o) =>
      o.admitMany([{ ...req("z", "sz", "r8"), maxSessionsTotal: 402 }, { ...req("w", "sw", "other"), maxRoomsTotal: 101 }], now + 3),
    );
    expect(full.value.map((r) => (r.ok ? "ok" : r.reason))).toEqual(["tenant_sessions", "tenant_rooms"]);
    expect(full.rowsRead).toBeLessThan(80);
    expect(await scan(stub, now + 3)).toEqual({ sockets: 402, rooms: 101 });
  });

  it("the counters equal a scan after any sequence of admit, undo, renew, release, expiry and wake", async () => {
    const op = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({ k: fc.constant("admit" as const), u: fc.nat(1), s: fc.nat(2), r: fc.nat(2), caps: fc.constantFrom(0, 0, 2, 4) }),
      },
      fc.record({ k: fc.constant("undo" as const), i: fc.nat(20) }),
      fc.record({ k: fc.constant("renew" as const), r: fc.nat(2), keep: fc.nat(15) }),
      fc.record({ k: fc.constant("release" as const), i: fc.nat(20) }),
      fc.record({ k: fc.constant("time" as const), ms: fc.constantFrom(1_000, PENDING_LEASE_MS, LEASE_MS + 1) }),
      fc.record({ k: fc.constant("wake" as const) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30, size: "max" }), async (ops) => {
        const stub = fresh();
        let now = Date.now();
        const admitted: Array<Extract<AdmitResult, { ok: true }>> = [];
        for (const o of ops) {
          if (o.k === "admit") {
            const [r] = await runInDurableObject(stub, (d: DirectoryObject) => d.admitMany([req(`u${o.u}`, `s${o.s}`, `r${o.r}`, o.caps)], now));
            if (r!.ok) admitted.push(r!);
          } else if (o.k === "undo" || o.k === "release") {
            const a = admitted[o.i % Math.max(1, admitted.length)];
            if (!a) continue;
            if (o.k === "undo") await runInDurableObject(stub, (d: DirectoryObject) => d.undo(a));
            else await runInDurableObject(stub, (d: DirectoryObject) => d.release(a.row.room, a.row.sid, a.row.cid));
          } else if (o.k === "renew") {
            const room = `r${o.r}`;
            const list = await runInDurableObject(stub, (d: DirectoryObject) => d.list(now));
            const mine = list.filter((x, i) => x.room === room && (o.keep >> i % 4) & 1);
            await runInDurableObject(stub, (d: DirectoryObject) =>
              d.renew(
                room,
                mine.map((x) => ({ sid: x.sid, user: x.user, cid: `c${n++}`, since: x.since })),
                now,
              ),
            );
          } else if (o.k === "time") now += o.ms;
          else {
            await stub.list(now); // make sure it runs, then evict it: the next call wakes a new instance
            await evictDurableObject(stub);
          }
          const counted = await runInDurableObject(stub, (d: DirectoryObject) => d.counts(now));
          expect(counted).toEqual(await scan(stub, now));
        }
      }),
      { numRuns: 30 },
    );
  });

  it("a directory from before the counters seeds them from its rows once, at its next wake", async () => {
    const stub = fresh();
    const now = Date.now();
    await stub.admitMany([req("a", "s1", "r1"), req("a", "s1", "r2"), req("b", "s2", "r1")], now);
    await runInDurableObject(stub, (o: DirectoryObject) => {
      const sql = (o as unknown as { ctx: DurableObjectState }).ctx.storage.sql;
      for (const t of ["sockets_up", "sockets_down", "rooms_up", "rooms_down"]) sql.exec(`DROP TRIGGER ${t}`);
      sql.exec("DROP TABLE room_counts");
      sql.exec("DROP TABLE tenant_counts");
    });
    await evictDurableObject(stub);
    expect(await stub.counts(now)).toEqual({ sockets: 3, rooms: 2 });
    await stub.admit(req("c", "s3", "r3"), now);
    expect(await stub.counts(now)).toEqual({ sockets: 4, rooms: 3 });
  });
});
