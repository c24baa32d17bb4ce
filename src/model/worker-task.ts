import type { InjectionToken } from 'tsyringe';
import { describe } from './checks.js';
import { fileHref } from './options.js';
import { defineTaskAs, type DefineTaskOptions, type DropFirst, type Instances, type TaskDefinition } from './task.js';

/**
 * A task made by {@link workerTask}: it runs on the application's worker-thread pool, and its
 * dependencies are resolved from the worker's own container.
 */
export interface WorkerTaskDefinition<Args extends unknown[] = unknown[], R = unknown> extends TaskDefinition<Args, R> {
  /** The `file:` URL of the module that defines the task; each worker thread imports it. */
  readonly module: string;
}

/**
 * Every worker task defined in this thread, by module URL and name. Kept on `globalThis` so
 * that two copies of the library in one thread (the built one and the source, say) share it.
 */
const registry: Map<string, WorkerTaskDefinition> = ((globalThis as Record<symbol, unknown>)[
  Symbol.for('tsyringe-background.workerTasks')
] ??= new Map<string, WorkerTaskDefinition>()) as Map<string, WorkerTaskDefinition>;

/** Set on `globalThis` by the entry of the library's worker threads: every copy of the library in the thread reads it. */
const libraryThread = Symbol.for('tsyringe-background.libraryThread');

/** Marks this thread as one of the library's worker threads (their entry calls it). */
export function markLibraryThread(): void {
  (globalThis as Record<symbol, unknown>)[libraryThread] = true;
}

/** Whether this thread is one of the library's worker threads. */
export function inLibraryThread(): boolean {
  return (globalThis as Record<symbol, unknown>)[libraryThread] === true;
}

/**
 * Defines a task that runs on a worker thread of the application's pool: for CPU-bound work
 * that would otherwise block the event loop. Worker threads cannot receive functions, so the
 * task is found by its module and name: each worker imports `moduleUrl` and looks the task up.
 * Its `inject` tokens are resolved from the worker's own container (see `pool.setupModule`),
 * and its arguments must be structured-cloneable.
 *
 * ```ts
 * // src/tasks/avatar.ts
 * export const renderAvatar = workerTask(import.meta.url, { name: 'renderAvatar', inject: [AvatarConfig] },
 *   (config, userId: string) => drawPng(userId, config.size));
 * bg.add(renderAvatar, user.id);   // returns a handle at once; the work runs on a worker thread
 * ```
 *
 * As with `defineTask()`, a generator function as `fn` is refused when the definition is made.
 *
 * @param moduleUrl the defining module's `import.meta.url` (or an absolute path to it)
 * @throws TypeError when `moduleUrl` is not a `file:` URL or an absolute path, the module
 * already defines a different worker task of that name, or the options or `fn` are invalid (a
 * name beginning with `tsyringe-background:`, reserved for the library's own jobs, among them).
 */
export function workerTask<
  const Tokens extends readonly InjectionToken[],
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the arguments after the dependencies are the user's
  Fn extends (...params: [...Instances<Tokens>, ...any[]]) => unknown,
>(
  moduleUrl: string | URL,
  options: DefineTaskOptions<Tokens>,
  fn: Fn,
): WorkerTaskDefinition<DropFirst<Parameters<Fn>, Tokens['length']>, Awaited<ReturnType<Fn>>> {
  const definition = defineTaskAs('workerTask', 'workerTask(moduleUrl, options, fn)', options, fn);
  const module = moduleHref(moduleUrl, definition.name);
  const key = `${module}#${definition.name}`;
  const existing = registry.get(key);
  // The same module evaluated again (hot reload, a test runner resetting modules) defines the
  // same function again: the new definition replaces the old. Another function is a mistake.
  if (existing !== undefined && String(existing.fn) !== String(definition.fn)) {
    throw new TypeError(`workerTask("${definition.name}"): ${module} already defines a different worker task of that name`);
  }
  const worker = Object.freeze({ ...definition, module });
  registry.set(key, worker);
  return worker as WorkerTaskDefinition<DropFirst<Parameters<Fn>, Tokens['length']>, Awaited<ReturnType<Fn>>>;
}

/** Whether a definition runs on the worker pool. */
export function isWorkerTask(definition: TaskDefinition): definition is WorkerTaskDefinition {
  return typeof (definition as Partial<WorkerTaskDefinition>).module === 'string';
}

/** The worker task `name` of `module`, once the module has been imported in this thread. */
export function findWorkerTask(module: string, name: string): WorkerTaskDefinition | undefined {
  return registry.get(`${module}#${name}`);
}

/** The modules that define the worker tasks known in this thread, each once: what a prewarmed thread imports. */
export function workerTaskModules(): string[] {
  return [...new Set([...registry.values()].map((task) => task.module))];
}

/** The names of the worker tasks a module defines in this thread, for error messages. */
export function workerTasksOf(module: string): string[] {
  return [...registry.values()].filter((task) => task.module === module).map((task) => task.name);
}

/**
 * The query parameter a worker thread adds to a module's URL to import it again after its
 * evaluation failed (Node keeps a failed evaluation for the URL it was imported by); a
 * definition's module is its URL without it.
 */
export const retryParameter = 'tsyringe-background-retry';
const retryQuery = new RegExp(`[?&]${retryParameter}=\\d+$`);

function moduleHref(moduleUrl: unknown, name: string): string {
  const href = fileHref(moduleUrl)?.replace(retryQuery, '');
  if (href !== undefined) return href;
  throw new TypeError(
    `workerTask("${name}"): moduleUrl must be the module's import.meta.url (a file: URL) or an absolute path, got ${describe(moduleUrl)}`,
  );
}
