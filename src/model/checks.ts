/** Small helpers every layer uses to check values and to word what it received. */
import { inspect } from 'node:util';

/** The longest delay a Node timer honours; a longer one fires after 1 ms. */
export const maxTimerMs = 2 ** 31 - 1;

/**
 * A short, printable form of any value with its type: `-1 (number)`, `"x" (string)`.
 * What may be wrong with a value of the very kind asked for shows too: `an empty array`,
 * `an Invalid Date`, `URL "http://x/t.js"` (a URL, not of the scheme asked for).
 */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `${JSON.stringify(value)} (string)`;
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'object') {
    if (Array.isArray(value) && value.length === 0) return 'an empty array';
    if (value instanceof Date && Number.isNaN(value.getTime())) return 'an Invalid Date';
    if (value instanceof URL) return `URL ${JSON.stringify(value.href)}`;
    const name = (value as { constructor?: { name?: string } }).constructor?.name;
    return name && name !== 'Object' ? `an instance of ${name}` : 'an object';
  }
  return `${String(value)} (${typeof value})`; // eslint-disable-line @typescript-eslint/no-base-to-string -- only primitives reach here
}

/**
 * Whether a value can hold options: an object that is not an array, a `Map`, a `Date` or another
 * built-in, whose settings would be read as no options at all (a user's class instance can).
 */
export function isOptionsObject(value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false;
  let tag: string;
  try {
    tag = Object.prototype.toString.call(value);
  } catch {
    return true; // a Proxy whose get trap throws (on Symbol.toStringTag): reading its options says so
  }
  return tag === '[object Object]' || !builtIn.test(tag);
}

/** The tags of the built-ins whose settings would read as no options (a user's class may name its own tag). */
const builtIn = /^\[object (\w*Array|Map|Set|WeakMap|WeakSet|Date|RegExp|Promise|\w*Error|Number|String|Boolean|Symbol|BigInt|ArrayBuffer|SharedArrayBuffer|DataView|Arguments|Generator|AsyncGenerator|WeakRef|URL|URLSearchParams|Headers)\]$/;

/**
 * The string keys of an options object: its own, enumerable or not, and those of the objects it
 * inherits from (`Object.create(base)`, a class instance's accessors and methods, but its
 * `constructor`), up to `Object.prototype`, whose own keys (a polluted one's) are no one's
 * options. Symbol keys are not options. (Enumerable keys alone read a class instance's getter
 * `retries` as no option: left at its default, unrefused.)
 */
export function optionKeys(options: object, path = 'options'): string[] {
  try {
    const keys = Object.getOwnPropertyNames(options);
    for (let above = Object.getPrototypeOf(options) as object | null; above !== null && above !== Object.prototype; above = Object.getPrototypeOf(above) as object | null) {
      for (const key of Object.getOwnPropertyNames(above)) if (key !== 'constructor' && !keys.includes(key)) keys.push(key);
    }
    return keys;
  } catch (error) {
    // A Proxy whose ownKeys or getPrototypeOf trap throws.
    throw new TypeError(`${path} cannot be read: listing its keys threw (${messageOf(error)})`, { cause: error });
  }
}

/** The first of {@link optionKeys} that is not among `known`. */
export function unknownKey(options: object, known: readonly string[], path = 'options'): string | undefined {
  return optionKeys(options, path).find((key) => !known.includes(key));
}

/**
 * An options object as a plain one of its own, to read options from: every option it has
 * ({@link optionKeys}) read once and copied (a spread would drop the inherited ones), and no
 * prototype, so that a field set on `Object.prototype` itself (a polluted one) is never read as
 * an option. `path` names the object in messages (`bg.with(options): options`).
 * @throws TypeError naming the option whose getter threw (its error the cause).
 */
export function ownOptions<T extends object>(options: T, path = 'options'): T {
  const own = Object.create(null) as Record<string, unknown>;
  for (const key of optionKeys(options, path)) {
    try {
      own[key] = (options as Record<string, unknown>)[key];
    } catch (error) {
      throw new TypeError(`${path}.${key} cannot be read: its getter threw (${messageOf(error)})`, { cause: error });
    }
  }
  return own as T;
}

/**
 * Refuses a key of `options` that is not among `known`, which would otherwise be ignored: a
 * misspelt option silently left at its default. `at` is the call as messages name it
 * (`shutdown(options)`).
 * @returns the options to read: {@link ownOptions} of `options`.
 * @throws TypeError naming the first unknown key and the known ones.
 */
export function checkKnownKeys<T extends object>(options: T, known: readonly string[], at: string): T {
  const unknown = unknownKey(options, known, `${at}: options`);
  if (unknown !== undefined) throw new TypeError(`${at}: options.${unknown} is not a known option; known options: ${known.join(', ')}`);
  return ownOptions(options, `${at}: options`);
}

/**
 * Refuses an `options.container` that is not a tsyringe container, known by its
 * `createChildContainer` method (by shape: a container of another copy of tsyringe is one too).
 * `undefined` passes, for the caller's default. `at` is the call as messages name it.
 * @throws TypeError naming the option and what was received.
 */
export function checkContainer(container: unknown, at: string): void {
  const isContainer = typeof container === 'object' && container !== null && typeof (container as { createChildContainer?: unknown }).createChildContainer === 'function';
  if (container !== undefined && !isContainer) {
    throw new TypeError(`${at}: options.container must be a tsyringe container, got ${describe(container)}`);
  }
}

/** The message of an error, or the value printed when it is not one. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The error for a value at `path` that is not what was `expected`: a `RangeError` when a number
 * was given (of the right type, out of range), a `TypeError` otherwise.
 */
export function invalid(path: string, expected: string, value: unknown): Error {
  // A number out of range is a RangeError; a number where something else is expected (a boolean,
  // a function, an object) is a wrong type, as any other value.
  const ErrorType = typeof value === 'number' && /\b(integer|number)\b/.test(expected) ? RangeError : TypeError;
  return new ErrorType(`${path} must be ${expected}, got ${describe(value)}`);
}

/** Whether a value is a whole number of milliseconds a timer can wait. */
export function isTimerMs(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= maxTimerMs;
}

/** Any value printed safely for a message: circular objects, symbols, `undefined`, no prototype. */
export function printed(value: unknown): string {
  try {
    return inspect(value, { depth: 2, breakLength: Infinity, maxStringLength: 200 });
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * Why a function cannot be a task's function, or undefined when it can: a class (calling it
 * throws) or a generator function (calling it runs nothing of its body).
 */
export function uncallable(fn: object): string | undefined {
  if (isClass(fn)) return ' (a class, which cannot be called: a class task is added as it is, its run() method the task, or called from a function)';
  return isGenerator(fn) ? generatorHint : undefined;
}

/** Why a generator function is no task. */
export const generatorHint = ' (a generator function, whose body runs only as its result is iterated: a task runs when it is called)';

/** Whether a function is a generator function (`function*`, `async function*`). */
export function isGenerator(fn: object): boolean {
  const tag = (fn as { [Symbol.toStringTag]?: string })[Symbol.toStringTag];
  return tag === 'GeneratorFunction' || tag === 'AsyncGeneratorFunction';
}

/**
 * What makes a function unfit to be called back, or undefined when it is fit: a class (calling it
 * throws) or a generator function (calling it runs nothing of its body).
 */
export function callbackProblem(fn: object): string | undefined {
  if (isClass(fn)) return ' (a class, which cannot be called)';
  return isGenerator(fn) ? ' (a generator function, whose body runs only as its result is iterated)' : undefined;
}

/** Refuses a callback option that is not a function that can be called: `${path} must be a function, got …`. */
export function checkCallback(value: unknown, path: string): void {
  const problem = typeof value === 'function' ? callbackProblem(value) : '';
  if (problem !== undefined) throw new TypeError(`${path} must be a function, got ${describe(value)}${problem}`);
}

/** Whether a function is a class (its `prototype` is read-only, as no other function's is). */
export function isClass(fn: object): boolean {
  return 'prototype' in fn && Object.getOwnPropertyDescriptor(fn, 'prototype')?.writable === false;
}

/**
 * The `timeoutMs` of a handle's `result(options)`, checked (in process and durable alike): an
 * integer a timer can wait, or none; read once, from the options' own copy.
 */
export function resultTimeoutOf(options: { timeoutMs?: number | undefined } | undefined): number | undefined {
  if (options === undefined) return undefined;
  if (!isOptionsObject(options)) throw new TypeError(`handle.result(options): options must be an object, got ${describe(options)}`);
  const { timeoutMs } = checkKnownKeys(options, ['timeoutMs'], 'handle.result(options)') as { timeoutMs?: unknown };
  if (timeoutMs !== undefined && !isTimerMs(timeoutMs)) throw invalid('handle.result(options): options.timeoutMs', `an integer from 0 to ${maxTimerMs}`, timeoutMs);
  return timeoutMs;
}

interface Waiter {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** The callers of {@link within} waiting for each unsettled promise. */
const waiters = new WeakMap<Promise<unknown>, Set<Waiter>>();

/**
 * `promise`, or a rejection with `expired()` once `timeoutMs` have passed; leaves no timer. A
 * wait that expires leaves nothing behind: all the waits on one promise share one reaction to it,
 * and an expired one leaves their set (a `Promise.race` per call would keep each call's promises
 * and error until `promise` settles, which a long-running or periodic task, or a delayed durable
 * job, may not do for hours). What `handle.result({ timeoutMs })` bounds, in process and durable.
 */
export function within<T>(promise: Promise<T>, timeoutMs: number, expired: () => Error): Promise<T> {
  let set = waiters.get(promise);
  if (set === undefined) {
    const waiting = (set = new Set<Waiter>());
    waiters.set(promise, waiting);
    const tell = (settle: (waiter: Waiter) => void): void => {
      waiters.delete(promise);
      for (const waiter of waiting) settle(waiter);
    };
    promise.then(
      (value) => tell((waiter) => waiter.resolve(value)),
      (error: unknown) => tell((waiter) => waiter.reject(error)),
    );
  }
  const waiting = set;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      waiting.delete(waiter);
      reject(expired());
    }, timeoutMs);
    const waiter: Waiter = {
      resolve: (value) => {
        clearTimeout(timer);
        resolve(value as T);
      },
      reject: (error) => {
        clearTimeout(timer);
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what the task rejected with, passed on as it is
        reject(error);
      },
    };
    waiting.add(waiter);
  });
}
