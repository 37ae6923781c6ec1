/**
 * The table and the verdicts of "events to origins" (bench/lib/origins.ts),
 * against the targets of issue 11.
 */
import { CLEAN_P99_MS, highestClean, type OriginStep, type OriginTarget } from "./origins.ts";

export interface OriginVerdict {
  target: string;
  value: string;
  met: boolean | null;
}

function num(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return "-";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US");
  return x.toFixed(digits);
}

function notes(s: OriginStep): string {
  const out: string[] = [];
  if (s.drain.outcome !== "complete") out.push(`drain ${s.drain.outcome} after ${(s.drain.ms / 1000).toFixed(1)} s`);
  const errs = Object.entries(s.errors).map(([k, n]) => `${n}x ${k}`);
  if (errs.length) out.push(`sys.error: ${errs.join(", ")}`);
  if (s.duplicates > 0) out.push(`${s.duplicates} duplicates`);
  if (s.badRequests > 0) out.push(`origin answered 400 to ${s.badRequests} malformed requests`);
  if (s.foreign > 0) out.push(`${s.foreign} events the origin could not read`);
  if (s.note) out.push(s.note);
  if (s.log.length > 0) out.push(`${s.target} logged: ${logSummary(s.log)}`);
  return out.join("; ");
}

/** Log lines by kind: the gateway's JSON lines by event (and why), others by their start. */
function logSummary(lines: string[]): string {
  const counts = new Map<string, number>();
  for (const line of lines) {
    if (line.startsWith("stack:")) continue;
    let key = line.replace(/^▲ \[WARNING\]\s*/, "").slice(0, 60);
    const brace = line.indexOf("{");
    if (brace >= 0) {
      try {
        const j = JSON.parse(line.slice(brace)) as { event?: unknown; why?: unknown };
        if (typeof j.event === "string") key = `${j.event}${typeof j.why === "string" ? ` (${j.why})` : ""}`;
      } catch {
        // not a JSON log line
      }
    }
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${n}x ${k}`).join(", ") + (lines.length >= 50 ? ", …" : "");
}

const ORDER: Record<OriginTarget, number> = { gateway: 0, baseline: 1, pushpin: 2 };

/** One row per rate and target, in Markdown. */
export function originTable(steps: OriginStep[]): string {
  const head = [
    "events/s",
    "target",
    "sent",
    "delivered",
    "p50 ms",
    "p99 ms",
    "POSTs/event",
    "CPU us/event",
    "target CPU %",
    "origin CPU %",
    "other CPU %",
    "clean",
    "notes",
  ];
  const rows = [...steps]
    .sort((a, b) => a.rate - b.rate || ORDER[a.target] - ORDER[b.target])
    .map((s) => [
      num(s.rate, 0),
      s.target,
      num(s.sent, 0),
      num(s.delivered, 0),
      num(s.latency.p50, 2),
      num(s.latency.p99, 1),
      num(s.postsPerEvent, 3),
      num(s.cpuUsPerDelivered, 0),
      num(s.targetPct, 0),
      num(s.sinkPct, 0),
      num(s.otherPct, 0),
      s.clean ? "yes" : "no",
      notes(s),
    ]);
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const text = new Set([1, 11, 12]);
  const line = (r: string[]) => `| ${r.map((c, i) => (text.has(i) ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(" | ")} |`;
  const sep = `|${w.map((n, i) => (text.has(i) ? "-".repeat(n + 2) : `${"-".repeat(n + 1)}:`)).join("|")}|`;
  return [line(head), sep, ...rows.map(line)].join("\n");
}

function at(steps: OriginStep[], target: OriginTarget, rate: number): OriginStep | undefined {
  return steps.find((s) => s.target === target && s.rate === rate);
}

/**
 * The issue's targets. `pushpinMissing`: why Pushpin was not measured (its
 * verdicts are then n/a), or null.
 */
export function originVerdicts(steps: OriginStep[], pushpinMissing: string | null): OriginVerdict[] {
  const out: OriginVerdict[] = [];
  const peer = (what: string, rate: number, f: (g: OriginStep, p: OriginStep) => OriginVerdict["value"] | [string, boolean]) => {
    const g = at(steps, "gateway", rate);
    const p = at(steps, "pushpin", rate);
    if (pushpinMissing) return out.push({ target: what, value: `not measured: ${pushpinMissing}`, met: null });
    if (!g || !p) return out.push({ target: what, value: `no ${num(rate, 0)} events/s step in this run`, met: null });
    const r = f(g, p);
    return out.push(typeof r === "string" ? { target: what, value: r, met: null } : { target: what, value: r[0], met: r[1] });
  };
  peer("origins: CPU per delivered event at 1,000 events/s <= 0.2 x Pushpin's (workerd vs all of Pushpin's processes)", 1_000, (g, p) => {
    if (g.cpuUsPerDelivered === null || p.cpuUsPerDelivered === null || p.cpuUsPerDelivered === 0) return "nothing delivered";
    const r = g.cpuUsPerDelivered / p.cpuUsPerDelivered;
    // The platform's floor: a bare object that only POSTs each message (one fetch per event).
    const b = at(steps, "baseline", 1_000)?.cpuUsPerDelivered;
    const floor = b ? `; the bare forwarding object: ${(b / p.cpuUsPerDelivered).toFixed(2)} x (${num(b, 0)} us), gateway/bare ${(g.cpuUsPerDelivered / b).toFixed(2)} x` : "";
    return [`${r.toFixed(2)} x (${num(g.cpuUsPerDelivered, 0)} vs ${num(p.cpuUsPerDelivered, 0)} us)${floor}`, r <= 0.2];
  });
  peer("origins: p50 client -> origin at 500 events/s <= 2 x Pushpin's", 500, (g, p) => {
    if (g.latency.p50 === null || p.latency.p50 === null || p.latency.p50 <= 0) return "nothing delivered";
    const r = g.latency.p50 / p.latency.p50;
    const b = at(steps, "baseline", 500)?.latency.p50;
    return [`${r.toFixed(2)} x (${num(g.latency.p50, 2)} vs ${num(p.latency.p50, 2)} ms)${b ? `; the bare forwarding object: ${num(b, 2)} ms` : ""}`, r <= 2];
  });

  const gw = steps.filter((s) => s.target === "gateway").sort((a, b) => a.rate - b.rate);
  const upTo = gw.filter((s) => s.rate <= 8_000);
  const bad = upTo.find((s) => !s.clean);
  const top = gw.at(-1)?.rate ?? 0;
  out.push({
    target: `origins: every step up to 8,000 events/s fully delivered with p99 < ${CLEAN_P99_MS / 1000} s (gateway)`,
    value: bad
      ? `${num(bad.rate, 0)} events/s: ${num(bad.delivered, 0)} of ${num(bad.sent, 0)} delivered, p99 ${num(bad.latency.p99, 0)} ms`
      : gw.length === 0
        ? "not run"
        : top < 8_000
          ? `clean up to ${num(top, 0)} events/s, the highest step of this profile (--full goes to 16,000)`
          : "every step clean",
    met: bad ? false : gw.length === 0 || top < 8_000 ? null : true,
  });

  const gHigh = highestClean(steps, "gateway");
  const pHigh = highestClean(steps, "pushpin");
  out.push({
    target: "origins: the gateway's highest clean rate >= Pushpin's (every lower step clean too)",
    value: pushpinMissing ? `gateway ${num(gHigh, 0)} events/s; Pushpin not measured: ${pushpinMissing}` : `${num(gHigh, 0)} vs ${num(pHigh, 0)} events/s`,
    met: pushpinMissing ? null : gHigh >= pHigh,
  });

  // Past capacity: delivered/s must not fall below what a lower step delivered (a wedge does).
  // (Nothing delivered at all counts as a wedge, even at the first step.)
  const over = gw.filter((s) => s.rate > gHigh);
  const wedged = over.filter((s) => {
    const below = Math.max(gHigh, ...gw.filter((x) => x.rate < s.rate).map((x) => x.deliveredPerS));
    return s.delivered === 0 || s.deliveredPerS < 0.8 * below;
  });
  out.push({
    target: "origins: past capacity, delivered events/s stays at capacity (>= 0.8 x the best lower step; no wedge)",
    value:
      over.length === 0
        ? "never past capacity in this run"
        : over.map((s) => `${num(s.rate, 0)}/s offered: ${num(s.deliveredPerS, 0)}/s delivered`).join(", ") +
          (wedged.length ? `; fell at ${wedged.map((s) => num(s.rate, 0)).join(", ")}` : ""),
    met: over.length === 0 ? null : wedged.length === 0,
  });
  return out;
}
