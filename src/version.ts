/**
 * The gateway's version, as package.json says (test/origin/user-agent.test.ts
 * keeps the two equal): origins see it in `User-Agent: wsprism-edge/<version>`.
 */
export const VERSION = "0.1.0";
export const USER_AGENT = `wsprism-edge/${VERSION}`;
