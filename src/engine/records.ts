/** The bounds of what {@link Records} keeps. */
export interface RecordLimits {
  /** The most finished tasks kept; 0 keeps none. */
  readonly maxCount: number;
  /** How long a finished task is kept, in ms. */
  readonly maxAgeMs: number;
}

import { maxTimerMs } from '../model/checks.js';
import { inOwnContext } from '../model/own-context.js';

/** Entries dropped from the front are spliced away once there are more than this many. */
const compactAfter = 1024;
/** How late past `maxAgeMs` an entry may be dropped, at most: sweeps are at least this far apart. */
const sweepSlackMs = 1_000;

/**
 * Finished tasks still shown by `get()` and `list()`, oldest first: at most `maxCount` of them,
 * none older than `maxAgeMs`. Each is stamped with the time it was kept, beside it (the task
 * itself is not written to). A dropped task is let go at once (with its result), and one
 * unref'd timer drops tasks as they age out, within `maxAgeMs` plus at most a second, even when
 * nothing reads the records or adds to them.
 */
export class Records<T> {
  /** Read at each call, so a new registration of the root's options applies at once. */
  limits: RecordLimits;
  #kept: (T | undefined)[] = [];
  #keptAt: number[] = [];
  /** Entries before it are dropped. */
  #start = 0;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(limits: RecordLimits) {
    this.limits = limits;
  }

  /** Keeps a task that has just finished, dropping the oldest beyond `maxCount`. */
  keep(task: T): void {
    const { maxCount } = this.limits;
    if (maxCount === 0) {
      this.#expire();
      return;
    }
    this.#kept.push(task);
    this.#keptAt.push(Date.now());
    // More than one when maxCount was lowered since the last keep.
    while (this.#kept.length - this.#start > maxCount) this.#drop();
    this.#compact();
    if (this.#sweeper === undefined) this.#armSweep();
  }

  /** The tasks on record now, oldest first. */
  list(): T[] {
    this.#expire();
    return this.#kept.slice(this.#start) as T[];
  }

  #expire(): void {
    const { maxCount, maxAgeMs } = this.limits;
    const since = Date.now() - maxAgeMs;
    while (this.#start < this.#kept.length && (this.#kept.length - this.#start > maxCount || this.#keptAt[this.#start]! < since)) this.#drop();
  }

  #drop(): void {
    this.#kept[this.#start++] = undefined;
  }

  #compact(): void {
    if (this.#start === this.#kept.length) {
      this.#kept = [];
      this.#keptAt = [];
      this.#start = 0;
    } else if (this.#start > compactAfter && this.#start * 2 > this.#kept.length) {
      this.#kept.splice(0, this.#start);
      this.#keptAt.splice(0, this.#start);
      this.#start = 0;
    }
  }

  /**
   * Waits for the oldest entry to age out (and a little more, so sweeps stay apart). The timer
   * holds the records weakly: records nobody holds any more (their application closed, its
   * containers dropped) are let go at once, with the tasks they keep, not when they age out.
   */
  #armSweep(): void {
    const { maxAgeMs } = this.limits;
    const due = this.#keptAt[this.#start]! + maxAgeMs - Date.now();
    const delay = Math.min(maxTimerMs, Math.max(0, due) + Math.min(maxAgeMs, sweepSlackMs));
    this.#sweeper = inOwnContext(() => setTimeout(Records.#sweep, delay, new WeakRef(this)));
    this.#sweeper.unref();
  }

  static #sweep(this: void, ref: WeakRef<Records<unknown>>): void {
    const records = ref.deref();
    if (records === undefined) return;
    records.#sweeper = undefined;
    records.#expire();
    records.#compact();
    if (records.#start < records.#kept.length) records.#armSweep();
  }
}
