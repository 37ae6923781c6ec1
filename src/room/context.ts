/** What deliver.ts and the origin bridge use of the room object (until the bridge reports outcomes instead). */
import type { Counters } from "../observability/metrics.ts";
import type { ErrorCode } from "../protocol/codes.ts";
import type { Attachment, Members } from "./members.ts";

export interface RoomApi {
  readonly members: Members;
  readonly counters: Counters;
  /** `sys.error` to one socket. */
  sendError(ws: WebSocket, att: Attachment, code: ErrorCode, msg: string, seq?: number): void;
  /** Close a member with a contract close code, with presence and cleanup. */
  closeMember(ws: WebSocket, code: number, reason: string): void;
}
