/**
 * What crosses the thread boundary for a worker task, and how errors survive the trip:
 * structured cloning keeps an error's message but turns a custom class into a plain `Error` and
 * drops `code` and other own properties, so errors travel as plain records and are rebuilt.
 */
import { describe, messageOf, printed } from '../model/checks.js';
import { TaskNonErrorError, WorkerTaskError, type WorkerErrorCode } from '../model/errors.js';

import { types } from 'node:util';
import type { MessagePort } from 'node:worker_threads';

/**
 * How deep a worker task's arguments and result may be nested: an object (an array, a map, a
 * set, an error's cause) inside this many others. Deeper, V8's serializer can run out of stack
 * as it copies them to another thread, and in the worker that failure is lost: the task would
 * never settle. The same bound as a durable task's JSON arguments.
 */
export const maxNesting = 1_000;

/**
 * Whether `value` holds an object nested more than `limit` levels deep (the outermost object is
 * level 1). Iterative, so that it cannot run out of stack itself; what it cannot read counts as
 * flat (cloning it fails anyway).
 */
export function nestedDeeperThan(value: unknown, limit: number): boolean {
  const seen = new Set<object>();
  const pending: [unknown, number][] = [[value, 1]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [at, depth] = next;
    if (typeof at !== 'object' || at === null || seen.has(at)) continue;
    if (depth > limit) return true;
    seen.add(at);
    try {
      // A Blob's bytes sit behind symbol-keyed slots, which Object.values() does not list.
      if (types.isProxy(at) || ArrayBuffer.isView(at)) continue;
      if (at instanceof Map) {
        for (const [key, entry] of at) pending.push([key, depth + 1], [entry, depth + 1]);
      } else if (at instanceof Set) {
        for (const entry of at) pending.push([entry, depth + 1]);
      } else {
        if (types.isNativeError(at) && 'cause' in at) pending.push([at.cause, depth + 1]);
        for (const entry of Object.values(at)) pending.push([entry, depth + 1]);
      }
    } catch {
      // A getter that throws: the clone of this value fails on it in any case.
    }
  }
  return false;
}

/** Which worker task to run, with what: the part of a request that is the same for every attempt. */
export type WorkerCall = Pick<WorkerRequest, 'module' | 'name' | 'args'>;

/** A task sent to a worker. */
export interface WorkerRequest {
  /**
   * For a task that injects `TaskContext`: the worker's end of a channel that carries its
   * signal's abort (main → worker) and its progress (worker → main).
   */
  readonly port?: MessagePort | undefined;
  /** `file:` URL of the module defining the task. */
  readonly module: string;
  /** The task's name in that module. */
  readonly name: string;
  readonly args: readonly unknown[];
  readonly id: string;
  /** The attempt, from 1. */
  readonly attempt?: number | undefined;
  /** Where the worker marks the attempt started, and with which token (see start-marks.ts). */
  readonly slot?: number | undefined;
  readonly token?: number | undefined;
  /**
   * Set on a request Piscina kept queued when it could not start a thread for it, which was
   * handed over again: the thread that takes this copy answers at once, running nothing.
   */
  readonly void?: true | undefined;
}

/** An error as plain, cloneable data. */
export interface WireError {
  readonly name: string;
  readonly message: string;
  readonly stack: string | undefined;
  /** Own enumerable properties (`code` among them), those that could be cloned. */
  readonly props: Record<string, unknown>;
  /** The error's `cause`: an error, as a record too; any other value as it is. */
  readonly cause?: WireCause;
  /** An `AggregateError`'s `errors`, each as a cause is. */
  readonly errors?: readonly WireCause[];
}

/**
 * An error's `cause`, or one of an `AggregateError`'s `errors`: an error as a record, any other
 * value as it is, or (`loop`) the error this many levels up the chain, which it loops back to.
 */
export type WireCause = { readonly error: WireError } | { readonly value: unknown } | { readonly loop: number };

/**
 * How many errors of a `cause` chain cross the thread boundary (the top one counted); past that,
 * the last one's cause is {@link cutChain}.
 */
export const maxCauseChain = 100;

/** What stands, as the cause of the last error kept, for the rest of a chain too long to send. */
export const cutChain = `(the cause chain was cut here: it is more than ${maxCauseChain} errors long)`;

/** Messages on a task's channel. */
export type ChannelMessage =
  | { readonly abort: WireError }
  | { readonly progress: readonly [fraction: number, message: string | undefined] }
  /**
   * An entry the task wrote through `ctx.logger`: the main thread writes it to the scope's logger.
   * `errors`: the fields whose values are errors, sent as records (a structured clone would drop
   * their class and own fields) and rebuilt on the main thread.
   */
  | { readonly log: readonly [level: LogLevel, fields: Record<string, unknown>, message: string, errors?: readonly string[]] };

type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/**
 * What a worker thread tells the pool when a callback that an ended task left behind threw
 * (`error`) or called `process.exit()` (`exitCode`): which task it was, and which were running.
 */
export interface LeftBehind {
  /** The ended task that left the callback behind; with `setup`, the setup module (its `module`). */
  readonly task: { readonly id: string; readonly name: string; readonly module: string; readonly attempt: number };
  /** Set when the callback is the setup module's, not a task's. */
  readonly setup?: true | undefined;
  /** With `setup`: the setup had not ended (its function, or a callback of it, while it ran). */
  readonly settingUp?: true | undefined;
  readonly error?: WorkerResponse;
  /** Whether `error` is the reason of a promise rejection that nothing handled. */
  readonly rejection?: boolean;
  readonly exitCode?: number;
  /** The tasks the thread was running then (an idle thread runs such a callback only with its next task). */
  readonly running: readonly { readonly id: string; readonly name: string }[];
  /** The thread's id (`threadId`): the same error again is logged once per thread in a while. */
  readonly thread?: number | undefined;
}

/** An error thrown outside any ended task's call: it ends the thread, and fails the tasks it runs. */
export interface Died {
  readonly error: WorkerResponse;
  /** The tasks the thread was running then. */
  readonly running: readonly { readonly id: string; readonly name: string }[];
  /** Set when the thread ended by process.exit() with this code, in a callback no task could be named for (not by a throw). */
  readonly exitCode?: number | undefined;
  /** Set when what ended it was a promise's rejection nothing handled, not a throw. */
  readonly rejection?: boolean | undefined;
}

/** Messages a worker thread sends the pool outside any task's answer. */
export type ThreadMessage = { readonly leftBehind: LeftBehind } | { readonly died: Died };

/** Whether a message from a worker thread is a {@link ThreadMessage}. */
export function isThreadMessage(message: unknown): message is ThreadMessage {
  return typeof message === 'object' && message !== null && ('leftBehind' in message || 'died' in message);
}

/**
 * The message for an entry a worker task logs. Errors among the fields go as records, to come
 * back as themselves (an `err` field keeps its class, `code` and own fields, as in a failure);
 * other values are cloned by the channel.
 */
export function logMessageOf(level: LogLevel, fields: Record<string, unknown>, message: string): ChannelMessage {
  let errors: string[] | undefined;
  let sent = fields;
  for (const key of read(() => (typeof fields === 'object' && fields !== null ? Object.keys(fields) : []), () => [])) {
    const value = read(() => fields[key], () => undefined);
    if (!read(() => value instanceof Error, () => false)) continue;
    if (sent === fields) sent = { ...fields };
    sent[key] = toWire(value as Error);
    (errors ??= []).push(key);
  }
  return { log: errors === undefined ? [level, sent, message] : [level, sent, message, errors] };
}

/** The fields of a worker's log entry, its errors rebuilt. */
export function logFieldsOf(fields: Record<string, unknown>, errors: readonly string[] | undefined): Record<string, unknown> {
  if (errors === undefined) return fields;
  for (const key of errors) fields[key] = fromWire(fields[key] as WireError);
  return fields;
}

/** What a worker sends back. */
export type WorkerResponse =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: WireError }
  | { readonly ok: false; readonly thrown: unknown }
  /** A thrown non-Error that cannot be cloned: how it prints. */
  | { readonly ok: false; readonly printed: string };

const builtins: Record<string, ErrorConstructor> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/** The worker's answer for a task that threw `error` (an Error or anything else). Never throws. */
export function failureOf(error: unknown): WorkerResponse {
  if (read(() => error instanceof Error, () => false)) return { ok: false, error: toWire(error as Error) };
  return isCloneable(error) ? { ok: false, thrown: error } : { ok: false, printed: printed(error) };
}

/** What the main thread makes of a worker's answer for task `name` (its handle's `id`, when one): its value, or the throw rebuilt. */
export function outcomeOf(name: string, response: WorkerResponse, id?: string): unknown {
  if (response.ok) return response.value;
  if ('error' in response) throw fromWire(response.error);
  if ('printed' in response) throw new TaskNonErrorError(name, response.printed, response.printed, id);
  throw response.thrown;
}

/**
 * Turns an error into plain data, its `cause` chain up to {@link maxCauseChain} errors and a
 * chain that loops back ending where it loops. Never throws: a field whose getter throws (or a
 * Proxy's trap) is left out, or, for the name and the message, replaced.
 */
export function toWire(error: Error): WireError {
  return wireOf(error, []);
}

/** `error` as a record; `above`: the errors above it in the chain, the nearest last. */
function wireOf(error: Error, above: Error[]): WireError {
  const fields = error as unknown as Record<string, unknown>;
  // The record nests two levels a cause: what a field may hold shrinks down the chain, so that
  // the whole answer stays within what crosses a thread safely.
  const room = Math.max(0, maxNesting - 2 * above.length - 8);
  const props: Record<string, unknown> = {};
  for (const key of read(() => Object.keys(error), () => [])) {
    if (key === 'cause') continue;
    const value = read(() => fields[key], () => undefined);
    if (isCloneable(value, room)) props[key] = value;
  }
  const name = read(() => fields.name, () => undefined);
  const message = read(() => fields.message, (problem) => `(its message could not be read: ${textOf(problem)})`);
  const stack = read(() => fields.stack, () => undefined);
  const base: WireError = {
    name: typeof name === 'string' ? name : 'Error',
    message: typeof message === 'string' ? message : textOf(message),
    stack: typeof stack === 'string' ? stack : undefined,
    props,
  };
  const path = [...above, error];
  // An AggregateError's `errors` is an own field that Object.keys() does not list.
  const errors = read(
    () => (error instanceof AggregateError ? Array.from(error.errors as Iterable<unknown>, (entry) => causeOf(entry, path) ?? { value: textOf(entry) }) : undefined),
    () => undefined,
  );
  const cause = read(() => ('cause' in error ? causeOf(error.cause, path) : undefined), () => undefined);
  return { ...base, ...(errors === undefined ? {} : { errors }), ...(cause === undefined ? {} : { cause }) };
}

/**
 * A cause (or an `AggregateError`'s entry) of the last error of `path` as data: an error as a
 * record (or as the loop back to one of `path`, or cut when the chain is too long), a cloneable
 * value as it is, else nothing.
 */
function causeOf(value: unknown, path: Error[]): WireCause | undefined {
  if (read(() => value instanceof Error, () => false)) {
    const at = path.lastIndexOf(value as Error);
    if (at >= 0) return { loop: path.length - 1 - at };
    return path.length >= maxCauseChain ? { value: cutChain } : { error: wireOf(value as Error, path) };
  }
  return isCloneable(value, maxNesting - 2 * path.length - 8) ? { value } : undefined;
}

/** What `get()` returns, or `fallback()` of what it threw (a getter that throws, a Proxy's trap). */
function read<T>(get: () => T, fallback: (problem: unknown) => T): T {
  try {
    return get();
  } catch (problem) {
    return fallback(problem);
  }
}

/** A value as text, even one whose `message` or `toString()` throws. */
function textOf(value: unknown): string {
  return read(() => messageOf(value), () => printed(value));
}

/** A class of errors: what {@link registerErrorClass} takes. */
export type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * Error classes that come back from worker threads as themselves, by error name. Kept on
 * `globalThis`, like the registry of worker tasks, so that two copies of the library share it.
 */
const errorClasses: Map<string, ErrorClass> = ((globalThis as Record<symbol, unknown>)[Symbol.for('tsyringe-background.errorClasses')] ??= new Map<
  string,
  ErrorClass
>()) as Map<string, ErrorClass>;

/**
 * Makes errors of `errorClass` thrown in a worker thread come back to the main thread as
 * instances of it (`instanceof` works), with their message, stack, `cause` and own properties;
 * without it they come back as an `Error` with the same `name` and properties. Errors are
 * matched by their `name`: `name` defaults to the class's name; give it when instances set
 * another. Call it on the main thread, once, where the class is defined.
 *
 * ```ts
 * export class PaymentDeclined extends Error { override name = 'PaymentDeclined'; }
 * registerErrorClass(PaymentDeclined);
 * // in the caller of a worker task that throws it:
 * if (error instanceof PaymentDeclined) …
 * ```
 *
 * The constructor is not called again: the error is rebuilt on the class's prototype.
 * @throws TypeError when `errorClass` is not a class of errors, or another class is registered under that name.
 */
export function registerErrorClass(errorClass: ErrorClass, name: string = errorClass.name): void {
  if (typeof errorClass !== 'function' || !(errorClass.prototype instanceof Error)) {
    throw new TypeError(`registerErrorClass(errorClass): errorClass must be a class extending Error, got ${typeof errorClass === 'function' ? `function ${errorClass.name}` : typeof errorClass}`);
  }
  if (typeof name !== 'string' || name === '') throw new TypeError(`registerErrorClass(${errorClass.name}, name): name must be a non-empty string, got ${describe(name)}`);
  const existing = errorClasses.get(name);
  if (existing !== undefined && existing !== errorClass) {
    throw new TypeError(`registerErrorClass(${errorClass.name}): another class is already registered for errors named "${name}"`);
  }
  errorClasses.set(name, errorClass);
}

/**
 * Rebuilds an error from its record: a registered class, the same built-in class (an
 * `AggregateError`, or an error of an unregistered subclass of it, with its `errors`), or `Error`
 * named as the original. A chain that looped comes back looping.
 */
export function fromWire(wire: WireError): Error {
  return rebuild(wire, []);
}

/** `wire` rebuilt; `above`: the errors rebuilt above it in the chain, the nearest last. */
function rebuild(wire: WireError, above: Error[]): Error {
  // The error first, then its cause and errors, which may loop back to it.
  const registered = errorClasses.get(wire.name);
  const error =
    registered !== undefined
      ? rebuilt(registered, wire)
      : wire.name === 'WorkerTaskError' && typeof wire.props.code === 'string'
        ? new WorkerTaskError(wire.props.code as WorkerErrorCode, wire.message)
        : wire.errors !== undefined
          ? new AggregateError([], wire.message)
          : new (builtins[wire.name] ?? Error)(wire.message);
  const path = [...above, error];
  const fromCause = (cause: WireCause): unknown => ('error' in cause ? rebuild(cause.error, path) : 'loop' in cause ? path[path.length - 1 - cause.loop] : cause.value);
  // As the constructor's `{ cause }` and AggregateError's `errors` would set them: own, not enumerable.
  if (wire.cause !== undefined) hidden(error, 'cause', fromCause(wire.cause));
  if (wire.errors !== undefined) hidden(error, 'errors', wire.errors.map(fromCause));
  if (registered !== undefined) return error;
  if (error.name !== wire.name) error.name = wire.name;
  Object.assign(error, wire.props);
  if (wire.stack !== undefined) error.stack = wire.stack;
  return error;
}

function hidden(error: Error, key: string, value: unknown): void {
  Object.defineProperty(error, key, { value, writable: true, configurable: true, enumerable: false });
}

/** Whether structured clone copies `value`, nested at most `room` levels deep (see {@link maxNesting}). */
function isCloneable(value: unknown, room = maxNesting): boolean {
  if (typeof value === 'object' && value !== null && nestedDeeperThan(value, room)) return false;
  try {
    structuredClone(value);
    return true;
  } catch {
    return false;
  }
}

/** An error of a registered class, rebuilt on its prototype without calling its constructor; its cause and errors are set after. */
function rebuilt(errorClass: ErrorClass, wire: WireError): Error {
  const error = Object.create(errorClass.prototype as object) as Error;
  hidden(error, 'message', wire.message);
  Object.assign(error, wire.props);
  if (error.name !== wire.name) error.name = wire.name;
  hidden(error, 'stack', wire.stack ?? `${wire.name}: ${wire.message}`);
  return error;
}
