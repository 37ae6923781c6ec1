/**
 * The `recovery` block of a tenant (SPEC section 10: resume and missed-message
 * recovery): whether rooms log the ext frames they send, how long a session can
 * come back, how long its presence `leave` and the origins' `close` wait, and the
 * caps on one replay and on the log kept per room. Part of the policy schema
 * (schema.ts); the service-level `recovery: true | false` is in schema-services.ts.
 */
import { bool, DEFAULTS, int, strict } from "./schema-common.ts";

const D = DEFAULTS.recovery;

export const RecoverySchema = strict({
  enabled: bool().default(D.enabled).meta({
    description:
      "Log the ext frames the room sends to members so a session that reconnects within window_s gets what it missed (SPEC section 10). " +
      "A service's own recovery: true | false overrides it. Default false.",
  }),
  window_s: int(1, 86_400).default(D.window_s).meta({
    description:
      "Seconds a session can come back after an abnormal disconnect: its slot stays reserved and a resume can replay what it missed. Default 120.",
  }),
  grace_s: int(0, 86_400, " (at most window_s)").optional().meta({
    description:
      "Seconds the presence leave and the origins' close event of an abnormally disconnected session wait; a resume within it causes neither. " +
      "At most window_s. Default 10 (window_s when that is shorter).",
    default: D.grace_s,
  }),
  max_messages: int(1, 100_000).default(D.max_messages).meta({
    description:
      "The most frames one resume replays; a session that missed more gets recovered: false with reason too_many and resyncs. Default 1000.",
  }),
  max_bytes: int(1024, 67_108_864).default(D.max_bytes).meta({
    description: "Bytes of the log kept per room; beyond it the oldest frames go first. Default 4194304 (4 MiB).",
  }),
}).superRefine((r, ctx) => {
  if (r.grace_s !== undefined && r.grace_s > r.window_s) {
    ctx.addIssue({
      code: "custom",
      path: ["grace_s"],
      message: `expected an integer between 0 and window_s (${r.window_s}), got ${r.grace_s}: the leave and close cannot wait longer than the session is kept`,
      input: r.grace_s,
    });
  }
});
