/**
 * Lifecycle events: what happens to each task, for those who observe an application (metrics,
 * tracing, a live view, tests). Nothing is built when nobody observes.
 */
import type { FinalStatus } from './handle.js';

/** What every event carries. */
export interface TaskEventBase {
  /** The task's id, as `handle.id`. */
  readonly id: string;
  /** The task's name, as `handle.name`. */
  readonly name: string;
  /** The scope the task belongs to, as errors name it: `scope #3`, or `the application root`. */
  readonly scope: string;
  /** The attempt the event is about (from 1); 0 before the first attempt starts. */
  readonly attempt: number;
  /** When it happened (epoch ms). */
  readonly at: number;
}

/**
 * One thing that happened to a task, by `type`:
 *
 * - `added`: `add()` took it (or a periodic task's tick made it); it is queued or delayed.
 * - `started`: an attempt began; `waitedMs` since it last joined the queue (for a worker task:
 *   since it was handed to the pool's admission window, until it was admitted).
 * - `attemptFailed`: an attempt failed or timed out and another follows in `retryInMs`.
 * - `retrying`: the backoff is over; the task joins the queue again.
 * - `progress`: the running attempt reported its progress (`ctx.progress()`).
 * - a final status (`succeeded`, `failed`, `timedOut`, `cancelled`, `skipped`, `abandoned`): the
 *   task's outcome, once. `durationMs` is how long its last attempt ran (none when it ended
 *   without running, a task cancelled in the queue, say); `error` is why it did not succeed.
 */
export type TaskEvent =
  | (TaskEventBase & {
      /** `add()` took the task (or a periodic task's tick made it): it is queued or delayed. */
      readonly type: 'added';
    })
  | (TaskEventBase & {
      /** An attempt began. */
      readonly type: 'started';
      /**
       * Milliseconds since the task last joined the queue (for a worker task: since it was handed
       * to the pool's admission window, until it was admitted).
       */
      readonly waitedMs: number;
    })
  | (TaskEventBase & {
      /** An attempt failed or timed out, and another follows. */
      readonly type: 'attemptFailed';
      /** How long the attempt ran, in milliseconds. */
      readonly durationMs: number;
      /**
       * Why the attempt failed: what it threw (a `TaskNonErrorError` around a value that is not an
       * `Error`), or the `TaskTimeoutError` of its `timeoutMs`.
       */
      readonly error: Error;
      /** Milliseconds until the next attempt joins the queue (the backoff). */
      readonly retryInMs: number;
    })
  | (TaskEventBase & {
      /** The backoff is over: the task joins the queue again. */
      readonly type: 'retrying';
    })
  | (TaskEventBase & {
      /** The running attempt reported its progress (`ctx.progress()`). */
      readonly type: 'progress';
      /** The fraction done, from 0 to 1. */
      readonly fraction: number;
      /** The message given with it; `undefined` when none was. */
      readonly message: string | undefined;
    })
  | (TaskEventBase & {
      /** The task succeeded: its outcome, once. */
      readonly type: 'succeeded';
      /** How long its last attempt ran, in milliseconds. */
      readonly durationMs: number;
    })
  | (TaskEventBase & {
      /** The task ended without success, in this final status: its outcome, once. */
      readonly type: Exclude<FinalStatus, 'succeeded'>;
      /**
       * How long its last attempt ran, in milliseconds; `undefined` when it ended without running
       * (a task cancelled in the queue, say).
       */
      readonly durationMs: number | undefined;
      /** Why it did not succeed: the error its handle's `result()` rejects with. */
      readonly error: Error;
    });

/** The types of {@link TaskEvent}. */
export type TaskEventType = TaskEvent['type'];

/** Receives every event of the tasks it observes, synchronously, as they happen. */
export type TaskObserver = (event: TaskEvent) => void;

/** The event of an attempt's start. */
export type TaskStartedEvent = Extract<TaskEvent, { type: 'started' }>;

/**
 * Runs each attempt of a task inside some context of its own (a tracing span, a logging
 * context): it must call `attempt()` once, synchronously, and return what `attempt()` returns
 * (the task's value, or the promise of it), letting what it throws through.
 */
export type AttemptWrapper = (event: TaskStartedEvent, attempt: () => unknown) => unknown;

/** Who watches an application's tasks: an observer of their events, the wrappers of their attempts. */
export interface TaskHooks {
  readonly observer: TaskObserver | undefined;
  /** The wrappers, the first outermost, each guarded on its own by the run; `undefined` for none. */
  readonly wrappers: readonly AttemptWrapper[] | undefined;
}
