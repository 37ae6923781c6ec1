/**
 * The connection storm part: gateway, partyserver and the bare object in
 * mirrored turns; the issue 9 verdicts against partyserver.
 */
import { STORM_TENANT, stormInterleaved, type StormResult, type StormTarget } from "../../lib/storm.ts";
import type { Ctx } from "../context.ts";
import { fmt, latencyRows, ratio, row3, say, textRow, verdicts } from "../report.ts";

// The connection storm. Last: its thousands of sessions (and their directory
// objects) stay in workerd's memory after it, where they would blur idle's RSS.
export async function runStorm(ctx: Ctx): Promise<void> {
  const { env, profile, results } = ctx;
  const c = profile.storm;
  const first = ctx.order()[0]!;
  const targets: StormTarget[] = first === "gateway" ? ["gateway", "party", "baseline"] : ["baseline", "party", "gateway"];
  const sc = `storm ${c.sockets}/${c.concurrency}/${c.rooms}`;
  say(`storm: ${c.sockets} sockets, ${c.concurrency} in flight, ${c.rooms} rooms, one user each; ${c.slices} storms per target in turns, ${targets.join(", ")} first`);
  const res = await stormInterleaved(env, c, targets, () => ctx.settle(), (kind, room) =>
    kind === "gateway" ? ctx.gatewayStats(room, STORM_TENANT) : ctx.peerStats(room, kind),
  );
  results.storm = res;
  const g = res.find((r) => r.kind === "gateway")!;
  const b = res.find((r) => r.kind === "baseline")!;
  const p = res.find((r) => r.kind === "party");
  if (res.some((r) => r.connected === 0)) ctx.fail();
  const failures = (r: StormResult) => Object.entries(r.failures).map(([k, n]) => `${n}x${k}`).join(", ") || "0";
  textRow(sc, "sockets ready / attempted", `${g.connected} / ${g.attempted}`, `${b.connected} / ${b.attempted}`, "", p ? `${p.connected} / ${p.attempted}` : "");
  textRow(sc, "failures (HTTP status, or timeout/closed/error/deadline)", failures(g), failures(b), "", p ? failures(p) : "");
  row3(sc, "sockets/s (ready / wall time)", g.socketsPerS, b.socketsPerS, p?.socketsPerS, 0);
  latencyRows(sc, "upgrade -> authed (base, party: open)", g.ready, b.ready, p?.ready);
  const perStorm = (r: StormResult) => r.slices.map((x) => fmt(x.socketsPerS, 0)).join(" / ");
  textRow(sc, "sockets/s per storm", perStorm(g), perStorm(b), "", p ? perStorm(p) : "");
  row3(sc, "workerd CPU per socket (ms)", g.cpuMsPerSocket, b.cpuMsPerSocket, p?.cpuMsPerSocket, 2);
  row3(sc, "other processes CPU (%)", g.otherPct, b.otherPct, p?.otherPct, 0, false);
  if (res.some((r) => r.leftOpen !== 0)) {
    textRow(sc, "sockets still held after closing", String(g.leftOpen ?? "?"), String(b.leftOpen ?? "?"), "", p ? String(p.leftOpen ?? "?") : "");
  }
  for (const r of res) if (r.firstError) textRow(sc, `${r.kind}: first failure`, r.firstError.slice(0, 120));
  // The issue's targets are against partyserver. Without it (a build or run that
  // has no partyserver) the bare object stands in: it does less than partyserver,
  // so it is the harder reference. The baseline's ratios stay in the table.
  const ref = p ?? b;
  const refName = p ? "partyserver" : "the bare baseline";
  const busy = res.some((r) => r.otherPct >= 25)
    ? `; machine busy: other processes used ${res.map((r) => `${r.otherPct.toFixed(0)}%`).join(" / ")} of a core (${res.map((r) => r.kind).join(" / ")})`
    : "";
  const ok = g.connected === g.attempted;
  const thr = ratio(g.socketsPerS, ref.socketsPerS);
  const p99 = ratio(g.ready.p99, ref.ready.p99);
  const vsBase = (x: number | null) => (p && x !== null ? `; ${x.toFixed(2)} x the bare baseline` : "");
  verdicts.push({
    target: `storm: sockets/s >= 0.8 x ${refName}, every socket authed (${sc}, per-user limits on${busy})`,
    value: `${thr === null ? "-" : thr.toFixed(2)} (${fmt(g.socketsPerS, 0)} vs ${fmt(ref.socketsPerS, 0)} sockets/s${vsBase(ratio(g.socketsPerS, b.socketsPerS))}); ${g.attempted - g.connected} failed`,
    met: thr === null ? null : thr >= 0.8 && ok,
  });
  verdicts.push({
    target: `storm: p99 upgrade -> authed <= 1.5 x ${refName}'s upgrade -> open (${sc}${busy})`,
    value: `${p99 === null ? "-" : p99.toFixed(2)} (${fmt(g.ready.p99, 1)} vs ${fmt(ref.ready.p99, 1)} ms${vsBase(ratio(g.ready.p99, b.ready.p99))})`,
    met: p99 === null ? null : p99 <= 1.5 && ok,
  });
}
