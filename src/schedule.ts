import { createRequire } from 'node:module';
import type * as Croner from 'croner';
import type { Cron } from 'croner';
import { BackgroundDisposedError, TaskCancelledError } from './errors.js';
import { finalStatuses, type TaskHandle, type TaskProgress, type TaskRun, type TaskStatus } from './run.js';

/** When a periodic task runs: every `every` ms, or at the times of a cron expression. */
export type Cadence = { readonly every: number } | { readonly cron: Cron; readonly expression: string };

const require = createRequire(import.meta.url);

/** Builds a cron from an expression and a time zone; throws a TypeError naming the option. */
export function cronOf(expression: string, tz: string | undefined): Cron {
  try {
    // Loaded on first use, not at import (worker threads import this library too).
    const { Cron: CronJob } = require('croner') as typeof Croner;
    const cron = new CronJob(expression, { paused: true, ...(tz === undefined ? {} : { timezone: tz }) });
    cron.nextRun();
    return cron;
  } catch (error) {
    const what = tz === undefined ? `options.cron ${JSON.stringify(expression)}` : `options.cron ${JSON.stringify(expression)} with options.tz ${JSON.stringify(tz)}`;
    throw new TypeError(`bg.with(options): ${what} is not valid: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

/**
 * A periodic task: a handle for the schedule, which adds one ordinary run of the task at each
 * tick. By default a tick whose previous run has not ended is skipped (no overlapping runs); a
 * failing run is logged like any task and the next tick still comes (so does a tick whose run
 * could not be added: the queue was full, a dependency no longer resolves). Stopped by `cancel()` or
 * by the disposal of its scope. Its `result()` rejects with `TaskCancelledError` once stopped.
 */
export class Schedule implements TaskHandle {
  readonly id: number;
  readonly name: string;
  status: TaskStatus = 'delayed';
  /** Runs started so far. */
  attempt = 0;
  readonly #cadence: Cadence;
  readonly #overlap: boolean;
  readonly #spawn: () => TaskRun;
  readonly #onStop: (schedule: Schedule) => void;
  readonly #onTickError: (error: unknown, schedule: Schedule) => void;
  #current: TaskRun | undefined;
  #timer: NodeJS.Timeout | undefined;
  #nextAt = 0;
  #stopped: TaskCancelledError | undefined;
  #result: Promise<never> | undefined;
  #reject: ((error: Error) => void) | undefined;

  constructor(
    id: number,
    name: string,
    cadence: Cadence,
    overlap: boolean,
    spawn: () => TaskRun,
    onStop: (schedule: Schedule) => void,
    onTickError: (error: unknown, schedule: Schedule) => void,
  ) {
    this.id = id;
    this.name = name;
    this.#cadence = cadence;
    this.#overlap = overlap;
    this.#spawn = spawn;
    this.#onStop = onStop;
    this.#onTickError = onTickError;
    this.#nextAt = Date.now();
    this.#arm();
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

  cancel(reason?: unknown): boolean {
    if (this.#stopped !== undefined) return false;
    this.stop(new TaskCancelledError(this.name, this.id, reason));
    this.#current?.cancel(reason);
    return true;
  }

  /** Stops future ticks; the run going now, if any, goes on. */
  stop(error: TaskCancelledError): void {
    if (this.#stopped !== undefined) return;
    this.#stopped = error;
    clearTimeout(this.#timer);
    this.status = 'cancelled';
    this.#reject?.(error);
    this.#onStop(this);
  }

  result(): Promise<never> {
    this.#result ??= new Promise<never>((_resolve, reject) => {
      if (this.#stopped !== undefined) reject(this.#stopped);
      else this.#reject = reject;
    });
    return this.#result;
  }

  #arm(): void {
    const now = Date.now();
    const cadence = this.#cadence;
    if ('every' in cadence) {
      this.#nextAt = Math.max(this.#nextAt + cadence.every, now);
    } else {
      const next = cadence.cron.nextRun(new Date(now));
      if (next === null) {
        this.stop(new TaskCancelledError(this.name, this.id, `the cron expression ${cadence.expression} has no further run`));
        return;
      }
      this.#nextAt = next.getTime();
    }
    this.#timer = setTimeout(this.#tick, Math.min(this.#nextAt - now, 2 ** 31 - 1));
  }

  readonly #tick = (): void => {
    if (this.#stopped !== undefined) return;
    const previous = this.#current;
    const busy = previous !== undefined && !isFinal(previous.status);
    if (!busy || this.#overlap) {
      try {
        const run = this.#spawn();
        this.#current = run;
        this.attempt++;
        this.status = 'running';
        void run.result().then(this.#ran, this.#ran);
      } catch (error) {
        // Intake closed (the scope is being disposed): the schedule ends. Anything else (a full
        // queue, a dependency that no longer resolves) costs this tick only, and is logged.
        if (error instanceof BackgroundDisposedError) {
          this.stop(new TaskCancelledError(this.name, this.id, error));
          return;
        }
        this.#onTickError(error, this);
      }
    }
    this.#arm();
  };

  readonly #ran = (): void => {
    if (this.#stopped === undefined && this.#current !== undefined && isFinal(this.#current.status)) this.status = 'delayed';
  };
}

function isFinal(status: TaskStatus): boolean {
  return finalStatuses.has(status);
}
