import { checkCallback, describe, invalid, isOptionsObject, maxTimerMs, ownOptions, unknownKey } from './checks.js';

/** Named priority levels; any finite number works too (higher starts first). */
export const priorities = Object.freeze({ critical: 100, high: 75, normal: 50, low: 10 });

/** A task's priority: a named level or any finite number. */
export type Priority = keyof typeof priorities | number;

/** Exponential backoff between attempts: `baseMs × factor^(attempt − 1)`, at most `maxMs`. */
export interface Backoff {
  /**
   * The delay before the first retry (before `jitter`), in milliseconds: an integer from 0 to
   * 2147483647.
   * @default 1_000
   */
  baseMs?: number | undefined;
  /**
   * The longest delay, in milliseconds: an integer from `baseMs` to 2147483647.
   * @default 30_000 (or `baseMs`, when that is more)
   */
  maxMs?: number | undefined;
  /**
   * What each delay is multiplied by for the next: a number from 1 (a constant delay) to 100.
   * @default 2
   */
  factor?: number | undefined;
  /**
   * Share of each delay drawn at random, from 0 (none) to 1 (full jitter: anywhere from 0 to
   * the delay), so that tasks failing together do not retry together.
   * @default 0.5
   */
  jitter?: number | undefined;
}

/**
 * How one task runs. Given per call (`bg.with(options).add(...)`), per definition
 * (`defineTask`/`workerTask` options) or for a whole scope (`BackgroundOptions.defaults`); the
 * nearer one wins, field by field.
 */
export interface TaskOptions {
  /**
   * Among tasks waiting for a slot, higher priority starts first; equal priority keeps the
   * order of `add()`.
   * @default 'normal' (50)
   */
  priority?: Priority | undefined;
  /**
   * How many times a failed task is tried again.
   * @default 0
   */
  retries?: number | undefined;
  /** Delays between attempts. */
  backoff?: Backoff | undefined;
  /**
   * Whether a failure is worth another attempt; not called once `retries` are used up.
   * @default every failure is
   */
  retryIf?: ((error: unknown, attempt: number) => boolean) | undefined;
  /**
   * How long one attempt may run. On expiry its signal aborts, the task ends as `timedOut`
   * and its concurrency slot is freed at once.
   * @default none
   */
  timeoutMs?: number | undefined;
  /**
   * Whether the task goes to the application's durable backend (a queue in Redis, through
   * `tsyringe-background/bullmq`) rather than this process's memory: it then survives a restart
   * and may run in another process. Only `defineTask()` and `workerTask()` definitions can be
   * durable (a worker finds them by name), and their arguments must survive JSON.
   * @default false
   */
  durable?: boolean | undefined;
}

/** Task options with defaults filled in, as a run uses them. */
export interface ResolvedTaskOptions {
  readonly priority: number;
  readonly retries: number;
  readonly backoff: Readonly<Required<{ [K in keyof Backoff]: NonNullable<Backoff[K]> }>>;
  readonly retryIf: ((error: unknown, attempt: number) => boolean) | undefined;
  readonly timeoutMs: number | undefined;
  readonly durable: boolean;
}

export const defaultTaskOptions: ResolvedTaskOptions = Object.freeze({
  priority: priorities.normal,
  retries: 0,
  backoff: Object.freeze({ baseMs: 1_000, maxMs: 30_000, factor: 2, jitter: 0.5 }),
  retryIf: undefined,
  timeoutMs: undefined,
  durable: false,
});

const taskKeys = ['priority', 'retries', 'backoff', 'retryIf', 'timeoutMs', 'durable'];
const backoffKeys = ['baseMs', 'maxMs', 'factor', 'jitter'];
const cache = new WeakMap<object, WeakMap<ResolvedTaskOptions, ResolvedTaskOptions>>();

/** Where task options are given: one of the three levels, or a view's options checked alone. */
export interface OptionsLevel {
  /** The options' path in messages: `defineTask("x"): options`, `BackgroundOptions: options.defaults`, `bg.with(options): options`. */
  readonly path: string;
  /** The level as a message names it when a value is inherited from it: `the definition's options`. */
  readonly source: string;
  /** Keys allowed there besides task options (a definition's `name` and `inject`, say). */
  readonly extraKeys?: readonly string[] | undefined;
}

/** The level of registered `defaults`. */
export const defaultsLevel: OptionsLevel = Object.freeze({ path: 'BackgroundOptions: options.defaults', source: 'the registered defaults (options.defaults)' });

/**
 * Validates task options given at `level` and merges them over `base`. A field checked against
 * another (`backoff.maxMs` against `backoff.baseMs`) is checked here only when the level gives
 * both: a `maxMs` given alone may be below the `baseMs` it inherits, which {@link checkMerged}
 * refuses once the levels are all merged. Cached per object and base, unless `remember` is false
 * (options made per call).
 */
export function resolveTaskOptions(given: object, base: ResolvedTaskOptions, level: OptionsLevel, remember = true): ResolvedTaskOptions {
  let byBase = remember ? cache.get(given) : undefined;
  const cached = byBase?.get(base);
  if (cached) return cached;
  const { path, extraKeys = [] } = level;
  // Read from its own options (its inherited ones copied): never from a polluted Object.prototype.
  const options = ownOptions(given, path) as Record<string, unknown>;
  const unknown = unknownKey(options, [...extraKeys, ...taskKeys], path);
  if (unknown !== undefined) throw new TypeError(`${path}.${unknown} is not a known option; known options: ${[...extraKeys, ...taskKeys].join(', ')}`);
  const resolved: ResolvedTaskOptions = Object.freeze({
    priority: options.priority === undefined ? base.priority : priorityOf(options.priority, `${path}.priority`),
    retries: options.retries === undefined ? base.retries : integer(options.retries, `${path}.retries`, 0, 1_000),
    backoff: options.backoff === undefined ? base.backoff : backoffOf(options.backoff, base.backoff, level),
    retryIf: options.retryIf === undefined ? base.retryIf : functionOf<ResolvedTaskOptions['retryIf']>(options.retryIf, `${path}.retryIf`),
    timeoutMs: options.timeoutMs === undefined ? base.timeoutMs : integer(options.timeoutMs, `${path}.timeoutMs`, 1, maxTimerMs),
    durable: options.durable === undefined ? base.durable : booleanOf(options.durable, `${path}.durable`),
  });
  if (!remember) return resolved;
  if (byBase === undefined) cache.set(given, (byBase = new WeakMap()));
  byBase.set(base, resolved);
  return resolved;
}

/**
 * What {@link resolveTaskOptions} made and remembered for `given` over `base`, if it did: a
 * lookup that needs no level (a definition's level is a string and an object a call, made for
 * nothing on every add but the first).
 */
export function rememberedTaskOptions(given: object, base: ResolvedTaskOptions): ResolvedTaskOptions | undefined {
  return cache.get(given)?.get(base);
}

/**
 * Checks merged task options for what no single level can: a `backoff.maxMs` given without
 * `baseMs` that is below the `baseMs` it inherits. The message names the level that gave `maxMs`,
 * where the `baseMs` came from and, when given, the task being added.
 * @throws RangeError naming them.
 */
export function checkMerged(options: ResolvedTaskOptions, task?: string): ResolvedTaskOptions {
  const { baseMs, maxMs } = options.backoff;
  if (maxMs >= baseMs) return options;
  const origin = origins.get(options.backoff);
  const from = origin?.baseMsFrom === undefined ? "the library's default" : `inherited from ${origin.baseMsFrom}`;
  const error = invalid(origin?.maxMsAt ?? 'backoff.maxMs', `an integer from ${baseMs} to ${maxTimerMs}`, maxMs);
  error.message = `${task === undefined ? '' : `bg.add("${task}"): `}${error.message} (at least backoff.baseMs, ${baseMs} here, ${from}; give baseMs too)`;
  throw error;
}

/**
 * For each resolved backoff made by merging: the path of the `maxMs` given last, and the level
 * that gave its `baseMs` (none recorded: the library's default), for {@link checkMerged}'s message.
 */
const origins = new WeakMap<ResolvedTaskOptions['backoff'], { readonly maxMsAt: string | undefined; readonly baseMsFrom: string | undefined }>();

/**
 * The delay before attempt `attempt + 1`, after attempt `attempt` failed. Durable workers repeat
 * this formula (`backoffFor()` in src/adapters/bullmq-jobs.ts): change both.
 */
export function backoffDelay({ baseMs, maxMs, factor, jitter }: ResolvedTaskOptions['backoff'], attempt: number, random = Math.random): number {
  const delay = Math.min(maxMs, baseMs * factor ** (attempt - 1));
  return Math.round(delay * (1 - jitter * random()));
}

function priorityOf(value: unknown, path: string): number {
  if (typeof value === 'string' && Object.hasOwn(priorities, value)) return priorities[value as keyof typeof priorities];
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  throw invalid(path, `'critical', 'high', 'normal', 'low' or a finite number`, value);
}

function backoffOf(value: unknown, base: ResolvedTaskOptions['backoff'], level: OptionsLevel): ResolvedTaskOptions['backoff'] {
  const path = `${level.path}.backoff`;
  if (!isOptionsObject(value)) throw new TypeError(`${path} must be an object, got ${describe(value)}`);
  const given = ownOptions(value, path) as Record<string, unknown>;
  const unknown = unknownKey(given, backoffKeys, path);
  if (unknown !== undefined) throw new TypeError(`${path}.${unknown} is not a known option; known options: ${backoffKeys.join(', ')}`);
  const ownBaseMs = given.baseMs === undefined ? undefined : integer(given.baseMs, `${path}.baseMs`, 0, maxTimerMs);
  const baseMs = ownBaseMs ?? base.baseMs;
  // A maxMs given alone is bounded by the baseMs it inherits, known once every level is merged (checkMerged).
  const maxMs = given.maxMs === undefined ? Math.max(base.maxMs, baseMs) : integer(given.maxMs, `${path}.maxMs`, ownBaseMs ?? 0, maxTimerMs);
  const factor = given.factor === undefined ? base.factor : number(given.factor, `${path}.factor`, 1, 100);
  const jitter = given.jitter === undefined ? base.jitter : number(given.jitter, `${path}.jitter`, 0, 1);
  const backoff = Object.freeze({ baseMs, maxMs, factor, jitter });
  const inherited = origins.get(base);
  if (inherited !== undefined || ownBaseMs !== undefined || given.maxMs !== undefined) {
    origins.set(backoff, {
      maxMsAt: given.maxMs === undefined ? inherited?.maxMsAt : `${path}.maxMs`,
      baseMsFrom: ownBaseMs === undefined ? inherited?.baseMsFrom : level.source,
    });
  }
  return backoff;
}

function integer(value: unknown, path: string, min: number, max: number): number {
  if (Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max) return value as number;
  throw invalid(path, `an integer from ${min} to ${max}`, value);
}

function number(value: unknown, path: string, min: number, max: number): number {
  if (typeof value === 'number' && value >= min && value <= max) return value;
  throw invalid(path, `a number from ${min} to ${max}`, value);
}

function booleanOf(value: unknown, path: string): boolean {
  if (typeof value === 'boolean') return value;
  throw invalid(path, 'a boolean', value);
}

/** A `retryIf`, checked: a function that answers at once (a promise would read as no: never retried). */
function functionOf<T>(value: unknown, path: string): T {
  if (typeof value !== 'function') throw invalid(path, 'a function', value);
  checkCallback(value, path);
  if ((value as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === 'AsyncFunction') {
    throw new TypeError(`${path} must be a function that answers at once, got ${describe(value)} (an async function: its promise would read as no, and the task would never be retried)`);
  }
  return value as T;
}
