/** Control of room objects from tests. */
import { runInDurableObject } from "cloudflare:test";

/**
 * Reset a room object as a deploy or a crash would: its instance is aborted and
 * its sockets die with it; the next request gets a new instance over the same
 * storage. A stub that reached the aborted instance stays broken: take a new one.
 */
export async function resetRoom(stub: DurableObjectStub): Promise<void> {
  await runInDurableObject(stub, (_o: unknown, state: DurableObjectState) => {
    try {
      state.abort?.("replaced by the test");
    } catch {
      /* abort throws in the turn that calls it */
    }
  }).catch(() => undefined);
}
