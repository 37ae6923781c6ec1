/**
 * What the inbound pipeline (inbound.ts) and the lane handlers (ext.ts, hot.ts)
 * return for a frame: what should happen and which policy decision to count.
 * `RoomObject.apply` is the one place that turns a verdict into sends, counters
 * and logs; nothing that returns a verdict sends, closes or touches storage.
 */
import type { CompiledService } from "../policy/index.ts";
import type { OriginEvent } from "../origin/outbox.ts";
import { errorFrame } from "../protocol/envelope.ts";
import type { HotFrame } from "../protocol/hot.ts";
import type { Labels } from "../observability/metrics.ts";
import type { Attachment } from "./members.ts";

export type Lane = "ext" | "hot";

/** A socket and what the room knows about it (its attachment, exact while the object is awake). */
export interface Session {
  readonly ws: WebSocket;
  readonly att: Attachment;
  /** With recovery: the room's log position (`epoch`, `off`), for `sys.joined` (SPEC section 10). */
  readonly position?: () => { epoch: string; off: number } | undefined;
}

/** `wsprism_policy_decisions_total{lane,decision,reason}`. */
export interface Decision {
  lane: Lane;
  decision: "allow" | "deny" | "drop";
  reason: string;
}

type Frame = string | ArrayBuffer | Uint8Array;

/** What to do with the frame. */
export type Effect =
  /** Nothing to send (a drop, or a refusal the tenant wants silent). */
  | { kind: "none" }
  /** Frames for the sender only (errors, acks, `joined`, echoes). */
  | { kind: "reply"; frames: Frame[] }
  /**
   * A frame for every other member (coalesced when the service asks), then frames
   * for the sender. `log`: the ext service whose recovery setting decides whether
   * they are logged; `accepted`: the ACK_REQUESTED seq this accepts (last_seq).
   */
  | { kind: "relay"; frame: Frame; coalesce: boolean; then: Frame[]; log?: string; accepted?: number }
  /** Frames for the sender, then close its socket with a contract code. */
  | { kind: "close"; frames: Frame[]; code: number; reason: string }
  /** A hot `state` frame: the room's state table takes it or says why not (hot.ts `stateVerdict`). */
  | { kind: "state"; frame: HotFrame; seq: number | undefined }
  /** An event for an origin stream: the outbox takes it or says why not (ext.ts `originVerdict`). */
  | { kind: "origin"; svc: string; service: Extract<CompiledService, { kind: "origin" }>; event: OriginEvent; ack: boolean }
  /** `sys:refresh` with a new ticket (verified asynchronously by the room). */
  | { kind: "refresh"; ticket: unknown; seq: number | undefined; ack: boolean };

export interface Verdict {
  /** The policy decision to count; absent when the effect's outcome decides it (state, origin). */
  decision?: Decision;
  /** One more counter to increment (decode errors, messages, hot frames by mode). */
  count?: { name: string; labels: Labels };
  effect: Effect;
}

export const NOTHING: Effect = { kind: "none" };

/** A refusal answered with `sys.error` (code, message, the frame's seq, the session's trace). */
export function refuse(s: Session, lane: Lane, reason: string, code: string, msg: string, seq?: number): Verdict {
  return {
    decision: { lane, decision: "deny", reason },
    effect: { kind: "reply", frames: [errorFrame(code, msg, seq, s.att.trace)] },
  };
}

