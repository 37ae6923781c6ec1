import { afterEach, describe, expect, it, vi } from "vitest";
import { configureLogs, log } from "../../src/observability/log.ts";

describe("log levels", () => {
  afterEach(() => {
    configureLogs(undefined);
    vi.restoreAllMocks();
  });

  it("writes info and above by default, debug only with WSPRISM_LOG_LEVEL=debug", () => {
    const out = vi.spyOn(console, "log").mockImplementation(() => {});
    configureLogs(undefined);
    log("debug", "x.debug", { trace_id: "-" });
    log("info", "x.info", { trace_id: "-" });
    expect(out.mock.calls.map((c) => JSON.parse(String(c[0])).event)).toEqual(["x.info"]);
    configureLogs("debug");
    log("debug", "x.debug", { trace_id: "-" });
    expect(JSON.parse(String(out.mock.calls.at(-1)![0]))).toMatchObject({ level: "debug", event: "x.debug" });
  });

  it("warn silences info; an unknown level keeps info", () => {
    const out = vi.spyOn(console, "log").mockImplementation(() => {});
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    configureLogs("warn");
    log("info", "x.info", { trace_id: "-" });
    log("warn", "x.warn", { trace_id: "-" });
    expect(out).not.toHaveBeenCalled();
    expect(warn).toHaveBeenCalledTimes(1);
    configureLogs("loud");
    log("info", "x.info", { trace_id: "-" });
    expect(out).toHaveBeenCalledTimes(1);
  });
});
