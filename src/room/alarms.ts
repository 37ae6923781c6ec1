/**
 * One Durable Object alarm, several deadlines. Each concern (the webhook
 * outbox now; idle timeouts and state ticks later) keeps a named deadline in
 * storage; the object's single alarm is set to the earliest one. Deadlines are
 * in storage, so they survive eviction, and an object with none has no alarm.
 *
 * The API is synchronous: storage writes (kv and setAlarm) are ordered by the
 * runtime and committed before any message the object sends is released.
 */
const PREFIX = "alarm:";

export class AlarmMux {
  private readonly storage: DurableObjectStorage;
  /** The alarm time this instance last set (undefined after a wake: unknown). */
  private armed: number | null | undefined;
  /** The deadlines, read from storage once per instance and then kept in step with it. */
  private cache: Map<string, number> | null = null;

  constructor(storage: DurableObjectStorage) {
    this.storage = storage;
  }

  private deadlines(): Map<string, number> {
    if (!this.cache) {
      this.cache = new Map();
      for (const [key, at] of this.storage.kv.list<number>({ prefix: PREFIX })) this.cache.set(key.slice(PREFIX.length), at);
    }
    return this.cache;
  }

  get(name: string): number | undefined {
    return this.deadlines().get(name);
  }

  /** Set `name`'s deadline (replacing any). */
  schedule(name: string, at: number): void {
    if (this.deadlines().get(name) === at) return;
    this.storage.kv.put(PREFIX + name, at);
    this.deadlines().set(name, at);
    this.arm();
  }

  /** Set `name`'s deadline only if it has none or a later one. */
  scheduleBy(name: string, at: number): void {
    const existing = this.get(name);
    if (existing === undefined || at < existing) this.schedule(name, at);
  }

  clear(name: string): void {
    if (!this.deadlines().delete(name)) return;
    this.storage.kv.delete(PREFIX + name);
    this.arm();
  }

  /** Names whose deadline has passed; their deadlines are removed. */
  takeDue(now: number): string[] {
    const due: string[] = [];
    for (const [name, at] of this.deadlines()) {
      if (at <= now) {
        due.push(name);
        this.deadlines().delete(name);
        this.storage.kv.delete(PREFIX + name);
      }
    }
    return due;
  }

  /** Point the alarm at the earliest deadline, or remove it when there is none. */
  arm(): void {
    let earliest = Infinity;
    for (const at of this.deadlines().values()) earliest = Math.min(earliest, at);
    const want = earliest === Infinity ? null : earliest;
    if (want === this.armed) return;
    this.armed = want;
    const op = want === null ? this.storage.deleteAlarm() : this.storage.setAlarm(want);
    op.catch(() => {
      this.armed = undefined; // unknown again: the next arm() retries
    });
  }

  /** Called at the start of alarm(): the runtime has consumed the alarm that fired. */
  fired(): void {
    this.armed = undefined;
  }
}
