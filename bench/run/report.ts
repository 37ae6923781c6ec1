/**
 * The bench's output: the progress log, one Markdown table of rows (gateway,
 * baseline, gateway/baseline; partyserver and gateway/partyserver where
 * measured) and a verdict per target. The rows and verdicts are collected while
 * the parts run and printed at the end (bench/run.ts finish).
 */
import type { Summary } from "../lib/stats.ts";

const t0 = Date.now();

/** Seconds since the bench started (the log's prefix, and the run's duration). */
export function elapsedS(): number {
  return (Date.now() - t0) / 1000;
}

export function say(line: string): void {
  console.log(`[bench ${elapsedS().toFixed(1).padStart(5)}s] ${line}`);
}

export function fmt(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return "-";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US");
  return x.toFixed(digits);
}

export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return a / b;
}

export interface Row {
  scenario: string;
  metric: string;
  gateway: string;
  baseline: string;
  ratio: string;
  /** partyserver and gateway/partyserver: only where it is measured ("" elsewhere). */
  party: string;
  partyRatio: string;
}

export interface Verdict {
  target: string;
  value: string;
  met: boolean | null;
}

/** Everything printed at the end; kept in the results JSON too. */
export const rows: Row[] = [];
export const verdicts: Verdict[] = [];

export function row(scenario: string, metric: string, g: number | null | undefined, b: number | null | undefined, digits = 1, showRatio = true): void {
  row3(scenario, metric, g, b, undefined, digits, showRatio);
}

/** A row with partyserver's value and ratio too (undefined: no partyserver column in this row). */
export function row3(
  scenario: string,
  metric: string,
  g: number | null | undefined,
  b: number | null | undefined,
  p: number | null | undefined,
  digits = 1,
  showRatio = true,
): void {
  const r = showRatio ? ratio(g, b) : null;
  const rp = showRatio ? ratio(g, p) : null;
  rows.push({
    scenario,
    metric,
    gateway: fmt(g, digits),
    baseline: b === undefined ? "" : fmt(b, digits),
    ratio: r === null ? "" : r.toFixed(2),
    party: p === undefined ? "" : fmt(p, digits),
    partyRatio: rp === null ? "" : rp.toFixed(2),
  });
}

export function textRow(scenario: string, metric: string, g: string, b = "", r = "", p = ""): void {
  rows.push({ scenario, metric, gateway: g, baseline: b, ratio: r, party: p, partyRatio: "" });
}

export function latencyRows(scenario: string, what: string, g: Summary | null, b: Summary | null, p?: Summary): void {
  row3(scenario, `${what} p50 (ms)`, g?.p50, b === null ? undefined : b.p50, p?.p50, 2);
  row3(scenario, `${what} p99 (ms)`, g?.p99, b === null ? undefined : b.p99, p?.p99, 2);
  row3(scenario, `${what} max (ms)`, g?.max, b === null ? undefined : b.max, p?.max, 1);
}

/** The table, in Markdown; the partyserver columns only when some row has them. */
export function printTable(): string {
  const head: Row = { scenario: "scenario", metric: "metric", gateway: "gateway", baseline: "baseline", ratio: "gw/base", party: "partyserver", partyRatio: "gw/party" };
  const cols: Array<keyof Row> = ["scenario", "metric", "gateway", "baseline", "ratio"];
  if (rows.some((r) => r.party !== "" || r.partyRatio !== "")) cols.push("party", "partyRatio");
  const all = [head, ...rows];
  const w = cols.map((c) => Math.max(...all.map((r) => r[c].length)));
  // The first two columns are text (left-aligned), the others numbers.
  const line = (r: Row) => `| ${cols.map((c, i) => (i < 2 ? r[c].padEnd(w[i]!) : r[c].padStart(w[i]!))).join(" | ")} |`;
  const sep = `|${cols.map((_, i) => (i < 2 ? "-".repeat(w[i]! + 2) : `${"-".repeat(w[i]! + 1)}:`)).join("|")}|`;
  return [line(head), sep, ...rows.map(line)].join("\n");
}
