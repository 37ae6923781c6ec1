/**
 * The demo stack as separate processes, for the end-to-end tests: `wrangler dev`
 * (the gateway with the demo policy) and the example origin on 127.0.0.1:8788
 * (where the demo tenant's chat posts: stop `npm start` before running them).
 */
import { freePort, startGroup, type Proc } from "../../../bench/lib/proc.ts";

export const E2E_SECRET = "whsec_ZTJlLXRlc3Qtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXM=";
export const E2E_API_KEY = "e2e-api-key";
export const ORIGIN_PORT = 8788;

/** The example origin, pushes off. */
export function startOrigin(): Proc {
  const env = { ...process.env, PORT: String(ORIGIN_PORT), WSPRISM_WEBHOOK_SECRET: E2E_SECRET, WSPRISM_API_KEY: "", PUSH_EVERY_MS: "0" };
  return startGroup("origin", process.execPath, ["examples/origin/server.ts"], env, process.cwd());
}

/** The gateway on `port` with its state in `persistTo` (give the same two again to restart it). */
export async function startGateway(port: number, persistTo: string): Promise<Proc> {
  const args = [
    "dev",
    "--ip", "127.0.0.1",
    "--port", String(port),
    "--inspector-port", String(await freePort()),
    "--persist-to", persistTo,
    "--show-interactive-dev-session=false",
    "--var", "WSPRISM_ALLOW_DEV_AUTH:1",
    "--var", `DEMO_WEBHOOK_SECRET:${E2E_SECRET}`,
    "--var", `DEMO_API_KEY:${E2E_API_KEY}`,
  ]; // prettier-ignore
  return startGroup("gateway", "node_modules/.bin/wrangler", args, { ...process.env, CI: "1", WRANGLER_SEND_METRICS: "false" }, process.cwd());
}
