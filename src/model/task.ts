import type { InjectionToken } from 'tsyringe';
import { describe, isOptionsObject, ownOptions, uncallable } from './checks.js';
import { defaultTaskOptions, resolveTaskOptions, type OptionsLevel, type TaskOptions } from './task-options.js';
import { TaskContext } from './context.js';

/** The keys a definition's options may hold besides task options. */
export const definitionKeys: readonly string[] = ['name', 'inject'];

/** The level of the options of the definition named `name`. */
export function definitionLevel(name: string, call = 'defineTask'): OptionsLevel {
  return { path: `${call}("${name}"): options`, source: "the definition's options", extraKeys: definitionKeys };
}

/** Any constructor, as tsyringe takes it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tsyringe's own constructor type
type Constructor<T = unknown> = new (...args: any[]) => T;

/**
 * The instance types of a list of tokens: `[typeof Mailer, typeof Db]` → `[Mailer, Db]`. A
 * plain string or symbol token says nothing of its type, so its parameter is `any` (annotate
 * it); a token declared as `InjectionToken<T>` gives `T`.
 */
export type Instances<Tokens extends readonly unknown[]> = {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an untyped token's parameter is the user's to annotate
  -readonly [K in keyof Tokens]: Tokens[K] extends string | symbol ? any : Tokens[K] extends InjectionToken<infer T> ? T : never;
};

/**
 * The type `inject` is given when its tokens are an array of unknown length (a variable typed
 * `(typeof Mailer)[]`, say): no array is assignable to it, so `defineTask()` does not compile,
 * and the error shows this text. Without the length, the task's parameters cannot be split into
 * dependencies and `add()` arguments.
 */
export type InjectOfUnknownLength =
  'inject must list its tokens inline (inject: [A, B]) or be declared as const: an array of unknown length cannot tell the dependencies from the arguments of add()';

/** Options of {@link defineTask}. */
export interface DefineTaskOptions<Tokens extends readonly InjectionToken[]> extends TaskOptions {
  /** Names the task in handles, logs and errors. A non-empty string. */
  readonly name: string;
  /**
   * Tokens resolved from the Background's container when the task is added; their instances
   * are passed, in this order, before the arguments given to `add()`. Written inline or declared
   * `as const`, so that its length is known; an array of unknown length does not compile
   * ({@link InjectOfUnknownLength}).
   * @default []
   */
  readonly inject?: number extends Tokens['length'] ? InjectOfUnknownLength : Tokens;
}

/** `T` without its first `N` elements: a task's parameters without its injected dependencies. */
export type DropFirst<T extends unknown[], N extends number, Dropped extends unknown[] = []> = Dropped['length'] extends N
  ? T
  : T extends [unknown, ...infer Rest]
    ? DropFirst<Rest, N, [...Dropped, unknown]>
    : [];

declare const signature: unique symbol;
// Symbol.for: a definition made by one copy of the library (source, built) is known to another.
const definitionBrand = Symbol.for('tsyringe-background.definition');

/**
 * A task made by {@link defineTask}: a function, its name, and the tokens of its dependencies.
 * `Args` are the arguments `add()` takes after the dependencies; `R` is what the task resolves to.
 */
export interface TaskDefinition<Args extends unknown[] = unknown[], R = unknown> {
  /**
   * The task's name, as its handles, events, logs and errors show it; a worker thread finds a
   * worker task by it in its module, a durable worker a durable task's job.
   */
  readonly name: string;
  /**
   * The tokens of the task's dependencies (`[]` for none), in the order the function takes
   * them: resolved from the `Background`'s container when the task is added (a worker task's
   * from its worker thread's container, a durable task's from its job's scope, as it runs).
   */
  readonly inject: readonly InjectionToken[];
  /** The options given to the definition (task options among them), as read when it was made: frozen. */
  readonly options: object;
  /** The function, taking the dependencies first and then `Args`. */
  readonly fn: (...params: never[]) => unknown;
  /** @internal */
  readonly [definitionBrand]: true;
  /** Carries the argument and result types; never present at run time. */
  readonly [signature]?: (...args: Args) => R;
}

/**
 * A class task: constructed by the container when it is added (so its constructor
 * dependencies come from the Background's scope), then `run(...args)` is called.
 */
export type ClassTask<Args extends unknown[] = never[], R = unknown> = Constructor<{
  run(...args: Args): R;
}>;

/**
 * Defines a named task whose leading parameters are injected. The instance types of the
 * `inject` tokens become the types of those parameters, and the parameters after them are what
 * `add()` takes:
 *
 * ```ts
 * const sendWelcome = defineTask({ name: 'sendWelcome', inject: [Mailer] },
 *   async (mailer, to: string) => mailer.send(to, 'Welcome!'));
 * bg.add(sendWelcome, 'a@b.c');   // bg.add(sendWelcome, 42) does not compile
 * ```
 *
 * `inject` must be written inline or declared `as const`: an array whose length its type does
 * not know does not compile ({@link InjectOfUnknownLength}). A generator function as `fn` is
 * refused when the definition is made (its body would run only as its result is iterated); the
 * types let it through, as they must a function whose return type is a type parameter of yours.
 *
 * @throws TypeError when the name is not a non-empty string or begins with `tsyringe-background:`
 * (reserved for the library's own jobs), `inject` holds something that is
 * not a token (often `undefined` from a circular import; a hole; an object that is not a
 * `delay()` token), or `fn` is not a function (or is a class, or a generator function).
 */
export function defineTask<
  const Tokens extends readonly InjectionToken[],
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the arguments after the dependencies are the user's
  Fn extends (...params: [...Instances<Tokens>, ...any[]]) => unknown,
>(options: DefineTaskOptions<Tokens>, fn: Fn): TaskDefinition<DropFirst<Parameters<Fn>, Tokens['length']>, Awaited<ReturnType<Fn>>> {
  return defineTaskAs('defineTask', 'defineTask(options, fn)', options, fn) as TaskDefinition<DropFirst<Parameters<Fn>, Tokens['length']>, Awaited<ReturnType<Fn>>>;
}

/**
 * The beginning of the names of the library's own jobs (the durable backend's `tsyringe-background:after`):
 * a task's name may not begin so, or its job would be taken for one of them.
 */
export const reservedNamePrefix = 'tsyringe-background:';

/**
 * {@link defineTask} for a caller that words its errors as itself: `call` names it with the
 * task's name (`workerTask("resize")`), `signature` without (`workerTask(moduleUrl, options, fn)`).
 */
export function defineTaskAs(call: string, signature: string, options: unknown, fn: unknown): TaskDefinition {
  if (!isOptionsObject(options)) {
    throw new TypeError(`${signature}: options must be an object, got ${describe(options)}`);
  }
  // Read once, whole (a config class's getters too), and kept so: the definition's options do not change after it.
  const own = Object.freeze(ownOptions(options, `${signature}: options`));
  const { name, inject = [] } = own as { name?: unknown; inject?: unknown };
  if (typeof name !== 'string' || name.trim().length === 0) {
    throw new TypeError(`${signature}: options.name must be a non-empty string (not only white space), got ${describe(name)}`);
  }
  if (name.startsWith(reservedNamePrefix)) {
    throw new TypeError(`${call}("${name}"): options.name must not begin with "${reservedNamePrefix}", got ${describe(name)}: the prefix is reserved for the library's own jobs`);
  }
  if (!Array.isArray(inject)) {
    throw new TypeError(`${call}("${name}"): options.inject must be an array of tokens, got ${describe(inject)}`);
  }
  // An index loop, not forEach: forEach skips the holes of a sparse array (`[, Mailer]`).
  for (let i = 0; i < inject.length; i++) {
    const token: unknown = inject[i];
    // One context a run: a second place would be left undefined.
    if (token === TaskContext && inject.indexOf(token) < i) {
      throw new TypeError(`${call}("${name}"): options.inject[${i}] is TaskContext again (also at ${inject.indexOf(token)}); a task gets one context: list it once`);
    }
    // A function that cannot be constructed is no class: often `() => Mailer` without delay().
    const notAClass = typeof token === 'function' && !('prototype' in token);
    if (!isToken(token) || notAClass) {
      const hint = !(i in inject)
        ? ' (a hole in the array)'
        : token === undefined
          ? ' (an import cycle can leave a class undefined here)'
          : notAClass
            ? ' (a function that is not a class: a class defined later is injected as delay(() => TheClass))'
            : '';
      throw new TypeError(
        `${call}("${name}"): options.inject[${i}] must be a class, string, symbol or delay() token, got ${describe(token)}${hint}`,
      );
    }
  }
  if (typeof fn !== 'function' || uncallable(fn) !== undefined) {
    throw new TypeError(`${call}("${name}"): fn must be a function, got ${describe(fn)}${typeof fn === 'function' ? uncallable(fn)! : ''}`);
  }
  // Bad task options fail here, at definition time; they are merged over a scope's defaults at add(),
  // where a backoff.maxMs given without baseMs is checked against the baseMs it inherits.
  resolveTaskOptions(own, defaultTaskOptions, definitionLevel(name, call));
  return Object.freeze({
    name,
    inject: Object.freeze([...(inject as InjectionToken[])]),
    options: own,
    fn: fn as TaskDefinition['fn'],
    [definitionBrand]: true as const,
  });
}

/** Whether a value is a definition made by {@link defineTask}. */
export function isTaskDefinition(value: unknown): value is TaskDefinition {
  return typeof value === 'object' && value !== null && definitionBrand in value;
}

/** Whether a function is a class task: a class with a `run` method. */
export function isClassTask(value: unknown): value is ClassTask {
  return typeof ((value as { prototype?: unknown }).prototype as { run?: unknown } | undefined)?.run === 'function';
}

/** Whether a function was declared `async`, so it runs on the event loop rather than after it. */
export function isAsyncFunction(fn: unknown): boolean {
  return (fn as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === 'AsyncFunction';
}

function isToken(token: unknown): token is InjectionToken {
  const type = typeof token;
  return type === 'function' || type === 'symbol' || (type === 'string' && token !== '') || isDelayToken(token);
}

/**
 * Whether a value is a token made by tsyringe's `delay()`: an instance of its
 * `DelayedConstructor`, known by its `createProxy` method. Recognized by shape rather than
 * `instanceof`, so that this module need not load tsyringe (a worker thread imports it to find
 * its tasks) and a second copy of tsyringe is still recognized.
 */
export function isDelayToken(token: unknown): boolean {
  return typeof token === 'object' && token !== null && typeof (token as { createProxy?: unknown }).createProxy === 'function';
}

/** A printable name of a token, for errors. */
export function tokenName(token: InjectionToken): string {
  if (typeof token === 'function') return token.name || '(anonymous class)';
  if (typeof token === 'string') return JSON.stringify(token);
  if (typeof token === 'symbol') return token.toString();
  let wrapped: unknown;
  try {
    wrapped = isDelayToken(token) ? (token as unknown as { wrap(): unknown }).wrap() : undefined;
  } catch {
    // Its callback threw: named without it.
  }
  return typeof wrapped === 'function' && wrapped.name !== '' ? `delay(() => ${wrapped.name})` : 'a delay() token';
}

/** Anything `add()` takes: a definition, a class task, or a plain function. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any definition, class or function, whatever its types
export type AnyTask = TaskDefinition<any, any> | ClassTask<any, any> | ((...args: any[]) => unknown);

/**
 * The arguments `add()` takes after a task: a definition's (its dependencies dropped), a class
 * task's `run()` parameters, a function's parameters. One signature rather than an overload per
 * kind, so that a wrong argument is reported on that argument, naming the type it must have.
 */
export type TaskArgs<T> = [T] extends [never]
  ? unknown[]
  : T extends { readonly [signature]?: (...args: infer A) => unknown }
  ? A
  : // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a constructor of any parameters
    T extends new (...params: any[]) => { run(...args: infer A): unknown }
    ? A
    : T extends (...args: infer A) => unknown
      ? A
      : never;

/** What a task's handle resolves to: a definition's result, or what `run()` or the function returns, awaited. */
export type TaskResult<T> = [T] extends [never]
  ? unknown
  : T extends { readonly [signature]?: (...args: never[]) => infer R }
  ? R
  : // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a constructor of any parameters
    T extends new (...params: any[]) => { run(...args: never[]): infer R }
    ? Awaited<R>
    : T extends (...args: never[]) => infer R
      ? Awaited<R>
      : never;
