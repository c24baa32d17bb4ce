import { describe, invalid, isOptionsObject, isTimerMs, maxTimerMs, messageOf, ownOptions } from './checks.js';
import type { DependencyContainer } from 'tsyringe';
import { cronTimes, type CronTimes } from './cron-times.js';
import type { TaskHandle } from './handle.js';
import type { OptionsLevel, TaskOptions } from './task-options.js';

/**
 * Options for the tasks added through one `bg.with(options)` view: the task options, which win
 * over a definition's and the scope's defaults, and when the task may start.
 */
export interface CallOptions extends TaskOptions {
  /** Start no sooner than this many ms from now (the task is `delayed` until then). */
  delayMs?: number | undefined;
  /** Start no sooner than this time (a `Date` or epoch ms). */
  runAt?: Date | number | undefined;
  /**
   * Start only once all these tasks have succeeded; if one of them fails, is cancelled, times
   * out, is skipped or abandoned, this task is skipped (`TaskSkippedError`, its `cause` that
   * task's error).
   */
  after?: readonly TaskHandle[] | undefined;
  /** Run the task every this many ms (the first run after one period): a periodic task. */
  every?: number | undefined;
  /** Run the task at the times of this cron expression (a seconds field is allowed): a periodic task. */
  cron?: string | undefined;
  /** The time zone of `cron`, such as `'Europe/Paris'`. @default the process's */
  tz?: string | undefined;
  /**
   * Whether a periodic run may start while the previous one is still going; when not, that
   * tick is skipped.
   * @default false
   */
  overlap?: boolean | undefined;
}

/**
 * Marks the handles of tasks another runner runs (a durable backend's): `bg.with({ after })`
 * lets them through, and each runner decides whether it can wait for them. A `Symbol.for`:
 * adapters, which see only the public API, make the same symbol.
 */
export const runnerHandle: unique symbol = Symbol.for('tsyringe-background.runnerHandle');

/**
 * Internal door (not documented), a method of `Background` under this key: adds a run that is one
 * attempt of a job whose record is kept elsewhere (a durable worker's job, in Redis), as
 * `bg.with({ durable: false, retries: 0, timeoutMs }).add(task, ...args)` would, with a
 * {@link JobLink}. It counts its attempts from `attempt` (the job's: `attemptsMade + 1`), so
 * that `ctx.attempt`, the handle, the events and the logs count as the job does (the job
 * retries, not the run); its progress goes to `progress` (the job's), without an
 * application-wide observer that would make every task build its events; it is not kept on
 * this application's records once finished (they would fill with copies of jobs, and each would
 * hold its scope in the old generation); and its dependencies are resolved from the job's own
 * scope, when it has one, rather than from the adding Background's (a durable worker adds every
 * job on one Background). A `Symbol.for`, for the same reason as {@link runnerHandle}.
 */
export const jobRun: unique symbol = Symbol.for('tsyringe-background.jobRun');

/** What {@link jobRun} gives: the job's attempt, where its progress goes, and where its dependencies come from. */
export interface JobLink {
  readonly attempt: number;
  /**
   * The job's id: the local run's own (`ctx.id`, its log entries and errors), so that what the
   * attempt says names the job. Undefined: a local id, as any task's.
   */
  readonly id?: string | undefined;
  /**
   * How many attempts the job has in all (its queue tries it again after a failed one while some
   * are left): a failed attempt with more to come is logged at `warn`, as a retry, rather than at
   * `error` as the task's failure; and when the task's `retryIf` says no, {@link stopRetrying} is
   * called before the local run ends. Undefined: 1.
   */
  readonly attempts?: number | undefined;
  /** Called when the task's `retryIf` refuses another attempt of a job that has some left. */
  stopRetrying?(): void;
  progress(fraction: number, message: string | undefined): void;
  /**
   * The container the attempt's dependencies are resolved from (the job's own child scope), in
   * place of the adding Background's; undefined for a task with none to resolve.
   */
  readonly scope: DependencyContainer | undefined;
}

/** When a periodic task runs: every `every` ms, or at the times of a cron expression. */
export type Cadence = { readonly every: number } | { readonly cron: CronTimes; readonly expression: string; readonly tz: string | undefined };

/** When a task may start, from validated call options: what a runner reads of them. */
export type CallTiming = Pick<CallSpec, 'delayMs' | 'runAt' | 'after' | 'cadence' | 'overlap' | 'job'>;

/** When a task with this timing is due (epoch ms), `now` being the clock's time (read now by default); 0 for now. */
export function dueAtOf(timing: CallTiming | undefined, now = Date.now()): number {
  if (timing === undefined) return 0;
  return timing.runAt ?? (timing.delayMs === undefined ? 0 : now + timing.delayMs);
}

/** Call options, validated. */
export interface CallSpec {
  /** The options object, for the task options in it. */
  readonly options: CallOptions;
  /** `delayMs` from now, or `runAt`: relative to when `add()` is called. */
  readonly delayMs: number | undefined;
  readonly runAt: number | undefined;
  readonly after: readonly TaskHandle[];
  /** For a periodic task: when it runs, and whether runs may overlap. */
  readonly cadence: Cadence | undefined;
  readonly overlap: boolean;
  /** The job this run is an attempt of ({@link jobRun}); never from a view's options. */
  readonly job: JobLink | undefined;
}

/** Keys of call options that are not task options. */
export const callKeys: readonly string[] = ['delayMs', 'runAt', 'after', 'every', 'cron', 'tz', 'overlap'];

/** The level of a view's options (`bg.with(options)`), the nearest of the three. */
export const callLevel: OptionsLevel = Object.freeze({ path: 'bg.with(options): options', source: 'the options of bg.with()', extraKeys: callKeys });

/**
 * Validates the non-task part of call options (task options are validated when merged).
 * `canFollow` tells which handles `after` may hold: those of one-off tasks this process runs.
 */
export function resolveCall(given: unknown, canFollow: (handle: unknown) => boolean): CallSpec {
  if (!isOptionsObject(given)) {
    throw new TypeError(`bg.with(options): options must be an object, got ${describe(given)}`);
  }
  // Read from its own options (its inherited ones copied): never from a polluted Object.prototype.
  const options = ownOptions(given, 'bg.with(options): options');
  const { delayMs, runAt, after, every, cron, tz, overlap } = options as CallOptions;
  const cadence = cadenceOf(every, cron, tz);
  if (cadence === undefined && overlap !== undefined) {
    throw new TypeError('bg.with(options): options.overlap applies to periodic tasks only; give options.every or options.cron too');
  }
  if (overlap !== undefined && typeof overlap !== 'boolean') {
    throw new TypeError(`bg.with(options): options.overlap must be a boolean, got ${describe(overlap)}`);
  }
  if (cadence !== undefined) {
    for (const key of ['delayMs', 'runAt', 'after'] as const) {
      if (options[key as keyof object] !== undefined) {
        throw new TypeError(`bg.with(options): options.${key} cannot be given with options.${every === undefined ? 'cron' : 'every'}; a periodic task starts at its first tick`);
      }
    }
  }
  if (delayMs !== undefined && runAt !== undefined) {
    throw new TypeError('bg.with(options): options.delayMs and options.runAt cannot be given together; give one');
  }
  if (delayMs !== undefined && !isTimerMs(delayMs)) {
    throw invalid('bg.with(options): options.delayMs', `an integer from 0 to ${maxTimerMs}`, delayMs);
  }
  let at: number | undefined;
  if (runAt !== undefined) {
    at = runAt instanceof Date ? runAt.getTime() : runAt;
    if (typeof at !== 'number' || !Number.isFinite(at)) {
      // A number out of range (NaN, ±Infinity) is a RangeError, as everywhere; an Invalid Date or any other value a TypeError.
      const ErrorType = typeof runAt === 'number' ? RangeError : TypeError;
      throw new ErrorType(`bg.with(options): options.runAt must be a valid Date or epoch milliseconds, got ${describe(runAt)}`);
    }
    // Past a Date's range (±8.64e15 ms), a time that never comes: the task would wait for ever.
    if (Math.abs(at) > 8.64e15) throw new RangeError(`bg.with(options): options.runAt must be a time a Date can hold (within ±8.64e15 epoch milliseconds), got ${describe(runAt)}`);
  }
  if (after !== undefined) {
    if (!Array.isArray(after)) {
      throw new TypeError(`bg.with(options): options.after must be an array of handles of one-off tasks returned by add() (a periodic task never finishes), got ${describe(after)}`);
    }
    // findIndex, not some(): it visits the holes of a sparse array too.
    const wrong = after.findIndex((handle) => !(canFollow(handle) || isRunnerHandle(handle)));
    if (wrong !== -1) {
      throw new TypeError(`bg.with(options): options.after[${wrong}] must be a handle of a one-off task returned by add() (a periodic task never finishes), got ${describe(after[wrong])}`);
    }
  }
  return Object.freeze({
    options,
    delayMs,
    runAt: at,
    // A copy: the handles checked are those it waits for, whatever becomes of the caller's array.
    after: after === undefined ? noHandles : Object.freeze(after.slice()),
    cadence,
    overlap: overlap ?? false,
    job: undefined,
  });
}

const noHandles: readonly TaskHandle[] = Object.freeze([]);

/** Whether a value is a handle another runner made ({@link runnerHandle}). */
function isRunnerHandle(handle: unknown): boolean {
  return typeof handle === 'object' && handle !== null && runnerHandle in handle;
}

function cadenceOf(every: unknown, cron: unknown, tz: unknown): Cadence | undefined {
  if (every !== undefined && cron !== undefined) {
    throw new TypeError('bg.with(options): options.every and options.cron cannot be given together; give one');
  }
  if (tz !== undefined && cron === undefined) throw new TypeError('bg.with(options): options.tz applies to options.cron only');
  if (every !== undefined) {
    if (!isTimerMs(every) || every < 1) throw invalid('bg.with(options): options.every', `an integer from 1 to ${maxTimerMs}`, every);
    return { every };
  }
  if (cron === undefined) return undefined;
  if (typeof cron !== 'string') throw new TypeError(`bg.with(options): options.cron must be a cron expression string, got ${describe(cron)}`);
  if (tz !== undefined && (typeof tz !== 'string' || tz === '')) throw new TypeError(`bg.with(options): options.tz must be a time zone name, got ${describe(tz)}`);
  return { cron: cronOf(cron, tz), expression: cron, tz };
}

/** The times of a cron expression in a time zone; throws a TypeError naming the option. */
export function cronOf(expression: string, tz: string | undefined): CronTimes {
  try {
    const times = cronTimes(expression, tz);
    // None at all from now (February 30, years all past): a schedule that would never run is a
    // mistake. (A schedule whose last time passes later stops then.)
    if (times.nextAfter(new Date()) === null) throw new TypeError('it has no time from now on (a day that never comes, such as February 30, or only years that have passed)');
    return times;
  } catch (error) {
    const what = tz === undefined ? `options.cron ${JSON.stringify(expression)}` : `options.cron ${JSON.stringify(expression)} with options.tz ${JSON.stringify(tz)}`;
    throw new TypeError(`bg.with(options): ${what} is not valid: ${messageOf(error)}`, { cause: error });
  }
}
