/**
 * Drain deadlines of disposing scopes, on one timer. A scope per request means a disposal per
 * request, and most drain long before their deadline: giving each its own `setTimeout` (and a
 * `Promise.race` against it) costs more than the rest of the disposal. Here a deadline is an
 * entry in a queue ordered by due time; one timer waits for the earliest live entry, and it
 * holds the process open only while some entry is live.
 *
 * Each entry fires in the async context of the call that set it (its AsyncLocalStorage stores),
 * not in that of whichever entry armed the shared timer.
 *
 * Deadlines are measured on the monotonic clock (`performance.now()`), not the wall clock: an
 * NTP step or a clock set by hand moves none of them (set back an hour, the wall clock held a
 * deadline set before the step an hour late; set forward, it fired every deadline at once). The
 * clock is read from `globalThis.performance` each time, so a test's fake timers that fake it
 * move deadlines with them; when it is replaced (fake timers installed or removed), the entries
 * keep the time they had left on the clock they were set on.
 *
 * When the timer fires, every entry due by then fires: due by the clock, or by the entry it was
 * set for (a timer that fired has waited its delay, whatever the clock says: fake timers that
 * leave `performance` alone). The next wait is measured from the clock too, so a timer that
 * fires late (a busy event loop) does not push every later deadline back by as much. Entries due
 * more than `lateMs` before the timer fired act a turn later, once what came meanwhile (a task's
 * answer that ended it in time) is taken in (see model/timing.ts).
 */
import { AsyncResource } from 'node:async_hooks';
// Node's own, which a test's fake timers do not replace: the turn a late deadline gives is real.
import { setImmediate } from 'node:timers';
import { expiry, lateMs } from '../model/timing.js';
import { inOwnContext } from '../model/own-context.js';

/** A monotonic clock in milliseconds, as `performance.now()`. */
export interface Clock {
  now(): number;
}

export interface Deadline {
  /** When it is due, on the clock's time (moved with the entries when the clock is replaced). */
  at: number;
  /** The async context of whoever set it, where it fires (as a timer of its own would). */
  readonly context: AsyncResource;
  /** Called with `target`; both dropped on cancellation, so a cancelled entry holds nothing until its time comes. */
  fire: (target: never) => void;
  target: unknown;
  live: boolean;
}

export class Deadlines {
  #entries: Deadline[] = [];
  #head = 0;
  #live = 0;
  #timer: NodeJS.Timeout | undefined;
  /** The entry the timer was set for. */
  #armedFor: Deadline | undefined;
  /** The `setTimeout` the timer was set with: a test's fake one, gone since, will never fire it. */
  #armedWith: typeof setTimeout | undefined;
  /** While entries fire (a callback may cancel others: the queue is not compacted under the loop). */
  #firing = false;
  /** Where the clock is read: the global `performance` by default (a test's fake one while installed). */
  readonly #clockOf: () => Clock;
  /** The clock the entries' times were measured on. */
  #clock: Clock | undefined;

  constructor(clockOf: () => Clock = globalPerformance) {
    this.#clockOf = clockOf;
  }

  /**
   * Calls `fire(target)` in `ms`, unless cancelled first. A static `fire` and its target, rather
   * than a closure, spare an allocation per deadline.
   */
  add<T>(ms: number, fire: (target: T) => void, target?: T): Deadline {
    const deadline: Deadline = { at: this.#now() + ms, context: new AsyncResource('tsyringe-background.deadline', { requireManualDestroy: true }), fire, target, live: true };
    const entries = this.#entries;
    let i = entries.length;
    while (i > this.#head && entries[i - 1]!.at > deadline.at) i--;
    if (i === entries.length) entries.push(deadline);
    else entries.splice(i, 0, deadline);
    if (this.#live++ === 0) this.#timer?.ref();
    const armed = this.#armedFor;
    if (armed === undefined || deadline.at < armed.at) this.#arm(deadline, ms);
    // Set with timers that are not those of now (a test's fake ones, installed or removed since):
    // set again with these, for the earliest entry still to fire.
    else if (this.#armedWith !== globalThis.setTimeout) this.#arm(armed, armed.at - this.#now());
    return deadline;
  }

  /**
   * The clock's time. A clock other than the one the entries were measured on (a test's fake
   * timers installed or removed since) takes over with each entry's time left as it was.
   */
  #now(): number {
    const clock = this.#clockOf();
    const previous = this.#clock;
    if (previous === clock) return clock.now();
    this.#clock = clock;
    const now = clock.now();
    if (previous !== undefined) {
      const shift = now - previous.now();
      for (let i = this.#head; i < this.#entries.length; i++) {
        this.#entries[i]!.at += shift;
      }
    }
    return now;
  }

  /** How many deadlines are set and neither fired nor cancelled. */
  get live(): number {
    return this.#live;
  }

  /** How many entries the queue holds, cancelled ones not dropped yet included. */
  get queued(): number {
    return this.#entries.length - this.#head;
  }

  cancel(deadline: Deadline): void {
    if (!deadline.live) return;
    deadline.live = false;
    deadline.fire = noop;
    deadline.target = undefined;
    deadline.context.emitDestroy();
    // Most scopes drain in the order they were disposed, so cancelled entries usually sit at the
    // tail: drop them now rather than keep them until the timer fires.
    const entries = this.#entries;
    while (entries.length > this.#head && !entries[entries.length - 1]!.live && entries[entries.length - 1] !== this.#armedFor) entries.pop();
    if (--this.#live === 0) this.#timer?.unref();
    // Those cancelled before a later one still pending would wait for their time to be dropped:
    // with long deadlines, that is a great many. Dropped once they are most of the queue.
    const queued = entries.length - this.#head;
    if (queued > 1024 && this.#live < queued / 4 && !this.#firing) {
      this.#entries = entries.filter((entry, i) => i >= this.#head && (entry.live || entry === this.#armedFor));
      this.#head = 0;
    }
  }

  #arm(deadline: Deadline, ms: number): void {
    clearTimeout(this.#timer);
    this.#armedFor = deadline;
    this.#armedWith = globalThis.setTimeout;
    // Each deadline fires in its own context: the timer, kept across many, in none of theirs.
    this.#timer = inOwnContext(() => setTimeout(this.#fire, Math.max(0, ms)));
    if (this.#live === 0) this.#timer.unref();
  }

  #fireOne(deadline: Deadline): void {
    deadline.live = false;
    this.#live--;
    deadline.context.runInAsyncScope(deadline.fire as (target: unknown) => void, undefined, deadline.target);
    deadline.context.emitDestroy();
  }

  /** Fires the deadlines that came due late, once what came meanwhile has been taken in ({@link lateMs}). */
  readonly #fireLate = (late: readonly Deadline[]): void => {
    this.#firing = true;
    try {
      for (const deadline of late) if (deadline.live) this.#fireOne(deadline);
    } finally {
      this.#firing = false;
    }
  };

  readonly #fire = (): void => {
    const fired = this.#armedFor!;
    this.#timer = undefined;
    this.#armedFor = undefined;
    const entries = this.#entries;
    const clockNow = this.#now(); // first: it may move the entries' times, the fired one's too
    const now = Math.max(fired.at, clockNow);
    let late: Deadline[] | undefined;
    this.#firing = true;
    try {
      while (this.#head < entries.length && entries[this.#head]!.at <= now) {
        const deadline = entries[this.#head++]!;
        if (!deadline.live) continue;
        // Still live until it acts: what is taken in meanwhile may cancel it.
        if (clockNow - deadline.at > lateMs) (late ??= []).push(deadline);
        else this.#fireOne(deadline);
      }
    } finally {
      this.#firing = false;
    }
    if (late !== undefined) setImmediate(this.#fireLate, late);
    while (this.#head < entries.length && !entries[this.#head]!.live) this.#head++;
    if (this.#head === entries.length) {
      this.#entries = [];
      this.#head = 0;
      return;
    }
    if (this.#head > 1024) {
      this.#entries = entries.slice(this.#head);
      this.#head = 0;
    }
    const next = this.#entries[this.#head]!;
    // Firing took time too (each abandoned scope logs its tasks).
    const later = this.#now();
    this.#arm(next, next.at - Math.max(now, later));
  };
}

/**
 * Waits for `promise` at most `ms`; returns whether it settled in time. A timer that fires late
 * gives what came meanwhile its turn first ({@link lateMs}). Leaves no timer.
 */
export async function withDeadline(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const deadline = expiry(ms);
  try {
    return await Promise.race([promise.then(() => true), deadline.expired]);
  } finally {
    deadline.clear();
  }
}

/**
 * How much longer to wait for a time the clock says is `clockLeft` ms away, once a timer set for
 * `waited` ms has fired (`capped`: the wait was cut to what a timer can take, or to look at the
 * clock again). None when the clock agrees the time has come, or when it disagrees by more than
 * half the wait: a timer that fired has waited its delay, whatever the clock says (it was set back,
 * or a test's fake timers leave `Date` alone), as for the entries above. The rest otherwise: a
 * timer fires up to a millisecond early by the wall clock, and a capped wait is only a part.
 */
export function stillToWait(clockLeft: number, waited: number, capped: boolean): number {
  if (clockLeft <= 0 || (!capped && clockLeft > waited / 2)) return 0;
  return clockLeft;
}

function globalPerformance(): Clock {
  return globalThis.performance;
}

/** The process's drain deadlines. */
export const deadlines = new Deadlines();

function noop(): void {}

