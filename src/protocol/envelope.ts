/**
 * Ext lane envelopes (SPEC section 4): strict JSON text frames.
 *
 *   {"v":1,"svc":"chat","type":"send","flags":4,"seq":12,"room":"match:1","data":{...}}
 *
 * JSON nested deeper than MAX_JSON_DEPTH (64) levels is BAD_REQUEST (json.ts).
 *
 * Field presence is authoritative: SEQ_PRESENT/ROOM_PRESENT mirror it and are not
 * required (the contract's own example sends `flags: 4` with seq and room).
 */
import { checkPattern, checkUint, describeIssue, isObject, unknownKeys, type Issue } from "./check.ts";
import type { ErrorCode } from "./codes.ts";
import { ROOM_RE, SVC_RE } from "./codes.ts";
import { parseJson } from "./json.ts";

export const EXT_FLAG_SEQ = 0x01;
export const EXT_FLAG_ROOM = 0x02;
export const EXT_FLAG_ACK = 0x04;

/** A valid client envelope: only these keys, nothing else copied from the frame. */
export interface ClientEnvelope {
  v: 1;
  svc: string;
  type: string;
  flags?: number;
  seq?: number;
  room?: string;
  data?: unknown;
}

const ENVELOPE_KEYS: ReadonlySet<string> = new Set(["v", "svc", "type", "flags", "seq", "room", "data"]);
const MAX_FLAGS = 0xffffffff;

/**
 * The first thing wrong with an object whose `v` is 1, or null. Checked by
 * hand, in the field order the contract lists (svc, type, flags, seq, room),
 * then unknown fields: this runs on every frame.
 */
function envelopeIssue(raw: Record<string, unknown>): Issue | null {
  const { flags, seq, room } = raw;
  return (
    checkPattern(raw.svc, "svc", SVC_RE, "svc must match ^[a-z0-9_-]{1,32}$") ??
    checkPattern(raw.type, "type", SVC_RE, "type must match ^[a-z0-9_-]{1,32}$") ??
    (flags === undefined ? null : checkUint(flags, "flags", MAX_FLAGS)) ??
    (seq === undefined ? null : checkUint(seq, "seq", Number.MAX_SAFE_INTEGER)) ??
    (room === undefined ? null : checkPattern(room, "room", ROOM_RE, "room is malformed")) ??
    unknownKeys(raw, ENVELOPE_KEYS)
  );
}

export type ParseResult =
  | { ok: true; env: ClientEnvelope; ack: boolean }
  | { ok: false; code: ErrorCode; msg: string; seq?: number };

function echoSeq(raw: unknown): number | undefined {
  if (raw && typeof raw === "object" && !Array.isArray(raw)) {
    const seq = (raw as { seq?: unknown }).seq;
    if (typeof seq === "number" && Number.isSafeInteger(seq) && seq >= 0) return seq;
  }
  return undefined;
}

/**
 * The seq of a frame refused as too deep. JSON.parse itself copes with any
 * depth (only later uses of the value overflow the stack), and nothing but the
 * top-level `seq` is read from the result.
 */
function seqOfTooDeep(text: string): number | undefined {
  try {
    return echoSeq(JSON.parse(text));
  } catch {
    return undefined;
  }
}

/** Parse and validate a client text frame. Never throws. */
export function parseEnvelope(text: string): ParseResult {
  const json = parseJson(text);
  if (!json.ok) {
    const seq = json.error === "too_deep" ? seqOfTooDeep(text) : undefined;
    return { ok: false, code: "BAD_REQUEST", msg: json.msg, seq };
  }
  const raw = json.value;
  if (!isObject(raw)) {
    return { ok: false, code: "BAD_REQUEST", msg: "envelope must be a JSON object" };
  }
  const seq = echoSeq(raw);
  const v = raw.v;
  if (v === undefined) return { ok: false, code: "BAD_REQUEST", msg: "missing v", seq };
  if (v !== 1) return { ok: false, code: "UNSUPPORTED_VERSION", msg: "v must be 1", seq };
  const issue = envelopeIssue(raw);
  if (issue) return { ok: false, code: "BAD_REQUEST", msg: describeIssue(issue, "envelope"), seq };
  // A fresh object with the checked fields only (the frame's own object may hold more).
  const env: ClientEnvelope = { v: 1, svc: raw.svc as string, type: raw.type as string };
  if (raw.flags !== undefined) env.flags = raw.flags as number;
  if (raw.seq !== undefined) env.seq = raw.seq as number;
  if (raw.room !== undefined) env.room = raw.room as string;
  if (raw.data !== undefined) env.data = raw.data;
  const ack = ((env.flags ?? 0) & EXT_FLAG_ACK) !== 0;
  if (ack && env.seq === undefined) {
    return { ok: false, code: "BAD_REQUEST", msg: "ACK_REQUESTED needs a seq" };
  }
  return { ok: true, env, ack };
}

/** Gateway-to-client sys envelope. */
export function sysFrame(type: string, data: unknown, traceId?: string): string {
  return JSON.stringify(
    traceId === undefined ? { v: 1, svc: "sys", type, data } : { v: 1, svc: "sys", type, data, trace_id: traceId },
  );
}

/** `code`: a contract code, or an origin's own (a `reject` action's, `^[A-Z][A-Z0-9_]{0,63}$`). */
export function errorFrame(code: ErrorCode | (string & {}), msg: string, seq?: number, traceId?: string): string {
  return sysFrame("error", seq === undefined ? { code, msg } : { code, msg, seq }, traceId);
}

export interface Sender {
  user: string;
  sid: string;
}

/** An envelope relayed to other members (or sent by an origin), with `from`. */
export function relayFrame(
  svc: string,
  type: string,
  room: string,
  data: unknown,
  from: Sender | null,
  seq?: number,
): string {
  const out: Record<string, unknown> = { v: 1, svc, type, room };
  if (seq !== undefined) out.seq = seq;
  if (data !== undefined) out.data = data;
  if (from) out.from = { user: from.user, sid: from.sid };
  return JSON.stringify(out);
}

/** How much of a text frame `peekSeq` reads. */
export const PEEK_SEQ_CHARS = 1024;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The top-level `seq` of a text frame that will not be parsed (over the size
 * limit, or over the rate limit), so that its `sys.error` still names it
 * (SPEC section 4). Reads at most the first PEEK_SEQ_CHARS characters, tracking
 * strings and nesting so that a `seq` inside `data` is never taken for it;
 * undefined when there is none there (clients put `seq` before `data`).
 */
export function peekSeq(text: string): number | undefined {
  const end = Math.min(text.length, PEEK_SEQ_CHARS);
  let depth = 0;
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const start = ++i;
      while (i < end && text.charCodeAt(i) !== QUOTE) i += text.charCodeAt(i) === BACKSLASH ? 2 : 1;
      if (i >= end) return undefined;
      if (depth === 1 && i - start === 3 && text.startsWith("seq", start)) {
        const m = /^\s*:\s*(\d{1,16})(?![\d.eE])/.exec(text.slice(i + 1, i + 48));
        const n = m ? Number(m[1]) : NaN;
        return Number.isSafeInteger(n) ? n : undefined;
      }
    } else if (c === 0x7b || c === 0x5b) depth++; // { [
    else if (c === 0x7d || c === 0x5d) depth--; // } ]
  }
  return undefined;
}
