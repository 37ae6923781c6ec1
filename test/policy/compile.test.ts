/**
 * The policy compiler (src/policy/compile.ts), run inside workerd: the pure
 * compilePolicies() on inline YAML, no fs. Positions are 1-based line:col.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compilePolicies, GENERATED_BANNER, policyJsonSchema, renderModule } from "../../src/policy/compile.ts";
import type { CompiledPolicies, CompiledTenant } from "../../src/policy/types.ts";

const FILE = "policies/t.yaml";

function compileOk(text: string, name = FILE): CompiledPolicies {
  const r = compilePolicies([{ name, text }]);
  if (!r.ok) throw new Error(`expected ok, got:\n${r.errors.join("\n")}`);
  return r.policies;
}

function errorsOf(text: string, name = FILE): string[] {
  const r = compilePolicies([{ name, text }]);
  if (r.ok) throw new Error("expected errors, compiled fine");
  return r.errors;
}

function tenant(p: CompiledPolicies, id: string): CompiledTenant {
  const t = p.tenants.find((x) => x.id === id);
  if (!t) throw new Error(`no tenant ${id}`);
  return t;
}

/** A minimal valid tenant header; tests append keys at 4 spaces. */
const HEAD = "version: 1\ntenants:\n  - id: acme\n    auth: { mode: dev }\n";

const ALL = 0xffffffff;

// The SPEC's example (section 9) without jwks_url, plus two hot opcodes that land in other words.
const FULL = `version: 1

gateway:
  idle_timeout_ms: 60000
  handshake_limit:
    enabled: true
    global_rps: 500
    global_burst: 1000
    per_ip_rps: 10
    per_ip_burst: 20

tenants:
  - id: acme
    auth:
      mode: jwt
      secret_env: ACME_JWT_SECRET
      audience: acme
    allowed_origins: ["https://App.Acme.example", "http://localhost:5173", "https://admin.acme.example:443"]
    presence: true
    api:
      key_env: ACME_API_KEY
    limits:
      max_frame_bytes: 65536
      max_sessions_total: 100000
      max_rooms_total: 10000
      max_users_per_room: 200
      max_rooms_per_user: 0
      max_state_bytes: 524288
    recovery:
      enabled: true
      window_s: 120
      grace_s: 10
      max_messages: 1000
      max_bytes: 4194304
    policy:
      rate_limit_rps: 2000
      rate_limit_burst: 4000
      rate_limit_scope: connection
      rate_limit_action: drop
      sessions:
        mode: multi
        max_sessions_per_user: 4
        on_exceed: deny
      ext_allowlist: ["room:*", "chat:*", "chat:send", "match:ready", "match:go"]
      hot_allowlist: ["1:*", "2:10", "2:33", "2:255", "3:*"]
      hot_error_mode: silent
    services:
      chat:
        url: https://api.acme.example/ws/chat
        secret_env: ACME_WEBHOOK_SECRET
        events: [message, open, close]
        timeout_ms: 2000
        batch_ms: 10
        batch_max: 50
        retry_for_s: 300
        recovery: true
      match:
        handler: broadcast
    hot_services:
      1: { mode: relay }
      2: { mode: echo }
      3: { mode: state, tick_hz: 20 }
`;

describe("compilePolicies: valid input", () => {
  it("compiles the full example to the exact data", () => {
    const p = compileOk(FULL);
    expect(p.version).toBe(1);
    expect(p.gateway).toEqual({
      idle_timeout_ms: 60000,
      handshake_limit: { enabled: true, global_rps: 500, global_burst: 1000, per_ip_rps: 10, per_ip_burst: 20 },
    });
    expect(p.tenants).toHaveLength(1);
    const t = tenant(p, "acme");
    expect(t).toEqual({
      id: "acme",
      source: FILE,
      auth: { mode: "jwt", secret_env: "ACME_JWT_SECRET", jwks_url: null, audience: "acme" },
      // lower case, default port dropped
      allowed_origins: ["https://app.acme.example", "http://localhost:5173", "https://admin.acme.example"],
      presence: true,
      api: { key_env: "ACME_API_KEY" },
      limits: {
        max_frame_bytes: 65536,
        max_sessions_total: 100000,
        max_rooms_total: 10000,
        max_users_per_room: 200,
        max_rooms_per_user: 0,
        max_state_bytes: 524288,
      },
      recovery: { enabled: true, window_s: 120, grace_s: 10, max_messages: 1000, max_bytes: 4194304 },
      policy: {
        rate_limit_rps: 2000,
        rate_limit_burst: 4000,
        rate_limit_scope: "connection",
        rate_limit_action: "drop",
        sessions: { mode: "multi", max_sessions_per_user: 4, on_exceed: "deny" },
        hot_error_mode: "silent",
      },
      // sorted by svc; "chat:*" wins over "chat:send"; types sorted
      ext_allow: [
        ["chat", "*"],
        ["match", ["go", "ready"]],
        ["room", "*"],
      ],
      hot_allow: [
        [1, [ALL, ALL, ALL, ALL, ALL, ALL, ALL, ALL]],
        // op 10 -> word 0 bit 10; op 33 -> word 1 bit 1; op 255 -> word 7 bit 31
        [2, [1024, 2, 0, 0, 0, 0, 0, 2147483648]],
        [3, [ALL, ALL, ALL, ALL, ALL, ALL, ALL, ALL]],
      ],
      services: [
        [
          "chat",
          {
            kind: "origin",
            url: "https://api.acme.example/ws/chat",
            secret_env: "ACME_WEBHOOK_SECRET",
            events: ["open", "close", "message"], // canonical order
            timeout_ms: 2000,
            batch_ms: 10,
            batch_max: 50,
            retry_for_s: 300,
            recovery: true,
          },
        ],
        ["match", { kind: "broadcast", recovery: true }], // the tenant's recovery.enabled
      ],
      hot_services: [
        [1, { mode: "relay", coalesce: false }],
        [2, { mode: "echo" }],
        [3, { mode: "state", tick_hz: 20 }],
      ],
    });
    // bitmap words are u32 numbers
    for (const [, words] of t.hot_allow) {
      expect(words).toHaveLength(8);
      for (const w of words) expect(Number.isInteger(w) && w >= 0 && w <= ALL).toBe(true);
    }
  });

  it("applies every default to a minimal tenant, and gateway defaults when no file has the block", () => {
    const p = compileOk(HEAD);
    expect(p.gateway).toEqual({
      idle_timeout_ms: 60000,
      handshake_limit: { enabled: false, global_rps: 100, global_burst: 200, per_ip_rps: 10, per_ip_burst: 50 },
    });
    expect(tenant(p, "acme")).toEqual({
      id: "acme",
      source: FILE,
      auth: { mode: "dev" },
      allowed_origins: [],
      presence: false,
      api: null,
      limits: {
        max_frame_bytes: 4096,
        max_sessions_total: 0,
        max_rooms_total: 0,
        max_users_per_room: 0,
        max_rooms_per_user: 0,
        max_state_bytes: 1048576,
      },
      recovery: { enabled: false, window_s: 120, grace_s: 10, max_messages: 1000, max_bytes: 4194304 },
      policy: {
        rate_limit_rps: 200,
        rate_limit_burst: 400,
        rate_limit_scope: "connection",
        rate_limit_action: "drop",
        sessions: { mode: "multi", max_sessions_per_user: 4, on_exceed: "deny" },
        hot_error_mode: "sys_error",
      },
      ext_allow: [["room", ["join", "leave"]]],
      hot_allow: [],
      services: [],
      hot_services: [],
    });
  });

  it("fills partial blocks with defaults and applies origin-service and auth defaults", () => {
    const p = compileOk(`version: 1
gateway:
  handshake_limit: { enabled: true }
tenants:
  - id: o
    auth: { mode: origin, origin_url: "http://127.0.0.1:9000/auth", secret_env: AUTH_SECRET }
    policy:
      ext_allowlist: ["hook:*"]
    services:
      hook: { url: "https://origin.example/hook", secret_env: HOOK_SECRET }
    hot_services:
      7: { mode: state }
`);
    expect(p.gateway.handshake_limit).toEqual({
      enabled: true,
      global_rps: 100,
      global_burst: 200,
      per_ip_rps: 10,
      per_ip_burst: 50,
    });
    const t = tenant(p, "o");
    expect(t.auth).toEqual({ mode: "origin", origin_url: "http://127.0.0.1:9000/auth", secret_env: "AUTH_SECRET", cache_s: 60 });
    expect(t.services).toEqual([
      [
        "hook",
        {
          kind: "origin",
          url: "https://origin.example/hook",
          secret_env: "HOOK_SECRET",
          events: ["message"],
          timeout_ms: 5000,
          batch_ms: 0,
          batch_max: 50,
          retry_for_s: 300,
          recovery: false,
        },
      ],
    ]);
    expect(t.hot_services).toEqual([[7, { mode: "state", tick_hz: 20 }]]);
    expect(t.ext_allow).toEqual([["hook", "*"]]);
  });

  it("compiles single session mode to max_sessions_per_user 1 (omitted or 1)", () => {
    for (const extra of ["", "\n        max_sessions_per_user: 1"]) {
      const p = compileOk(`${HEAD}    policy:\n      sessions:\n        mode: single\n        on_exceed: kick_oldest${extra}\n`);
      expect(tenant(p, "acme").policy.sessions).toEqual({ mode: "single", max_sessions_per_user: 1, on_exceed: "kick_oldest" });
    }
  });

  it("compiles a policies/default.yaml-like file", () => {
    const p = compileOk(
      `# yaml-language-server: $schema=./policy.schema.json
version: 1

gateway:
  idle_timeout_ms: 60000
  handshake_limit:
    enabled: true
    global_rps: 500
    global_burst: 1000
    per_ip_rps: 20
    per_ip_burst: 40

tenants:
  - id: demo
    auth:
      mode: dev                      # tickets are dev:<user>
    presence: true
    limits:
      max_frame_bytes: 65536
      max_users_per_room: 200
    policy:
      rate_limit_rps: 200
      rate_limit_burst: 400
      rate_limit_action: error
      sessions:
        mode: multi
        max_sessions_per_user: 8
      ext_allowlist: ["room:*", "chat:*"]
      hot_allowlist: ["1:*", "2:*"]
      hot_error_mode: sys_error
    services:
      chat:
        handler: broadcast
    hot_services:
      1: { mode: relay }
      2: { mode: echo }
`,
      "policies/default.yaml",
    );
    const t = tenant(p, "demo");
    expect(t.source).toBe("policies/default.yaml");
    expect(t.auth).toEqual({ mode: "dev" });
    expect(t.limits.max_users_per_room).toBe(200);
    expect(t.policy.rate_limit_action).toBe("error");
    expect(t.policy.sessions.max_sessions_per_user).toBe(8);
    expect(t.ext_allow).toEqual([
      ["chat", "*"],
      ["room", "*"],
    ]);
    expect(t.hot_allow.map(([id]) => id)).toEqual([1, 2]);
    expect(t.services).toEqual([["chat", { kind: "broadcast", recovery: false }]]);
    expect(p.gateway.handshake_limit.per_ip_burst).toBe(40);
  });

  it("merges several files: tenants sorted by id, gateway from the one file that has it", () => {
    const r = compilePolicies([
      { name: "policies/a.yaml", text: "version: 1\ntenants:\n  - { id: zeta, auth: { mode: dev } }\n" },
      { name: "policies/b.yaml", text: "version: 1\ngateway: { idle_timeout_ms: 5000 }\ntenants:\n  - { id: alpha, auth: { mode: dev } }\n" },
      { name: "policies/c.yaml", text: "version: 1\n" },
    ]);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.policies.tenants.map((t) => [t.id, t.source])).toEqual([
      ["alpha", "policies/b.yaml"],
      ["zeta", "policies/a.yaml"],
    ]);
    expect(r.policies.gateway.idle_timeout_ms).toBe(5000);
  });

  it("accepts an explicit empty ext_allowlist (nothing allowed) and http origins for localhost JWKS", () => {
    const p = compileOk(`version: 1
tenants:
  - id: j
    auth: { mode: jwt, jwks_url: "http://localhost:8080/jwks.json" }
    policy: { ext_allowlist: [] }
`);
    const t = tenant(p, "j");
    expect(t.ext_allow).toEqual([]);
    expect(t.auth).toEqual({ mode: "jwt", secret_env: null, jwks_url: "http://localhost:8080/jwks.json", audience: null });
  });
});

describe("compilePolicies: errors with file:line:col and key path", () => {
  it("unknown key at top level", () => {
    expect(errorsOf("version: 1\nfoo: 1\n")).toEqual([
      'policies/t.yaml:2:1: foo: unknown key "foo" (expected one of: version, gateway, tenants)',
    ]);
  });

  it("unknown key in a tenant, with a suggestion", () => {
    expect(errorsOf(`${HEAD}    presense: true\n`)).toEqual([
      'policies/t.yaml:5:5: tenants[0].presense: unknown key "presense", did you mean "presence"?',
    ]);
  });

  it("unknown key in the nested policy block", () => {
    expect(errorsOf(`${HEAD}    policy:\n      sessions:\n        mode: multi\n        kick: true\n`)).toEqual([
      'policies/t.yaml:8:9: tenants[0].policy.sessions.kick: unknown key "kick" (expected one of: mode, max_sessions_per_user, on_exceed)',
    ]);
  });

  it("wrong type", () => {
    expect(errorsOf(`${HEAD}    presence: "yes"\n    limits: []\n`)).toEqual([
      'policies/t.yaml:5:15: tenants[0].presence: expected true or false, got "yes"',
      "policies/t.yaml:6:13: tenants[0].limits: expected a mapping, got a list",
    ]);
  });

  it("out-of-range number", () => {
    expect(errorsOf(`${HEAD}    limits:\n      max_frame_bytes: 10\n      max_users_per_room: 70000\n      max_state_bytes: 16777217\n`)).toEqual([
      "policies/t.yaml:6:24: tenants[0].limits.max_frame_bytes: expected an integer between 64 and 1048576, got 10",
      "policies/t.yaml:7:27: tenants[0].limits.max_users_per_room: expected an integer between 0 and 32768 (0 = unlimited; a room is one object, which holds at most 32,768 sockets), got 70000",
      "policies/t.yaml:8:24: tenants[0].limits.max_state_bytes: expected an integer between 1024 and 16777216, got 16777217",
    ]);
    expect(errorsOf(`${HEAD}    policy: { rate_limit_rps: 0, rate_limit_burst: 1.5 }\n`)).toEqual([
      "policies/t.yaml:5:31: tenants[0].policy.rate_limit_rps: expected a number greater than 0, got 0",
      "policies/t.yaml:5:52: tenants[0].policy.rate_limit_burst: expected an integer >= 1, got 1.5",
    ]);
  });

  it("bad enum, and a bad or missing auth mode", () => {
    expect(errorsOf(`${HEAD}    policy:\n      rate_limit_action: kick\n`)).toEqual([
      'policies/t.yaml:6:26: tenants[0].policy.rate_limit_action: expected one of: drop, error, close, got "kick"',
    ]);
    expect(errorsOf("version: 1\ntenants:\n  - id: a\n    auth: { mode: oauth }\n")).toEqual([
      'policies/t.yaml:4:19: tenants[0].auth.mode: expected one of: jwt, origin, dev, got "oauth"',
    ]);
    expect(errorsOf("version: 1\ntenants:\n  - id: a\n    auth: { secret_env: X }\n")).toEqual([
      "policies/t.yaml:4:11: tenants[0].auth.mode: required (expected one of: jwt, origin, dev)",
    ]);
  });

  it("missing required keys point at the parent mapping", () => {
    expect(errorsOf("tenants:\n  - auth: { mode: jwt }\n")).toEqual([
      "policies/t.yaml:1:1: version: required (expected 1 (the policy format version))",
      "policies/t.yaml:2:5: tenants[0].id: required (expected a tenant id)",
      "policies/t.yaml:2:11: tenants[0].auth: jwt auth needs secret_env (HS256), jwks_url, or both",
    ]);
  });

  it("bad ext allowlist entries", () => {
    expect(errorsOf(`${HEAD}    policy:\n      ext_allowlist: ["chat", "Chat:send", "chat:*:x", 5]\n`)).toEqual([
      'policies/t.yaml:6:23: tenants[0].policy.ext_allowlist[0]: expected an entry "svc:type" or "svc:*" (svc and type match ^[a-z0-9_-]{1,32}$), got "chat"',
      'policies/t.yaml:6:31: tenants[0].policy.ext_allowlist[1]: expected an entry "svc:type" or "svc:*" (svc and type match ^[a-z0-9_-]{1,32}$), got "Chat:send"',
      'policies/t.yaml:6:44: tenants[0].policy.ext_allowlist[2]: expected an entry "svc:type" or "svc:*" (svc and type match ^[a-z0-9_-]{1,32}$), got "chat:*:x"',
      'policies/t.yaml:6:56: tenants[0].policy.ext_allowlist[3]: expected an entry "svc:type" or "svc:*", got 5',
    ]);
  });

  it("bad hot allowlist entries", () => {
    const msg = 'expected an entry "svc_id:opcode" or "svc_id:*" with svc_id 1..255 (0 is reserved) and opcode 0..255 written in decimal';
    expect(errorsOf(`${HEAD}    policy:\n      hot_allowlist: ["1:256", "x:1", "01:2", "1"]\n`)).toEqual([
      `policies/t.yaml:6:23: tenants[0].policy.hot_allowlist[0]: ${msg}, got "1:256"`,
      `policies/t.yaml:6:32: tenants[0].policy.hot_allowlist[1]: ${msg}, got "x:1"`,
      `policies/t.yaml:6:39: tenants[0].policy.hot_allowlist[2]: ${msg}, got "01:2"`,
      `policies/t.yaml:6:47: tenants[0].policy.hot_allowlist[3]: ${msg}, got "1"`,
    ]);
  });

  it("duplicate allowlist entries", () => {
    expect(
      errorsOf(`${HEAD}    policy:\n      ext_allowlist: ["room:join", "room:join"]\n      hot_allowlist: ["1:2", "1:2"]\n    hot_services:\n      1: { mode: relay }\n`),
    ).toEqual([
      'policies/t.yaml:6:36: tenants[0].policy.ext_allowlist[1]: duplicate entry "room:join" (already at index 0)',
      'policies/t.yaml:7:30: tenants[0].policy.hot_allowlist[1]: duplicate entry "1:2" (already at index 0)',
    ]);
  });

  it("hot svc_id in hot_allowlist without hot_services", () => {
    expect(errorsOf(`${HEAD}    policy:\n      hot_allowlist: ["1:*", "9:3"]\n    hot_services:\n      1: { mode: echo }\n`)).toEqual([
      "policies/t.yaml:6:30: tenants[0].policy.hot_allowlist[1]: hot svc_id 9 is not defined in tenants[0].hot_services",
    ]);
  });

  it("ext svc in ext_allowlist without services (room and sys are built in)", () => {
    expect(errorsOf(`${HEAD}    policy:\n      ext_allowlist: ["room:*", "sys:refresh", "chat:send"]\n`)).toEqual([
      'policies/t.yaml:6:48: tenants[0].policy.ext_allowlist[2]: service "chat" is not defined in tenants[0].services (built in: room, sys)',
    ]);
    expect(errorsOf(`${HEAD}    policy:\n      ext_allowlist: ["room:enter"]\n`)).toEqual([
      'policies/t.yaml:6:23: tenants[0].policy.ext_allowlist[0]: the built-in room service has the types join and leave, got "room:enter"',
    ]);
  });

  it("duplicate tenant ids across two files: reported at the second", () => {
    const r = compilePolicies([
      { name: "policies/a.yaml", text: "version: 1\ntenants:\n  - id: acme\n    auth: { mode: dev }\n" },
      { name: "policies/b.yaml", text: "version: 1\ntenants:\n  - id: other\n    auth: { mode: dev }\n  - id: acme\n    auth: { mode: dev }\n" },
    ]);
    expect(r).toEqual({
      ok: false,
      errors: ['policies/b.yaml:5:9: tenants[1].id: duplicate tenant id "acme"; already defined at policies/a.yaml:3:9'],
    });
  });

  it("two gateway blocks", () => {
    const r = compilePolicies([
      { name: "policies/a.yaml", text: "version: 1\ngateway:\n  idle_timeout_ms: 1000\n" },
      { name: "policies/b.yaml", text: "# second\nversion: 1\ngateway: {}\n" },
    ]);
    expect(r).toEqual({
      ok: false,
      errors: ["policies/b.yaml:3:1: gateway: only one file may define the gateway block; already defined at policies/a.yaml:2:1"],
    });
  });

  it("bad env var names, and secrets in place of names are not echoed", () => {
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const errors = errorsOf(`${HEAD}    api: { key_env: acme-api-key }
    policy: { ext_allowlist: ["chat:*"] }
    services:
      chat: { url: "https://o.example/c", secret_env: "${secret}" }
`);
    expect(errors).toEqual([
      'policies/t.yaml:5:21: tenants[0].api.key_env: expected an env var name like ACME_API_KEY (A-Z, 0-9 and _, not starting with a digit), got "acme-api-key"',
      "policies/t.yaml:8:55: tenants[0].services.chat.secret_env: expected an env var name like ACME_API_KEY (A-Z, 0-9 and _, not starting with a digit), got what looks like a secret (value not shown): never put secrets in policies, store it with `wrangler secret put NAME` and give NAME here",
    ]);
    expect(errors.join("\n")).not.toContain(secret);
  });

  it("URLs: scheme, https for JWKS, no credentials", () => {
    expect(
      errorsOf(`version: 1
tenants:
  - id: a
    auth: { mode: jwt, jwks_url: "http://id.example/jwks" }
    policy: { ext_allowlist: ["c:*", "d:*"] }
    services:
      c: { url: "ftp://o.example/", secret_env: C }
      d: { url: "https://user:pw@o.example/", secret_env: D }
`),
    ).toEqual([
      'policies/t.yaml:4:34: tenants[0].auth.jwks_url: expected an https:// URL (http:// only for localhost), got "http://id.example/jwks": it must use https:// (http:// is only allowed for localhost and 127.0.0.1)',
      'policies/t.yaml:7:17: tenants[0].services.c.url: expected an http:// or https:// URL, got "ftp://o.example/": it must start with https:// or http://',
      'policies/t.yaml:8:17: tenants[0].services.d.url: expected an http:// or https:// URL, got "https://user:pw@o.example/": it must not contain credentials (user:password@): secrets never go in policies',
    ]);
  });

  it("invalid YAML syntax, with the yaml library's position", () => {
    expect(errorsOf("version: 1\ntenants: [\n")).toEqual([
      "policies/t.yaml:3:1: (root): invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ]);
    expect(errorsOf("version: 1\ngateway:\n  idle_timeout_ms: 1000\n    x: 1\n")).toEqual([
      "policies/t.yaml:3:20: gateway.idle_timeout_ms: invalid YAML: Nested mappings are not allowed in compact mappings",
      "policies/t.yaml:3:20: gateway.idle_timeout_ms: invalid YAML: Implicit keys need to be on a single line",
    ]);
    expect(errorsOf("version: 1\n\tgateway: {}\n")[0]).toMatch(/^policies\/t\.yaml:2:1: .*invalid YAML: /);
  });

  it("duplicate keys", () => {
    expect(errorsOf("version: 1\ngateway:\n  idle_timeout_ms: 1000\n  idle_timeout_ms: 2000\n")).toEqual([
      "policies/t.yaml:4:3: gateway.idle_timeout_ms: invalid YAML: Map keys must be unique",
    ]);
    // 1 and "1" are different YAML keys but the same svc_id
    expect(errorsOf(`${HEAD}    hot_services:\n      1: { mode: relay }\n      "1": { mode: echo }\n`)).toEqual([
      'policies/t.yaml:7:7: tenants[0].hot_services.1: duplicate key "1"',
    ]);
  });

  it("a file that is not a mapping", () => {
    expect(errorsOf("- version: 1\n")).toEqual(["policies/t.yaml:1:1: (root): expected a mapping with version: 1, got a list"]);
    expect(errorsOf("")).toEqual(["policies/t.yaml:1:1: (root): expected a mapping with version: 1, got an empty file"]);
    expect(errorsOf("# only a comment\n\n42\n")).toEqual(["policies/t.yaml:3:1: (root): expected a mapping with version: 1, got 42"]);
  });

  it("single session mode with max_sessions_per_user: 3", () => {
    expect(errorsOf(`${HEAD}    policy:\n      sessions:\n        mode: single\n        max_sessions_per_user: 3\n`)).toEqual([
      "policies/t.yaml:8:32: tenants[0].policy.sessions.max_sessions_per_user: must be 1 or omitted when mode is single, got 3",
    ]);
  });

  it("reserved service names", () => {
    expect(errorsOf(`${HEAD}    services:\n      room: { handler: broadcast }\n      sys: { handler: broadcast }\n`)).toEqual([
      'policies/t.yaml:6:7: tenants[0].services.room: "room" is a reserved service name (built in: room, sys)',
      'policies/t.yaml:7:7: tenants[0].services.sys: "sys" is a reserved service name (built in: room, sys)',
    ]);
  });

  it("services: the branch is chosen by the handler key", () => {
    expect(
      errorsOf(`${HEAD}    services:\n      a: { handler: relay }\n      b: { url: "https://o.example/" }\n      c: broadcast\n      d: { handler: broadcast, url: "https://o.example/" }\n`),
    ).toEqual([
      'policies/t.yaml:6:21: tenants[0].services.a.handler: expected broadcast (the only built-in handler), got "relay"',
      "policies/t.yaml:7:10: tenants[0].services.b.secret_env: required (expected an env var name like ACME_API_KEY (A-Z, 0-9 and _, not starting with a digit))",
      "policies/t.yaml:8:10: tenants[0].services.c: expected a service: {handler: broadcast} or an origin {url, secret_env, ...}, got \"broadcast\"",
      'policies/t.yaml:9:32: tenants[0].services.d.url: unknown key "url" (expected one of: handler, recovery)',
    ]);
  });

  it("hot services: bad svc_id, bad mode, tick_hz only in state mode", () => {
    expect(
      errorsOf(`${HEAD}    hot_services:\n      256: { mode: relay }\n      1: { mode: fast }\n      2: { mode: relay, tick_hz: 10 }\n      3: { mode: state, tick_hz: 121 }\n`),
    ).toEqual([
      'policies/t.yaml:6:7: tenants[0].hot_services.256: expected a hot svc_id, an integer 1..255 in decimal (0 is reserved for the gateway), got "256"',
      'policies/t.yaml:7:18: tenants[0].hot_services.1.mode: expected one of: relay, echo, state, got "fast"',
      'policies/t.yaml:8:25: tenants[0].hot_services.2.tick_hz: unknown key "tick_hz" (expected one of: mode, coalesce)',
      "policies/t.yaml:9:34: tenants[0].hot_services.3.tick_hz: expected an integer between 1 and 120, got 121",
    ]);
  });

  it("hot services: coalesce is a boolean of relay services only", () => {
    const p = compileOk(`${HEAD}    hot_services:\n      1: { mode: relay, coalesce: true }\n      2: { mode: relay, coalesce: false }\n      3: { mode: relay }\n`);
    expect(tenant(p, "acme").hot_services).toEqual([
      [1, { mode: "relay", coalesce: true }],
      [2, { mode: "relay", coalesce: false }],
      [3, { mode: "relay", coalesce: false }],
    ]);
    expect(
      errorsOf(`${HEAD}    hot_services:\n      1: { mode: echo, coalesce: true }\n      2: { mode: state, coalesce: false }\n      3: { mode: relay, coalesce: "yes" }\n`),
    ).toEqual([
      'policies/t.yaml:6:24: tenants[0].hot_services.1.coalesce: unknown key "coalesce" (expected one of: mode)',
      'policies/t.yaml:7:25: tenants[0].hot_services.2.coalesce: unknown key "coalesce" (expected one of: mode, tick_hz)',
      'policies/t.yaml:8:35: tenants[0].hot_services.3.coalesce: expected true or false, got "yes"',
    ]);
  });

  it("allowed_origins: syntax and duplicates after normalisation", () => {
    expect(
      errorsOf(`${HEAD}    allowed_origins: ["https://a.example/", "https://*.a.example", "https://A.example", "https://a.example:443", "null"]\n`),
    ).toEqual([
      'policies/t.yaml:5:23: tenants[0].allowed_origins[0]: expected an origin "scheme://host[:port]" (no path, no trailing slash, no wildcard), got "https://a.example/"',
      'policies/t.yaml:5:45: tenants[0].allowed_origins[1]: expected an origin "scheme://host[:port]" (no path, no trailing slash, no wildcard), got "https://*.a.example"',
      'policies/t.yaml:5:89: tenants[0].allowed_origins[3]: duplicate origin "https://a.example" (already at index 2)',
      'policies/t.yaml:5:114: tenants[0].allowed_origins[4]: expected an origin "scheme://host[:port]" (no path, no trailing slash, no wildcard), got "null"',
    ]);
  });

  it("tenant id syntax and version", () => {
    expect(errorsOf("version: 2\ntenants:\n  - id: Acme\n    auth: { mode: dev }\n")).toEqual([
      "policies/t.yaml:1:10: version: expected 1 (the policy format version), got 2",
      "policies/t.yaml:3:9: tenants[0].id: expected a tenant id matching ^[a-z0-9][a-z0-9_-]{0,63}$, got \"Acme\"",
    ]);
  });

  it("reports every error of every file, in file order then position order", () => {
    const r = compilePolicies([
      { name: "policies/a.yaml", text: "version: 1\nbar: 2\nfoo: 1\n" },
      { name: "policies/b.yaml", text: "version: 1\ntenants: {}\n" },
    ]);
    expect(r).toEqual({
      ok: false,
      errors: [
        'policies/a.yaml:2:1: bar: unknown key "bar" (expected one of: version, gateway, tenants)',
        'policies/a.yaml:3:1: foo: unknown key "foo" (expected one of: version, gateway, tenants)',
        "policies/b.yaml:2:10: tenants: expected a list of tenants, got a mapping",
      ],
    });
  });

  it("YAML anchors and aliases expand; recursive and unknown aliases are errors", () => {
    const p = compileOk(`version: 1
tenants:
  - id: a
    auth: &dev { mode: dev }
    limits: &lim { max_frame_bytes: 1024 }
  - id: b
    auth: *dev
    limits: *lim
`);
    expect(tenant(p, "b").limits.max_frame_bytes).toBe(1024);
    expect(errorsOf("version: 1\ntenants: &t [*t]\n")).toEqual([
      "policies/t.yaml:2:14: tenants[0]: alias *t refers to a node that contains it",
    ]);
    expect(errorsOf("version: 1\ngateway: *nope\n")).toEqual(["policies/t.yaml:2:10: gateway: unknown alias *nope"]);
  });

  it("rejects non-core YAML tags", () => {
    expect(errorsOf("version: !!binary aGVsbG8=\n")).toHaveLength(1);
    expect(errorsOf("version: !!binary aGVsbG8=\n")[0]).toMatch(/^policies\/t\.yaml:1:\d+: version: unsupported YAML tag !!binary$/);
  });
});

describe("recovery (SPEC sections 9 and 10)", () => {
  const DEFAULT_RECOVERY = { enabled: false, window_s: 120, grace_s: 10, max_messages: 1000, max_bytes: 4194304 };
  const SERVICES = `    services:
      chat: { url: "https://o.example/chat", secret_env: CHAT_SECRET }
      match: { handler: broadcast }
`;

  it("fills every default: block omitted, empty, or partial; services follow the tenant", () => {
    for (const block of ["", "    recovery: {}\n", "    recovery:\n      enabled: false\n"]) {
      const t = tenant(compileOk(`${HEAD}${block}${SERVICES}`), "acme");
      expect(t.recovery).toEqual(DEFAULT_RECOVERY);
      expect(t.services.map(([name, s]) => [name, s.kind, s.recovery])).toEqual([
        ["chat", "origin", false],
        ["match", "broadcast", false],
      ]);
    }
    const t = tenant(compileOk(`${HEAD}    recovery: { enabled: true, max_bytes: 1024 }\n${SERVICES}`), "acme");
    expect(t.recovery).toEqual({ ...DEFAULT_RECOVERY, enabled: true, max_bytes: 1024 });
    expect(t.services.map(([, s]) => s.recovery)).toEqual([true, true]);
  });

  it("keeps every value given, at both ends of each range", () => {
    const low = tenant(
      compileOk(`${HEAD}    recovery:\n      enabled: true\n      window_s: 1\n      grace_s: 0\n      max_messages: 1\n      max_bytes: 1024\n`),
      "acme",
    );
    expect(low.recovery).toEqual({ enabled: true, window_s: 1, grace_s: 0, max_messages: 1, max_bytes: 1024 });
    const high = tenant(
      compileOk(`${HEAD}    recovery: { window_s: 86400, grace_s: 86400, max_messages: 100000, max_bytes: 67108864 }\n`),
      "acme",
    );
    expect(high.recovery).toEqual({ enabled: false, window_s: 86400, grace_s: 86400, max_messages: 100000, max_bytes: 67108864 });
  });

  it("an omitted grace_s is capped at a window_s shorter than its default", () => {
    expect(tenant(compileOk(`${HEAD}    recovery: { window_s: 5 }\n`), "acme").recovery.grace_s).toBe(5);
    expect(tenant(compileOk(`${HEAD}    recovery: { window_s: 10 }\n`), "acme").recovery.grace_s).toBe(10);
    expect(tenant(compileOk(`${HEAD}    recovery: { window_s: 11 }\n`), "acme").recovery.grace_s).toBe(10);
  });

  it("a service's own recovery overrides the tenant's, both ways, for origins and broadcast", () => {
    const services = `    services:
      a: { url: "https://o.example/a", secret_env: A, recovery: true }
      b: { url: "https://o.example/b", secret_env: B, recovery: false }
      c: { url: "https://o.example/c", secret_env: C }
      d: { handler: broadcast, recovery: true }
      e: { handler: broadcast, recovery: false }
      f: { handler: broadcast }
`;
    const on = tenant(compileOk(`${HEAD}    recovery: { enabled: true }\n${services}`), "acme");
    expect(on.services.map(([name, s]) => [name, s.recovery])).toEqual([
      ["a", true],
      ["b", false],
      ["c", true],
      ["d", true],
      ["e", false],
      ["f", true],
    ]);
    const off = tenant(compileOk(`${HEAD}${services}`), "acme");
    expect(off.recovery.enabled).toBe(false);
    expect(off.services.map(([name, s]) => [name, s.recovery])).toEqual([
      ["a", true],
      ["b", false],
      ["c", false],
      ["d", true],
      ["e", false],
      ["f", false],
    ]);
    expect(off.services[3]).toEqual(["d", { kind: "broadcast", recovery: true }]);
  });

  it("grace_s longer than window_s (given or default) is an error at grace_s", () => {
    expect(errorsOf(`${HEAD}    recovery:\n      window_s: 30\n      grace_s: 31\n`)).toEqual([
      "policies/t.yaml:7:16: tenants[0].recovery.grace_s: expected an integer between 0 and window_s (30), got 31: the leave and close cannot wait longer than the session is kept",
    ]);
    expect(errorsOf(`${HEAD}    recovery: { grace_s: 121 }\n`)).toEqual([
      "policies/t.yaml:5:26: tenants[0].recovery.grace_s: expected an integer between 0 and window_s (120), got 121: the leave and close cannot wait longer than the session is kept",
    ]);
  });

  it("wrong types and out-of-range values", () => {
    expect(
      errorsOf(
        `${HEAD}    recovery:\n      enabled: "yes"\n      window_s: 1.5\n      grace_s: -1\n      max_messages: 0\n      max_bytes: 67108865\n`,
      ),
    ).toEqual([
      'policies/t.yaml:6:16: tenants[0].recovery.enabled: expected true or false, got "yes"',
      "policies/t.yaml:7:17: tenants[0].recovery.window_s: expected an integer between 1 and 86400, got 1.5",
      "policies/t.yaml:8:16: tenants[0].recovery.grace_s: expected an integer between 0 and 86400 (at most window_s), got -1",
      "policies/t.yaml:9:21: tenants[0].recovery.max_messages: expected an integer between 1 and 100000, got 0",
      "policies/t.yaml:10:18: tenants[0].recovery.max_bytes: expected an integer between 1024 and 67108864, got 67108865",
    ]);
    expect(errorsOf(`${HEAD}    recovery: { window_s: 86401, max_messages: 100001, max_bytes: 1023 }\n`)).toEqual([
      "policies/t.yaml:5:27: tenants[0].recovery.window_s: expected an integer between 1 and 86400, got 86401",
      "policies/t.yaml:5:48: tenants[0].recovery.max_messages: expected an integer between 1 and 100000, got 100001",
      "policies/t.yaml:5:67: tenants[0].recovery.max_bytes: expected an integer between 1024 and 67108864, got 1023",
    ]);
    // The tenant key is a block; only a service's recovery is a boolean.
    expect(
      errorsOf(`${HEAD}    recovery: true\n    services:\n      a: { handler: broadcast, recovery: "on" }\n      b: { url: "https://o.example/b", secret_env: B, recovery: 1 }\n`),
    ).toEqual([
      "policies/t.yaml:5:15: tenants[0].recovery: expected a mapping, got true",
      'policies/t.yaml:7:42: tenants[0].services.a.recovery: expected true or false, got "on"',
      "policies/t.yaml:8:65: tenants[0].services.b.recovery: expected true or false, got 1",
    ]);
  });

  it("unknown keys inside the block, and recovery on a hot service", () => {
    expect(errorsOf(`${HEAD}    recovery:\n      max_message: 60\n      replay: true\n    hot_services:\n      1: { mode: relay, recovery: true }\n`)).toEqual([
      'policies/t.yaml:6:7: tenants[0].recovery.max_message: unknown key "max_message", did you mean "max_messages"?',
      'policies/t.yaml:7:7: tenants[0].recovery.replay: unknown key "replay" (expected one of: enabled, window_s, grace_s, max_messages, max_bytes)',
      'policies/t.yaml:9:25: tenants[0].hot_services.1.recovery: unknown key "recovery" (expected one of: mode, coalesce)',
    ]);
  });

  it("is in the JSON Schema with its descriptions and defaults", () => {
    type Props = Record<string, { default?: unknown; description?: string; type?: string; properties?: Props }>;
    const s = policyJsonSchema() as { properties: { tenants: { items: { properties: Props } } } };
    const r = s.properties.tenants.items.properties.recovery!;
    expect(r.type).toBe("object");
    expect(Object.fromEntries(Object.entries(r.properties!).map(([k, v]) => [k, v.default]))).toEqual(DEFAULT_RECOVERY);
    for (const v of Object.values(r.properties!)) expect(v.description).toMatch(/Default /);
    const json = JSON.stringify(s);
    expect(json.match(/"recovery":\{"description":"Log this service's frames for resume[^"]*","type":"boolean"\}/g)).toHaveLength(2);
  });
});

describe("compilePolicies: prototype safety", () => {
  it("services named constructor, toString, hasOwnProperty compile as ordinary names", () => {
    const p = compileOk(`${HEAD}    policy:
      ext_allowlist: ["constructor:*", "tostring:x"]
    services:
      constructor: { handler: broadcast }
      tostring: { handler: broadcast }
      valueof: { url: "https://o.example/", secret_env: V }
`);
    const t = tenant(p, "acme");
    expect(t.services.map(([name]) => name)).toEqual(["constructor", "tostring", "valueof"]);
    expect(t.ext_allow).toEqual([
      ["constructor", "*"],
      ["tostring", ["x"]],
    ]);
    expect(({} as Record<string, unknown>).handler).toBeUndefined();
    expect(Object.getPrototypeOf({})).toBe(Object.prototype);
  });

  it("an allowlist naming an inherited property is not mistaken for a defined service", () => {
    expect(errorsOf(`${HEAD}    policy:\n      ext_allowlist: ["constructor:*"]\n    services: {}\n`)).toEqual([
      'policies/t.yaml:6:23: tenants[0].policy.ext_allowlist[0]: service "constructor" is not defined in tenants[0].services (built in: room, sys)',
    ]);
  });

  it("a __proto__ key is rejected with a clear message and pollutes nothing", () => {
    const errors = errorsOf(`${HEAD}    services:\n      __proto__: { handler: broadcast, polluted: true }\n__proto__: { polluted: true }\n`);
    expect(errors).toEqual([
      'policies/t.yaml:6:7: tenants[0].services.__proto__: the key "__proto__" is not allowed',
      'policies/t.yaml:7:1: __proto__: the key "__proto__" is not allowed',
    ]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).handler).toBeUndefined();
  });
});

describe("compilePolicies: never throws", () => {
  const LINE = /^policies\/t\.yaml:\d+:\d+: \S.*: .+$/;
  function check(text: string): void {
    const r = compilePolicies([{ name: FILE, text }]);
    if (r.ok) return;
    expect(r.errors.length).toBeGreaterThan(0);
    for (const e of r.errors) {
      expect(e).toMatch(LINE);
      expect(e).not.toContain("internal compiler error");
    }
  }

  it("for arbitrary strings as YAML text", () => {
    fc.assert(fc.property(fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.string({ unit: "grapheme-ascii" })), check), {
      numRuns: 300,
    });
  });

  it("for arbitrary JSON values (JSON is YAML)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => check(JSON.stringify(v))),
      { numRuns: 300 },
    );
  });

  it("for random edits of a valid policy", () => {
    fc.assert(
      fc.property(fc.nat(FULL.length - 1), fc.string({ maxLength: 4 }), fc.nat(3), (at, insert, cut) =>
        check(FULL.slice(0, at) + insert + FULL.slice(at + cut)),
      ),
      { numRuns: 300 },
    );
  });
});

describe("renderModule and policyJsonSchema", () => {
  it("renders a banner, a type-only import and plain data", () => {
    const p = compileOk(FULL);
    const src = renderModule(p, "../../src/policy/types.ts");
    const lines = src.split("\n");
    expect(lines[0]).toBe(GENERATED_BANNER);
    expect(lines[0]).toBe(
      "// GENERATED by scripts/compile-policies.ts from policies/*.yaml. Do not edit: edit the YAML and rebuild.",
    );
    expect(lines[1]).toBe('import type { CompiledPolicies } from "../../src/policy/types.ts";');
    expect(src).toContain("export const POLICIES: CompiledPolicies = {");
    expect(src).not.toMatch(/from "(yaml|zod)"/);
    const json = src.slice(src.indexOf("= ") + 2, src.lastIndexOf(";"));
    expect(JSON.parse(json)).toEqual(p);
    expect(renderModule(p).split("\n")[1]).toBe('import type { CompiledPolicies } from "./types.ts";');
  });

  it("generates a draft-07 JSON Schema of the input side with a $comment", () => {
    const s = policyJsonSchema() as {
      $schema: string;
      $comment: string;
      required: string[];
      additionalProperties: boolean;
      properties: Record<string, { items?: { required?: string[] } }>;
    };
    expect(s.$schema).toBe("http://json-schema.org/draft-07/schema#");
    expect(s.$comment).toMatch(/GENERATED by scripts\/compile-policies\.ts.*Do not edit/);
    expect(s.required).toEqual(["version"]);
    expect(s.additionalProperties).toBe(false);
    expect(s.properties.tenants?.items?.required).toEqual(["id", "auth"]);
    expect(JSON.stringify(s)).toContain('"pattern":"^[a-z0-9][a-z0-9_-]{0,63}$"');
  });
});

describe("hot svc_id 0 is reserved for the gateway", () => {
  it("rejects svc_id 0 in hot_allowlist and hot_services", () => {
    const text = [
      "version: 1",
      "tenants:",
      "  - id: t",
      "    auth: { mode: dev }",
      "    policy:",
      '      hot_allowlist: ["0:1"]',
      "    hot_services:",
      "      0: { mode: relay }",
    ].join("\n");
    const r = compilePolicies([{ name: "policies/t.yaml", text }]);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.some((e) => e.startsWith("policies/t.yaml:6:23:") && e.includes("0 is reserved"))).toBe(true);
    expect(r.errors.some((e) => e.startsWith("policies/t.yaml:8:7:") && e.includes("0 is reserved"))).toBe(true);
  });
});

describe("a JWT is bound to one tenant (SPEC section 3)", () => {
  /** One jwt tenant in block style: the key is on line 6 (1-based) of its file at column 19 (secret_env) or 17 (jwks_url). */
  const jwtFile = (id: string, key: string, audience?: string) =>
    `version: 1\ntenants:\n  - id: ${id}\n    auth:\n      mode: jwt\n      ${key}\n${
      audience === undefined ? "" : `      audience: ${audience}\n`
    }`;
  const compileTwo = (a: string, b: string) =>
    compilePolicies([
      { name: "policies/a.yaml", text: a },
      { name: "policies/b.yaml", text: b },
    ]);

  it("two tenants sharing secret_env without audiences: an error at the second's secret_env", () => {
    const r = compileTwo(jwtFile("acme", "secret_env: SHARED_JWT"), jwtFile("globex", "secret_env: SHARED_JWT"));
    expect(r).toEqual({
      ok: false,
      errors: [
        'policies/b.yaml:6:19: tenants[0].auth.secret_env: tenant "globex" would accept tokens made for tenant "acme" (the same secret_env as policies/a.yaml:6:19): expected each of them to set its own auth.audience, or another secret_env',
      ],
    });
  });

  it("only one of the two setting an audience is not enough", () => {
    for (const [a, b] of [
      ["acme", undefined],
      [undefined, "globex"],
    ] as const) {
      const r = compileTwo(jwtFile("acme", "secret_env: SHARED_JWT", a), jwtFile("globex", "secret_env: SHARED_JWT", b));
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.errors).toEqual([expect.stringMatching(/^policies\/b\.yaml:6:19: tenants\[0\]\.auth\.secret_env: /)]);
    }
  });

  it("the same audience in both is an error too", () => {
    const r = compileTwo(jwtFile("acme", "secret_env: SHARED_JWT", "game"), jwtFile("globex", "secret_env: SHARED_JWT", "game"));
    expect(r).toEqual({
      ok: false,
      errors: [
        'policies/b.yaml:6:19: tenants[0].auth.secret_env: tenant "globex" would accept tokens made for tenant "acme" (the same secret_env and the same audience as policies/a.yaml:6:19): expected each of them to set its own auth.audience, or another secret_env',
      ],
    });
  });

  it("distinct audiences compile, and so do distinct secrets", () => {
    expect(compileTwo(jwtFile("acme", "secret_env: SHARED_JWT", "acme"), jwtFile("globex", "secret_env: SHARED_JWT", "globex")).ok).toBe(true);
    expect(compileTwo(jwtFile("acme", "secret_env: ACME_JWT"), jwtFile("globex", "secret_env: GLOBEX_JWT")).ok).toBe(true);
  });

  it("the same jwks_url (also when spelled differently), within one file", () => {
    const text = `version: 1
tenants:
  - id: acme
    auth: { mode: jwt, jwks_url: "https://id.example/jwks.json" }
  - id: globex
    auth: { mode: jwt, jwks_url: "https://ID.example:443/jwks.json", audience: globex }
`;
    expect(errorsOf(text)).toEqual([
      'policies/t.yaml:6:34: tenants[1].auth.jwks_url: tenant "globex" would accept tokens made for tenant "acme" (the same jwks_url as policies/t.yaml:4:34): expected each of them to set its own auth.audience, or another jwks_url',
    ]);
    const fixed = text.replace('jwks.json" }', 'jwks.json", audience: acme }');
    expect(compileOk(fixed).tenants).toHaveLength(2);
    // Different key sets need no audience.
    expect(compileOk(text.replace("ID.example:443", "other.example")).tenants).toHaveLength(2);
  });

  it("a third tenant is checked against each earlier one; other modes are not concerned", () => {
    const errors = errorsOf(`version: 1
tenants:
  - id: a
    auth: { mode: jwt, secret_env: K, audience: x }
  - id: b
    auth: { mode: jwt, secret_env: K, audience: y }
  - id: c
    auth: { mode: jwt, secret_env: K, audience: x }
  - id: o1
    auth: { mode: origin, origin_url: "https://o.example/auth", secret_env: K }
  - id: o2
    auth: { mode: origin, origin_url: "https://o.example/auth", secret_env: K }
`);
    expect(errors).toEqual([
      'policies/t.yaml:8:36: tenants[2].auth.secret_env: tenant "c" would accept tokens made for tenant "a" (the same secret_env and the same audience as policies/t.yaml:4:36): expected each of them to set its own auth.audience, or another secret_env',
    ]);
  });
});
