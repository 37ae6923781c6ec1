/**
 * Table rows shared by the load parts (relay fan-out, `state` mode): throughput,
 * latency, CPU, errors, for the gateway and the baseline side by side.
 */
import type { LoadResult } from "../scenarios/common.ts";
import { fmt, latencyRows, row, textRow } from "./report.ts";

export function split<T extends { kind: string }>(res: T[]): { g: T; b: T } {
  return { g: res.find((r) => r.kind === "gateway")!, b: res.find((r) => r.kind === "baseline")! };
}

/** The target could not keep up: frames queued for more than 100 ms at the median. */
export function saturated(r: LoadResult): boolean {
  return (r.latency.p50 ?? 0) > 100 || r.skippedSends > 0;
}

/** A warning when other processes took a share of the 2 cores during either window. */
export function busyNote(g: LoadResult, b: LoadResult): string {
  const og = g.cpu?.otherPct ?? 0;
  const ob = b.cpu?.otherPct ?? 0;
  return og >= 25 || ob >= 25 ? `; machine busy: other processes used ${og.toFixed(0)}% / ${ob.toFixed(0)}% of a core during the gateway / baseline window` : "";
}

export function cpuRows(sc: string, g: LoadResult, b: LoadResult): void {
  row(sc, "workerd CPU (% of a core)", g.cpu?.workerdPct, b.cpu?.workerdPct, 0);
  row(sc, "workerd CPU per frame in (us)", g.cpuUsPerSent, b.cpuUsPerSent, 1);
  row(sc, "workerd CPU per frame out (us)", g.cpuUsPerDelivered, b.cpuUsPerDelivered, 2);
  row(sc, "load generator CPU (%)", g.cpu?.loadgenPct, b.cpu?.loadgenPct, 0, false);
  row(sc, "other processes CPU (%)", g.cpu?.otherPct, b.cpu?.otherPct, 0, false);
}

export function errorRows(sc: string, g: LoadResult, b: LoadResult): void {
  if (Object.keys(g.errors).length > 0 || Object.keys(b.errors).length > 0) {
    textRow(sc, "sys.error", JSON.stringify(g.errors), JSON.stringify(b.errors));
  }
  if (g.skippedSends > 0 || b.skippedSends > 0) row(sc, "sends the generator skipped (late)", g.skippedSends, b.skippedSends, 0, false);
}

export function loadRows(sc: string, g: LoadResult, b: LoadResult): void {
  row(sc, "connected", g.connected, b.connected, 0, false);
  row(sc, "frames in/s (sent)", g.sentPerS, b.sentPerS, 0);
  row(sc, "delivered frames/s", g.deliveredPerS, b.deliveredPerS, 0);
  row(sc, "not received (lost, or queued when the drain ended)", g.drops, b.drops, 0, false);
  if (g.drain?.outcome !== "complete" || b.drain?.outcome !== "complete") {
    textRow(sc, "drain after the window", `${g.drain?.outcome} ${fmt((g.drain?.ms ?? 0) / 1000, 1)} s`, `${b.drain?.outcome} ${fmt((b.drain?.ms ?? 0) / 1000, 1)} s`);
  }
  latencyRows(sc, "latency", g.latency, b.latency);
  cpuRows(sc, g, b);
  errorRows(sc, g, b);
  for (const r of [g, b]) if (r.note) textRow(sc, `${r.kind}: note`, r.note);
}

