/**
 * "Events to origins" (bench/lib/origins.ts, issue 11): the bench origin that
 * both the gateway and Pushpin post to (bench/origin.ts, run as its own process
 * here, as the bench runs it), the verdicts against the targets, and the
 * rewrite of Pushpin's internal.conf that gives the bench its own zurl.
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { originVerdicts } from "../../bench/lib/origins-report.ts";
import { highestClean, type OriginStep, type OriginTarget } from "../../bench/lib/origins.ts";
import { freePort, startGroup, stopGroup, waitHealthy, type Proc } from "../../bench/lib/proc.ts";
import { patchInternal } from "../../bench/lib/pushpin.ts";
import { readBenchToml, workerdConfig } from "../../bench/lib/workerd.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const epoch = () => performance.timeOrigin + performance.now();

interface Stats {
  unique: number;
  duplicates: number;
  posts: number;
  latency: { n: number; p50: number | null };
  badRequests: number;
}

describe("bench origin (bench/origin.ts)", () => {
  let origin: Proc;
  let base = "";
  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    origin = startGroup("bench-origin", process.execPath, ["bench/origin.ts"], { ...process.env, PORT: String(port) }, ROOT);
    await waitHealthy(`${base}/healthz`, origin, 20_000);
  });
  afterAll(() => stopGroup(origin));

  const stats = async (tag: string) => (await (await fetch(`${base}/stats?tag=${tag}`)).json()) as Stats;
  const event = (tag: string, c: number, n: number, t: number) => ({ kind: "message", svc: "chat", type: "send", data: { r: tag, c, n, t } });

  it("records each gateway event once, with its latency, and counts the POSTs that carried it", async () => {
    const sent = epoch() - 50;
    const post = (events: unknown[]) =>
      fetch(`${base}/gw/chat`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ tenant: "t", room: "r", events }) });
    const first = await post([{ kind: "open", user: "u" }, event("gw1", 1, 1, sent), event("gw1", 1, 2, sent)]);
    expect(first.status).toBe(200);
    expect(await first.text()).toBe(""); // no actions
    // At least once: a redelivered event is a duplicate, not a second delivery.
    expect((await post([event("gw1", 1, 2, sent), event("gw1", 2, 1, sent)])).status).toBe(200);
    const s = await stats("gw1");
    expect(s).toMatchObject({ unique: 3, duplicates: 1, posts: 2 });
    expect(s.latency.n).toBe(3);
    expect(s.latency.p50!).toBeGreaterThanOrEqual(49);
    expect(s.latency.p50!).toBeLessThan(5_000);
  });

  it("records the bare forwarder's frames, one client frame per POST, and refuses one that is not JSON", async () => {
    const sent = epoch() - 20;
    const frame = (n: number) => JSON.stringify({ v: 1, svc: "chat", type: "send", seq: n, data: { r: "bare1", c: 3, n, t: sent } });
    for (const n of [1, 2, 2]) expect((await fetch(`${base}/bare`, { method: "POST", body: frame(n) })).status).toBe(200);
    expect(await stats("bare1")).toMatchObject({ unique: 2, duplicates: 1, posts: 3 });
    const before = (await stats("bare1")).badRequests;
    await fetch(`${base}/bare`, { method: "POST", body: "{not json" });
    expect((await stats("bare1")).badRequests).toBe(before + 1);
  });

  it("answers Pushpin's OPEN and CLOSE in kind and records every TEXT of a request (lengths in bytes, hex)", async () => {
    const ws = (body: string) => fetch(`${base}/pp/room-1`, { method: "POST", headers: { "content-type": "application/websocket-events" }, body });
    const open = await ws("OPEN\r\n");
    expect(open.status).toBe(200);
    expect(open.headers.get("content-type")).toBe("application/websocket-events");
    expect(await open.text()).toBe("OPEN\r\n");
    const text = (c: number, n: number) => {
      const msg = JSON.stringify({ v: 1, svc: "chat", type: "send", seq: n, data: { r: "pp1", c, n, t: epoch(), note: "é✓" } });
      return `TEXT ${Buffer.byteLength(msg).toString(16)}\r\n${msg}\r\n`;
    };
    const batch = await ws(text(7, 1) + text(7, 2) + text(8, 1));
    expect(batch.status).toBe(200);
    expect(await batch.text()).toBe("");
    expect(await stats("pp1")).toMatchObject({ unique: 3, duplicates: 0, posts: 1 });
    expect(await (await ws("CLOSE\r\n")).text()).toBe("CLOSE\r\n");
  });

  it("refuses a malformed websocket-events body with 400 and counts it", async () => {
    const before = (await stats("none")).badRequests;
    const res = await fetch(`${base}/pp/room-1`, { method: "POST", body: "TEXT 99\r\nshort\r\n" });
    expect(res.status).toBe(400);
    expect((await stats("none")).badRequests).toBe(before + 1);
  });
});

/** A measured step with the fields the verdicts read; clean unless said otherwise. */
function step(target: OriginTarget, rate: number, over: Partial<OriginStep> = {}): OriginStep {
  return {
    target,
    rate,
    wanted: 100,
    connected: 100,
    sent: rate * 5,
    offered: rate * 5,
    delivered: rate * 5,
    duplicates: 0,
    deliveredPerS: rate,
    latency: { n: rate * 5, p50: 2, p99: 20, max: 30, mean: 3 },
    postsPerEvent: 1,
    cpuUsPerDelivered: 1_000,
    targetPct: 50,
    sinkPct: 10,
    loadgenPct: 10,
    otherPct: 0,
    drain: { outcome: "complete", ms: 100 },
    errors: {},
    closedEarly: 0,
    closeCodes: {},
    log: [],
    foreignConns: 0,
    foreign: 0,
    badRequests: 0,
    clean: true,
    note: null,
    ...over,
  };
}

const verdict = (steps: OriginStep[], about: string, missing: string | null = null) => originVerdicts(steps, missing).find((v) => v.target.includes(about))!;

describe("events to origins: verdicts (bench/lib/origins-report.ts)", () => {
  const rates = [500, 1_000, 2_000, 4_000, 8_000, 16_000];

  it("takes the highest clean rate as the top of the clean steps from the lowest one up", () => {
    const steps = [step("gateway", 500), step("gateway", 1_000, { clean: false }), step("gateway", 2_000)];
    expect(highestClean(steps, "gateway")).toBe(500);
    expect(highestClean([step("gateway", 500, { clean: false })], "gateway")).toBe(0);
  });

  it("judges CPU at 1,000 events/s and p50 at 500 against Pushpin's", () => {
    const steps = [
      step("gateway", 500, { latency: { n: 1, p50: 4, p99: 9, max: 9, mean: 4 } }),
      step("pushpin", 500, { latency: { n: 1, p50: 2, p99: 9, max: 9, mean: 2 } }),
      step("gateway", 1_000, { cpuUsPerDelivered: 250 }),
      step("pushpin", 1_000, { cpuUsPerDelivered: 1_000 }),
    ];
    expect(verdict(steps, "CPU per delivered event")).toMatchObject({ met: false, value: expect.stringContaining("0.25 x") });
    expect(verdict(steps, "p50 client -> origin")).toMatchObject({ met: true, value: expect.stringContaining("2.00 x") });
    steps[2]!.cpuUsPerDelivered = 200;
    expect(verdict(steps, "CPU per delivered event").met).toBe(true);
    // The bare forwarding object, when measured, is quoted as the platform's floor (not judged).
    steps.push(step("baseline", 1_000, { cpuUsPerDelivered: 300 }), step("baseline", 500, { latency: { n: 1, p50: 1, p99: 3, max: 3, mean: 1 } }));
    expect(verdict(steps, "CPU per delivered event")).toMatchObject({
      met: true,
      value: expect.stringContaining("the bare forwarding object: 0.30 x (300 us), gateway/bare 0.67 x"),
    });
    expect(verdict(steps, "p50 client -> origin").value).toContain("the bare forwarding object: 1.00 ms");
  });

  it("has no Pushpin verdicts but n/a when Pushpin was not measured", () => {
    const steps = rates.map((r) => step("gateway", r));
    const missing = "pushpin is not installed (Debian: apt-get install pushpin)";
    for (const about of ["CPU per delivered event", "p50 client -> origin", "highest clean rate"]) {
      expect(verdict(steps, about, missing)).toMatchObject({ met: null, value: expect.stringContaining("apt-get install pushpin") });
    }
    expect(verdict(steps, "up to 8,000", missing).met).toBe(true);
  });

  it("cannot pass 'every step up to 8,000' on a run that stops at 4,000, but fails it at the first bad step", () => {
    const quick = rates.slice(0, 4);
    expect(verdict(quick.map((r) => step("gateway", r)), "up to 8,000").met).toBeNull();
    const bad = quick.map((r) => step("gateway", r, r === 1_000 ? { clean: false, latency: { n: 1, p50: 900, p99: 1_400, max: 2_000, mean: 900 } } : {}));
    expect(verdict(bad, "up to 8,000")).toMatchObject({ met: false, value: expect.stringContaining("1,000 events/s") });
  });

  it("compares the highest clean rates", () => {
    const steps = [...rates.map((r) => step("pushpin", r, { clean: r <= 4_000 })), ...rates.map((r) => step("gateway", r, { clean: r <= 2_000 }))];
    expect(verdict(steps, "highest clean rate")).toMatchObject({ met: false, value: "2,000 vs 4,000 events/s" });
  });

  it("calls a step past capacity a wedge when it delivers less than 0.8 x a lower step, or nothing at all", () => {
    const held = [step("gateway", 500), step("gateway", 1_000), step("gateway", 2_000, { clean: false, deliveredPerS: 1_700 })];
    expect(verdict(held, "past capacity").met).toBe(true);
    const wedged = [...held, step("gateway", 4_000, { clean: false, delivered: 0, deliveredPerS: 0 })];
    expect(verdict(wedged, "past capacity")).toMatchObject({ met: false, value: expect.stringContaining("fell at 4,000") });
    // Even the first step: nothing delivered is never "at capacity".
    expect(verdict([step("gateway", 500, { clean: false, delivered: 0, deliveredPerS: 0 })], "past capacity").met).toBe(false);
    expect(verdict(rates.map((r) => step("gateway", r)), "past capacity").met).toBeNull();
  });
});

describe("Pushpin's internal.conf for the bench (bench/lib/pushpin.ts)", () => {
  it("moves Debian's system-wide zurl sockets into the instance's run directory, and nothing else", () => {
    const debian = [
      "zurl_out_specs=ipc:///var/run/zurl/zurl-in",
      "zurl_out_stream_specs=ipc:///var/run/zurl/zurl-in-stream",
      "zurl_in_specs=ipc:///var/run/zurl/zurl-out",
      "condure_in_specs=ipc://{rundir}/{ipc_prefix}condure-out",
    ].join("\n");
    expect(patchInternal(debian).split("\n")).toEqual([
      "zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in",
      "zurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream",
      "zurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out",
      "condure_in_specs=ipc://{rundir}/{ipc_prefix}condure-out",
    ]);
  });
});

describe("serving the bench build with workerd itself (bench/lib/workerd.ts)", () => {
  it("reads the bench config's Durable Objects and writes them, the variables and a local network into the workerd config", () => {
    const toml = readBenchToml(resolve(ROOT, "bench/wrangler.bench.toml"));
    expect(toml.main).toBe("entry.ts");
    expect(toml.compatibilityFlags).toContain("nodejs_compat");
    expect(toml.durableObjects).toEqual(
      expect.arrayContaining([
        { name: "ROOMS", className: "BenchRoomObject" },
        { name: "FORWARDER", className: "BaselineForwarder" },
        { name: "PARTY_ROOM", className: "PartyRoom" },
      ]),
    );
    const config = workerdConfig({ toml, entry: "entry.js", port: 4321, storeDir: "/tmp/x", vars: { A: 'say "hi"' } });
    expect(config).toContain('address = "127.0.0.1:4321"');
    expect(config).toContain('(name = "ROOMS", durableObjectNamespace = "BenchRoomObject")');
    expect(config).toContain('(className = "BaselineForwarder", uniqueKey = "bench-BaselineForwarder", enableSql = true)');
    expect(config).toContain('(name = "A", text = "say \\"hi\\"")');
    expect(config).toContain('allow = ["public", "private", "local"]');
    expect(config).toContain(`compatibilityDate = "${toml.compatibilityDate}"`);
  });
});
