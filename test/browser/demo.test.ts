/**
 * The live demo page (public/), in a real browser against the real local stack:
 * `node scripts/start.ts` (what `npm start` runs: wrangler dev on 127.0.0.1:8787
 * serving public/ and the gateway, plus the example origin on 127.0.0.1:8788),
 * and Chromium driven by playwright-core (Debian's /usr/bin/chromium, or
 * CHROMIUM_PATH; playwright's own browser download is never used).
 *
 * Two pages in two browser contexts join one fresh room and check: presence,
 * chat both ways through the origin (and a banned-word reject), a cursor moved in
 * one page drawn in the other (hot lane state service, throttled to 20 Hz), a
 * reload that reconnects, a kick through the HTTP API, and a network drop: one
 * page offline while the other chats, then back, with the missed chat replayed
 * (resume with recovery, SPEC section 10; the demo tenant has it on).
 *
 * It needs ports 8787 and 8788: stop `npm start` first. Screenshots go to
 * test-results/screenshots/.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/** What public/demo.js exposes as `window.__demo`. */
interface DemoApi {
  readonly name: string;
  readonly room: string;
  status(): string;
  members(): { slot: number; user: string; sid: string }[];
  remoteDots(): { slot: number; user: string | null; x: number; y: number; color: number }[];
  framesSent(): number;
  stateLatencies(): number[];
  trailFrames(): number;
  resumes(): Array<{ event: "recovered"; count: number } | { event: "resync"; reason: string }>;
  position(): { epoch: string; off: number } | null;
}
declare global {
  interface Window {
    __demo: DemoApi;
  }
}

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const GATEWAY = "http://127.0.0.1:8787";
const ORIGIN = "http://127.0.0.1:8788";
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SHOTS = join(ROOT, "test-results/screenshots");
const WAIT = 20_000;

/** The HTTP API key scripts/start.ts gives the gateway: .dev.vars wins over the local demo value. */
function apiKey(): string {
  const file = join(ROOT, ".dev.vars");
  if (existsSync(file)) {
    const m = /^\s*(?:export\s+)?DEMO_API_KEY\s*=\s*["']?([^"'\r\n#]*?)["']?\s*$/m.exec(readFileSync(file, "utf8"));
    if (m && m[1]) return m[1];
  }
  return "demo-api-key-local-only";
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("demo page in Chromium (npm start stack)", () => {
  let start: ChildProcess | undefined;
  let startExited: Promise<void> = Promise.resolve();
  const startLog: string[] = [];
  let browser: Browser | undefined;
  const contexts: BrowserContext[] = [];
  const pageErrors: string[] = [];

  const suffix = Date.now().toString(36) + Math.floor(Math.random() * 1e4).toString(36);
  const room = `browser-${suffix}`;
  const alice = `alice-${suffix}`;
  const bob = `bob-${suffix}`;
  let pageA: Page;
  let pageB: Page;

  const logTail = () => startLog.slice(-40).join("\n");

  async function waitHealthy(url: string, deadline: number): Promise<void> {
    while (Date.now() < deadline) {
      if (start?.exitCode !== null || start?.signalCode !== null) {
        throw new Error(`scripts/start.ts exited early (${start?.exitCode ?? start?.signalCode}):\n${logTail()}`);
      }
      try {
        if ((await fetch(url, { signal: AbortSignal.timeout(2_000) })).ok) return;
      } catch {
        /* not up yet */
      }
      await sleep(250);
    }
    throw new Error(`${url} did not answer in time; scripts/start.ts output:\n${logTail()}`);
  }

  async function shot(page: Page, file: string): Promise<void> {
    await page.screenshot({ path: join(SHOTS, file) });
  }

  async function openDemo(name: string): Promise<Page> {
    const ctx = await browser!.newContext({ viewport: { width: 1280, height: 760 } });
    contexts.push(ctx);
    const page = await ctx.newPage();
    page.on("pageerror", (err) => pageErrors.push(`${name}: ${err.message}`));
    await page.goto(`${GATEWAY}/?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}`);
    await waitStatus(page, "open");
    return page;
  }

  async function waitStatus(page: Page, status: string): Promise<void> {
    await page.waitForSelector(`[data-testid=status][data-status="${status}"]`, { timeout: WAIT });
  }

  /** The presence list shows exactly these users. */
  async function waitMembers(page: Page, users: string[]): Promise<void> {
    await page.waitForFunction(
      (want) => {
        const have = Array.from(document.querySelectorAll<HTMLElement>("[data-testid=presence] [data-testid=member]"))
          .map((li) => li.dataset.user)
          .sort();
        return JSON.stringify(have) === JSON.stringify([...want].sort());
      },
      users,
      { timeout: WAIT },
    );
  }

  async function say(page: Page, msg: string): Promise<void> {
    await page.getByTestId("chat-input").fill(msg);
    await page.getByTestId("chat-input").press("Enter");
  }

  async function waitChat(page: Page, kind: "msg" | "error" | "system", text: string, user?: string): Promise<void> {
    const who = user === undefined ? "" : `[data-user="${user}"]`;
    await page
      .locator(`[data-testid=chat-line][data-kind=${kind}]${who}`, { hasText: text })
      .first()
      .waitFor({ timeout: WAIT });
  }

  /** Move the mouse over the canvas to the fractions (fx, fy), in `steps` events. */
  async function moveTo(page: Page, fx: number, fy: number, steps = 1): Promise<void> {
    const box = await page.getByTestId("canvas").boundingBox();
    if (!box) throw new Error("the canvas is not visible");
    await page.mouse.move(box.x + box.width * fx, box.y + box.height * fy, { steps });
  }

  /** The other page draws `user`'s dot near (fx, fy). */
  async function waitDot(page: Page, user: string, fx: number, fy: number): Promise<void> {
    await page.waitForFunction(
      ([u, x, y]) =>
        window.__demo
          .remoteDots()
          .some((d) => d.user === u && Math.abs(d.x - (x as number)) < 0.02 && Math.abs(d.y - (y as number)) < 0.02),
      [user, fx, fy] as const,
      { timeout: WAIT },
    );
    await page.waitForSelector(`[data-testid=remote-dots] [data-testid=remote-dot][data-user="${user}"]`, { timeout: WAIT });
  }

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
    }
    for (const port of [8787, 8788]) {
      if (!(await portFree(port))) {
        throw new Error(`port ${port} is busy: the browser tests run the npm start stack on 8787 and 8788; stop what listens there (npm start?)`);
      }
    }
    mkdirSync(SHOTS, { recursive: true });

    // As `npm start` runs it; its own process group, and it stops its children on SIGTERM.
    start = spawn(process.execPath, ["scripts/start.ts"], {
      cwd: ROOT,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, CI: "1", WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
    });
    const proc = start;
    startExited = new Promise((resolve) => proc.once("exit", () => resolve()));
    for (const stream of [proc.stdout!, proc.stderr!]) {
      stream.on("data", (chunk: Buffer) => {
        startLog.push(...chunk.toString("utf8").split("\n").filter((l) => l !== ""));
        if (startLog.length > 400) startLog.splice(0, startLog.length - 400);
      });
    }

    const deadline = Date.now() + 150_000; // the first wrangler start builds and may take a while
    await waitHealthy(`${GATEWAY}/healthz`, deadline);
    await waitHealthy(`${ORIGIN}/healthz`, deadline);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-sync",
      ],
    });
  }, 180_000);

  afterAll(async () => {
    for (const ctx of contexts) await ctx.close().catch(() => {});
    await browser?.close().catch(() => {});
    const proc = start;
    if (proc?.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
      try {
        process.kill(-proc.pid, "SIGTERM"); // start.ts stops the gateway's and the origin's groups
      } catch {
        /* gone */
      }
      const done = await Promise.race([startExited.then(() => true), sleep(15_000).then(() => false)]);
      if (!done) {
        try {
          process.kill(-proc.pid, "SIGKILL");
        } catch {
          /* gone */
        }
      }
    }
  }, 30_000);

  it("serves the page, the SDK build and still the API routes", async () => {
    const page = await fetch(`${GATEWAY}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/text\/html/);
    expect(await page.text()).toContain('data-testid="canvas"');
    const sdk = await fetch(`${GATEWAY}/sdk/index.js`);
    expect(sdk.status, "public/sdk/ is built by wrangler's [build] command").toBe(200);
    expect(await sdk.text()).toContain("class WsPrismClient");
    expect(await (await fetch(`${GATEWAY}/healthz`)).text()).toBe("ok");
    const ws = await fetch(`${GATEWAY}/v1/ws?tenant=demo&room=x&ticket=dev:x`);
    expect(ws.status).toBe(426);
    const presence = await fetch(`${GATEWAY}/v1/tenants/demo/rooms/x/presence`);
    expect(presence.status).toBe(401);
  });

  it("two pages join one room and see each other in the presence list", async () => {
    pageA = await openDemo(alice);
    await waitMembers(pageA, [alice]);
    pageB = await openDemo(bob);
    // bob learns about alice from the presence sync after authed, alice about bob from sys.presence join
    await waitMembers(pageB, [alice, bob]);
    await waitMembers(pageA, [alice, bob]);
    expect(await pageA.getByTestId("status").textContent()).toContain(alice);
    await shot(pageA, "01-alice-joined.png");
    await shot(pageB, "01-bob-joined.png");
  }, 60_000);

  it("chats both ways through the example origin, and shows a banned-word reject", async () => {
    await say(pageA, "hello from alice");
    await waitChat(pageB, "msg", "hello from alice", alice);
    await waitChat(pageA, "msg", "hello from alice", alice); // the origin broadcasts to the sender too
    await say(pageB, "hi alice, bob here");
    await waitChat(pageA, "msg", "hi alice, bob here", bob);
    await waitChat(pageB, "msg", "hi alice, bob here", bob);
    // "joined" lines come from the origin's open events
    await waitChat(pageA, "system", `${bob} joined`);

    await say(pageA, "buy spam now");
    await waitChat(pageA, "error", "message blocked");
    await say(pageA, "sorry");
    await waitChat(pageB, "msg", "sorry", alice);
    const leaked = await pageB.locator("[data-testid=chat-line][data-kind=msg]", { hasText: "buy spam now" }).count();
    expect(leaked, "the rejected message never reaches the room").toBe(0);
    await shot(pageA, "02-chat-alice.png");
    await shot(pageB, "02-chat-bob.png");
  }, 60_000);

  it("draws a cursor moved in one page in the other, at most 20 frames a second", async () => {
    await moveTo(pageA, 0.2, 0.3);
    const sentBefore = await pageA.evaluate(() => window.__demo.framesSent());
    const t0 = Date.now();
    await moveTo(pageA, 0.4, 0.55, 60); // many pointer events in quick succession
    await waitDot(pageB, alice, 0.4, 0.55);
    const elapsed = Date.now() - t0;
    const sent = (await pageA.evaluate(() => window.__demo.framesSent())) - sentBefore;
    expect(sent).toBeGreaterThan(0);
    expect(sent, `${sent} frames in ${elapsed} ms`).toBeLessThanOrEqual(Math.ceil(elapsed / 50) + 1);

    await moveTo(pageB, 0.7, 0.35, 5);
    await waitDot(pageA, bob, 0.7, 0.35);
    // the other page's own dot is not echoed back to it
    expect((await pageA.evaluate(() => window.__demo.remoteDots())).map((d) => d.user)).toEqual([bob]);
    const latencies = await pageB.evaluate(() => window.__demo.stateLatencies());
    expect(latencies.length).toBeGreaterThan(0);
    // The trail (svc 4, a coalesced relay) relays every move, batched or not: each one reaches the other page.
    await pageB.waitForFunction(() => window.__demo.trailFrames() > 0, null, { timeout: WAIT });
    await pageA.waitForFunction(() => document.querySelector("[data-testid=rtt]")?.textContent?.endsWith("ms"), null, {
      timeout: WAIT,
    });
    await shot(pageA, "03-cursor-alice.png");
    await shot(pageB, "03-cursor-bob.png");
  }, 60_000);

  it("reconnects after a reload: open again, both in the presence list, the other's dot back", async () => {
    await pageB.reload();
    await waitStatus(pageB, "open");
    await waitMembers(pageB, [alice, bob]);
    await waitMembers(pageA, [alice, bob]); // bob's old session left, the new one joined
    await waitDot(pageB, alice, 0.4, 0.55); // a late joiner gets the current states first
    await shot(pageB, "04-bob-reloaded.png");
  }, 60_000);

  it("shows the kicked state with the reason after a kick through the HTTP API", async () => {
    const res = await fetch(`${GATEWAY}/v1/tenants/demo/rooms/${encodeURIComponent(room)}/kick`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey()}`, "content-type": "application/json" },
      body: JSON.stringify({ user: bob, reason: "test kick" }),
    });
    expect(res.status).toBe(202);
    expect(((await res.json()) as { kicked: number }).kicked).toBeGreaterThanOrEqual(1);

    await waitStatus(pageB, "kicked");
    expect(await pageB.getByTestId("status").textContent()).toContain("test kick");
    expect(await pageB.getByTestId("notice").isVisible()).toBe(true);
    expect(await pageB.getByTestId("notice-text").textContent()).toContain("test kick");
    await waitMembers(pageA, [alice]);
    await pageA.waitForFunction(() => window.__demo.remoteDots().length === 0, null, { timeout: WAIT });
    await shot(pageB, "05-bob-kicked.png");
    await shot(pageA, "05-alice-after-kick.png");

    await pageB.getByTestId("rejoin").click();
    await waitStatus(pageB, "open");
    await waitMembers(pageA, [alice, bob]);
    await waitMembers(pageB, [alice, bob]);
  }, 60_000);

  it("recovers the chat missed during a network drop: replayed once each, then 'recovered N messages'", async () => {
    // Both pages open and in the room (after the kick test, bob rejoined).
    await waitMembers(pageA, [alice, bob]);
    const before = await pageA.evaluate(() => window.__demo.position());
    expect(before, "the demo tenant has recovery on: authed carries a position").not.toBeNull();
    expect(await pageA.evaluate(() => window.__demo.resumes())).toEqual([]);

    // Offline, Chromium holds what arrives on the open socket (it still sends): the socket
    // does not close. The SDK pings on the `offline` event and drops the socket when the
    // pong does not come (pongTimeoutMs, 5 s by default; the demo pings every 2 s), then
    // waits for `online` to reconnect. Wait for that drop before chatting.
    await pageA.context().setOffline(true);
    await waitStatus(pageA, "reconnecting");
    expect(await pageA.getByTestId("status").textContent()).toContain("4000");
    await shot(pageA, "06-alice-offline.png");

    const missed = [1, 2, 3].map((i) => `while alice was away ${i}`);
    for (const msg of missed) {
      await say(pageB, msg);
      await waitChat(pageB, "msg", msg, bob); // the origin broadcast it: the room logged it
    }
    await sleep(300);
    expect(await pageA.locator("[data-testid=chat-line][data-kind=msg]", { hasText: "while alice was away" }).count()).toBe(0);

    await pageA.context().setOffline(false);
    await waitStatus(pageA, "open");
    const line = pageA.locator("[data-testid=chat-line][data-event=recovered]");
    await line.first().waitFor({ timeout: WAIT });
    const text = (await line.first().textContent()) ?? "";
    const n = Number(/recovered (\d+) messages?/.exec(text)?.[1]);
    expect(n, text).toBeGreaterThanOrEqual(missed.length);
    const resumes = await pageA.evaluate(() => window.__demo.resumes());
    expect(resumes).toEqual([{ event: "recovered", count: n }]);
    expect(await pageA.locator("[data-testid=chat-line][data-event=resync]").count()).toBe(0);
    // Every missed message once, in order, before the "recovered" line.
    const lines = await pageA.locator("[data-testid=chat-line]").evaluateAll((els) =>
      els.map((el) => ({ kind: (el as HTMLElement).dataset.kind, event: (el as HTMLElement).dataset.event, text: el.querySelector(".text")?.textContent ?? "" })),
    );
    const at = (msg: string) => lines.findIndex((l) => l.kind === "msg" && l.text === msg);
    for (const msg of missed) expect(lines.filter((l) => l.kind === "msg" && l.text === msg).length, msg).toBe(1);
    expect(missed.map(at)).toEqual([...missed.map(at)].sort((a, b) => a - b));
    expect(at(missed[2]!)).toBeLessThan(lines.findIndex((l) => l.event === "recovered"));
    const after = await pageA.evaluate(() => window.__demo.position());
    expect(after?.epoch).toBe(before?.epoch);
    expect(after!.off).toBeGreaterThanOrEqual(before!.off + missed.length);

    // Live again: a new message reaches alice once, and she is in bob's presence list.
    await waitMembers(pageB, [alice, bob]);
    await say(pageB, "welcome back alice");
    await waitChat(pageA, "msg", "welcome back alice", bob);
    await sleep(300);
    expect(await pageA.locator("[data-testid=chat-line][data-kind=msg]", { hasText: "welcome back alice" }).count()).toBe(1);
    for (const msg of missed) expect(await pageA.locator("[data-testid=chat-line][data-kind=msg]", { hasText: msg }).count(), msg).toBe(1);
    await shot(pageA, "06-alice-recovered.png");
  }, 60_000);

  it("raised no uncaught error in either page", () => {
    expect(pageErrors).toEqual([]);
  });
});
