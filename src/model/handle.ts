/**
 * The public view of one task: its handle, its statuses and what it reports. Every runner
 * (the in-process engine, a durable backend) hands out handles of this shape.
 */

/**
 * Where a task is in its life: `delayed` (waiting for its time) → `queued` (waiting for a slot)
 * → `running` → `retrying` (waiting to try again) → … → one of the final states: `succeeded`,
 * `failed`, `timedOut`, `cancelled` (through its handle), `skipped` (a task it was to run after
 * did not succeed) or `abandoned` (its scope's disposal gave up on it).
 */
export type TaskStatus =
  | 'queued'
  | 'delayed'
  | 'running'
  | 'retrying'
  | 'succeeded'
  | 'failed'
  | 'cancelled'
  | 'timedOut'
  | 'skipped'
  | 'abandoned';

/** The statuses a task ends in. */
export type FinalStatus = Exclude<TaskStatus, 'queued' | 'delayed' | 'running' | 'retrying'>;

/** The statuses a task ends in, as a set. */
export const finalStatuses: ReadonlySet<TaskStatus> = new Set<FinalStatus>(['succeeded', 'failed', 'cancelled', 'timedOut', 'skipped', 'abandoned']);

/** Cumulative counts: tasks added, and tasks ended in each final state. */
export type Counts = { total: number } & Record<FinalStatus, number>;

/** Counts at zero. */
export function newCounts(): Counts {
  return { total: 0, succeeded: 0, failed: 0, cancelled: 0, timedOut: 0, skipped: 0, abandoned: 0 };
}

/** What a task last reported through `TaskContext.progress()`. */
export interface TaskProgress {
  /** From 0 to 1. */
  readonly fraction: number;
  /** The message reported with it; `undefined` when none was. */
  readonly message: string | undefined;
}

/** Options of {@link TaskHandle.result}. */
export interface ResultOptions {
  /**
   * Wait at most this long; then the promise rejects with `ResultTimeoutError` (the task goes
   * on).
   */
  timeoutMs?: number | undefined;
}

/**
 * What `add()` returns: a view of one task. Ignoring it is fine: a failing task is logged, and
 * no promise exists until {@link TaskHandle.result} is called.
 */
export interface TaskHandle<R = unknown> {
  /**
   * The task's id: a string, unique in the process (`"1"`, `"2"`, … in the order tasks were
   * added), the same in logs, errors, `TaskContext.id` and `bg.get(id)`. Compare ids for
   * equality only: a durable backend's ids are strings of another form.
   */
  readonly id: string;
  /** The definition's name, the class name, or the function's name (`anonymous` if none). */
  readonly name: string;
  /**
   * Where the task is now. A durable task's handle follows its job from the first time it is
   * watched (this read, `attempt`, `progress` or `result()`); watched after its job was sent, its
   * first read says what this process knew then, and Redis tells it the rest within a round trip.
   */
  readonly status: TaskStatus;
  /** The current attempt, from 1 (0 before the first starts). */
  readonly attempt: number;
  /** What the task last reported through `TaskContext.progress()`, if anything. */
  readonly progress: TaskProgress | undefined;
  /**
   * Cancels the task: a queued, delayed or retrying task never starts again; a running one
   * sees its `TaskContext.signal` abort (a worker task's thread is terminated after a grace
   * period). The task ends `cancelled` at once and frees its slot. Returns whether the task had
   * not ended yet.
   */
  cancel(reason?: unknown): boolean;
  /**
   * The task's outcome: its value, or a rejection with its error (`TaskCancelledError`,
   * `TaskTimeoutError`, `TaskSkippedError`, `TaskAbandonedError`, or what the task threw).
   * Without options, created on the first call and shared by later calls.
   */
  result(options?: ResultOptions): Promise<R>;
}
