import { soon } from '../model/soon.js';
import { performance } from 'node:perf_hooks';
import { setImmediate as nodeSetImmediate } from 'node:timers';

/**
 * Calls back on the event loop's next turn, from Node's own `setImmediate`: a turn is not time,
 * so a test's fake timers (Vitest's, Jest's, node:test's, which replace the global) neither hold
 * a sync task's start until the test advances them, nor, should a test end with a turn they took
 * and never ran, stop the lane for the rest of the application's life. Under fake timers, the
 * callback is given to them too, so that advancing them runs it in step with their clock: the
 * lane's callbacks do nothing when their turn has been taken already.
 */
function nextTurn(callback: () => void): void {
  nodeSetImmediate(callback);
  const global = globalThis.setImmediate;
  if (global !== nodeSetImmediate) global(callback);
}

/**
 * A lane: where tasks wait for a slot under one concurrency limit. The event loop's lane is the
 * application's `concurrency`; the worker pool's admission window is another lane.
 */

/** What a lane runs: a task record, seen only through the fields scheduling needs. */
export interface Job {
  /** Intrusive FIFO link: the next job of the same queue. */
  next: Job | undefined;
  /** A job whose status is no longer `'queued'` when its turn comes is skipped. */
  readonly status: string;
  /** Higher starts first; equal priorities keep submission order. */
  readonly priority: number;
  /** Sync jobs start from `setImmediate`, one after another, rather than from a microtask. */
  readonly sync: boolean;
  /** Set while a sync job holds a slot and waits for its `setImmediate` turn. */
  holding: boolean;
  /** Starts the job; never throws. The job calls `release()` once it has settled. */
  start(): void;
}

/** Hand the event loop back (so timers and I/O run) after this long of back-to-back starts. */
const sliceMs = 4;
/** How many starts go by between two looks at the clock. */
const startsPerCheck = 1024;

/**
 * Jobs take a slot under one concurrency limit, highest priority first and in FIFO order within
 * a priority, and hold it until they settle. An async job starts from a microtask after
 * `submit()` (so `add()` returns before any task code runs), or from the settlement of a job
 * before it. A sync job, once it has its slot, starts from `setImmediate` (after the current
 * turn), sync jobs one after another, a few milliseconds' worth per turn.
 *
 * Back-to-back starts are made of microtasks, which never let timers run: every
 * {@link startsPerCheck} starts, once {@link sliceMs} have passed, the lane resumes from
 * `setImmediate` instead.
 */
export class Lane {
  #limit: number;
  #running = 0;
  #queued = 0;
  /** Called after a job leaves the queue, while someone waits for room in it. */
  watcher: (() => void) | undefined;
  /** One FIFO per priority level in use, highest first; levels stay once created (they are few). */
  readonly #levels: Level[] = [];
  /** The level of the last submission: most submissions share one. */
  #lastLevel: Level | undefined;
  #waiting = 0;
  #syncHead: Job | undefined;
  #syncTail: Job | undefined;
  #pumpScheduled = false;
  #pumping = false;
  #yielding = false;
  #syncScheduled = false;
  #starts = 0;
  #sliceStart = 0;
  #stopped = false;
  #held = 0;
  /** Calls back on the event loop's next turn. */
  readonly #turn: (callback: () => void) => void;

  /** `turn`: {@link nextTurn} (a test of the lane itself gives one it steps). */
  constructor(limit: number, turn: (callback: () => void) => void = nextTurn) {
    this.#limit = limit;
    this.#turn = turn;
  }

  /** How many jobs may hold a slot at once. Raising it starts waiting jobs. */
  get limit(): number {
    return this.#limit;
  }

  set limit(limit: number) {
    this.#limit = limit;
    if (this.#waiting > 0 && !this.#pumpScheduled) {
      this.#pumpScheduled = true;
      soon(this.#pumpSoon);
    }
  }

  /**
   * Starts nothing more, for good: the application is closing and gives up on what waits. Jobs
   * still submitted or withdrawn are counted as before.
   */
  stop(): void {
    this.#stopped = true;
  }

  /**
   * Starts nothing until {@link resume}: slots given back meanwhile stay free. For a sweep that
   * ends many jobs at once, none of which may start because another one gave its slot back; and
   * while observers are told of an event, so that no task starts before its own `started` is told.
   * Holds nest: starts resume when the last one ends.
   */
  hold(): void {
    this.#held++;
  }

  /** Ends a {@link hold}; waiting jobs take the free slots from a microtask, as after `submit()`. */
  resume(): void {
    if (--this.#held === 0 && this.#waiting > 0 && !this.#pumpScheduled) {
      this.#pumpScheduled = true;
      soon(this.#pumpSoon);
    }
  }

  /** Jobs holding a slot now. */
  get running(): number {
    return this.#running;
  }

  /** Jobs waiting for a slot. */
  get queued(): number {
    return this.#queued;
  }

  /**
   * Jobs waiting with no slot free for them: those beyond the free slots (a job submitted this
   * turn takes a free one at the next microtask, so it waits for nothing).
   */
  get waiting(): number {
    return Math.max(0, this.#queued - Math.max(0, this.#limit - this.#running));
  }

  submit(job: Job): void {
    this.#queued++;
    this.#waiting++;
    const level = this.#lastLevel?.priority === job.priority ? this.#lastLevel : this.#level(job.priority);
    this.#lastLevel = level;
    if (level.tail) level.tail.next = job;
    else level.head = job;
    level.tail = job;
    if (!this.#pumpScheduled) {
      this.#pumpScheduled = true;
      soon(this.#pumpSoon);
    }
  }

  /**
   * A job that has not started will not (cancelled or abandoned): it gives back its slot if it
   * holds one, and is skipped when its turn comes.
   */
  withdraw(job: Job): void {
    if (job.holding) {
      job.holding = false;
      this.release();
    } else {
      this.#queued--;
      this.watcher?.();
    }
  }

  /** A job has settled (or was abandoned while running): its slot is free. */
  release(): void {
    this.#running--;
    if (this.#waiting > 0 && !this.#pumping && !this.#yielding) this.#pump();
  }

  readonly #pumpSoon = (): void => {
    this.#pumpScheduled = false;
    if (!this.#yielding) this.#pump();
  };

  readonly #resume = (): void => {
    if (!this.#yielding) return;
    this.#yielding = false;
    this.#sliceStart = performance.now();
    this.#pump();
  };

  #pump(): void {
    if (this.#stopped || this.#held > 0) return;
    this.#pumping = true;
    try {
      while (this.#running < this.#limit) {
        const job = this.#dequeue();
        if (job === undefined) return;
        if (job.status !== 'queued') continue;
        this.#queued--;
        this.#running++;
        this.watcher?.();
        if (job.sync) this.#startSoon(job);
        else job.start();
        if (++this.#starts % startsPerCheck === 0 && performance.now() - this.#sliceStart > sliceMs) {
          this.#yielding = true;
          this.#turn(this.#resume);
          return;
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  #level(priority: number): Level {
    const levels = this.#levels;
    let i = 0;
    while (i < levels.length && levels[i]!.priority > priority) i++;
    if (levels[i]?.priority === priority) return levels[i]!;
    const level: Level = { priority, head: undefined, tail: undefined };
    levels.splice(i, 0, level);
    return level;
  }

  #dequeue(): Job | undefined {
    if (this.#waiting === 0) return undefined;
    for (const level of this.#levels) {
      const job = level.head;
      if (job === undefined) continue;
      level.head = job.next;
      if (level.head === undefined) level.tail = undefined;
      job.next = undefined;
      this.#waiting--;
      return job;
    }
    return undefined;
  }

  #startSoon(job: Job): void {
    job.holding = true;
    if (this.#syncTail) this.#syncTail.next = job;
    else this.#syncHead = job;
    this.#syncTail = job;
    if (!this.#syncScheduled) {
      this.#syncScheduled = true;
      this.#turn(this.#runSync);
    }
  }

  readonly #runSync = (): void => {
    if (!this.#syncScheduled) return;
    this.#syncScheduled = false;
    if (this.#stopped) return;
    if (this.#held > 0) {
      // Held for a sweep that is running now: look again on the next turn.
      this.#syncScheduled = true;
      this.#turn(this.#runSync);
      return;
    }
    const until = performance.now() + sliceMs;
    let job: Job | undefined;
    while ((job = this.#syncHead) !== undefined) {
      this.#syncHead = job.next;
      if (this.#syncHead === undefined) this.#syncTail = undefined;
      job.next = undefined;
      if (!job.holding) continue;
      job.holding = false;
      job.start();
      if (performance.now() > until) break;
    }
    if (this.#syncHead !== undefined) {
      this.#syncScheduled = true;
      this.#turn(this.#runSync);
    }
  };
}

interface Level {
  readonly priority: number;
  head: Job | undefined;
  tail: Job | undefined;
}
