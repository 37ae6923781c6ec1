/** What the lane handlers (ext.ts, hot.ts) may use of the room object. */
import type { OriginEvent, PushResult } from "../origin/outbox.ts";
import type { Counters } from "../observability/metrics.ts";
import type { CompiledService, TenantPolicy } from "../policy/index.ts";
import type { ErrorCode } from "../protocol/codes.ts";
import type { Attachment, Members } from "./members.ts";
import type { StateTable } from "./state.ts";

export type Lane = "ext" | "hot";

export interface RoomApi {
  readonly members: Members;
  readonly counters: Counters;
  /** Latest-state-wins table of the hot lane's `state` services. */
  readonly state: StateTable;
  /** `sys.error` to one socket. */
  sendError(ws: WebSocket, att: Attachment, code: ErrorCode, msg: string, seq?: number): void;
  /** Close a member with a contract close code, with presence and cleanup. */
  closeMember(ws: WebSocket, code: number, reason: string): void;
  /** Queue an event for an origin service (durably): "ok", or why it was refused (fair share, full). */
  originEvent(svc: string, service: Extract<CompiledService, { kind: "origin" }>, event: OriginEvent, ack: boolean): PushResult;
  /** `sys:refresh` with a new ticket. */
  refresh(ws: WebSocket, att: Attachment, t: TenantPolicy, ticket: unknown, seq: number | undefined, ack: boolean): Promise<void>;
  /** Count a policy decision (`wsprism_policy_decisions_total`). */
  decision(t: TenantPolicy, lane: Lane, decision: "allow" | "deny" | "drop", reason: string): void;
}
