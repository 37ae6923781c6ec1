/**
 * Hot lane (SPEC section 5): binary frames decoded with typed arrays over the
 * received buffer, steps 3-5 of the inbound pipeline. One outbound buffer per
 * frame, shared by every recipient. Returns verdicts; sends nothing itself.
 */
import { hotAllowed, type TenantPolicy } from "../policy/index.ts";
import type { ErrorCode } from "../protocol/codes.ts";
import { decodeHot, encodeOutbound } from "../protocol/hot.ts";
import { MAX_KEYS_PER_SENDER, senderShare, type StateRefusal } from "./state.ts";
import { NOTHING, refuse, type Session, type Verdict } from "./verdict.ts";

export function hotVerdict(s: Session, t: TenantPolicy, buf: ArrayBuffer): Verdict {
  const frame = decodeHot(buf);
  if ("error" in frame) {
    return {
      ...hotError(s, t, frame.error, frame.msg, undefined, frame.error === "UNSUPPORTED_VERSION" ? "version" : "decode"),
      count: { name: "wsprism_decode_errors_total", labels: { tenant: t.id, lane: "hot" } },
    };
  }
  const seq = frame.seq ?? undefined;
  if (!hotAllowed(t, frame.svc, frame.op)) {
    return hotError(s, t, "NOT_ALLOWED", `hot ${frame.svc}:${frame.op} is not allowed`, seq, "allowlist");
  }
  const mode = t.hotModes[frame.svc];
  const allowed = (m: string, effect: Verdict["effect"]): Verdict => ({
    decision: { lane: "hot", decision: "allow", reason: "ok" },
    count: { name: "wsprism_hot_frames_total", labels: { tenant: t.id, mode: m } },
    effect,
  });
  switch (mode?.mode) {
    case "relay":
      return allowed("relay", { kind: "relay", frame: encodeOutbound(frame, s.att.slot), coalesce: mode.coalesce, then: [] });
    case "echo":
      return allowed("echo", { kind: "reply", frames: [encodeOutbound(frame, s.att.slot)] });
    case "state":
      return { effect: { kind: "state", frame, seq } };
    default:
      return hotError(s, t, "NOT_SUPPORTED", `hot svc ${frame.svc} has no mode`, seq, "unsupported");
  }
}

/** The verdict once the room's state table has taken (null) or refused a `state` frame. */
export function stateVerdict(s: Session, t: TenantPolicy, refused: StateRefusal | null, seq: number | undefined): Verdict {
  if (refused === null) {
    return {
      decision: { lane: "hot", decision: "allow", reason: "ok" },
      count: { name: "wsprism_hot_frames_total", labels: { tenant: t.id, mode: "state" } },
      effect: NOTHING,
    };
  }
  if (refused === "too_large") {
    return hotError(s, t, "PAYLOAD_TOO_LARGE", "a state frame must fit a batch (65535 bytes)", seq, "frame_size");
  }
  const msg =
    refused === "keys"
      ? `a member keeps at most ${MAX_KEYS_PER_SENDER} state keys (svc_id, opcode)`
      : refused === "share"
        ? `a member keeps at most a quarter of limits.max_state_bytes (${senderShare(t)} bytes) of states`
        : `the room's kept states would exceed limits.max_state_bytes (${t.limits.max_state_bytes})`;
  return hotError(s, t, "RESOURCE_EXHAUSTED", msg, seq, "state_limit");
}

/** A hot-lane refusal, answered as the tenant's `hot_error_mode` says. */
function hotError(s: Session, t: TenantPolicy, code: ErrorCode, msg: string, seq: number | undefined, reason: string): Verdict {
  const mode = t.policy.hot_error_mode;
  if (mode === "sys_error") return refuse(s, "hot", reason, code, msg, seq);
  return { decision: { lane: "hot", decision: mode === "silent" ? "drop" : "deny", reason }, effect: NOTHING };
}
