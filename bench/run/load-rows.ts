/**
 * Table rows shared by the load parts (relay fan-out, `state` mode): throughput,
 * latency, CPU, errors, for the gateway and the baseline side by side, and in
 * the relay fan-out partyserver (p) and the gateway with `coalesce: true` (c).
 */
import type { LoadResult } from "../scenarios/common.ts";
import { fmt, latencyRows, row4, textRow } from "./report.ts";

export function split<T extends { kind: string }>(res: T[]): { g: T; b: T } {
  return { g: res.find((r) => r.kind === "gateway")!, b: res.find((r) => r.kind === "baseline")! };
}

/** The target could not keep up: frames queued for more than 100 ms at the median. */
export function saturated(r: LoadResult): boolean {
  return (r.latency.p50 ?? 0) > 100 || r.skippedSends > 0;
}

/** A warning when other processes took a share of the 2 cores during any target's window. */
export function busyNote(...res: Array<LoadResult | undefined>): string {
  const rs = res.filter((r): r is LoadResult => r !== undefined);
  const pcts = rs.map((r) => r.cpu?.otherPct ?? 0);
  return pcts.some((x) => x >= 25)
    ? `; machine busy: other processes used ${pcts.map((x) => `${x.toFixed(0)}%`).join(" / ")} of a core during the ${rs.map((r) => r.kind).join(" / ")} windows`
    : "";
}

/** One value per target; p and c stay undefined (no column) when that target was not run. */
function vals(g: LoadResult, b: LoadResult, p: LoadResult | undefined, c: LoadResult | undefined, f: (r: LoadResult) => number | null | undefined) {
  return { g: f(g), b: f(b), p: p ? f(p) : undefined, c: c ? f(c) : undefined };
}

export function cpuRows(sc: string, g: LoadResult, b: LoadResult, p?: LoadResult, c?: LoadResult): void {
  row4(sc, "workerd CPU (% of a core)", vals(g, b, p, c, (r) => r.cpu?.workerdPct), 0);
  row4(sc, "workerd CPU per frame in (us)", vals(g, b, p, c, (r) => r.cpuUsPerSent), 1);
  row4(sc, "workerd CPU per frame out (us)", vals(g, b, p, c, (r) => r.cpuUsPerDelivered), 2);
  row4(sc, "load generator CPU (%)", vals(g, b, p, c, (r) => r.cpu?.loadgenPct), 0, false);
  row4(sc, "other processes CPU (%)", vals(g, b, p, c, (r) => r.cpu?.otherPct), 0, false);
}

export function errorRows(sc: string, g: LoadResult, b: LoadResult, p?: LoadResult, c?: LoadResult): void {
  const all = [g, b, p, c];
  if (all.some((r) => r && Object.keys(r.errors).length > 0)) {
    const e = (r: LoadResult | undefined) => (r ? JSON.stringify(r.errors) : "");
    textRow(sc, "sys.error", e(g), e(b), "", e(p), e(c));
  }
  if (all.some((r) => r && r.skippedSends > 0)) row4(sc, "sends the generator skipped (late)", vals(g, b, p, c, (r) => r.skippedSends), 0, false);
}

export function loadRows(sc: string, g: LoadResult, b: LoadResult, p?: LoadResult, c?: LoadResult): void {
  const all = [g, b, p, c].filter((r): r is LoadResult => r !== undefined);
  row4(sc, "connected", vals(g, b, p, c, (r) => r.connected), 0, false);
  row4(sc, "frames in/s (sent)", vals(g, b, p, c, (r) => r.sentPerS), 0);
  row4(sc, "delivered frames/s (inner frames of batches included)", vals(g, b, p, c, (r) => r.deliveredPerS), 0);
  if (c?.framesPerMessage !== undefined) {
    row4(sc, "WebSocket messages received/s", vals(g, b, p, c, (r) => r.messagesPerS), 0);
    row4(sc, "frames per message (batching)", vals(g, b, p, c, (r) => r.framesPerMessage), 2, false);
  }
  row4(sc, "not received (lost, or queued when the drain ended)", vals(g, b, p, c, (r) => r.drops), 0, false);
  if (all.some((r) => r.drain?.outcome !== "complete")) {
    const d = (r: LoadResult | undefined) => (r ? `${r.drain?.outcome} ${fmt((r.drain?.ms ?? 0) / 1000, 1)} s` : "");
    textRow(sc, "drain after the window", d(g), d(b), "", d(p), d(c));
  }
  latencyRows(sc, "latency", g.latency, b.latency, p?.latency, c?.latency);
  cpuRows(sc, g, b, p, c);
  errorRows(sc, g, b, p, c);
  for (const r of all) if (r.note) textRow(sc, `${r.kind}: note`, r.note);
}
