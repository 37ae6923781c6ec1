/**
 * The inbound pipeline: one function per frame that runs the contract's checks
 * in order (SPEC section 4: frame size, rate limit, parse, allowlist, handler)
 * and returns a verdict (verdict.ts). The lane handlers (ext.ts, hot.ts) run
 * steps 3-5 and return verdicts too.
 */
import type { TenantPolicy } from "../policy/index.ts";
import { CLOSE } from "../protocol/codes.ts";
import { errorFrame, peekSeq } from "../protocol/envelope.ts";
import { peekHotSeq } from "../protocol/hot.ts";
import { extVerdict } from "./ext.ts";
import { hotVerdict } from "./hot.ts";
import { take, type Bucket } from "./ratelimit.ts";
import { NOTHING, refuse, type Lane, type Session, type Verdict } from "./verdict.ts";

/**
 * Run the checks for one frame. `bucket` is the rate-limit bucket to take from
 * (the session's, or the room's shared one for `rate_limit_scope: tenant`); the
 * caller persists it afterwards. `s.att.last` becomes `now` (the idle clock).
 */
export function inbound(s: Session, t: TenantPolicy, message: string | ArrayBuffer, bucket: Bucket, now: number): Verdict {
  const lane: Lane = typeof message === "string" ? "ext" : "hot";
  // 1. Frame size.
  const max = t.limits.max_frame_bytes;
  if (typeof message === "string" ? utf8Length(message, max) > max : message.byteLength > max) {
    return {
      decision: { lane, decision: "deny", reason: "frame_size" },
      effect: {
        kind: "close",
        frames: [errorFrame("PAYLOAD_TOO_LARGE", `frame over ${max} bytes`, seqOf(message), s.att.trace)],
        code: CLOSE.TOO_LARGE,
        reason: "frame too large",
      },
    };
  }
  // 2. Rate limit (and the time of this frame, for the idle timeout).
  s.att.last = now;
  const { rate_limit_rps: rps, rate_limit_burst: burst, rate_limit_action: action } = t.policy;
  if (!take(bucket, now, rps, burst)) {
    if (action === "drop") return { decision: { lane, decision: "drop", reason: "rate_limit" }, effect: NOTHING };
    const answer = refuse(s, lane, "rate_limit", "RATE_LIMITED", "rate limit exceeded", seqOf(message));
    if (action !== "close") return answer;
    return { ...answer, effect: { kind: "close", frames: answer.effect.kind === "reply" ? answer.effect.frames : [], code: CLOSE.RATE_LIMIT, reason: "rate limit" } };
  }
  // 3-5. Parse, allowlist, handler: per lane.
  return typeof message === "string" ? extVerdict(s, t, message) : hotVerdict(s, t, message);
}

/** The seq of a frame refused before it is parsed (size, rate), read from its first bytes. */
function seqOf(message: string | ArrayBuffer): number | undefined {
  return typeof message === "string" ? peekSeq(message) : peekHotSeq(message);
}

/** UTF-8 byte length, computed exactly only when it could exceed `max`. */
function utf8Length(s: string, max: number): number {
  if (s.length * 3 <= max) return s.length;
  if (s.length > max) return s.length;
  return new TextEncoder().encode(s).byteLength;
}
