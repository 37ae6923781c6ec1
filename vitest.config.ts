import { fileURLToPath } from "node:url";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Test policies: policies/*.yaml plus test/fixtures/policies/*.yaml, compiled by
// `npm run build:test-policies`. The workers project sees them in place of the
// production module behind the `#policies` import.
const testPolicies = fileURLToPath(new URL("./test/.generated/policies.ts", import.meta.url));

export default defineConfig({
  test: {
    reporters: ["default", "json"],
    outputFile: { json: "test-results/vitest.json" },
    projects: [
      {
        resolve: { alias: { "#policies": testPolicies } },
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              bindings: {
                WSPRISM_ALLOW_DEV_AUTH: "1",
                TEST_JWT_SECRET: "test-secret-that-is-at-least-32-bytes-long!",
                TEST_API_KEY: "test-api-key-0123456789",
                TEST_WEBHOOK_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                DEMO_WEBHOOK_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
              },
              // Every outbound fetch of the gateway (webhooks, auth callbacks) and of
              // the tests goes to a programmable origin (test/fixtures/origin-worker.mjs).
              outboundService: "origin",
              workers: [
                {
                  name: "origin",
                  modules: true,
                  scriptPath: "./test/fixtures/origin-worker.mjs",
                  compatibilityDate: "2026-10-01",
                },
              ],
            },
          }),
        ],
        test: {
          name: "workers",
          include: ["test/**/*.test.ts"],
          exclude: ["test/scripts/**", "test/browser/**"],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: "node",
          environment: "node",
          include: ["test/scripts/**/*.test.ts", "test/browser/**/*.test.ts"],
          testTimeout: 120_000,
          // One file at a time: the end-to-end test and the browser test both need
          // port 8788 (the demo tenant's origin), the browser test 8787 too.
          fileParallelism: false,
        },
      },
    ],
  },
});
