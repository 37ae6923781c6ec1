/**
 * The room object as its helper modules see it (deliver.ts, answers.ts,
 * housekeeping.ts): they take the room and act on its members. One interface,
 * so that those modules need not import room.ts (which imports them).
 */
import type { Counters } from "../observability/metrics.ts";
import type { ErrorCode } from "../protocol/codes.ts";
import type { Arrivals } from "./arrival.ts";
import type { Address } from "./history.ts";
import type { Attachment, Members } from "./members.ts";

export interface RoomApi {
  readonly roomState: DurableObjectState;
  readonly members: Members;
  readonly counters: Counters;
  /** Sessions waiting for their first frame (SPEC v1.2). */
  readonly arrivals: Pick<Arrivals, "overdue">;
  readonly alarms: { schedule(name: string, at: number): void; scheduleBy(name: string, at: number): void; clear(name: string): void };
  /** `sys.error` to one socket. */
  sendError(ws: WebSocket, att: Attachment, code: ErrorCode, msg: string, seq?: number): void;
  /** Close a member with a contract close code, with presence and cleanup. */
  closeMember(ws: WebSocket, code: number, reason: string): void;
  /**
   * Log an ext frame for recovery when `svc` keeps a log (SPEC section 10) and
   * return the text to send (with its `off`); otherwise the frame as it is.
   */
  record(frame: string, to: Address, svc: string, owner?: string): string;
  /** An ACK_REQUESTED message of session `cid` was answered by its origin: the session's `last_seq` covers it. */
  answered(cid: string, seq: number): void;
  /** Whether ghosts that may still come back hold sids here (their directory rows are renewed too). */
  holdsGhosts(): boolean;
  /** Renew the room's sessions in the tenant directory. */
  renew(members: Attachment[]): Promise<void>;
}
