/**
 * Prometheus text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/):
 *
 *   # HELP <name> <help, with \ and newline escaped>
 *   # TYPE <name> counter|gauge|untyped
 *   <name>{<label>="<value, with \ " and newline escaped>",...} <value>
 *
 * Series travel between objects as the keys `Counters` (metrics.ts) builds:
 * `name{a="x",b="y"}` with label names sorted and values escaped exactly as this
 * format wants. `seriesKey` builds the same string, `parseSeriesKey` reads it back
 * (and refuses anything that is not a well-formed series).
 */
import type { Labels } from "./metrics.ts";

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type MetricType = "counter" | "gauge" | "untyped";

export interface MetricInfo {
  type: MetricType;
  help: string;
  /** Label names, for the documentation (the renderer prints whatever a series carries). */
  labels: readonly string[];
}

/**
 * Every metric the gateway exposes. A scrape always prints HELP and TYPE for
 * each of them, even with no series yet. docs/operations.md describes them.
 */
export const CATALOG = {
  wsprism_ws_upgrades_total: {
    type: "counter",
    help: "WebSocket upgrade requests by answer status: 101 accepted (counted by the room), other statuses rejected (counted by the Worker).",
    labels: ["tenant", "status"],
  },
  wsprism_ws_sessions_active: {
    type: "gauge",
    help: "Open WebSocket sessions, summed over the room objects that reported within the gauge TTL.",
    labels: ["tenant"],
  },
  wsprism_handshake_rejections_total: {
    type: "counter",
    help: "Connections refused before or at the upgrade by a limit (handshake defender, room full, sessions or tenant caps).",
    labels: ["tenant", "reason"],
  },
  wsprism_policy_decisions_total: {
    type: "counter",
    help: "Policy decisions on inbound frames, by lane, decision (allow, deny, drop) and reason.",
    labels: ["tenant", "lane", "decision", "reason"],
  },
  wsprism_decode_errors_total: {
    type: "counter",
    help: "Inbound frames that could not be decoded, by lane.",
    labels: ["tenant", "lane"],
  },
  wsprism_ext_messages_total: {
    type: "counter",
    help: "Ext lane (JSON) messages accepted and handled.",
    labels: ["tenant"],
  },
  wsprism_hot_frames_total: {
    type: "counter",
    help: "Hot lane (binary) frames accepted and handled, by hot service mode.",
    labels: ["tenant", "mode"],
  },
  wsprism_hot_relay_batches_total: {
    type: "counter",
    help: "Batch frames sent by coalesced relay services (one per member and flush of two or more frames).",
    labels: ["tenant"],
  },
  wsprism_origin_requests_total: {
    type: "counter",
    help: "Webhook requests to origins, by service and outcome (ok, retry, rejected).",
    labels: ["tenant", "svc", "outcome"],
  },
  wsprism_origin_retries_total: {
    type: "counter",
    help: "Webhook requests that were retries of an earlier attempt.",
    labels: ["tenant", "svc"],
  },
  wsprism_origin_dead_letters_total: {
    type: "counter",
    help: "Origin events given up (retries exhausted, outbox full, service no longer routed).",
    labels: ["tenant", "svc"],
  },
  wsprism_origin_invalid_answers_total: {
    type: "counter",
    help: "2xx origin answers that could not be read (failed closed) or held invalid actions.",
    labels: ["tenant", "svc"],
  },
  // Resume with recovery (SPEC section 10).
  wsprism_recovery_total: { type: "counter", help: "Resumes with a position (resume=), by result: recovered, epoch, too_old, too_many, disabled.", labels: ["tenant", "result"] },
  wsprism_recovery_frames_total: { type: "counter", help: "Logged frames replayed to resumed sessions.", labels: ["tenant"] },
  wsprism_log_rows_written_total: { type: "counter", help: "Rows written to rooms' recovery logs (one per logged frame).", labels: ["tenant"] },
  wsprism_internal_errors_total: {
    type: "counter",
    help: "Unexpected failures caught in the room object (always a bug or a platform fault).",
    labels: ["tenant"],
  },
  wsprism_metrics_dropped_total: {
    type: "counter",
    help: "Series the metrics aggregator refused (malformed, or over its series cap).",
    labels: ["reason"],
  },
} as const satisfies Record<string, MetricInfo>;

export type MetricName = keyof typeof CATALOG;

export interface Sample {
  labels: Labels;
  value: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help: string;
  samples: Sample[];
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

const NEEDS_ESCAPE = /[\\"\n]/;

export function escapeLabelValue(v: string): string {
  // Label values are policy ids and code enums: almost never anything to escape.
  if (!NEEDS_ESCAPE.test(v)) return v;
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

export function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

export function formatValue(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

/** The series key, identical to the keys of `Counters` (label names sorted). */
/** The canonical key of a series: `name{a="x",b="y"}`, labels sorted. Called on every counter increment. */
export function seriesKey(name: string, labels: Labels): string {
  const names = Object.keys(labels);
  if (names.length === 0) return name;
  if (names.length > 1) names.sort();
  let out = `${name}{`;
  for (let i = 0; i < names.length; i++) {
    const k = names[i]!;
    out += `${i > 0 ? "," : ""}${k}="${escapeLabelValue(labels[k]!)}"`;
  }
  return `${out}}`;
}

/** Read a series key back; null for anything that is not `name` or `name{l="v",...}` with valid names. */
export function parseSeriesKey(key: string): { name: string; labels: Labels } | null {
  const brace = key.indexOf("{");
  const name = brace < 0 ? key : key.slice(0, brace);
  if (!NAME_RE.test(name)) return null;
  const labels: Labels = Object.create(null);
  if (brace < 0) return { name, labels };
  if (!key.endsWith("}")) return null;
  let i = brace + 1;
  const end = key.length - 1;
  while (i < end) {
    const eq = key.indexOf("=", i);
    if (eq < 0) return null;
    const label = key.slice(i, eq);
    if (!LABEL_RE.test(label) || label in labels || key[eq + 1] !== '"') return null;
    let j = eq + 2;
    let value = "";
    for (;;) {
      if (j >= end) return null;
      const ch = key[j]!;
      if (ch === '"') break;
      if (ch === "\\") {
        const next = key[j + 1];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else return null;
        j += 2;
      } else {
        value += ch;
        j += 1;
      }
    }
    labels[label] = value;
    i = j + 1;
    if (i < end) {
      if (key[i] !== ",") return null;
      i += 1;
      if (i >= end) return null; // trailing comma
    }
  }
  return { name, labels };
}

/**
 * Group series values into families: every CATALOG metric first (in catalog
 * order, present even without series), then any other well-formed name as
 * `untyped`. Keys that do not parse are skipped.
 */
export function familiesFrom(values: Iterable<readonly [string, number]>, types?: ReadonlyMap<string, MetricType>): Family[] {
  const families = new Map<string, Family>();
  for (const [name, info] of Object.entries(CATALOG) as Array<[string, MetricInfo]>) {
    families.set(name, { name, type: info.type, help: info.help, samples: [] });
  }
  for (const [key, value] of values) {
    const parsed = parseSeriesKey(key);
    if (!parsed) continue;
    let f = families.get(parsed.name);
    if (!f) {
      f = { name: parsed.name, type: types?.get(parsed.name) ?? "untyped", help: parsed.name, samples: [] };
      families.set(parsed.name, f);
    }
    f.samples.push({ labels: parsed.labels, value });
  }
  return [...families.values()];
}

/** The exposition text: families in the given order, samples sorted by series key. */
export function render(families: readonly Family[]): string {
  const out: string[] = [];
  for (const f of families) {
    if (!NAME_RE.test(f.name)) continue;
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`);
    out.push(`# TYPE ${f.name} ${f.type}`);
    const lines: Array<[string, string]> = [];
    for (const s of f.samples) {
      if (Object.keys(s.labels).some((l) => !LABEL_RE.test(l))) continue;
      const key = seriesKey(f.name, s.labels);
      lines.push([key, `${key} ${formatValue(s.value)}`]);
    }
    lines.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    for (const [, line] of lines) out.push(line);
  }
  return out.join("\n") + "\n";
}
