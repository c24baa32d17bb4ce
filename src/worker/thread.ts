/**
 * The entry of every worker thread of the pool. Builds the thread's container once (from the
 * setup module named in the options), imports task modules on demand, resolves a task's
 * dependencies from the thread's container and runs it. Always answers with a
 * {@link WorkerResponse}, so that errors keep their class name, `code` and `cause`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parentPort, threadId, workerData, type MessagePort } from 'node:worker_threads';
import type * as Tsyringe from 'tsyringe';
import type { DependencyContainer } from 'tsyringe';
import { loadReflectMetadata, requireCjs } from '../model/cjs.js';
import { describe, messageOf, printed } from '../model/checks.js';
import { TaskContext } from '../model/context.js';
import { WorkerTaskError } from '../model/errors.js';
import { tokenName } from '../model/task.js';
import { findWorkerTask, markLibraryThread, retryParameter, workerTasksOf } from '../model/worker-task.js';
import { checkResult } from './clone.js';
import { isAborted, markEnded, markStarted } from './start-marks.js';
import { failureOf, fromWire, logMessageOf, type ChannelMessage, type LeftBehind, type ThreadMessage, type WorkerRequest, type WorkerResponse } from './wire.js';

/** What the pool hands every thread. */
export interface WorkerConfig {
  /** `file:` URL of the setup module, if any. */
  readonly setupModule: string | undefined;
  /** The cells where tasks are marked started (see start-marks.ts). */
  readonly startMarks: SharedArrayBuffer;
  /** The flags that say an attempt was aborted (see start-marks.ts). */
  readonly abortFlags: SharedArrayBuffer;
  /**
   * For a prewarmed pool: the task modules to import as the thread starts (and the setup module
   * runs then too), rather than with the first task. A failure here is left to that task.
   */
  readonly preload?: readonly string[] | undefined;
  /** For a prewarmed pool: one flag, set (1) by the pool once new threads are to start without preloading. */
  readonly controls?: SharedArrayBuffer | undefined;
}

loadReflectMetadata();

const config = (workerData ?? {}) as Partial<WorkerConfig>;
// A worker task added here would start a pool of threads inside this one (see in-process-runner.ts).
markLibraryThread();
const startCells = config.startMarks === undefined ? undefined : new BigInt64Array(config.startMarks);
const abortFlags = config.abortFlags === undefined ? undefined : new Int32Array(config.abortFlags);
/** The setup module's run, while it runs (and once it has succeeded). */
let settingUp: Promise<void> | undefined;
/** The thread's container once made (and set up, when there is a setup module). */
let readyScope: DependencyContainer | undefined;
/** The modules imported so far (`load()` records them). */
const readyModules = new Set<string>();
let typescript: Promise<void> | undefined;

/** One call of a task's function on this thread: the async context of whatever the call starts. */
interface Call {
  readonly task: LeftBehind['task'];
  ended: boolean;
  /** Set for the setup module's run (its import and its function), whose callbacks are its own. */
  readonly setup?: true;
}
/** Names the call whose async context a callback runs in (a timer, a promise's reaction, an I/O callback). */
const calls = new AsyncLocalStorage<Call>();
/** The tasks this thread has been given and not answered yet: running, or waiting for the setup or their module. */
const received = new Set<{ readonly id: string; readonly name: string }>();

export default async function runTask(request: WorkerRequest): Promise<WorkerResponse> {
  if (request.void === true) return { ok: true, value: undefined };
  const task = { id: request.id, name: request.name };
  received.add(task);
  let response: WorkerResponse;
  try {
    response = { ok: true, value: await execute(request) };
  } catch (error) {
    response = failureOf(error);
  } finally {
    received.delete(task);
  }
  // The thread is ending because of an error thrown outside the task's call (below): no answer
  // goes, so that the task fails with that error once the thread has exited.
  if (dying) await new Promise<never>(() => undefined);
  return response;
}

/** Set once an error thrown outside any ended task's call is ending the thread. */
let dying = false;

/** Runs the task at once when the thread is ready for it (no `await` before it starts), else once it is. */
function execute(request: WorkerRequest): Promise<unknown> {
  const ready = readyModules.has(request.module) && (config.setupModule === undefined || readyScope !== undefined);
  return ready ? run(request) : prepare(request).then(() => run(request));
}

const where = (name: string, module: string): string => `worker task "${name}" (${module})`;

/** The setup module run (before the task's module loads, which may rely on it), the task's module imported. */
async function prepare({ module, name }: WorkerRequest): Promise<void> {
  if (config.setupModule !== undefined && readyScope === undefined) {
    try {
      await setUp();
    } catch (error) {
      throw new WorkerTaskError('ERR_WORKER_SETUP', `${where(name, module)} cannot run: the setup module ${config.setupModule} failed: ${messageOf(error)}`, {
        cause: error,
      });
    }
  }
  try {
    await load(module);
  } catch (error) {
    throw new WorkerTaskError('ERR_WORKER_TASK_NOT_FOUND', `${where(name, module)} cannot run: its module cannot be imported in the worker: ${messageOf(error)}`, {
      cause: error,
    });
  }
}

/** Runs a task whose module is loaded (and the thread set up), its dependencies resolved first. */
async function run({ module, name, args, id, port, attempt = 1, slot, token }: WorkerRequest): Promise<unknown> {
  const task = findWorkerTask(module, name);
  if (task === undefined) {
    const defined = workerTasksOf(module);
    throw new WorkerTaskError(
      'ERR_WORKER_TASK_NOT_FOUND',
      `${where(name, module)} cannot run: the module defines no workerTask() named "${name}" ` +
        `(it defines ${defined.length === 0 ? 'none' : defined.map((n) => `"${n}"`).join(', ')})`,
    );
  }
  let context: TaskContext | undefined;
  const params = task.inject.map((token, position): unknown => {
    if (token === TaskContext) return (context = contextFor(id, name, attempt, port, slot ?? -1));
    try {
      return threadScope().resolve(token);
    } catch (error) {
      throw new WorkerTaskError(
        'ERR_WORKER_DEPENDENCY',
        `${where(name, module)} cannot run: the dependency at position #${position} (token ${tokenName(token)}) cannot be resolved in the worker: ${messageOf(error)}`,
        { cause: error },
      );
    }
  });
  // The task starts now: until here (the thread starting, the setup module, the task's module
  // loading) it was waiting for its thread to be ready, and counted as queued.
  if (startCells !== undefined && slot !== undefined) markStarted(startCells, slot, token ?? 0);
  const call: Call = { task: { id, name, module, attempt }, ended: false };
  try {
    // Given up on while it was queued (its thread still starting or running the setup module, where
    // the abort's message cannot stop it): it never starts, and answers with the abort. The flag is
    // read after the start mark, so an abort that came before the task started is always seen
    // here; one that came after it found the task running.
    context?.throwIfAborted();
    const result = await calls.run(call, () => (task.fn as (...all: unknown[]) => unknown)(...params, ...args));
    checkResult(name, result);
    return result;
  } finally {
    // Ended now, whatever the main thread is doing when its answer reaches it.
    if (startCells !== undefined && slot !== undefined) markEnded(startCells, slot, token ?? 0);
    call.ended = true;
    port?.close();
  }
}

/**
 * The thread's container for a task's dependencies. Made, and tsyringe loaded with it, only once
 * a task has a dependency to resolve; with a setup module, `prepare()` has set it up already.
 */
function threadScope(): DependencyContainer {
  return (readyScope ??= newContainer());
}

function newContainer(): DependencyContainer {
  const { container } = requireCjs('tsyringe') as typeof Tsyringe;
  return container.createChildContainer();
}

/** The thread's container, set up by the setup module, once. */
function setUp(): Promise<void> {
  if (settingUp !== undefined) return settingUp;
  // In a context of its own: a callback the setup leaves behind (a timer, a rejection) is the
  // setup module's, reported as such once the setup has ended, as an ended task's is.
  const call: Call = { task: { id: '', name: '', module: config.setupModule!, attempt: 0 }, ended: false, setup: true };
  settingUp = calls.run(call, async () => {
    try {
      const threadScope = newContainer();
      const setup = (await load(config.setupModule!)) as { default?: unknown };
      if (typeof setup.default !== 'function') {
        throw new TypeError(`its default export must be a function taking the worker's container, got ${typeof setup.default}`);
      }
      await (setup.default as (scope: DependencyContainer) => unknown)(threadScope);
      readyScope = threadScope;
    } finally {
      call.ended = true;
    }
  });
  // A failed setup is tried again, on a fresh container, by the thread's next task.
  settingUp.catch(() => (settingUp = undefined));
  return settingUp;
}

/** Imports a module; TypeScript source (tests, development) goes through tsx, when installed. */
const loaded = new Map<string, Promise<unknown>>();
/** How many times each module failed to load here. */
const failures = new Map<string, number>();

function load(url: string): Promise<unknown> {
  let module = loaded.get(url);
  if (module === undefined) {
    // A module that failed to load is tried again by the next task that needs it. Node keeps a
    // failed evaluation for the URL it was imported by, so the retry imports it by another one:
    // the module itself is evaluated again (not a module it imports whose own evaluation failed).
    const failed = failures.get(url) ?? 0;
    module = importModule(failed === 0 ? url : `${url}${url.includes('?') ? '&' : '?'}${retryParameter}=${failed}`);
    loaded.set(url, module);
    module.then(
      () => readyModules.add(url),
      () => {
        loaded.delete(url);
        failures.set(url, failed + 1);
      },
    );
  }
  return module;
}

async function importModule(given: string): Promise<unknown> {
  const url = sourceOf(given);
  if (/\.[cm]?tsx?$/.test(new URL(url).pathname)) {
    typescript ??= import('tsx/esm/api').then(
      ({ register }) => {
        register();
      },
      (error: unknown) => {
        // Node's own type stripping (on by default from 22.18 and 23.6) loads it; tsx, where it is
        // installed, also compiles what stripping cannot (decorators, enums, parameter properties).
        if ((process.features as { typescript?: unknown }).typescript) return;
        throw new Error(`${url} is TypeScript source: install tsx to run it in a worker thread, or run the compiled output`, {
          cause: error,
        });
      },
    );
    await typescript;
  }
  return import(url);
}

/**
 * The module to import for `url`: itself, or, when it names a `.js` (`.mjs`, `.cjs`) file that is
 * not there but whose TypeScript source is (`.ts`, `.mts`, `.cts`), that source. An application
 * run from source by tsx names its setup module `new URL('./worker-setup.js', import.meta.url)`,
 * as TypeScript wants, and tsx maps such specifiers to the source when it imports them: so does
 * the pool. Compiled output, where the `.js` file is there, is imported as it is.
 */
function sourceOf(url: string): string {
  // A query (a retry's) stays on whichever file is imported.
  const queryAt = url.indexOf('?');
  const file = queryAt < 0 ? url : url.slice(0, queryAt);
  const compiled = /\.([cm]?)js$/.exec(file);
  if (compiled === null || !file.startsWith('file:')) return url;
  const source = `${file.slice(0, -compiled[0].length)}.${compiled[1]}ts`;
  try {
    return !existsSync(fileURLToPath(file)) && existsSync(fileURLToPath(source)) ? source + url.slice(file.length) : url;
  } catch {
    return url;
  }
}

/**
 * A worker task's context. Its signal aborts when the main thread says so over the task's
 * channel (timeout, cancellation); its progress and its log entries go back over the same
 * channel, in order, and the main thread writes the entries to the scope's logger.
 */
function contextFor(id: string, name: string, attempt: number, port: MessagePort | undefined, slot: number): TaskContext {
  const controller = new AbortController();
  port?.on('message', (message: ChannelMessage) => {
    if ('abort' in message) controller.abort(fromWire(message.abort));
  });
  const signal = controller.signal;
  // A loop that never yields never gets the abort's message: `aborted` and `throwIfAborted()`
  // also read the shared flag the main thread sets as it aborts.
  if (abortFlags !== undefined && slot >= 0) {
    const flags = abortFlags;
    // The signal's own state, read past the getters defined here.
    const own = (key: 'aborted' | 'reason'): unknown => Reflect.get(AbortSignal.prototype, key, signal);
    let pending: Error | undefined;
    const pendingReason = (): Error =>
      (pending ??= new DOMException(`task "${name}" (#${id}) was aborted; why arrives once it yields`, 'AbortError'));
    Object.defineProperties(signal, {
      aborted: { get: () => own('aborted') === true || isAborted(flags, slot), configurable: true },
      reason: { get: () => (own('aborted') === true ? own('reason') : isAborted(flags, slot) ? pendingReason() : undefined), configurable: true },
      throwIfAborted: {
        value: (): void => {
          if (own('aborted') === true) throw own('reason');
          if (isAborted(flags, slot)) throw pendingReason();
        },
        configurable: true,
      },
    });
  }
  const log =
    (level: 'error' | 'warn' | 'info' | 'debug') =>
    (fields: Record<string, unknown>, message: string): void => {
      try {
        port?.postMessage(logMessageOf(level, fields, message));
      } catch {
        // Fields that cannot cross (a function, a symbol): their printed form does.
        port?.postMessage({ log: [level, { fields: printed(fields) }, String(message)] } satisfies ChannelMessage);
      }
    };
  return Object.freeze({
    id,
    name,
    attempt,
    signal,
    logger: { error: log('error'), warn: log('warn'), info: log('info'), debug: log('debug') },
    throwIfAborted: () => signal.throwIfAborted(),
    progress(fraction: number, message?: string) {
      if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
        const Wrong = typeof fraction === 'number' ? RangeError : TypeError;
        throw new Wrong(`progress(fraction) in task "${name}" (#${id}): fraction must be a number from 0 to 1, got ${describe(fraction)}`);
      }
      // As on the main thread: a message that would cross as an object (a structured clone) is refused here.
      if (message !== undefined && typeof message !== 'string') {
        throw new TypeError(`progress(fraction, message) in task "${name}" (#${id}): message must be a string or undefined, got ${describe(message)}`);
      }
      port?.postMessage({ progress: [fraction, message] } satisfies ChannelMessage);
    },
  });
}

// A prewarmed thread sets up and imports what its tasks will need as it starts. (Its pool runs
// Piscina's asynchronous wait for tasks, which leaves the event loop free to finish this.)
// Failures are left to the first task that needs the setup or the module, which tries again.
// Unless the pool has stopped it: the setup module ended prewarmed threads as they started.
const prewarmStopped = config.controls !== undefined && Atomics.load(new Int32Array(config.controls), 0) === 1;
if (config.preload !== undefined && !prewarmStopped) {
  const { preload } = config;
  // The task modules after the setup module, as a task's own are.
  const setUpFirst = config.setupModule === undefined ? Promise.resolve() : setUp();
  setUpFirst.then(
    () => {
      for (const module of preload) load(module).catch(() => undefined);
    },
    () => undefined,
  );
}

// A callback a task left behind (a timer, a promise rejection nobody handles) can throw after
// the task has ended, and an idle thread blocks in Atomics.wait(), where no callback runs: it
// runs once the thread gets its next task. Uncaught, the error would end the thread and fail that
// task. When the callback's async context names a task that has ended, the error is reported to
// the pool as that task's and the thread goes on; otherwise (the running task's own callback, or
// one no task can be named for) it ends the thread, as it would with no listener. (On Node 20 and
// 22, a callback queued with queueMicrotask() loses the context: it cannot be named.)
process.on('uncaughtException', (error: unknown, origin: string) => {
  const call = calls.getStore();
  // A callback of a task that has ended, or one the setup module set up (while it runs, too: it
  // is the setup's, whatever task waits for the setup).
  if (call?.ended === true || call?.setup === true) {
    report({ task: call.task, setup: call.setup, error: failureOf(error), rejection: origin === 'unhandledRejection', running: runningTasks() });
    return;
  }
  // A listener of the application's own handles it.
  if (process.listenerCount('uncaughtException') > 1) return;
  // The thread ends, failing what it runs with this error (the message reaches the pool before
  // the thread's exit does). Not by throwing it again from here, as it would end with no
  // listener: a thread ended that way sometimes never exited (Node 20 to 24, a microtask's throw
  // under load: its port stayed open and kept the process alive after the pool was closed).
  dying = true;
  parentPort?.postMessage({ died: { error: failureOf(error), running: runningTasks(), ...(origin === 'unhandledRejection' ? { rejection: true } : {}) } } satisfies ThreadMessage);
  process.exit(1);
});

// process.exit() cannot be stopped: the thread ends, and the task it runs fails. Still, when a
// callback a task left behind calls it, the pool learns which task that was (this message
// reaches it before the thread's exit does).
process.on('exit', (code: number) => {
  const call = calls.getStore();
  if (call?.ended === true || call?.setup === true) {
    report({ task: call.task, setup: call.setup, ...(call.setup === true && !call.ended ? { settingUp: true } : {}), exitCode: code, running: runningTasks() });
  }
  // A callback no task can be named for (one a task module's top level set up), on an idle
  // thread: the pool says so, as it says such a callback's throw (its tasks, if any, fail).
  else if (!dying && call === undefined && received.size === 0) {
    const error = new Error(`process.exit(${code}) in a callback no task could be named for`);
    parentPort?.postMessage({ died: { error: failureOf(error), running: [], exitCode: code } } satisfies ThreadMessage);
  }
});

function runningTasks(): LeftBehind['running'] {
  return [...received];
}

/** Tells the pool (failureOf() made the error cloneable). */
function report(leftBehind: Omit<LeftBehind, 'thread'>): void {
  parentPort?.postMessage({ leftBehind: { ...leftBehind, thread: threadId } } satisfies ThreadMessage);
}
