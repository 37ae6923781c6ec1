/**
 * Hot lane (SPEC section 5): binary frames decoded with typed arrays over the
 * received buffer. One outbound buffer per frame, shared by every recipient.
 */
import { hotAllowed, type TenantPolicy } from "../policy/index.ts";
import type { ErrorCode } from "../protocol/codes.ts";
import { decodeHot, encodeOutbound } from "../protocol/hot.ts";
import { coalescerOf } from "./coalesce.ts";
import type { RoomApi } from "./context.ts";
import { safeSend, type Attachment } from "./members.ts";
import { MAX_KEYS_PER_SENDER } from "./state.ts";

export function handleHot(room: RoomApi, ws: WebSocket, att: Attachment, t: TenantPolicy, buf: ArrayBuffer): void {
  const frame = decodeHot(buf);
  if ("error" in frame) {
    room.counters.inc("wsprism_decode_errors_total", { tenant: t.id, lane: "hot" });
    hotError(room, ws, att, t, frame.error, frame.msg, undefined, frame.error === "UNSUPPORTED_VERSION" ? "version" : "decode");
    return;
  }
  const seq = frame.seq ?? undefined;
  if (!hotAllowed(t, frame.svc, frame.op)) {
    hotError(room, ws, att, t, "NOT_ALLOWED", `hot ${frame.svc}:${frame.op} is not allowed`, seq, "allowlist");
    return;
  }
  const mode = t.hotModes[frame.svc];
  switch (mode?.mode) {
    case "relay": {
      room.decision(t, "hot", "allow", "ok");
      room.counters.inc("wsprism_hot_frames_total", { tenant: t.id, mode: "relay" });
      const out = encodeOutbound(frame, att.slot);
      if (mode.coalesce) coalescerOf(room).relay(out, ws, room.members.all(), t.id);
      else for (const [other] of room.members.all()) if (other !== ws) safeSend(other, out);
      return;
    }
    case "echo":
      room.decision(t, "hot", "allow", "ok");
      room.counters.inc("wsprism_hot_frames_total", { tenant: t.id, mode: "echo" });
      safeSend(ws, encodeOutbound(frame, att.slot));
      return;
    case "state": {
      const refused = room.state.update(frame, att.slot, t, () => room.members.all());
      if (refused === "too_large") {
        hotError(room, ws, att, t, "PAYLOAD_TOO_LARGE", "a state frame must fit a batch (65535 bytes)", seq, "frame_size");
        return;
      }
      if (refused) {
        const msg =
          refused === "keys"
            ? `a member keeps at most ${MAX_KEYS_PER_SENDER} state keys (svc_id, opcode)`
            : `the room's kept states would exceed limits.max_state_bytes (${t.limits.max_state_bytes})`;
        hotError(room, ws, att, t, "RESOURCE_EXHAUSTED", msg, seq, "state_limit");
        return;
      }
      room.decision(t, "hot", "allow", "ok");
      room.counters.inc("wsprism_hot_frames_total", { tenant: t.id, mode: "state" });
      return;
    }
    default:
      hotError(room, ws, att, t, "NOT_SUPPORTED", `hot svc ${frame.svc} has no mode`, seq, "unsupported");
  }
}

function hotError(
  room: RoomApi,
  ws: WebSocket,
  att: Attachment,
  t: TenantPolicy,
  code: ErrorCode,
  msg: string,
  seq: number | undefined,
  reason: string,
): void {
  room.decision(t, "hot", t.policy.hot_error_mode === "silent" ? "drop" : "deny", reason);
  if (t.policy.hot_error_mode === "sys_error") room.sendError(ws, att, code, msg, seq);
}
