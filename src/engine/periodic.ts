import type { Cadence } from '../model/call-options.js';
import { maxTimerMs, resultTimeoutOf, within } from '../model/checks.js';
import { BackgroundDisposedError, ResultTimeoutError, stackAsText, TaskCancelledError } from '../model/errors.js';
import { nextTaskNumber, taskIdOf } from '../model/ids.js';
import { finalStatuses, type ResultOptions, type TaskHandle, type TaskProgress, type TaskStatus } from '../model/handle.js';
import { logSafely, type BackgroundLogger } from '../model/logger.js';
import { inOwnContext } from '../model/own-context.js';
import { stillToWait } from './deadlines.js';
import type { TaskRun } from './task-run.js';

/** How often a cron schedule looks at the clock in the hour before its next time (ms). */
const cronLookMs = 60_000;
/** How near its next time a cron schedule looks at the clock every {@link cronLookMs} (ms). */
const cronNearMs = 3_600_000;
/**
 * The most missed times of a cron schedule counted one by one, each a look-up of about 40 µs,
 * made on a loop that was just held: past it, the log entry says "or more".
 */
const missedCounted = 100;

/** Who a periodic task is, and when it runs. */
export interface PeriodicSpec {
  readonly name: string;
  readonly cadence: Cadence;
  /** Whether a tick may start a run while the previous one is still going. */
  readonly overlap: boolean;
}

/** What a periodic task needs of its owner (its scope), which implements it. */
export interface PeriodicOwner {
  /**
   * Adds this tick's run, handing it to `adopt` before it joins its scope (its `added` event);
   * throws when it cannot (`BackgroundDisposedError` ends the schedule).
   */
  spawn(periodic: Periodic, adopt: (run: TaskRun) => void): TaskRun;
  /** The schedule has stopped: no tick comes any more. */
  stopped(periodic: Periodic): void;
  /** A tick's run could not be added (a full queue, a dependency that no longer resolves). */
  tickFailed(periodic: Periodic, error: unknown): void;
  /** Where the schedule logs the ticks it missed. */
  readonly logger: BackgroundLogger;
}

/**
 * A stopped schedule's owner: a stopped schedule adds no run and logs nothing, and its record
 * (kept for `records.maxAgeMs`) would otherwise keep its scope, the scope's container and what
 * that holds (a request's values), as a one-off task's record does not.
 */
const detached: PeriodicOwner = {
  spawn: () => {
    throw new Error('a stopped periodic task adds no run');
  },
  stopped: () => undefined,
  tickFailed: () => undefined,
  logger: { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined },
};

/** The ticks a schedule missed: their number (a cron schedule's counted up to {@link missedCounted}) and the first one's time. */
interface MissedTicks {
  readonly count: number;
  /** Epoch ms. */
  readonly first: number;
}

/**
 * A periodic task: a handle for the schedule, which adds one ordinary run of the task at each
 * tick. By default a tick whose previous run has not ended is skipped (no overlapping runs); a
 * failing run is logged like any task and the next tick still comes (so does a tick whose run
 * could not be added: the queue was full, a dependency no longer resolves). Ticks whose time went by
 * while the previous one waited to run (the event loop held, the machine asleep) are skipped and
 * logged at `warn`. Stopped by `cancel()` or by the disposal of its scope. Its `result()` rejects
 * with `TaskCancelledError` once stopped.
 */
export class Periodic implements TaskHandle {
  readonly id: string;
  readonly name: string;
  /** Runs added so far (one a tick that could add one). */
  #runs = 0;
  readonly #cadence: Cadence;
  readonly #overlap: boolean;
  /** Its scope's side, until stopped: then {@link detached}, so that its record does not keep the scope. */
  #owner: PeriodicOwner;
  #current: TaskRun | undefined;
  /** Runs not ended yet: one at most, unless runs may overlap. */
  readonly #live = new Set<TaskRun>();
  #timer: NodeJS.Timeout | undefined;
  #nextAt = 0;
  /** What the timer was set for (ms), and whether that was only a part of the wait. */
  #waited = 0;
  #capped = false;
  #stopped: TaskCancelledError | undefined;
  #result: Promise<never> | undefined;
  #reject: ((error: Error) => void) | undefined;

  /**
   * `'running'` while a run has not ended, `'delayed'` between runs, `'cancelled'` once stopped:
   * read from the runs themselves, so that it says `'delayed'` the moment the last one ends.
   */
  get status(): TaskStatus {
    if (this.#stopped !== undefined) return 'cancelled';
    for (const run of this.#live) if (!finalStatuses.has(run.status)) return 'running';
    return 'delayed';
  }

  /** Runs started so far: a run added but still waiting for its slot (or its thread) has not started. */
  get attempt(): number {
    let started = this.#runs;
    for (const run of this.#live) if (run.attempt === 0) started--;
    return started;
  }

  constructor(spec: PeriodicSpec, owner: PeriodicOwner) {
    this.id = taskIdOf(nextTaskNumber());
    this.name = spec.name;
    this.#cadence = spec.cadence;
    this.#overlap = spec.overlap;
    this.#owner = owner;
    this.#nextAt = Date.now();
    this.#arm(false);
  }

  /** The last run's progress. */
  get progress(): TaskProgress | undefined {
    return this.#current?.progress;
  }

  /** The run now going (or the last one), if any. */
  get current(): TaskHandle | undefined {
    return this.#current;
  }

  /** When the next tick comes (epoch ms), until stopped. */
  get nextAt(): number | undefined {
    return this.#stopped === undefined ? this.#nextAt : undefined;
  }

  /** Whether it was cancelled (its runs with it), not only stopped (by its scope's disposal). */
  #cancelled = false;

  /** Stops the schedule and cancels every run of it not ended yet. */
  cancel(reason?: unknown): boolean {
    if (this.#stopped !== undefined) return false;
    this.#cancelled = true;
    this.stop(new TaskCancelledError(this.name, this.id, reason));
    for (const run of [...this.#live]) run.cancel(reason);
    return true;
  }

  /** Stops future ticks; the run going now, if any, goes on. */
  stop(error: TaskCancelledError): void {
    if (this.#stopped !== undefined) return;
    this.#stopped = error;
    // Kept on record a while: not with the scope that stopped it (on its stack).
    stackAsText(error);
    clearTimeout(this.#timer);
    // (A timer keeps the stores of the context it was set in: its add()'s, a request's.)
    this.#timer = undefined;
    this.#reject?.(error);
    this.#owner.stopped(this);
    // Kept on record for get() and list() a while yet: not with its scope's container.
    this.#owner = detached;
  }

  /** Rejects with `TaskCancelledError` once stopped; `timeoutMs` bounds the wait, as for a task. */
  result(options?: ResultOptions): Promise<never> {
    const timeoutMs = resultTimeoutOf(options);
    // Kept with the handle: made in no caller's context (a promise keeps its stores).
    this.#result ??= inOwnContext(
      () =>
        new Promise<never>((_resolve, reject) => {
          if (this.#stopped !== undefined) reject(this.#stopped);
          else this.#reject = reject;
        }),
    );
    if (timeoutMs === undefined || this.#stopped !== undefined) return this.#result;
    return within(this.#result, timeoutMs, () => new ResultTimeoutError(this.name, this.id, timeoutMs, this.status));
  }

  /** Sets the next tick: after the one at `#nextAt` once it has ticked (logging the ticks it missed), else from the start. */
  #arm(ticked: boolean): void {
    const now = Date.now();
    if (ticked) this.#warnMissed(this.#nextAt, now);
    const cadence = this.#cadence;
    if ('every' in cadence) {
      const next = this.#nextAt + cadence.every;
      // A whole period missed (the event loop stalled, the machine slept): the missed ticks are
      // skipped, and the next comes a period after this one, not at once. More than a period
      // ahead (the clock was set back, or a test's fake timers leave `Date` alone): a period from now.
      this.#nextAt = next > now && next - now <= cadence.every ? next : now + cadence.every;
    } else {
      const next = cadence.cron.nextAfter(new Date(now));
      if (next === null) {
        this.stop(new TaskCancelledError(this.name, this.id, `the cron expression ${cadence.expression} has no further run`));
        return;
      }
      this.#nextAt = next.getTime();
    }
    this.#wait(now);
  }

  /**
   * Logs the ticks after the one due at `due`, just run, whose time came by `now`: `#arm` skips
   * them (the next tick is measured from now), so they never run. A clock set back leaves none.
   */
  #warnMissed(due: number, now: number): void {
    const missed = missedTicks(this.#cadence, due, now);
    if (missed === undefined) return;
    const { count, first } = missed;
    const counted = count < missedCounted || 'every' in this.#cadence ? `${count}` : `${count} or more`;
    const firstMissedAt = new Date(first).toISOString();
    const lateMs = now - due;
    logSafely(
      this.#owner.logger,
      'warn',
      { task: this.name, taskId: this.id, missed: count, firstMissedAt, lateMs },
      `periodic task "${this.name}" (#${this.id}) skipped ${counted} tick(s) it missed, the first due at ${firstMissedAt}: ` +
        `the tick before them ran ${lateMs} ms late (the event loop was held, the machine slept, or the clock was set forward)`,
    );
  }

  /**
   * Sets the timer for the next tick; a tick further than a timer can wait takes several. A cron
   * schedule's times are the wall clock's, which may jump forward while a timer waits (a machine
   * resumed, a clock corrected): it looks at the clock again every minute in the hour before its
   * next time, and halfway there before that (a test's fake clock, advanced by a month, fires a
   * few dozen timers, not one a minute).
   */
  #wait(now: number): void {
    const left = this.#nextAt - now;
    const look = 'every' in this.#cadence ? left : left > cronNearMs ? Math.max(cronNearMs, left / 2) : cronLookMs;
    const ms = Math.min(left, look, maxTimerMs);
    this.#waited = ms;
    this.#capped = ms < left;
    this.#timer = setTimeout(this.#tick, ms);
  }

  readonly #tick = (): void => {
    if (this.#stopped !== undefined) return;
    const now = Date.now();
    // `every` counts time gone by: a timer that fired has waited its period, whatever the clock
    // says. A cron time is the wall clock's: the clock decides.
    const left = 'every' in this.#cadence ? stillToWait(this.#nextAt - now, this.#waited, this.#capped) : this.#nextAt - now;
    if (left > 0) {
      // A capped wait ended before the tick's time (cron runs months apart): wait again. Or the
      // clock was set back (NTP, a day): the next tick is measured from the clock again, rather
      // than left where the old clock put it.
      const cadence = this.#cadence;
      const fromNow = 'every' in cadence ? now + cadence.every : (cadence.cron.nextAfter(new Date(now))?.getTime() ?? this.#nextAt);
      this.#nextAt = Math.min(this.#nextAt, fromNow);
      this.#wait(now);
      return;
    }
    if (this.#live.size === 0 || this.#overlap) {
      let adopted: TaskRun | undefined;
      try {
        // Live (and counted) before its `added` event: the schedule reads `running` there.
        const run = this.#owner.spawn(this, (made) => {
          adopted = made;
          this.#live.add(made);
          this.#runs++;
        });
        // Cancelled while the run was added (by an observer of its `added` event): so is the run.
        // Only stopped (its scope's disposal began there), the run goes on, as a run going on
        // when the schedule stops does: the disposal drains it.
        const stopped = this.#stopped as TaskCancelledError | undefined;
        if (stopped !== undefined && this.#cancelled) {
          this.#live.delete(run);
          this.#runs--;
          run.cancel(stopped.cause);
          return;
        }
        this.#current = run;
        const ran = (): void => {
          this.#live.delete(run);
          // Ended before it started (cancelled, abandoned, skipped while queued): not a run started.
          if (run.attempt === 0) this.#runs--;
        };
        void run.result().then(ran, ran);
      } catch (error) {
        // Adopted, then refused as it joined its scope: it never ran.
        if (adopted !== undefined && this.#live.delete(adopted)) this.#runs--;
        // Intake closed (the scope is being disposed): the schedule ends. Anything else (a full
        // queue, a dependency that no longer resolves) costs this tick only, and is logged.
        if (error instanceof BackgroundDisposedError) {
          this.stop(new TaskCancelledError(this.name, this.id, error));
          return;
        }
        this.#owner.tickFailed(this, error);
      }
    }
    if (this.#stopped === undefined) this.#arm(true);
  };
}

/**
 * The ticks of `cadence` after the one due at `due` and by `now`, if any. For `every`, those of
 * its grid (whose next tick `#arm` then measures from now, rather than from `due`); for `cron`,
 * its times, counted up to {@link missedCounted}.
 */
function missedTicks(cadence: Cadence, due: number, now: number): MissedTicks | undefined {
  if ('every' in cadence) {
    const count = Math.floor((now - due) / cadence.every);
    return count > 0 ? { count, first: due + cadence.every } : undefined;
  }
  const first = cadence.cron.nextAfter(new Date(due))?.getTime();
  if (first === undefined || first > now) return undefined;
  let count = 1;
  for (let at = first; count < missedCounted; count++) {
    const next = cadence.cron.nextAfter(new Date(at))?.getTime();
    if (next === undefined || next > now) break;
    at = next;
  }
  return { count, first };
}
