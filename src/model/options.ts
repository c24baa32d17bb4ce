import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ResourceLimits } from 'node:worker_threads';
import type { InjectionToken } from 'tsyringe';
import { usableCpus } from './limits.js';
import { describe, invalid, isOptionsObject, isTimerMs, maxTimerMs, ownOptions, unknownKey } from './checks.js';
import { consoleLogger, isLogger, type BackgroundLogger } from './logger.js';
import { checkMerged, defaultsLevel, defaultTaskOptions, resolveTaskOptions, type ResolvedTaskOptions, type TaskOptions } from './task-options.js';

/**
 * Options of the application's worker-thread pool, which runs `workerTask()` definitions. Read
 * from the application root when the first worker task is added.
 */
export interface PoolOptions {
  /**
   * The most worker threads. Threads start only as admitted tasks need them: at first as many
   * tasks as there are cores are admitted, more only while the admitted ones leave the CPU idle
   * (tasks that wait rather than compute). An integer from 1 to 4096.
   * @default 40
   */
  maxThreads?: number | undefined;
  /**
   * Threads kept alive when idle (started with the first worker task).
   * @default the number of cores, at most maxThreads
   */
  minThreads?: number | undefined;
  /**
   * How long a thread beyond `minThreads` may stay idle before it is stopped, in ms.
   * @default 10_000
   */
  idleTimeout?: number | undefined;
  /**
   * Memory limits of each worker thread (Node's `ResourceLimits`); a thread over them fails its
   * task. `maxOldGenerationSizeMb` at least 16 and `stackSizeMb` at least 1: with less, a thread
   * may die as it starts (or, for the stack, take the process with it); `stackSizeMb` and
   * `codeRangeSizeMb` at most 1024: with more, a thread may end the whole process as it starts.
   */
  resourceLimits?: ResourceLimits | undefined;
  /**
   * A module (its `file:` URL, such as `new URL('./worker-setup.js', import.meta.url)`, or an
   * absolute path) whose default export receives each worker thread's container, once per
   * thread before its first task, to register the providers worker tasks inject.
   */
  setupModule?: string | URL | undefined;
  /**
   * When a running worker task times out or is cancelled, how long a task that injects
   * `TaskContext` has to notice its signal and end before its thread is terminated, in ms. A
   * task that does not inject it cannot notice, so its thread is terminated at once.
   * @default 1_000
   */
  terminateAfterMs?: number | undefined;
  /**
   * Runs worker tasks on the main thread instead, for tests: no thread starts; each worker task
   * runs in the event loop's lane (under `concurrency`), its dependencies resolved at `add()`
   * from the scope's container, like a `defineTask()` definition's, so a test registers fakes
   * there and needs no setup module. What would cross a thread still does as it would: the
   * arguments are checked and copied, the result is checked and copied, and an error comes back
   * rebuilt as it would from a worker. The other pool options are ignored.
   *
   * ```ts
   * const app = container.createChildContainer();
   * app.register(BackgroundOptions, { useValue: { root: true, pool: { inline: true } } });
   * app.register(ImageCodec, { useValue: fakeCodec });   // what renderAvatar injects
   * ```
   * @default false
   */
  inline?: boolean | undefined;
  /**
   * Starts the pool with the application (when its root's first `Background` is made) instead of
   * with the first worker task: `minThreads` threads start at once, each runs the setup module
   * and imports the modules of the worker tasks defined so far, so that the first burst finds
   * them ready. Costs those threads' memory (about 10 MB each, more with your modules) and their
   * start-up CPU at boot, even if no worker task ever comes.
   * @default false
   */
  prewarm?: boolean | undefined;
  /**
   * How much lower than the main thread's the worker threads' CPU priority is (their nice
   * value, raised by this much), so that a CPU-bound worker task that shares a core with the
   * event loop gives way to it: timers and requests are served late by less. An integer from 0
   * (the same priority) to 19. Applied per thread through Piscina's `niceIncrement`, which needs
   * its optional dependency `@napi-rs/nice` (installed with Piscina; without it, nothing
   * changes). The default is 10 on Linux, where nice is per thread, and 0 elsewhere (on macOS it
   * would lower the whole process).
   * @default 10 on Linux, 0 elsewhere
   */
  niceIncrement?: number | undefined;
}

/**
 * Options of `Background`, registered in a tsyringe container under the token of the same name:
 *
 * ```ts
 * container.register(BackgroundOptions, { useValue: { concurrency: 50, drainTimeoutMs: 5_000 } });
 * ```
 *
 * Registrations are merged field by field, the nearest container winning: a child that
 * registers `{ drainTimeoutMs: 1_000 }` keeps the logger its parent registered. `concurrency`
 * applies application-wide and is read from the application root (see `root`); the other fields
 * apply to the `Background` of each scope. Bad values make `container.resolve(Background)` throw
 * a `TypeError` or `RangeError` naming the option.
 */
export interface BackgroundOptions {
  /**
   * Application-wide limit on event-loop tasks (async functions and main-thread sync functions)
   * running at once, shared by every scope. Tasks past it wait, highest priority first and
   * in the order they were added within a priority.
   *
   * 100 keeps a burst of fire-and-forget work from opening hundreds of sockets or exhausting a
   * database pool's waiters at once, while letting I/O-bound tasks overlap well (at 100 in
   * flight, 10 ms tasks run at 10 000 per second). Read from the application root only.
   * @default 100
   */
  concurrency?: number | undefined;
  /**
   * How long disposal waits for the scope's queued and running tasks before it aborts what is
   * left (through each task's `AbortSignal`), logs it as abandoned and resolves.
   * @default 10_000
   */
  drainTimeoutMs?: number | undefined;
  /**
   * A main-thread sync task that blocks the event loop longer than this logs a warning that
   * names it and suggests making it a worker task. `0` turns the warning off.
   * @default 50
   */
  warnBlockingMs?: number | undefined;
  /**
   * Where task failures, blocking warnings and abandoned tasks are logged. A pino logger works
   * as is.
   * @default consoleLogger
   */
  logger?: BackgroundLogger | undefined;
  /**
   * Makes the container this registration is made on an application root: its `Background`
   * owns its own concurrency limit and closes its own shared resources, apart from the global
   * container's. Useful for tests and for several independent applications in one process.
   * The global container is always a root.
   * @default false
   */
  root?: boolean | undefined;
  /** The application's worker-thread pool. Read from the application root. */
  pool?: PoolOptions | undefined;
  /**
   * Task options for every task of the scope (priority, retries, backoff, retryIf, timeoutMs,
   * durable); a definition's own options and `bg.with()` win over them.
   */
  defaults?: TaskOptions | undefined;
  /**
   * Application-wide limit on tasks waiting for a slot (on the event loop and for the worker
   * pool together): past it, `add()` throws `QueueFullError`. Read from the application root.
   * @default Infinity
   */
  maxQueued?: number | undefined;
  /**
   * How many finished tasks `get()` and `list()` still show, and for how long: finished tasks
   * beyond either bound are forgotten, so a long-running application does not grow. Read from
   * the application root. Each finished task kept while the young generation is collected is
   * copied by the GC: keep more only when you read them.
   * @default { maxCount: 100, maxAgeMs: 60_000 }
   */
  records?:
    | {
        /**
         * The most finished tasks kept: a non-negative integer; 0 keeps none.
         * @default 100
         */
        maxCount?: number | undefined;
        /**
         * How long a finished task is kept, in milliseconds: a non-negative integer. It is
         * dropped within a second after.
         * @default 60_000
         */
        maxAgeMs?: number | undefined;
      }
    | undefined;
}

/** The token under which {@link BackgroundOptions} are registered. */
export const BackgroundOptions: InjectionToken<BackgroundOptions> = Symbol.for('tsyringe-background.BackgroundOptions');

/** Settings of the worker-thread pool, with every default filled in. */
export interface PoolSettings {
  readonly maxThreads: number;
  readonly minThreads: number;
  readonly idleTimeout: number;
  readonly resourceLimits: ResourceLimits | undefined;
  readonly setupModule: string | undefined;
  readonly terminateAfterMs: number;
  readonly inline: boolean;
  readonly prewarm: boolean;
  readonly niceIncrement: number;
}

/** Options with every default filled in, as a `Background` uses them. */
export interface ResolvedOptions {
  readonly concurrency: number;
  readonly drainTimeoutMs: number;
  readonly warnBlockingMs: number;
  readonly logger: BackgroundLogger;
  readonly root: boolean;
  readonly pool: PoolSettings;
  readonly defaults: ResolvedTaskOptions;
  readonly maxQueued: number;
  readonly records: { readonly maxCount: number; readonly maxAgeMs: number };
}

const defaultMaxThreads = 40;

/** The defaults, in one frozen object. */
export const defaultOptions: ResolvedOptions = Object.freeze({
  concurrency: 100,
  drainTimeoutMs: 10_000,
  warnBlockingMs: 50,
  logger: consoleLogger,
  root: false,
  defaults: defaultTaskOptions,
  maxQueued: Infinity,
  records: Object.freeze({ maxCount: 100, maxAgeMs: 60_000 }),
  pool: Object.freeze({
    maxThreads: defaultMaxThreads,
    minThreads: Math.min(usableCpus().cores, defaultMaxThreads),
    idleTimeout: 10_000,
    resourceLimits: undefined,
    setupModule: undefined,
    terminateAfterMs: 1_000,
    inline: false,
    prewarm: false,
    niceIncrement: process.platform === 'linux' ? 10 : 0,
  }),
});

const resolvedCache = new WeakMap<object, WeakMap<ResolvedOptions, ResolvedOptions>>();

/**
 * Validates registered options and merges them over `base` (the defaults, or the options of a
 * container further up), field by field. The result is cached per registered object and base,
 * so the many scopes that share registrations validate them once.
 */
export function resolveOptions(given: unknown, base: ResolvedOptions = defaultOptions): ResolvedOptions {
  if (given === undefined) return base;
  if (!isOptionsObject(given)) {
    throw new TypeError(`BackgroundOptions: options must be an object, got ${describe(given)}`);
  }
  let byBase = resolvedCache.get(given);
  const cached = byBase?.get(base);
  if (cached) return cached;
  // Read from its own options (its inherited ones copied): never from a polluted Object.prototype.
  const options = ownOptions(given, 'BackgroundOptions: options') as Record<string, unknown>;
  const unknown = unknownKey(options, Object.keys(defaultOptions), 'BackgroundOptions: options');
  if (unknown !== undefined) {
    throw new TypeError(`BackgroundOptions: options.${unknown} is not a known option; known options: ${Object.keys(defaultOptions).join(', ')}`);
  }
  const resolved: ResolvedOptions = Object.freeze({
    concurrency: check(options, base, 'concurrency', isConcurrency, 'a positive integer or Infinity'),
    drainTimeoutMs: check(options, base, 'drainTimeoutMs', isTimerMs, `an integer from 0 to ${maxTimerMs}`),
    warnBlockingMs: check(options, base, 'warnBlockingMs', isNonNegative, 'a non-negative finite number'),
    logger: check(options, base, 'logger', isLogger, 'an object with error, warn, info and debug methods'),
    root: check(options, defaultOptions, 'root', (v) => typeof v === 'boolean', 'a boolean'),
    pool: resolvePool(options.pool, base.pool),
    defaults: options.defaults === undefined ? base.defaults : taskDefaults(options.defaults, base.defaults),
    maxQueued: check(options, base, 'maxQueued', isConcurrency, 'a positive integer or Infinity'),
    records: options.records === undefined ? base.records : recordsOf(options.records, base.records),
  });
  if (byBase === undefined) resolvedCache.set(given, (byBase = new WeakMap()));
  byBase.set(base, resolved);
  return resolved;
}

function taskDefaults(given: unknown, base: ResolvedTaskOptions): ResolvedTaskOptions {
  if (!isOptionsObject(given)) throw new TypeError(`BackgroundOptions: options.defaults must be an object, got ${describe(given)}`);
  return checkMerged(resolveTaskOptions(given, base, defaultsLevel));
}

function recordsOf(given: unknown, base: ResolvedOptions['records']): ResolvedOptions['records'] {
  if (!isOptionsObject(given)) throw new TypeError(`BackgroundOptions: options.records must be an object, got ${describe(given)}`);
  const unknown = unknownKey(given, ['maxCount', 'maxAgeMs'], 'BackgroundOptions: options.records');
  if (unknown !== undefined) throw new TypeError(`BackgroundOptions: options.records.${unknown} is not a known option; known options: maxCount, maxAgeMs`);
  const { maxCount = base.maxCount, maxAgeMs = base.maxAgeMs } = ownOptions(given, 'BackgroundOptions: options.records') as Record<string, unknown>;
  if (!Number.isSafeInteger(maxCount) || (maxCount as number) < 0) throw invalid('BackgroundOptions: options.records.maxCount', 'a non-negative integer', maxCount);
  if (!Number.isSafeInteger(maxAgeMs) || (maxAgeMs as number) < 0) throw invalid('BackgroundOptions: options.records.maxAgeMs', 'a non-negative integer', maxAgeMs);
  return Object.freeze({ maxCount: maxCount as number, maxAgeMs: maxAgeMs as number });
}

const poolKeys = ['maxThreads', 'minThreads', 'idleTimeout', 'resourceLimits', 'setupModule', 'terminateAfterMs', 'inline', 'prewarm', 'niceIncrement'];
const limitKeys = ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb'];
/**
 * The smallest limits a worker thread is allowed. Below what a thread needs to start (the library's
 * worker entry and tsyringe loaded, a trivial task run: 6 MB of old generation on Node 20, 8 MB on
 * Node 22 and 24; 0.28 MB of stack on all three), a thread dies as it starts, which leaves tasks
 * queued for ever (Piscina does not replace a thread that dies before it is ready), and a stack
 * under 0.25 MB ends the whole process (Node's own behaviour). The minimums leave a margin for
 * the application's own modules. The young generation and the code range have none: V8 raises a
 * smaller value to its own floor (0.001 MB of either started and ran).
 */
const limitMinimums: Readonly<Record<string, number>> = { maxOldGenerationSizeMb: 16, stackSizeMb: 1 };

/**
 * The largest limits a worker thread is allowed, where more ends the process rather than the
 * thread: a code range V8 cannot reserve is a fatal out-of-memory of the whole process (100 TB and
 * more on Node 20), a stack of terabytes overflows Node's size computation into a tiny stack (the
 * process dies of a stack overflow, or of a segmentation fault on Node 24). A gigabyte of either
 * is far past any real task's need (V8 uses at most 128 MB of code range on 64-bit machines).
 */
const limitMaximums: Readonly<Record<string, number>> = { codeRangeSizeMb: 1024, stackSizeMb: 1024 };

/**
 * The most worker threads a pool may have: the pool sizes its shared start marks by it when it is
 * made (`1e8` was a fatal allocation error of the whole process), and a thread costs megabytes of
 * memory: no machine runs this many.
 */
const maxThreadsAtMost = 4096;

function resolvePool(given: unknown, base: PoolSettings): PoolSettings {
  if (given === undefined) return base;
  if (!isOptionsObject(given)) {
    throw new TypeError(`BackgroundOptions: options.pool must be an object, got ${describe(given)}`);
  }
  const pool = ownOptions(given, 'BackgroundOptions: options.pool') as Record<string, unknown>;
  const unknown = unknownKey(pool, poolKeys);
  if (unknown !== undefined) throw new TypeError(`BackgroundOptions: options.pool.${unknown} is not a known option; known options: ${poolKeys.join(', ')}`);
  const maxThreads = pool.maxThreads === undefined ? base.maxThreads : pool.maxThreads;
  if (!Number.isSafeInteger(maxThreads) || (maxThreads as number) < 1 || (maxThreads as number) > maxThreadsAtMost) {
    throw invalid('BackgroundOptions: options.pool.maxThreads', `an integer from 1 to ${maxThreadsAtMost}`, maxThreads);
  }
  const max = maxThreads as number;
  // null is refused as any other value is, not read as the default (only undefined is).
  const minThreads = pool.minThreads === undefined ? Math.min(base.minThreads, max) : pool.minThreads;
  if (!Number.isSafeInteger(minThreads) || (minThreads as number) < 0 || (minThreads as number) > max) {
    throw invalid('BackgroundOptions: options.pool.minThreads', `an integer from 0 to options.pool.maxThreads (${max})`, minThreads);
  }
  const idleTimeout = pool.idleTimeout === undefined ? base.idleTimeout : pool.idleTimeout;
  if (!isTimerMs(idleTimeout)) throw invalid('BackgroundOptions: options.pool.idleTimeout', `an integer from 0 to ${maxTimerMs}`, idleTimeout);
  const terminateAfterMs = pool.terminateAfterMs === undefined ? base.terminateAfterMs : pool.terminateAfterMs;
  if (!isTimerMs(terminateAfterMs)) throw invalid('BackgroundOptions: options.pool.terminateAfterMs', `an integer from 0 to ${maxTimerMs}`, terminateAfterMs);
  const inline = pool.inline === undefined ? base.inline : pool.inline;
  if (typeof inline !== 'boolean') throw invalid('BackgroundOptions: options.pool.inline', 'a boolean', inline);
  const prewarm = pool.prewarm === undefined ? base.prewarm : pool.prewarm;
  if (typeof prewarm !== 'boolean') throw invalid('BackgroundOptions: options.pool.prewarm', 'a boolean', prewarm);
  const niceIncrement = pool.niceIncrement === undefined ? base.niceIncrement : pool.niceIncrement;
  if (!Number.isSafeInteger(niceIncrement) || (niceIncrement as number) < 0 || (niceIncrement as number) > 19) {
    throw invalid('BackgroundOptions: options.pool.niceIncrement', 'an integer from 0 to 19', niceIncrement);
  }
  const givenLimits = pool.resourceLimits;
  if (givenLimits !== undefined && !isOptionsObject(givenLimits)) {
    throw invalid('BackgroundOptions: options.pool.resourceLimits', `an object with any of ${limitKeys.join(', ')}`, givenLimits);
  }
  // Its inherited limits too (Node's Worker reads them), checked as its own.
  const resourceLimits = givenLimits === undefined ? base.resourceLimits : Object.freeze(ownOptions(givenLimits, 'BackgroundOptions: options.pool.resourceLimits'));
  if (resourceLimits !== undefined) {
    for (const [key, value] of Object.entries(resourceLimits)) {
      if (!limitKeys.includes(key)) {
        throw new TypeError(`BackgroundOptions: options.pool.resourceLimits.${key} is not a known limit; known limits: ${limitKeys.join(', ')}`);
      }
      if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) {
        throw invalid(`BackgroundOptions: options.pool.resourceLimits.${key}`, 'a positive number of megabytes', value);
      }
      const minimum = limitMinimums[key];
      if (minimum !== undefined && value < minimum) {
        throw new RangeError(
          `BackgroundOptions: options.pool.resourceLimits.${key} must be at least ${minimum} (megabytes): with less, a worker thread may die as it starts; got ${describe(value)}`,
        );
      }
      const maximum = limitMaximums[key];
      if (maximum !== undefined && value > maximum) {
        throw new RangeError(
          `BackgroundOptions: options.pool.resourceLimits.${key} must be at most ${maximum} (megabytes): with more, a worker thread may end the whole process as it starts; got ${describe(value)}`,
        );
      }
    }
  }
  return Object.freeze({
    maxThreads: max,
    minThreads: minThreads as number,
    idleTimeout,
    resourceLimits,
    setupModule: pool.setupModule === undefined ? base.setupModule : setupHref(pool.setupModule),
    terminateAfterMs,
    inline,
    prewarm,
    niceIncrement: niceIncrement as number,
  });
}

function setupHref(value: unknown): string {
  const href = fileHref(value);
  if (href === undefined) {
    throw invalid('BackgroundOptions: options.pool.setupModule', 'a file: URL (new URL(..., import.meta.url)) or an absolute path', value);
  }
  return href;
}

/** The `file:` URL of a module given as a `file:` URL (string or `URL`) or an absolute path. */
export function fileHref(value: unknown): string | undefined {
  if (value instanceof URL) value = value.href;
  if (typeof value !== 'string') return undefined;
  // A malformed one ('file://[bad') is not a file: URL: undefined, for the caller's error naming it.
  if (value.startsWith('file:')) return URL.canParse(value) ? new URL(value).href : undefined;
  return isAbsolute(value) ? pathToFileURL(value).href : undefined;
}

function check<K extends keyof ResolvedOptions>(
  options: Record<string, unknown>,
  base: ResolvedOptions,
  key: K,
  valid: (value: unknown) => boolean,
  expected: string,
): ResolvedOptions[K] {
  const value = options[key];
  if (value === undefined) return base[key];
  if (!valid(value)) throw invalid(`BackgroundOptions: options.${key}`, expected, value);
  return value as ResolvedOptions[K];
}

const isConcurrency = (v: unknown): boolean =>
  v === Infinity || (Number.isSafeInteger(v) && (v as number) >= 1);
const isNonNegative = (v: unknown): boolean =>
  typeof v === 'number' && Number.isFinite(v) && v >= 0;
