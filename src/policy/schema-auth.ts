/** The `auth` block of a tenant: how tickets are verified (jwt, origin or dev). Part of the policy schema (schema.ts). */
import { z } from "zod";
import { DEFAULTS, envName, expect, httpUrl, int, strict } from "./schema-common.ts";

const JwtAuthSchema = strict({
  mode: z.literal("jwt"),
  secret_env: envName().optional().meta({
    description: "Name of the env var holding the HS256 secret.",
  }),
  jwks_url: httpUrl({ httpsUnlessLocal: true }).optional().meta({
    description: "JWKS endpoint (RS256, ES256, EdDSA keys), fetched and cached. https only (http for localhost).",
  }),
  audience: z.string({ error: expect("a string") }).min(1, { error: expect("a non-empty string") }).optional().meta({
    description:
      "When set, the ticket's `aud` claim must match it. Tenants that share a secret_env or jwks_url must each set a distinct audience.",
  }),
}).superRefine((auth, ctx) => {
  if (auth.secret_env === undefined && auth.jwks_url === undefined) {
    ctx.addIssue({
      code: "custom",
      message: "jwt auth needs secret_env (HS256), jwks_url, or both",
      input: auth,
    });
  }
});

const OriginAuthSchema = strict({
  mode: z.literal("origin"),
  origin_url: httpUrl({ httpsUnlessLocal: false }).meta({
    description: "The Worker POSTs {ticket, tenant, room, ip} here, signed like a webhook; a 200 with {user} admits.",
  }),
  secret_env: envName().meta({
    description: "Name of the env var holding the whsec_ secret that signs the auth call.",
  }),
  cache_s: int(0, 3600).default(DEFAULTS.auth.cache_s).meta({
    description: "Seconds an answer of the auth origin is cached (0 = not cached). Default 60.",
  }),
});

const DevAuthSchema = strict({
  mode: z.literal("dev"),
});

export const AuthSchema = z
  .discriminatedUnion("mode", [JwtAuthSchema, OriginAuthSchema, DevAuthSchema], {
    error: expect("a mapping with mode: jwt, origin or dev"),
  })
  .meta({ description: "How tickets are verified: jwt, origin or dev." });
