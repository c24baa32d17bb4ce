/**
 * The container adapter: the one place that knows tsyringe's internals and registrations: which
 * application and options a container belongs to, and the Background resolved from it.
 */
import { container as globalContainer, type DependencyContainer, type InjectionToken } from 'tsyringe';
import { Application } from '../engine/application.js';
import { BackgroundOptions, defaultOptions, resolveOptions, type ResolvedOptions } from '../model/options.js';
import { messageOf } from '../model/checks.js';

/**
 * Resolves to the container that is resolving it: tsyringe calls a factory provider with the
 * container `resolve()` was called on, and constructs a class's parameters through that same
 * container. `Background` takes it in its constructor to learn its scope.
 */
export const CurrentScope: InjectionToken<DependencyContainer> = Symbol.for('tsyringe-background.CurrentScope');

const apps = new WeakMap<DependencyContainer, Application>();
/** Each application's root container. */
const roots = new WeakMap<Application, DependencyContainer>();

/** The library's registrations in tsyringe's global container. */
const registrations: ((container: DependencyContainer) => void)[] = [];

/**
 * Makes `register` in tsyringe's global container now, and again each time that container is
 * reset: `container.reset()` (a common step between tests) drops every registration, the
 * library's with them, and `Background` could no longer be resolved anywhere in the process
 * (its scope's token unregistered). Child containers made before a reset keep what they copied.
 */
export function registerGlobally(register: (container: DependencyContainer) => void): void {
  registrations.push(register);
  register(globalContainer);
}

const reset = globalContainer.reset.bind(globalContainer);
globalContainer.reset = (): void => {
  reset();
  for (const register of registrations) register(globalContainer);
  // Reset after its application was closed (a test's shutdown()): the next Background starts a new one.
  if (apps.get(globalContainer)?.state !== 'open') apps.delete(globalContainer);
};

registerGlobally((global) => global.register(CurrentScope, { useFactory: (scope) => scope }));


/** The class whose instance in a root container closes its application (the facade's `Background`). */
let rootCloser: InjectionToken<object> | undefined;

/**
 * Names the class that closes an application when tsyringe disposes its root: each new
 * application resolves it from its root container at once, so that `root.dispose()` closes the
 * application even when nobody resolved it from the root.
 */
export function closeApplicationsWith(token: InjectionToken<object>): void {
  rootCloser = token;
}

/** What a container's Background needs to know of where it stands. */
export interface ScopeInfo {
  /** Every registration from the top-most container down to this one, merged field by field over the defaults, the nearest winning. */
  readonly options: ResolvedOptions;
  /** The application: that of the nearest ancestor-or-self container that registers `{ root: true }`, or else of the top-most container. */
  readonly app: Application;
  /** Whether this container is its application's root. */
  readonly isRoot: boolean;
}

/** Reads a container's options and application in one walk up its ancestors. */
export function scopeInfo(scope: DependencyContainer): ScopeInfo {
  const parent = parentOf(scope);
  const own = ownOptions(scope);
  const above = parent === undefined ? undefined : scopeInfo(parent);
  const options = resolveOptions(own, above?.options ?? defaultOptions);
  let app = apps.get(scope);
  // A root stays one: options registered on it again without `root: true` (to change its limit,
  // say) change its application; they do not hand its scopes over to the application above.
  if (above !== undefined && app === undefined && !(own !== undefined && options.root)) return { options, app: above.app, isRoot: false };
  if (app === undefined) {
    apps.set(scope, (app = new Application(options)));
    roots.set(app, scope);
    if (rootCloser !== undefined) scope.resolve(rootCloser);
  } else {
    app.configure(options);
  }
  return { options, app, isRoot: true };
}

/**
 * A container's options as registered now, read without making its application (which would
 * fix its root's options before the caller has registered them).
 */
export function optionsOf(scope: DependencyContainer): ResolvedOptions {
  const parent = parentOf(scope);
  return resolveOptions(ownOptions(scope), parent === undefined ? defaultOptions : optionsOf(parent));
}

/** The root container of the application a container belongs to. */
export function rootOf(scope: DependencyContainer): DependencyContainer {
  return roots.get(scopeInfo(scope).app)!;
}

/** The application a container belongs to. */
export function appOf(scope: DependencyContainer): Application {
  return scopeInfo(scope).app;
}

/**
 * The application of a container that tsyringe has disposed, or one of whose ancestors it has:
 * the one made for it or its nearest ancestor, up to its own application's root (`null` when that
 * root never made one: an application above it is another's, which a `shutdown()` of this
 * container must not close). `undefined` when nothing in its line is disposed: {@link appOf}
 * answers then.
 */
export function appOfDisposed(scope: DependencyContainer): Application | null | undefined {
  let disposed = false;
  for (let c: DependencyContainer | undefined = scope; c !== undefined && !disposed; c = parentOf(c)) disposed = isDisposed(c);
  if (!disposed) return undefined;
  for (let c: DependencyContainer | undefined = scope; c !== undefined; c = parentOf(c)) {
    const app = apps.get(c);
    if (app !== undefined) return app;
    if (registersRoot(c)) return null;
  }
  return null;
}

/**
 * Whether a container's own registration makes it a root (`root: true`), read even when tsyringe
 * has disposed it (its registry is kept; its flag is lifted for the read, as in
 * {@link madeWhileDisposing}). Options that cannot be read make no root.
 */
function registersRoot(scope: DependencyContainer): boolean {
  const own = scope as unknown as { disposed?: unknown };
  const was = own.disposed;
  own.disposed = false;
  try {
    return scope.isRegistered(BackgroundOptions, false) && (scope.resolve(BackgroundOptions) as { root?: unknown } | null)?.root === true;
  } catch {
    return false;
  } finally {
    own.disposed = was;
  }
}

/**
 * The application made for a container or its nearest ancestor that has one, found without
 * reading registrations (which may be unreadable: disposed, or invalid since); undefined when
 * none was made.
 */
export function appMadeFor(scope: DependencyContainer): Application | undefined {
  for (let c: DependencyContainer | undefined = scope; c !== undefined; c = parentOf(c)) {
    const app = apps.get(c);
    if (app !== undefined) return app;
  }
  return undefined;
}

function ownOptions(scope: DependencyContainer): unknown {
  if (!scope.isRegistered(BackgroundOptions, false)) return undefined;
  try {
    return scope.resolve(BackgroundOptions);
  } catch (error) {
    // tsyringe's own words say nothing of the options (a useValue of null: "TypeInfo not known for "undefined"").
    throw new TypeError(
      `BackgroundOptions: the options registered could not be resolved (${messageOf(error)}); register an object (tsyringe reads a useValue of null or undefined as no value)`,
      { cause: error },
    );
  }
}

/** tsyringe keeps a child's parent in a private `parent` field (stable through 4.x). */
function parentOf(scope: DependencyContainer): DependencyContainer | undefined {
  return (scope as unknown as { parent?: DependencyContainer }).parent;
}

const backgroundKey = Symbol('tsyringe-background.Background');

/** Remembers a container's Background on the container itself (a WeakMap of every request scope would load the GC). */
export function setBackgroundOf(scope: DependencyContainer, background: object): void {
  (scope as unknown as Record<symbol, object>)[backgroundKey] = background;
}

/** The Background of a container, if one was resolved from it. */
export function backgroundOf<T>(scope: DependencyContainer): T | undefined {
  return (scope as unknown as Record<symbol, T | undefined>)[backgroundKey];
}

/**
 * Disposes what tsyringe would dispose of a container whose `Background` (if any) is already
 * disposed: the container is marked disposed, and each of its other disposable instances is
 * disposed, in parallel, as tsyringe's `dispose()` does, but without running it (an ES5
 * generator through tslib's `__awaiter`, a large part of a request scope's disposal in a
 * profile) and without calling the Background's `dispose()` again. Should tsyringe's private
 * `disposables` and `disposed` fields (stable through 4.x) change, tsyringe's own `dispose()`.
 */
export function disposeRest(scope: DependencyContainer, background: object | undefined): Promise<void> | void {
  const own = scope as unknown as { disposables?: unknown; disposed?: unknown };
  const { disposables } = own;
  if (!(disposables instanceof Set) || own.disposed !== false) return scope.dispose();
  own.disposed = true;
  let pending: unknown[] | undefined;
  let thrown: { error: unknown } | undefined;
  for (const disposable of disposables as Set<{ dispose(): unknown }>) {
    if (disposable === background) continue;
    // As tsyringe: a thrown error rejects the disposal, a returned value is awaited if there is
    // one. Unlike it, the other instances are still disposed, and each awaited.
    try {
      const disposing = disposable.dispose();
      if (disposing) (pending ??= []).push(disposing);
    } catch (error) {
      thrown ??= { error };
    }
  }
  if (pending === undefined) {
    if (thrown !== undefined) throw thrown.error;
    return;
  }
  const settled = Promise.allSettled(pending);
  // Its application's close waits for every one (a request's session closing after the response).
  // With no Background of its own, its application is read from the registrations, made now if
  // need be (no Background was ever resolved in it): the nearest made is another's when its root
  // has none yet (an ancestor's, the global container's).
  (background === undefined ? madeWhileDisposing(own, scope) : appMadeFor(scope))?.disposing(settled.then(nothing));
  return settled.then((results) => {
    if (thrown !== undefined) throw thrown.error;
    for (const result of results) if (result.status === 'rejected') throw result.reason;
  });
}

const nothing = (): void => undefined;

/** The application of a scope being disposed, made (its registrations read as they were) if need be. */
function madeWhileDisposing(own: { disposed?: unknown }, scope: DependencyContainer): Application | undefined {
  own.disposed = false;
  try {
    return appOf(scope);
  } catch {
    // An ancestor disposed (its registrations unreadable: a request's scope, before the scope its
    // handler made under it), or registered options invalid: read from the nearest ancestor that
    // can still be read.
    return appAbove(scope);
  } finally {
    own.disposed = true;
  }
}

/**
 * The application of a scope under a disposed ancestor: the one made for a container between it
 * and its nearest ancestor not disposed (a sub-application's root), else that ancestor's, made if
 * need be.
 */
function appAbove(scope: DependencyContainer): Application | undefined {
  let readable = parentOf(scope);
  for (; readable !== undefined && isDisposed(readable); readable = parentOf(readable)) {
    const app = apps.get(readable);
    if (app !== undefined) return app;
  }
  try {
    return readable === undefined ? undefined : appOf(readable);
  } catch {
    return appMadeFor(scope);
  }
}

/** Whether tsyringe has disposed this container (its private `disposed` flag, stable through 4.x). */
export function isDisposed(scope: DependencyContainer): boolean {
  return (scope as unknown as { disposed?: boolean }).disposed === true;
}
