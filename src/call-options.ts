import { describe } from './describe.js';
import { TaskRun, type TaskHandle } from './run.js';
import type { TaskOptions } from './task-options.js';

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
}

/** Call options, validated. */
export interface CallSpec {
  /** The options object, for the task options in it. */
  readonly options: CallOptions;
  /** `delayMs` from now, or `runAt`: relative to when `add()` is called. */
  readonly delayMs: number | undefined;
  readonly runAt: number | undefined;
  readonly after: readonly TaskRun[];
}

/** Keys of call options that are not task options. */
export const callKeys: readonly string[] = ['delayMs', 'runAt', 'after'];

const maxTimerMs = 2 ** 31 - 1;

/** Validates the non-task part of call options (task options are validated when merged). */
export function resolveCall(options: unknown): CallSpec {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`bg.with(options): options must be an object, got ${describe(options)}`);
  }
  const { delayMs, runAt, after } = options as CallOptions;
  if (delayMs !== undefined && runAt !== undefined) {
    throw new TypeError('bg.with(options): options.delayMs and options.runAt cannot be given together; give one');
  }
  if (delayMs !== undefined && !(Number.isSafeInteger(delayMs) && delayMs >= 0 && delayMs <= maxTimerMs)) {
    throw new RangeError(`bg.with(options): options.delayMs must be an integer from 0 to ${maxTimerMs}, got ${describe(delayMs)}`);
  }
  let at: number | undefined;
  if (runAt !== undefined) {
    at = runAt instanceof Date ? runAt.getTime() : runAt;
    if (typeof at !== 'number' || !Number.isFinite(at)) {
      throw new TypeError(`bg.with(options): options.runAt must be a valid Date or epoch milliseconds, got ${describe(runAt)}`);
    }
  }
  if (after !== undefined && !(Array.isArray(after) && after.every((handle) => handle instanceof TaskRun))) {
    throw new TypeError(`bg.with(options): options.after must be an array of task handles returned by add(), got ${describe(after)}`);
  }
  return Object.freeze({ options: options, delayMs, runAt: at, after: (after ?? []) });
}
