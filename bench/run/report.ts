/**
 * The bench's output: the progress log, one Markdown table of rows (gateway,
 * baseline, gateway/baseline; partyserver and gateway/partyserver, and the
 * gateway with `coalesce: true` and its ratio to partyserver, where measured)
 * and a verdict per target. The rows and verdicts are collected while
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
  /** The gateway with `coalesce: true` and coalesce/partyserver: only the relay fan-out. */
  coalesce: string;
  coalesceRatio: string;
}

/** A row's values: gateway and baseline; partyserver and gateway-coalesce where measured (undefined: no column). */
export interface Values {
  g: number | null | undefined;
  b: number | null | undefined;
  p?: number | null | undefined;
  c?: number | null | undefined;
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
  row4(scenario, metric, { g, b, p }, digits, showRatio);
}

/** A row of up to four targets; ratios gateway/baseline, gateway/partyserver, coalesce/partyserver. */
export function row4(scenario: string, metric: string, v: Values, digits = 1, showRatio = true): void {
  const r = (a: number | null | undefined, b: number | null | undefined) => {
    const x = showRatio ? ratio(a, b) : null;
    return x === null ? "" : x.toFixed(2);
  };
  rows.push({
    scenario,
    metric,
    gateway: fmt(v.g, digits),
    baseline: v.b === undefined ? "" : fmt(v.b, digits),
    ratio: r(v.g, v.b),
    party: v.p === undefined ? "" : fmt(v.p, digits),
    partyRatio: r(v.g, v.p),
    coalesce: v.c === undefined ? "" : fmt(v.c, digits),
    coalesceRatio: r(v.c, v.p),
  });
}

export function textRow(scenario: string, metric: string, g: string, b = "", r = "", p = "", c = ""): void {
  rows.push({ scenario, metric, gateway: g, baseline: b, ratio: r, party: p, partyRatio: "", coalesce: c, coalesceRatio: "" });
}

export function latencyRows(scenario: string, what: string, g: Summary | null, b: Summary | null, p?: Summary, c?: Summary): void {
  for (const [q, digits] of [["p50", 2], ["p99", 2], ["max", 1]] as const) {
    row4(scenario, `${what} ${q} (ms)`, { g: g?.[q], b: b === null ? undefined : b[q], p: p?.[q], c: c?.[q] }, digits);
  }
}

/** The table, in Markdown; the partyserver and coalesce columns only when some row has them. */
export function printTable(): string {
  const head: Row = {
    scenario: "scenario",
    metric: "metric",
    gateway: "gateway",
    baseline: "baseline",
    ratio: "gw/base",
    party: "partyserver",
    partyRatio: "gw/party",
    coalesce: "gw-coalesce",
    coalesceRatio: "coal/party",
  };
  const cols: Array<keyof Row> = ["scenario", "metric", "gateway", "baseline", "ratio"];
  if (rows.some((r) => r.party !== "" || r.partyRatio !== "")) cols.push("party", "partyRatio");
  if (rows.some((r) => r.coalesce !== "" || r.coalesceRatio !== "")) cols.push("coalesce", "coalesceRatio");
  const all = [head, ...rows];
  const w = cols.map((c) => Math.max(...all.map((r) => r[c].length)));
  // The first two columns are text (left-aligned), the others numbers.
  const line = (r: Row) => `| ${cols.map((c, i) => (i < 2 ? r[c].padEnd(w[i]!) : r[c].padStart(w[i]!))).join(" | ")} |`;
  const sep = `|${cols.map((_, i) => (i < 2 ? "-".repeat(w[i]! + 2) : `${"-".repeat(w[i]! + 1)}:`)).join("|")}|`;
  return [line(head), sep, ...rows.map(line)].join("\n");
}
