import { messageOf } from './checks.js';

/**
 * Turns the stacks of an error and of its causes into text now. Until its `stack` is first read,
 * V8 keeps each frame's `this` and function alive, to format them later: an error kept on record
 * (a task's outcome, a stopped schedule's) would keep whatever threw it or stopped it (a scope
 * being disposed and its container; a request's service that cancelled a task) for as long as
 * the record lives, `records.maxAgeMs`.
 */
export function stackAsText(error: unknown): void {
  try {
    for (let depth = 0, at = error; depth < 5 && at instanceof Error; depth++, at = at.cause) void at.stack;
  } catch {
    // A revoked proxy, or a stack or cause getter of its own that throws: nothing more to read.
  }
}

/**
 * Stable codes carried by every {@link BackgroundError}. They never change between versions, so
 * code may branch on them (`err.code === 'ERR_BACKGROUND_DISPOSED'`); the table in
 * `docs/errors.md` explains each one.
 */
export type BackgroundErrorCode =
  | 'ERR_BACKGROUND_DISPOSED'
  | 'ERR_TASK_DEPENDENCY'
  | 'ERR_TASK_CANCELLED'
  | 'ERR_TASK_ABANDONED'
  | 'ERR_TASK_NON_ERROR'
  | 'ERR_TASK_TIMEOUT'
  | 'ERR_RESULT_TIMEOUT'
  | 'ERR_TASK_SKIPPED'
  | 'ERR_QUEUE_FULL'
  | WorkerErrorCode
  | DurableErrorCode;

/** Codes of {@link DurableTaskError}: what went wrong around a durable task's job. */
export type DurableErrorCode = 'ERR_DURABLE_ENQUEUE' | 'ERR_DURABLE_FAILED' | 'ERR_DURABLE_GONE';

/** Codes of {@link WorkerTaskError}: what went wrong around a worker task, rather than in it. */
export type WorkerErrorCode =
  | 'ERR_WORKER_SETUP'
  | 'ERR_WORKER_TASK_NOT_FOUND'
  | 'ERR_WORKER_DEPENDENCY'
  | 'ERR_WORKER_EXITED'
  | 'ERR_WORKER_OUT_OF_MEMORY'
  | 'ERR_WORKER_FAILED';

/**
 * Base class of the errors about a task's life. Each subclass has a stable {@link code} and a
 * `name` equal to its class name; the underlying reason, when there is one, is in `cause`.
 *
 * Mistakes in the caller's input (a task that is not a function, an option out of range) are
 * `TypeError`s and `RangeError`s instead, as JavaScript does.
 */
export class BackgroundError extends Error {
  /** A stable, machine-readable code. */
  readonly code: BackgroundErrorCode;

  constructor(code: BackgroundErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * Thrown by `add()` once the `Background` is being disposed or has been disposed: intake is
 * closed so that disposal can finish. Nothing was queued.
 */
export class BackgroundDisposedError extends BackgroundError {
  /** Which scope the Background belonged to: `scope #3`, or `the application root`. */
  readonly scope: string | undefined;
  /** When its disposal (or its application's close) began, epoch ms. */
  readonly disposedAt: number | undefined;

  /**
   * @param closed which scope it was and when its disposal began (or its application's close:
   *   `byApplication`); the message then says so, and how to fix a Background kept too long.
   */
  constructor(taskName: string, state: string, closed?: { scope: string; at: number; byApplication: boolean }) {
    const when = closed === undefined ? '' : `${new Date(closed.at).toISOString()} (${Math.max(0, Date.now() - closed.at)} ms ago)`;
    // After the application's close began, no Background of it takes tasks, ApplicationBackground
    // included: the advice about a Background kept too long would send the reader the wrong way.
    const why =
      closed === undefined
        ? ''
        : closed.byApplication
          ? `: it belonged to ${closed.scope}, whose application began closing at ${when} (shutdown(), or the disposal of its root); no Background of that application takes tasks after that`
          : `: it belonged to ${closed.scope}, whose disposal began at ${when}. An instance that outlives that scope ` +
            '(a @singleton() first resolved from a request scope, say) keeps a Background that can no longer run anything: make that ' +
            "service scoped too (Lifecycle.ContainerScoped), or inject ApplicationBackground for work that must outlive the request";
    super('ERR_BACKGROUND_DISPOSED', `Cannot add task "${taskName}": this Background is ${state} and accepts no new tasks${why}`);
    this.scope = closed?.scope;
    this.disposedAt = closed?.at;
  }
}

/**
 * Thrown synchronously by `add()` when one of a task's dependencies cannot be resolved from the
 * Background's container (or a class task's constructor throws, or tsyringe knows none of its
 * constructor's parameters: no decorator metadata). Names the task, the parameter
 * position and the token; tsyringe's own error is the `cause`. Nothing was queued.
 */
export class TaskDependencyError extends BackgroundError {
  /** Zero-based position of the parameter that could not be resolved (of a class task: of its constructor). */
  readonly position: number | undefined;
  /** A printable form of the token that could not be resolved (definitions). */
  readonly token: string | undefined;
  /** The name of the constructor parameter that could not be resolved (class tasks). */
  readonly parameter: string | undefined;

  /**
   * @param where.unknownParametersOf a class task whose constructor takes parameters that tsyringe
   *   has no list of (`TypeInfo not known for "<Class>"`): the message then says how to give it one.
   */
  constructor(
    taskName: string,
    where: { position?: number | undefined; token?: string | undefined; parameter?: string | undefined; unknownParametersOf?: string | undefined },
    cause: unknown,
  ) {
    const { position, token, parameter, unknownParametersOf } = where;
    const what =
      unknownParametersOf !== undefined
        ? `tsyringe knows no constructor parameters of ${unknownParametersOf}`
        : position === undefined
          ? 'its constructor failed'
          : `the dependency at position #${position} (${token !== undefined ? `token ${token}` : parameter !== undefined ? `parameter ${parameter}` : 'a constructor parameter'}) cannot be resolved`;
    // The reason is tsyringe's message, or, when tsyringe knows no parameters, the fix (its message is in `cause`).
    const why =
      unknownParametersOf !== undefined
        ? 'it needs @injectable(), and either decorator metadata (emitDecoratorMetadata in tsconfig; tsx and esbuild emit none) or @inject(token) on each parameter'
        : messageOf(cause);
    super('ERR_TASK_DEPENDENCY', `Cannot add task "${taskName}": ${what}: ${why}`, { cause });
    this.position = position;
    this.token = token;
    this.parameter = parameter;
  }
}

/** The outcome of a task cancelled through `handle.cancel(reason)`; `cause` is the reason. */
export class TaskCancelledError extends BackgroundError {
  constructor(taskName: string, taskId: string, reason: unknown) {
    super('ERR_TASK_CANCELLED', `Task "${taskName}" (#${taskId}) was cancelled`, { cause: reason });
  }
}

/**
 * The outcome of a task whose attempt ran longer than its `timeoutMs` (after its last attempt,
 * when it has retries). The task's signal was aborted with this error.
 */
export class TaskTimeoutError extends BackgroundError {
  /** The time limit the attempt ran past, in milliseconds: the task's `timeoutMs`. */
  readonly timeoutMs: number;
  /** The attempt that timed out, from 1. */
  readonly attempt: number;

  constructor(taskName: string, taskId: string, timeoutMs: number, attempt: number) {
    super('ERR_TASK_TIMEOUT', `Task "${taskName}" (#${taskId}) timed out after ${timeoutMs} ms (attempt ${attempt})`);
    this.timeoutMs = timeoutMs;
    this.attempt = attempt;
  }
}

/**
 * `handle.result({ timeoutMs })` waited that long and the task had not finished. The task goes
 * on; only this wait ended.
 */
export class ResultTimeoutError extends BackgroundError {
  constructor(taskName: string, taskId: string, timeoutMs: number, status: string) {
    super('ERR_RESULT_TIMEOUT', `Task "${taskName}" (#${taskId}) had not finished after waiting ${timeoutMs} ms for its result (it is ${status})`);
  }
}

/**
 * The outcome of a task that was to run `after` other tasks, one of which failed, was
 * cancelled, timed out, was skipped or abandoned: the task never ran. `cause` is that task's error.
 */
export class TaskSkippedError extends BackgroundError {
  constructor(taskName: string, taskId: string, after: { name: string; id: string; status: string }, cause: unknown) {
    super('ERR_TASK_SKIPPED', `Task "${taskName}" (#${taskId}) was skipped: it was to run after task "${after.name}" (#${after.id}), which ${skippedBecause[after.status] ?? after.status}`, {
      cause,
    });
  }
}

/**
 * Thrown by `add()` when the application already holds `maxQueued` tasks waiting for a slot;
 * nothing was queued. `waitForRoom()` resolves once there is room again.
 */
export class QueueFullError extends BackgroundError {
  constructor(taskName: string, maxQueued: number, queued: number, running: number) {
    super(
      'ERR_QUEUE_FULL',
      `Cannot add task "${taskName}": the queue is full (maxQueued ${maxQueued}: ${queued} queued, ${running} running); ` +
        'retry later or await bg.waitForRoom()',
    );
  }
}

/**
 * The outcome of a task that its scope's disposal gave up on: it was still queued or running
 * when the drain deadline passed. A running task's `AbortSignal` was aborted with this error.
 */
export class TaskAbandonedError extends BackgroundError {
  /** @param dueAfter it was delayed until after the deadline, and abandoned when the drain began. */
  constructor(taskName: string, taskId: string, drainTimeoutMs: number, why = 'its scope was disposed', dueAfter = false) {
    super(
      'ERR_TASK_ABANDONED',
      `Task "${taskName}" (#${taskId}) was abandoned: ${why} and the task ` +
        `${dueAfter ? 'was due after' : 'had not settled within'} the drain deadline of ${drainTimeoutMs} ms`,
    );
  }
}

/**
 * Wraps a value that a task threw or rejected with that is not an `Error` (a string,
 * `undefined`, a plain object…), so that logs always carry a message and a stack. The original
 * value is the `cause`.
 */
export class TaskNonErrorError extends BackgroundError {
  constructor(taskName: string, value: unknown, printed: string, taskId?: string) {
    super('ERR_TASK_NON_ERROR', `Task "${taskName}"${taskId === undefined ? '' : ` (#${taskId})`} failed with a non-Error value: ${printed}`, {
      cause: value,
    });
  }
}

/**
 * A worker task failed because of its surroundings rather than its own code: the setup module
 * threw, the task module does not define the task, a dependency cannot be resolved in the
 * worker, the worker thread exited or ran out of memory. The message names the task, its module
 * and the reason; the {@link code} tells which; `cause` holds the underlying error.
 *
 * An error thrown by the task's own code comes back as itself instead (same name, message,
 * stack, `code` and `cause`).
 */
export class WorkerTaskError extends BackgroundError {
  /** What went wrong around the task: one of {@link WorkerErrorCode}. */
  declare readonly code: WorkerErrorCode;

  constructor(code: WorkerErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

const skippedBecause: Record<string, string> = {
  failed: 'failed',
  timedOut: 'timed out',
  cancelled: 'was cancelled',
  skipped: 'was skipped',
  abandoned: 'was abandoned',
};

/**
 * A durable task's job could not be enqueued (`ERR_DURABLE_ENQUEUE`: not sent, Redis unreachable
 * past the backend's bound; or refused by Redis; or, the connection broken after it was sent, not
 * in Redis when asked: it will not run; or in doubt, the backend closed before Redis could be
 * asked, which its message says), or failed in a worker once its attempts were used up (`ERR_DURABLE_FAILED`:
 * the message is the job's failure reason, `failedReason` as BullMQ keeps it; a worker that does
 * not know the task's name fails it at once, saying so), or was no longer in Redis when its
 * handle was first watched (`ERR_DURABLE_GONE`: its outcome is unknown to this process; the
 * queue keeps an ended job's record for a while only).
 */
export class DurableTaskError extends BackgroundError {
  /** What went wrong around the job: one of {@link DurableErrorCode}. */
  declare readonly code: DurableErrorCode;
  /** The job's id (the task's handle id). */
  readonly jobId: string;

  constructor(code: DurableErrorCode, jobId: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.jobId = jobId;
  }
}
