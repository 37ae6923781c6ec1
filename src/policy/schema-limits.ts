/**
 * The `limits` and `policy` blocks of a tenant: caps on frames, sessions and rooms,
 * rate limits, sessions per user and the ext and hot allowlists. Part of the policy
 * schema (schema.ts).
 */
import { z } from "zod";
import { SVC_RE } from "../protocol/codes.ts";
import { DEFAULTS, expect, EXT_ENTRY_RE, HOT_ENTRY_RE, int, oneOf, positive, show, strict } from "./schema-common.ts";

export const LimitsSchema = strict({
  max_frame_bytes: int(64, 1_048_576).default(DEFAULTS.limits.max_frame_bytes).meta({
    description: "Largest frame (text or binary) a client may send; larger ones are closed with 1009. Default 4096.",
  }),
  max_sessions_total: int(0, undefined, " (0 = unlimited)").default(DEFAULTS.limits.max_sessions_total).meta({
    description: "Sessions of the tenant across all rooms. 0 = unlimited (default).",
  }),
  max_rooms_total: int(0, undefined, " (0 = unlimited)").default(DEFAULTS.limits.max_rooms_total).meta({
    description: "Rooms of the tenant with at least one session. 0 = unlimited (default).",
  }),
  max_users_per_room: int(0, 32768, " (0 = unlimited; a room is one object, which holds at most 32,768 sockets)").default(DEFAULTS.limits.max_users_per_room).meta({
    description: "Distinct users in one room (ghosts included). At most 32,768: a room is one Durable Object, which holds at most that many sockets. 0 = no cap below the runtime's (default).",
  }),
  max_rooms_per_user: int(0, undefined, " (0 = unlimited)").default(DEFAULTS.limits.max_rooms_per_user).meta({
    description: "Rooms one user may be in at once. 0 = unlimited (default).",
  }),
  max_state_bytes: int(1024, 16_777_216).default(DEFAULTS.limits.max_state_bytes).meta({
    description:
      "Hot lane state mode: bytes of kept states per room (each counts its frame plus 64 bytes of bookkeeping; " +
      "at most 64 keys per sender). A frame that would exceed it is RESOURCE_EXHAUSTED. Default 1048576 (1 MiB).",
  }),
});

export const SessionsSchema = strict({
  mode: oneOf(["single", "multi"]).default("multi").meta({
    description: "single: one session per user; multi: up to max_sessions_per_user. Default multi.",
  }),
  max_sessions_per_user: int(1).optional().meta({
    description: "Sessions per user in multi mode (default 4). In single mode omit it or set 1.",
    default: DEFAULTS.policy.sessions.max_sessions_per_user,
  }),
  on_exceed: oneOf(["deny", "kick_oldest"]).default("deny").meta({
    description: "deny: the new session gets 409 TOO_MANY_SESSIONS; kick_oldest: the oldest is closed with 4004. Default deny.",
  }),
}).superRefine((s, ctx) => {
  if (s.mode === "single" && s.max_sessions_per_user !== undefined && s.max_sessions_per_user !== 1) {
    ctx.addIssue({
      code: "custom",
      path: ["max_sessions_per_user"],
      message: `must be 1 or omitted when mode is single, got ${s.max_sessions_per_user}`,
      input: s.max_sessions_per_user,
    });
  }
});

const extEntry = z
  .string({ error: expect('an entry "svc:type" or "svc:*"') })
  .regex(EXT_ENTRY_RE, {
    error: (iss) =>
      `expected an entry "svc:type" or "svc:*" (svc and type match ${SVC_RE.source}), got ${show(iss.input)}`,
  });

const hotEntry = z
  .string({ error: expect('an entry "svc_id:opcode" or "svc_id:*"') })
  .regex(HOT_ENTRY_RE, {
    error: (iss) =>
      `expected an entry "svc_id:opcode" or "svc_id:*" with svc_id 1..255 (0 is reserved) and opcode 0..255 written in decimal, got ${show(iss.input)}`,
  });

export const PolicySchema = strict({
  rate_limit_rps: positive().default(DEFAULTS.policy.rate_limit_rps).meta({
    description: "Token bucket refill rate, messages (text and binary) per second. Default 200.",
  }),
  rate_limit_burst: int(1).default(DEFAULTS.policy.rate_limit_burst).meta({
    description: "Token bucket size. Default 400.",
  }),
  rate_limit_scope: oneOf(["connection", "tenant"]).default("connection").meta({
    description: "One bucket per connection, or one for the whole tenant. Default connection.",
  }),
  rate_limit_action: oneOf(["drop", "error", "close"]).default("drop").meta({
    description: "Over the limit: drop silently, answer sys.error RATE_LIMITED, or close with 4008. Default drop.",
  }),
  sessions: SessionsSchema.prefault({}).meta({ description: "Sessions per user." }),
  ext_allowlist: z
    .array(extEntry, { error: expect("a list of \"svc:type\" or \"svc:*\" entries") })
    .default([...DEFAULTS.policy.ext_allowlist])
    .meta({
      description: 'Ext lane messages clients may send: "svc:type" or "svc:*". Default ["room:join", "room:leave"].',
      uniqueItems: true,
    }),
  hot_allowlist: z
    .array(hotEntry, { error: expect("a list of \"svc_id:opcode\" or \"svc_id:*\" entries") })
    .default([])
    .meta({
      description: 'Hot lane frames clients may send: "svc_id:opcode" or "svc_id:*" (svc_id 1..255, opcode 0..255, decimal; svc_id 0 is reserved for the gateway). Default [].',
      uniqueItems: true,
    }),
  hot_error_mode: oneOf(["sys_error", "silent"]).default("sys_error").meta({
    description: "sys_error: a bad hot frame is answered with sys.error; silent: dropped and counted. Default sys_error.",
  }),
});
