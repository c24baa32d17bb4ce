/**
 * What the durable backend's two sides share (src/adapters/bullmq.ts is its entry point): where
 * the queue is, the job a durable task becomes (its data, its BullMQ options, the small jobs that
 * carry `after`), what any process reads of a job, and the checks made where the mistake is.
 */
import type { ConnectionOptions, Job, JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { BackgroundLogger, TaskProgress, TaskRequest, TaskStatus } from '../index.js';
import { describe } from './request-scope.js';

/** Where the queue is. */
export interface BullMQConnection {
  /**
   * How to reach Redis: ioredis options (`{ host, port }`) or a connection URL's parts.
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
  /** Where failures to enqueue, and workers' failures, are logged. @default consoleLogger */
  logger?: BackgroundLogger | undefined;
}

/** What a job carries: the task's arguments and the options a worker applies. */
export interface JobData {
  readonly args: unknown[];
  readonly timeoutMs?: number | undefined;
  /** Only in the jobs of a task with retries. */
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number; readonly factor: number; readonly jitter: number } | undefined;
}

/**
 * A job's data: its arguments, and what its worker needs besides, nothing more. Every byte of a
 * job is written, copied and parsed at each step of its life: a raw BullMQ worker spent less Node
 * CPU a job (6 paired runs: 2–25%, median ≈ 13%) draining jobs of a task without retries once they
 * no longer carried a backoff they never use, nor `attempts: 1` and `delay: 0` in their options.
 */
export function jobData(args: unknown[], options: TaskRequest['options']): JobData {
  return { args, timeoutMs: options.timeoutMs, backoff: options.retries > 0 ? options.backoff : undefined };
}

/** The options of the jobs of a task with retries (BullMQ's defaults make one attempt). */
export function retryOptions(retries: number): JobsOptions {
  return { attempts: retries + 1, backoff: backoffType };
}

/**
 * The jobs of the flows that `after` makes are named so; workers run them before looking for a
 * task (a guard, which checks the jobs waited for once the flow is in Redis; and jobs that fail
 * at once, so as to fail their parent: the dependent then reads `skipped`).
 */
export const afterJob = 'tsyringe-background:after';

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
 * src/model/call-options.ts): a handle that `after` lets through to this runner, and the call
 * option that makes a worker's local run an attempt of its job.
 */
export const runnerHandle: unique symbol = Symbol.for('tsyringe-background.runnerHandle');
export const jobRun: unique symbol = Symbol.for('tsyringe-background.jobRun');

/** A durable task as any process can see it, read from Redis. */
export interface DurableJob {
  readonly id: string;
  readonly name: string;
  readonly status: TaskStatus;
  /** Attempts made so far (0 for a skipped task: it never ran). */
  readonly attempt: number;
  readonly progress: TaskProgress | undefined;
  /** The task's value, once it succeeded. */
  readonly result: unknown;
  /** Why it failed, or why it was skipped, once it ended so. */
  readonly failedReason: string | undefined;
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
  const cancelled = child.failedReason.startsWith('cancelled: ');
  return { id: child.id ?? '', name: child.name, status: cancelled ? 'cancelled' : 'failed', reason: child.failedReason };
}

/**
 * Checks that arguments survive JSON as they are: a `TypeError` naming the task and the path
 * otherwise. It runs at every durable `add()`: the path is kept as keys, and made a string only
 * for the error; the objects being visited, for circular references, as a stack.
 */
export function checkJson(taskName: string, args: readonly unknown[]): void {
  const path: (string | number)[] = [];
  const open: object[] = [];
  const problem = (what: string): never => {
    const where = path.map((key, i) => (i === 0 ? `args[${key}]` : typeof key === 'number' ? `[${key}]` : `.${key}`)).join('');
    throw new TypeError(`bg.add("${taskName}"): ${where} is ${what}, which does not survive JSON; a durable task's arguments must be plain data`);
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
    open.push(object);
    if (Array.isArray(object)) {
      for (let i = 0; i < object.length; i++) {
        path.push(i);
        visit(object[i], true);
        path.pop();
      }
      // A list's own named properties are left out: looked for only when it has more keys than items.
      if (Object.keys(object).length > object.length) {
        const named = Object.keys(object).find((key) => !/^(0|[1-9]\d*)$/.test(key))!;
        path.push(named);
        problem('a named property of a list');
      }
    } else {
      const proto = Object.getPrototypeOf(object) as unknown;
      if (proto !== Object.prototype && proto !== null) problem(`an instance of ${(object.constructor as { name?: string } | undefined)?.name ?? 'a class'}`);
      for (const key in object) {
        if (!Object.hasOwn(object, key)) continue;
        path.push(key);
        visit(object[key], false);
        path.pop();
      }
    }
    const symbol = Object.getOwnPropertySymbols(object).find((key) => Object.prototype.propertyIsEnumerable.call(object, key));
    if (symbol !== undefined) problem(`an object with a symbol-keyed property (${String(symbol)}), left out`);
    open.pop();
  };
  for (let i = 0; i < args.length; i++) {
    path.push(i);
    visit(args[i], true);
    path.pop();
  }
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Whether a command failed because Redis answered with an error (it ran, and refused), not because the connection failed. */
export function refusedByRedis(error: unknown): boolean {
  return (error as Error | undefined)?.name === 'ReplyError';
}

/**
 * Checks a time in ms given as `option`: an integer from `min` to 2147483647 (Node's longest
 * timer), or undefined; a RangeError naming the option and the value otherwise.
 */
export function checkMs(option: string, value: unknown, min: 0 | 1): void {
  if (value !== undefined && !(Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= 2_147_483_647)) {
    throw new RangeError(`${option} must be an integer from ${min} to 2147483647, got ${describe(value)}`);
  }
}

/** The channel on which producers ask workers to stop a running job. */
export function cancelChannel(queueName: string, prefix: string | undefined): string {
  return `${prefix ?? 'bull'}:${queueName}:tsyringe-background:cancel`;
}

/** A client of its own, for publishing or subscribing: a duplicate of a given one, or new from options. */
export function redisFor(connection: ConnectionOptions): Redis {
  if (connection instanceof Redis) {
    const copy: Redis = (connection as Redis).duplicate();
    return copy;
  }
  // ioredis's own option types do not pass exactOptionalPropertyTypes: the object goes as it is.
  const options: object = { ...(connection as Record<string, unknown>), maxRetriesPerRequest: null };
  return new Redis(options);
}

/** Whether a connection option is a client (the caller's, shared) rather than options to make one from. */
export function isClient(connection: ConnectionOptions): boolean {
  return typeof (connection as { duplicate?: unknown }).duplicate === 'function';
}

/**
 * A client for a queue, made from options as BullMQ makes one (its defaults: 127.0.0.1:6379, a
 * retry every 1 to 20 s), but owned by whoever made it, who can always end it: BullMQ ends neither a
 * client whose set-up it could not finish (Redis went away during it: its `close()` and
 * `disconnect()` wait for that set-up for ever, and the client reconnects for ever) nor any
 * client it was given.
 */
export function queueClientFor(connection: ConnectionOptions): Redis {
  const { url, ...rest } = connection as { url?: string };
  const options: object = { host: '127.0.0.1', port: 6379, retryStrategy: (times: number) => Math.max(Math.min(Math.exp(times), 20_000), 1_000), ...rest };
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
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false))),
  ]);
  clearTimeout(timer);
  return settled;
}

/** Checks what producers and workers share: the options object, the queue's name and prefix, the logger. */
export function checkConnection(where: string, options: BullMQConnection): void {
  if (typeof options !== 'object' || options === null) throw new TypeError(`${where}(options): options must be an object, got ${describe(options)}`);
  const { queueName, prefix, logger } = options;
  if (queueName !== undefined && (typeof queueName !== 'string' || queueName === '')) {
    throw new TypeError(`${where}(options): options.queueName must be a non-empty string, got ${describe(queueName)}`);
  }
  if (prefix !== undefined && (typeof prefix !== 'string' || prefix === '')) {
    throw new TypeError(`${where}(options): options.prefix must be a non-empty string, got ${describe(prefix)}`);
  }
  if (logger !== undefined && typeof (logger as Partial<BackgroundLogger> | null)?.error !== 'function') {
    throw new TypeError(`${where}(options): options.logger must be a logger with error, warn, info and debug methods, got ${describe(logger)}`);
  }
}
