/** A tiny typed event emitter: `on` returns the unsubscribe function. */

export type Listener<T> = (payload: T) => void;

export class Emitter<E extends object> {
  private readonly listeners = new Map<keyof E, Set<Listener<never>>>();

  on<K extends keyof E>(event: K, fn: Listener<E[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => {
      set.delete(fn as Listener<never>);
    };
  }

  /** Call every listener; one that throws is reported and does not stop the others. */
  emit<K extends keyof E>(event: K, payload: E[K]): void {
    const set = this.listeners.get(event);
    if (!set || set.size === 0) return;
    for (const fn of [...set]) safeCall(fn as Listener<E[K]>, payload);
  }
}

/** Run a user callback; a throw is logged (`console.error`), never propagated into the socket loop. */
export function safeCall<A extends unknown[]>(fn: (...args: A) => unknown, ...args: A): void {
  try {
    fn(...args);
  } catch (err) {
    console.error("[wsprism] listener threw", err);
  }
}
