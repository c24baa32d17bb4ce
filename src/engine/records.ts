/** The bounds of what {@link Records} keeps. */
export interface RecordLimits {
  /** The most finished tasks kept; 0 keeps none. */
  readonly maxCount: number;
  /** How long a finished task is kept, in ms. */
  readonly maxAgeMs: number;
}

/** Entries dropped from the front are spliced away once there are more than this many. */
const compactAfter = 1024;

/**
 * Finished tasks still shown by `get()` and `list()`, oldest first: at most `maxCount` of them,
 * none older than `maxAgeMs`. Each is stamped with the time it was kept, beside it (the task
 * itself is not written to).
 */
export class Records<T> {
  /** Read at each call, so a new registration of the root's options applies at once. */
  limits: RecordLimits;
  #kept: (T | undefined)[] = [];
  #keptAt: number[] = [];
  /** Entries before it are dropped. */
  #start = 0;

  constructor(limits: RecordLimits) {
    this.limits = limits;
  }

  /** Keeps a task that has just finished, dropping the oldest beyond `maxCount`. */
  keep(task: T): void {
    const { maxCount } = this.limits;
    if (maxCount === 0) return;
    this.#kept.push(task);
    this.#keptAt.push(Date.now());
    if (this.#kept.length - this.#start > maxCount) this.#drop();
    if (this.#start > compactAfter && this.#start * 2 > this.#kept.length) {
      this.#kept.splice(0, this.#start);
      this.#keptAt.splice(0, this.#start);
      this.#start = 0;
    }
  }

  /** The tasks on record now, oldest first. */
  list(): T[] {
    const since = Date.now() - this.limits.maxAgeMs;
    while (this.#start < this.#kept.length && this.#keptAt[this.#start]! < since) this.#drop();
    return this.#kept.slice(this.#start) as T[];
  }

  #drop(): void {
    this.#kept[this.#start++] = undefined;
  }
}
