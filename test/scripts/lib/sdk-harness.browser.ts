/** Browser entry of the SDK harness: bundled by test/scripts/sdk-e2e.test.ts, it sets `window.__sdk`. */
import { createHarness } from "./sdk-harness.ts";

(globalThis as { __sdk?: unknown }).__sdk = createHarness();
