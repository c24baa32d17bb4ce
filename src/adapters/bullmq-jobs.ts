/**
 * What the durable backend's two sides share (src/adapters/bullmq.ts is its entry point): where
 * the queue is, the job a durable task becomes (its data, its BullMQ options, the small jobs that
 * carry `after`), what any process reads of a job, and the checks made where the mistake is.
 */
import { createRequire } from 'node:module';
import { defaultRepeatStrategy, type ConnectionOptions, type Job, type JobsOptions, type RepeatStrategy } from 'bullmq';
import { Redis } from 'ioredis';
import type { DependencyContainer } from 'tsyringe';
import { Background, consoleLogger, type BackgroundLogger, type CloseOutcome, type TaskDefinition, type TaskHandle, type TaskProgress, type TaskRequest, type TaskStatus } from '../index.js';
import { checkKnownKeys, describe, isOptionsObject, messageOf } from '../model/checks.js';
import { isLogger } from '../model/logger.js';
import { expiry } from '../model/timing.js';

/** Where the queue is. */
export interface BullMQConnection {
  /**
   * How to reach Redis: ioredis options (`{ host, port }`, `{ url: 'redis://…' }`, with any other
   * of ioredis's options) or an ioredis client, which stays yours to end (for `startWorkers()`,
   * one made with `maxRetriesPerRequest: null`, as BullMQ's workers need).
   * @default { host: '127.0.0.1', port: 6379 }
   */
  connection?: ConnectionOptions | undefined;
  /**
   * The queue's name: producers and workers of one set of tasks share it.
   * @default 'tsyringe-background'
   */
  queueName?: string | undefined;
  /** BullMQ's key prefix in Redis. @default 'bull' */
  prefix?: string | undefined;
  /**
   * Where the durable backend logs. For `useBullMQ()`: failures to enqueue, cancellations that
   * could not reach Redis, lost connections. For `startWorkers()`: everything the workers log —
   * their own entries (a job of an unknown task, a lost lock, a lost connection, `close()`'s
   * warnings) and the entries of each job's attempt (`task "x" failed (attempt 1 of 4); its
   * queue runs it again`, the last failure, the task's own `ctx.logger` entries); the tasks a job
   * adds to a `Background` it injects are the application's, and log to its
   * `BackgroundOptions.logger`. Without it, all of these go to the application's logger (the
   * `BackgroundOptions.logger` registered on its root container).
   * @default the application's logger (`consoleLogger` when none is registered)
   */
  logger?: BackgroundLogger | undefined;
}

/** What a job carries: the task's arguments and the options a worker applies. */
export interface JobData {
  readonly args: unknown[];
  readonly timeoutMs?: number | undefined;
  /** Only in the jobs of a task with retries. */
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number; readonly factor: number; readonly jitter: number } | undefined;
  /**
   * Only in the job of a task cancelled while it was running (or taken by a worker as it was being
   * removed): the cancellation's reason, written by the producer so that a worker that takes the
   * job later (after its first worker died) cancels it before its task starts.
   */
  readonly cancelled?: string | undefined;
  /**
   * Only in the job of a one-off task added while its application carried a context (its trace,
   * through `instrumentTasks()`): that context at `add()`, entered around each attempt.
   */
  readonly context?: Readonly<Record<string, string>> | undefined;
}

/**
 * A job's data: its arguments, and what its worker needs besides, nothing more. Every byte of a
 * job is written, copied and parsed at each step of its life: a raw BullMQ worker spent less Node
 * CPU a job (6 paired runs: 2–25%, median ≈ 13%) draining jobs of a task without retries once they
 * no longer carried a backoff they never use, nor `attempts: 1` and `delay: 0` in their options.
 */
export function jobData(args: unknown[], options: TaskRequest['options'], context?: TaskRequest['carried']): JobData {
  return { args, timeoutMs: options.timeoutMs, backoff: options.retries > 0 ? options.backoff : undefined, context };
}

/** The options of the jobs of a task with retries (BullMQ's defaults make one attempt). */
export function retryOptions(retries: number): JobsOptions {
  return { attempts: retries + 1, backoff: backoffType };
}

/** The beginning of the names of the library's own jobs, which no task's name may have. */
export const ownJobPrefix = 'tsyringe-background:';

/**
 * The jobs of the flows that `after` makes are named so; workers run them before looking for a
 * task (a guard, which checks the jobs waited for once the flow is in Redis; and jobs that fail
 * at once, so as to fail their parent: the dependent then reads `skipped`).
 */
export const afterJob = `${ownJobPrefix}after`;

/**
 * The event a worker writes on its queue's event stream just before it puts back a job it took
 * and will not run (its application closed): BullMQ counts the take among the job's
 * `attemptsStarted`, and the stream's `waiting` that follows (`prev: active`) is also what an
 * immediate retry writes, so a handle following the job could not otherwise tell that its next
 * start is the same attempt, not a new one.
 */
export const putBackEvent = `${ownJobPrefix}put-back` as const;

/** A job a dependent waits for. */
interface Prerequisite {
  readonly id: string;
  readonly name: string;
}

/** A job a dependent waited for, known to have ended otherwise than succeeded. */
export interface FailedPrerequisite extends Prerequisite {
  /** As `TaskSkippedError` words it: `failed`, `cancelled`, or a phrase. */
  readonly status: string;
  /** The job's own `failedReason`, or the cancellation's reason. */
  readonly reason?: string | undefined;
  /** For a job that was itself skipped (at its `add()`): the job whose failure began the chain of skips. */
  readonly first?: FailedPrerequisite | undefined;
}

/** What a job named {@link afterJob} carries. */
export type AfterData =
  /** The dependent's guard: checks `after` once the flow is in Redis. */
  | { readonly kind: 'guard'; readonly after: readonly Prerequisite[]; readonly failed?: FailedPrerequisite }
  /** Made by the flow under a job's id only when no job of that id was there: fails at once. */
  | { readonly kind: 'missing'; readonly id: string; readonly name: string }
  /** Added to the dependent of a job cancelled while waiting, before that job is removed: fails at once. */
  | { readonly kind: 'cancelled'; readonly id: string; readonly name: string; readonly reason: string };

/** How a job waited for that was not in Redis is said to have ended. */
export const notInQueue = 'was not in the queue (cancelled or removed, or its record expired)';

/** Options of the jobs named {@link afterJob}: one attempt, before every other job. */
export const afterJobOptions = { attempts: 1, priority: 1, removeOnComplete: true, removeOnFail: { age: 7 * 24 * 3600 } } satisfies JobsOptions;

/** Options every job of a task shares (BullMQ reads them, and copies them into Redis). */
const backoffType = Object.freeze({ type: 'tsyringe-background' });
export const keepCompleted = Object.freeze({ age: 24 * 3600, count: 10_000 });
export const keepFailed = Object.freeze({ age: 7 * 24 * 3600 });

/**
 * Marks of the public API's internals that adapters use (the same `Symbol.for` as in
 * src/model/call-options.ts): a handle that `after` lets through to this runner, and the
 * `Background` method that adds a worker's local run as an attempt of its job.
 */
export const runnerHandle: unique symbol = Symbol.for('tsyringe-background.runnerHandle');
export const jobRun: unique symbol = Symbol.for('tsyringe-background.jobRun');
/** The `Background` property that is its application's `JobContext` (src/model/runner.ts). */
export const jobContext: unique symbol = Symbol.for('tsyringe-background.jobContext');
/** The `Background` method that has its application close something with it (src/model/runner.ts). */
export const closeWith: unique symbol = Symbol.for('tsyringe-background.closeWith');
/** The `Background` property that is its application's logger (src/model/runner.ts). */
export const applicationLogger: unique symbol = Symbol.for('tsyringe-background.applicationLogger');

/**
 * A logger that writes each entry to the logger of the application of `background()` (the
 * `BackgroundOptions.logger` its root registers), read at each entry; to `consoleLogger` when it
 * cannot be read (the application's container disposed). Where the durable backend logs without
 * a logger of its own.
 */
export function applicationLoggerOf(background: () => object): BackgroundLogger {
  const current = (): BackgroundLogger => {
    try {
      return (background() as { [applicationLogger]?: BackgroundLogger })[applicationLogger] ?? consoleLogger;
    } catch {
      return consoleLogger;
    }
  };
  return {
    error: (fields, message) => current().error(fields, message),
    warn: (fields, message) => current().warn(fields, message),
    info: (fields, message) => current().info(fields, message),
    debug: (fields, message) => current().debug(fields, message),
  };
}

/** What a job's attempt is linked to (src/model/call-options.ts's `JobLink`, which adapters do not see). */
export interface JobLink {
  readonly id: string | undefined;
  readonly attempt: number;
  readonly attempts: number;
  readonly scope: DependencyContainer | undefined;
  progress(fraction: number, message: string | undefined): void;
  stopRetrying(): void;
}

/** A `Background` seen through {@link jobRun}: `with({ durable: false, retries: 0, timeoutMs }).add(task, ...args)`, the run an attempt of `job`. */
export interface JobRunAdder {
  [jobRun](task: TaskDefinition<never[]>, args: unknown[], job: JobLink, timeoutMs: number | undefined): TaskHandle;
  /** What enters the context a job carries ({@link JobData.context}), when an adapter set one on the application. */
  readonly [jobContext]: { enter<T>(carried: NonNullable<TaskRequest['carried']>, run: () => T): T } | undefined;
  /** Has the application call `close(timeoutMs)` as its close begins, and wait for it; returns what takes it off. */
  [closeWith](close: (timeoutMs: number) => Promise<CloseOutcome | void>): () => void;
}

/** A durable task as any process can see it, read from Redis. */
export interface DurableJob {
  /** The job's id, which is the task's handle id. */
  readonly id: string;
  /** The task's name (the job's name in BullMQ). */
  readonly name: string;
  /** Where the task is, as its handle would say, read from the job's state. */
  readonly status: TaskStatus;
  /** Attempts made so far (0 for a skipped task: it never ran). */
  readonly attempt: number;
  /**
   * What the task last reported through `TaskContext.progress()`, as the job keeps it;
   * `undefined` when it reported nothing, or while the job waits for a retry.
   */
  readonly progress: TaskProgress | undefined;
  /** The task's value, once it succeeded. */
  readonly result: unknown;
  /** Why it failed, or why it was skipped, once it ended so. */
  readonly failedReason: string | undefined;
}

/**
 * Whether `value` is a `defineTask()` or `workerTask()` definition, told by its shape: the
 * adapters see only the public API (a definition is frozen, with its name, its function and its
 * dependencies' tokens).
 */
export function isDefinitionByShape(value: unknown): value is TaskDefinition<never[], unknown> {
  const task = value as Partial<TaskDefinition> | null;
  return typeof task?.name === 'string' && typeof task.fn === 'function' && Array.isArray(task.inject) && Object.isFrozen(task);
}

export const defaultConnection: ConnectionOptions = { host: '127.0.0.1', port: 6379 };
export const defaultQueueName = 'tsyringe-background';

export type Outcome = { ok: true; value: unknown } | { ok: false; error: Error };

/**
 * The task's own backoff, as `retries` in process use it: the formula of `backoffDelay()` in
 * src/model/task-options.ts, repeated because adapters see only the public API. Change both.
 */
export function backoffFor(backoff: JobData['backoff'] | undefined, attempt: number): number {
  if (backoff === undefined) return 1_000;
  const delay = Math.min(backoff.maxMs, backoff.baseMs * backoff.factor ** (attempt - 1));
  return Math.round(delay * (1 - backoff.jitter * Math.random()));
}

/** BullMQ's priority (1 first, up to 2 097 151) for ours (higher first; `normal` is 50). */
export function bullPriority(priority: number): number {
  return Math.min(2_097_151, Math.max(1, Math.round(1_000_000 - priority * 1_000)));
}

/** The key of the child whose failure failed a job (BullMQ's `child <key> failed`), if that is why. */
export function childFailed(failedReason: string): string | undefined {
  return /^child (\S+) failed$/.exec(failedReason)?.[1];
}

/** How a worker begins the `failedReason` of a job it stopped because it was cancelled. */
export const cancelledPrefix = 'cancelled: ';

/**
 * What a failed job waited for says of itself: `cancelled` with the cancellation's reason when a
 * cancellation stopped it (its `failedReason` without {@link cancelledPrefix}, which the word
 * `cancelled` already says: the reason then reads as that of a job cancelled while it waited),
 * `failed` with its `failedReason` otherwise.
 */
export function endedWith(failedReason: string): { status: 'cancelled' | 'failed'; reason: string } {
  return failedReason.startsWith(cancelledPrefix) ? { status: 'cancelled', reason: failedReason.slice(cancelledPrefix.length) } : { status: 'failed', reason: failedReason };
}

/**
 * What a failed job says of itself, as {@link endedWith}, its data read too: a job failed after a
 * cancellation marked it ({@link JobData.cancelled}: BullMQ failing it as stalled, its worker
 * dead) reads `cancelled` with that reason, as its own handle reads it; not one failed for a job
 * it waited for (`child <key> failed`).
 */
export function jobEnded(job: Job): { status: 'cancelled' | 'failed'; reason: string } {
  const failedReason = job.failedReason ?? '';
  const mark = markOf(job.data, failedReason);
  return mark !== undefined ? { status: 'cancelled', reason: mark } : endedWith(failedReason);
}

/** How BullMQ words the failure of a job whose worker died (its lock expired) too often. */
export const stalledReason = 'job stalled more than allowable limit';

/**
 * The cancellation mark of a failed job that counts: only when BullMQ failed it as stalled (its
 * worker dead, it never heard the cancellation). A job that failed on its own as the mark was
 * written (its task's error, a timeout) failed before the cancellation reached it.
 */
export function markOf(data: unknown, failedReason: string): string | undefined {
  return failedReason === stalledReason ? (data as Partial<JobData> | undefined)?.cancelled : undefined;
}

/** What a failed child says of the job its parent waited for. */
export function failureOf(child: Job): FailedPrerequisite {
  if (child.name === afterJob) {
    const data = child.data as AfterData;
    switch (data.kind) {
      case 'guard':
        if (data.failed !== undefined) return data.failed;
        break;
      case 'missing':
        return { id: data.id, name: data.name, status: notInQueue };
      case 'cancelled':
        return { id: data.id, name: data.name, status: 'cancelled', reason: data.reason };
    }
  }
  return { id: child.id ?? '', name: child.name, ...jobEnded(child) };
}

/**
 * How deep an argument may nest: `JSON.stringify` runs out of stack a few thousand levels down
 * (and the worker's `JSON.parse` with it), so deeper data does not survive JSON.
 */
export const maxJsonDepth = 1_000;

/**
 * Checks that arguments survive JSON as they are: a `TypeError` naming the task and the path
 * otherwise. It runs at every durable `add()`.
 */
export function checkJson(taskName: string, args: readonly unknown[]): void {
  const problem = jsonProblem(args, 'args');
  if (problem !== undefined) throw new TypeError(`bg.add("${taskName}"): ${problem}, which does not survive JSON; a durable task's arguments must be plain data`);
}

/**
 * Whether a prototype is some realm's `Object.prototype` (one made by `node:vm` is not this
 * realm's): it has no prototype itself, and its own `constructor` is the engine's `Object`. The
 * same test as `isBuiltInPrototype()` in src/worker/clone.ts, which the adapters cannot import.
 */
function isObjectPrototype(prototype: unknown): boolean {
  if (typeof prototype !== 'object' || prototype === null || Object.getPrototypeOf(prototype) !== null) return false;
  const constructor: unknown = Object.getOwnPropertyDescriptor(prototype, 'constructor')?.value;
  return typeof constructor === 'function' && constructor.name === 'Object' && /\{\s*\[native code\]\s*\}$/.test(Function.prototype.toString.call(constructor));
}

/** Thrown inside {@link jsonProblem}'s walk to leave it at the first problem. */
class JsonProblem extends Error {
  constructor(readonly said: string) {
    super(said);
  }
}

/**
 * Why values do not survive JSON as they are (`args[0].a[1].b is NaN`), or undefined when they
 * do: `args` names each value by its index (`args[0]`), `result` names the one value `result`. The
 * path is kept as keys, and made a string only for the problem; the objects being visited, for
 * circular references, as a stack (no deeper than {@link maxJsonDepth}, so the walk never runs
 * out of stack itself).
 */
export function jsonProblem(values: readonly unknown[], root: 'args' | 'result'): string | undefined {
  const path: (string | number)[] = [];
  const open: object[] = [];
  const problem = (what: string): never => {
    const keys = path.length > 12 ? [...path.slice(0, 8), '…', ...path.slice(-2)] : path;
    const where = keys.map((key, i) => (i === 0 ? (root === 'args' ? `args[${key}]` : 'result') : key === '…' ? '…' : typeof key === 'number' ? `[${key}]` : `.${key}`)).join('');
    throw new JsonProblem(`${where} is ${what}`);
  };
  /** A property read as JSON.stringify would read it: a getter that throws is a problem at its path. */
  const readKey = (object: Record<string | number, unknown>, key: string | number): unknown => {
    try {
      return object[key];
    } catch (error) {
      return problem(`not readable: its getter threw (${messageOf(error)})`);
    }
  };
  const visit = (value: unknown, inArray: boolean): void => {
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return;
      case 'number':
        if (!Number.isFinite(value)) problem(String(value));
        return;
      case 'undefined':
        // An object's undefined property is left out, and reads back the same; in a list it becomes null.
        if (inArray) problem('undefined (it would arrive as null)');
        return;
      case 'object':
        if (value === null) return;
        break;
      default:
        problem(typeof value === 'function' ? 'a function' : `a ${typeof value}`);
    }
    const object = value as Record<string, unknown>;
    if (open.includes(object)) problem('a circular reference');
    if (open.length >= maxJsonDepth) problem(`nested more than ${maxJsonDepth} levels deep`);
    const list = Array.isArray(object);
    if (!list) {
      const proto = Object.getPrototypeOf(object) as unknown;
      // Plain data made in another realm (node:vm) has that realm's Object.prototype: known by its shape.
      if (proto !== Object.prototype && proto !== null && !isObjectPrototype(proto)) {
        problem(`an instance of ${(object.constructor as { name?: string } | undefined)?.name ?? 'a class'}`);
      }
    }
    // JSON.stringify sends what toJSON returns in its place (an own one, enumerable or not, or an inherited one).
    if (typeof readKey(object, 'toJSON') === 'function') problem('an object with a toJSON method (JSON would send what it returns instead)');
    open.push(object);
    /** How many own keys JSON reads: a list's items (and its length), an object's enumerable string keys. */
    let read: number;
    if (list) {
      for (let i = 0; i < object.length; i++) {
        path.push(i);
        visit(readKey(object, i), true);
        path.pop();
      }
      // (Every item is an own key now: a hole would have read as undefined above.)
      read = object.length + 1;
    } else {
      const keys = Object.keys(object);
      for (const key of keys) {
        path.push(key);
        visit(readKey(object, key), false);
        path.pop();
      }
      read = keys.length;
    }
    // Nothing else of its own, as most data: no key JSON leaves out to look for. (The quickest
    // questions V8 answers: both are fast for plain objects, where Reflect.ownKeys() is not.)
    if (Object.getOwnPropertySymbols(object).length === 0 && ((root === 'result' && !list) || Object.getOwnPropertyNames(object).length === read)) {
      open.pop();
      return;
    }
    // A list's own named properties are left out.
    if (list && Object.keys(object).length > object.length) {
      const named = Object.keys(object).find((key) => !/^(0|[1-9]\d*)$/.test(key))!;
      path.push(named);
      problem('a named property of a list');
    }
    const symbol = Object.getOwnPropertySymbols(object).find((key) => Object.prototype.propertyIsEnumerable.call(object, key));
    if (symbol !== undefined) problem(`an object with a symbol-keyed property (${String(symbol)}), left out`);
    if (root === 'args') {
      const hidden = Object.getOwnPropertyNames(object).find((key) => !Object.prototype.propertyIsEnumerable.call(object, key) && !(list && key === 'length'));
      if (hidden !== undefined) problem(`an object with a non-enumerable property (${hidden}), left out`);
    }
    open.pop();
  };
  try {
    for (let i = 0; i < values.length; i++) {
      path.push(i);
      // A result may be undefined (a task that returns nothing); an argument may not (it would arrive as null).
      visit(values[i], root === 'args');
      path.pop();
    }
    return undefined;
  } catch (error) {
    if (error instanceof JsonProblem) return error.said;
    // Called with the stack nearly used up already: said as the value's problem, not as a bare RangeError.
    if (error instanceof RangeError) {
      try {
        problem(`too deeply nested to be checked here (${error.message})`);
      } catch (said) {
        return (said as JsonProblem).said;
      }
    }
    throw error;
  }
}


/** The key of `Background`'s static door to the library's cron times (src/model/cron-times.ts's `cronTimesDoor`). */
const cronTimesDoor: unique symbol = Symbol.for('tsyringe-background.cronTimes');

/** `Background` seen through {@link cronTimesDoor}. */
interface CronTimesDoor {
  [cronTimesDoor](expression: string, tz: string | undefined): { nextAfter(from: Date): Date | null };
}

/**
 * BullMQ's repeat strategy for the queue's cron schedules, given to its producers' `Queue` and its
 * workers' `Worker` (BullMQ asks it for a schedule's next time when a process adds the schedule,
 * and when a worker takes one of its runs): the times of periodic tasks in process, across
 * daylight-saving changes as docs/task-control.md says. BullMQ's own (cron-parser's) ran a
 * skipped time 30 minutes late (`'30 2 * * *'` in Berlin), ran a time again when asked from the
 * second pass of a repeated hour (a deploy then), dropped Lord Howe's shifted half hours, and on
 * its fall-back night ran an hourly schedule hundreds of times in a row and then never again.
 * A schedule made otherwise (with `startDate`, `endDate` or `immediately`, as by hand; `every`
 * never comes here) keeps BullMQ's. A schedule's times are made once per expression and zone (a few hundred at most).
 */
export function cronRepeatStrategy(): RepeatStrategy {
  const times = new Map<string, { nextAfter(from: Date): Date | null }>();
  return (millis, opts) => {
    const { pattern, tz } = opts;
    if (pattern === undefined || pattern === null || opts.startDate !== undefined || opts.endDate !== undefined || opts.immediately === true) return defaultRepeatStrategy(millis, opts);
    const key = `${tz ?? ''} ${pattern}`;
    let found = times.get(key);
    if (found === undefined) {
      try {
        found = (Background as unknown as CronTimesDoor)[cronTimesDoor](pattern, tz ?? undefined);
      } catch {
        // Not an expression croner takes (a schedule made by hand): BullMQ's parser decides.
        return defaultRepeatStrategy(millis, opts);
      }
      if (times.size >= 500) times.clear();
      times.set(key, found);
    }
    return found.nextAfter(new Date(millis))?.getTime();
  };
}

/** What {@link checkCron} uses of cron-parser, the parser of BullMQ's job schedulers. */
interface CronParser {
  readonly CronExpressionParser: { parse(expression: string, options: { tz?: string; currentDate: Date }): { next(): unknown } };
}

let cronParser: CronParser | undefined;

/**
 * Checks that BullMQ's job scheduler takes a cron expression (croner, which checked it at
 * `bg.with()`, takes a wider syntax: a year field, `W`): parsed as BullMQ parses it, with
 * cron-parser (BullMQ's own copy, loaded on first use from where BullMQ is), the time zone and
 * now, and with a next run (BullMQ silently saves no schedule without one). A `TypeError` naming
 * the task and the expression otherwise.
 */
export function checkCron(taskName: string, expression: string, tz: string | undefined): void {
  cronParser ??= createRequire(createRequire(import.meta.url).resolve('bullmq'))('cron-parser') as CronParser;
  const what = `bg.add("${taskName}"): options.cron ${JSON.stringify(expression)}${tz === undefined ? '' : ` with options.tz ${JSON.stringify(tz)}`}`;
  let interval: { next(): unknown };
  try {
    interval = cronParser.CronExpressionParser.parse(expression, { ...(tz === undefined ? {} : { tz }), currentDate: new Date() });
  } catch (error) {
    throw new TypeError(`${what} is not taken by BullMQ's job scheduler (cron-parser: ${messageOf(error)}), which runs durable periodic tasks; write it in the syntax both accept`, { cause: error });
  }
  try {
    interval.next();
  } catch (error) {
    throw new TypeError(`${what} has no further run for BullMQ's job scheduler (cron-parser: ${messageOf(error)}), which would save no schedule`, { cause: error });
  }
}

/** Whether a command failed because Redis answered with an error (it ran, and refused), not because the connection failed. */
export function refusedByRedis(error: unknown): boolean {
  return (error as Error | undefined)?.name === 'ReplyError';
}

/**
 * Checks a time in ms given as `option`: an integer from `min` to 2147483647 (Node's longest
 * timer), or undefined; a RangeError naming the option and the value for another number, a
 * TypeError for anything else (`"5000"`).
 */
export function checkMs(option: string, value: unknown, min: 0 | 1): void {
  if (value !== undefined && !(Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= 2_147_483_647)) {
    const ErrorType = typeof value === 'number' ? RangeError : TypeError;
    throw new ErrorType(`${option} must be an integer from ${min} to 2147483647, got ${describe(value)}`);
  }
}

/**
 * Checks the options of a `close(options)` (`at`: `backend.close(options)`): an object with
 * `timeoutMs` only, an integer from 0 to 2147483647 or none, read once.
 * @returns the `timeoutMs` given, if any.
 * @throws TypeError for another value or key; RangeError for a number out of range.
 */
export function checkCloseOptions(at: string, options: unknown): number | undefined {
  if (!isOptionsObject(options)) throw new TypeError(`${at}: options must be an object, got ${describe(options)}`);
  const { timeoutMs } = checkKnownKeys(options, ['timeoutMs'], at) as { timeoutMs?: number };
  checkMs(`${at}: options.timeoutMs`, timeoutMs, 0);
  return timeoutMs;
}

/** The channel on which producers ask workers to stop a running job. */
export function cancelChannel(queueName: string, prefix: string | undefined): string {
  return `${prefix ?? 'bull'}:${queueName}:tsyringe-background:cancel`;
}

/**
 * The sorted set where producers record the cancellations they publish (member: the message,
 * score: when it was sent, in ms), so that a worker that was not listening when one was sent (it
 * started just after, or its subscription was reconnecting) reads it once it listens. It holds the
 * first request for each job only (a key per job beside it, `<record>:<id>`, set if absent, holds
 * that one's message: a worker that takes a job again reads it there). A producer trims it to the last {@link cancelRecordMs} and at most
 * {@link cancelRecordMax} entries.
 */
export function cancelRecordKey(queueName: string, prefix: string | undefined): string {
  return `${prefix ?? 'bull'}:${queueName}:tsyringe-background:cancelled`;
}

/** How long the cancellations sent are kept in {@link cancelRecordKey}, in ms. */
export const cancelRecordMs = 10 * 60_000;

/** How many cancellations {@link cancelRecordKey} keeps at most (the latest). */
export const cancelRecordMax = 10_000;

/**
 * A client of its own, for publishing or subscribing: a duplicate of a given one, or new from
 * options (a `url` among them read as BullMQ reads it: ioredis ignores the key, and the client
 * went to 127.0.0.1:6379). It connects at once, whatever `lazyConnect` says: a subscriber sends no
 * command that would connect it, and would never listen.
 */
export function redisFor(connection: ConnectionOptions): Redis {
  if (isClient(connection)) return (connection as Redis).duplicate({ lazyConnect: false });
  const { url, ...rest } = connection as { url?: string };
  // ioredis's own option types do not pass exactOptionalPropertyTypes: the object goes as it is.
  const options: object = { ...rest, lazyConnect: false, maxRetriesPerRequest: null };
  return url === undefined ? new Redis(options) : new Redis(url, options);
}

/** Whether a connection option is a client (the caller's, shared) rather than options to make one from. */
export function isClient(connection: ConnectionOptions): boolean {
  return typeof (connection as { duplicate?: unknown }).duplicate === 'function';
}

/**
 * A client for a queue, made from options as BullMQ makes one (127.0.0.1:6379 by default), but
 * owned by whoever made it, who can always end it: BullMQ ends neither a client whose set-up it
 * could not finish (Redis went away during it: its `close()` and `disconnect()` wait for that
 * set-up for ever, and the client reconnects for ever) nor any client it was given. It tries to
 * reconnect every second at most (BullMQ's own waits grow to 20 s: after a 7 s outage its next
 * try came 3 s later, past the 10 s in which a job added meanwhile was to be sent).
 */
export function queueClientFor(connection: ConnectionOptions): Redis {
  const { url, ...rest } = connection as { url?: string };
  const options: object = { host: '127.0.0.1', port: 6379, retryStrategy: (times: number) => Math.min(100 * times, 1_000), ...rest };
  return url === undefined ? new Redis(options) : new Redis(url, options);
}

/**
 * Ends a client of {@link redisFor}: with `quit()` while it is connected (what it sent is answered
 * first), for `quitMs` at most (a server that stopped answering would hold it for ever), and at
 * once otherwise: a client that is reconnecting keeps `quit()` until Redis is back, which may be
 * never, and has nothing in flight to wait for.
 */
export async function endClient(client: Redis, quitMs = 1_000): Promise<void> {
  if (client.status === 'ready' && (await within(client.quit(), quitMs))) return;
  client.disconnect();
}

/** Whether `promise` settles (either way) within `ms`. */
export async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const deadline = expiry(ms);
  const settled = await Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    deadline.expired,
  ]);
  deadline.clear();
  return settled;
}

/** The keys of {@link BullMQConnection}, which `useBullMQ()` and `startWorkers()` both take. */
const connectionKeys = ['connection', 'queueName', 'prefix', 'logger'] as const satisfies readonly (keyof BullMQConnection)[];

/**
 * Checks what producers and workers share: the options object, its keys (those of
 * {@link BullMQConnection} and the caller's `ownKeys`: any other is refused), the queue's name
 * and prefix, the logger. `connection` is ioredis's or BullMQ's, passed as it is.
 * @returns the options to read: its own fields and inherited ones, never a polluted Object.prototype's.
 */
export function checkConnection<T extends BullMQConnection>(where: string, given: T, ownKeys: readonly string[]): T {
  if (!isOptionsObject(given)) throw new TypeError(`${where}(options): options must be an object, got ${describe(given)}`);
  const options = checkKnownKeys(given, [...ownKeys, ...connectionKeys], `${where}(options)`);
  const { connection, queueName, prefix, logger } = options;
  // A URL string is what `new Redis(url)` takes, not BullMQ: its characters were read as options, and the client went to 127.0.0.1:6379.
  if (connection !== undefined && (typeof connection !== 'object' || connection === null)) {
    const hint = typeof connection === 'string' ? ' (a URL goes as { url: "redis://…" })' : '';
    throw new TypeError(`${where}(options): options.connection must be ioredis's options ({ host, port }, { url }, …) or an ioredis client${hint}, got ${typeof connection === 'string' ? 'a string' : describe(connection)}`);
  }
  if (queueName !== undefined && (typeof queueName !== 'string' || queueName === '')) {
    throw new TypeError(`${where}(options): options.queueName must be a non-empty string, got ${describe(queueName)}`);
  }
  // BullMQ's own refusal (`Queue name cannot contain :`) is a plain Error naming neither the call nor the option.
  if (queueName?.includes(':') === true) {
    throw new TypeError(`${where}(options): options.queueName must not contain ":", which separates the parts of BullMQ's keys in Redis, got ${describe(queueName)}`);
  }
  if (prefix !== undefined && (typeof prefix !== 'string' || prefix === '')) {
    throw new TypeError(`${where}(options): options.prefix must be a non-empty string, got ${describe(prefix)}`);
  }
  if (logger !== undefined && !isLogger(logger)) {
    throw new TypeError(`${where}(options): options.logger must be a logger with error, warn, info and debug methods, got ${describe(logger)}`);
  }
  return options;
}
