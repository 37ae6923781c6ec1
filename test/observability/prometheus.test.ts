import { describe, expect, it } from "vitest";
import { Counters } from "../../src/observability/metrics.ts";
import {
  CATALOG,
  CONTENT_TYPE,
  escapeHelp,
  escapeLabelValue,
  familiesFrom,
  formatValue,
  parseSeriesKey,
  render,
  seriesKey,
} from "../../src/observability/prometheus.ts";

describe("prometheus text format", () => {
  it("renders HELP, TYPE and samples, label names sorted, samples sorted", () => {
    const text = render([
      {
        name: "x_total",
        type: "counter",
        help: "Things.",
        samples: [
          { labels: { tenant: "b", a: "1" }, value: 2 },
          { labels: { tenant: "a", a: "1" }, value: 1 },
        ],
      },
      { name: "y", type: "gauge", help: "A gauge.", samples: [{ labels: {}, value: 0 }] },
    ]);
    expect(text).toBe(
      [
        "# HELP x_total Things.",
        "# TYPE x_total counter",
        'x_total{a="1",tenant="a"} 1',
        'x_total{a="1",tenant="b"} 2',
        "# HELP y A gauge.",
        "# TYPE y gauge",
        "y 0",
        "",
      ].join("\n"),
    );
    expect(CONTENT_TYPE).toBe("text/plain; version=0.0.4; charset=utf-8");
  });

  it("escapes label values (backslash, quote, newline) and HELP text (backslash, newline)", () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    expect(escapeHelp("a\\b\nc \"q\"")).toBe('a\\\\b\\nc "q"');
    const text = render([{ name: "m", type: "untyped", help: "line1\nline2\\", samples: [{ labels: { l: 'x"y\\z\n' }, value: 3 }] }]);
    expect(text).toContain("# HELP m line1\\nline2\\\\\n");
    expect(text).toContain('m{l="x\\"y\\\\z\\n"} 3\n');
  });

  it("formats special values as the format wants", () => {
    expect(formatValue(NaN)).toBe("NaN");
    expect(formatValue(Infinity)).toBe("+Inf");
    expect(formatValue(-Infinity)).toBe("-Inf");
    expect(formatValue(12)).toBe("12");
    expect(formatValue(0.5)).toBe("0.5");
  });

  it("builds the same series keys as Counters, and reads them back", () => {
    const c = new Counters();
    const labels = { tenant: "demo", svc: 'we"ird\\', reason: "a\nb" };
    c.inc("wsprism_origin_retries_total", labels);
    const [key] = [...c.values.keys()];
    expect(seriesKey("wsprism_origin_retries_total", labels)).toBe(key);
    expect(parseSeriesKey(key!)).toEqual({ name: "wsprism_origin_retries_total", labels });
    expect(parseSeriesKey("plain_total")).toEqual({ name: "plain_total", labels: {} });
    expect(parseSeriesKey('m{a="",b="x,y=z"}')).toEqual({ name: "m", labels: { a: "", b: "x,y=z" } });
  });

  it("refuses malformed series keys", () => {
    for (const bad of [
      "",
      "1abc",
      "bad-name",
      "m{",
      'm{a="x"',
      'm{a=x}',
      'm{a="x",}',
      'm{a="x"b="y"}',
      'm{a="x",a="y"}',
      'm{__proto__ ="x"}',
      'm{a="\\q"}',
      'm{a="x"}junk',
      'm{1a="x"}',
    ]) {
      expect(parseSeriesKey(bad), bad).toBeNull();
    }
  });

  it("lists every catalog metric with HELP and TYPE even without samples, other names as untyped", () => {
    const text = render(familiesFrom([[seriesKey("other_metric", { k: "v" }), 4], ["not a key{", 1]]));
    for (const [name, info] of Object.entries(CATALOG)) {
      expect(text).toContain(`# HELP ${name} `);
      expect(text).toContain(`# TYPE ${name} ${info.type}\n`);
    }
    expect(text).toContain("# TYPE other_metric untyped\n");
    expect(text).toContain('other_metric{k="v"} 4\n');
    expect(text).not.toContain("not a key");
    // Each family's lines are contiguous: HELP, TYPE, then its samples.
    const lines = text.trimEnd().split("\n");
    const seen = new Set<string>();
    let current = "";
    for (const line of lines) {
      if (line.startsWith("# HELP ")) {
        current = line.split(" ")[2]!;
        expect(seen.has(current)).toBe(false);
        seen.add(current);
      } else if (!line.startsWith("# TYPE ")) {
        expect(line.startsWith(current)).toBe(true);
      }
    }
  });

  it("the SPEC section 8 metrics are all in the catalog with their labels", () => {
    const spec: Record<string, string[]> = {
      wsprism_ws_upgrades_total: ["tenant", "status"],
      wsprism_ws_sessions_active: ["tenant"],
      wsprism_handshake_rejections_total: ["tenant", "reason"],
      wsprism_policy_decisions_total: ["tenant", "lane", "decision", "reason"],
      wsprism_decode_errors_total: ["tenant", "lane"],
      wsprism_ext_messages_total: ["tenant"],
      wsprism_hot_frames_total: ["tenant", "mode"],
      wsprism_origin_requests_total: ["tenant", "svc", "outcome"],
      wsprism_origin_retries_total: ["tenant", "svc"],
      wsprism_origin_dead_letters_total: ["tenant", "svc"],
    };
    for (const [name, labels] of Object.entries(spec)) {
      const info = (CATALOG as Record<string, { type: string; labels: readonly string[] }>)[name];
      expect(info, name).toBeDefined();
      expect([...info!.labels]).toEqual(labels);
      expect(info!.type).toBe(name === "wsprism_ws_sessions_active" ? "gauge" : "counter");
    }
  });
});
