import { container as globalContainer, type DependencyContainer, type InjectionToken } from 'tsyringe';
import { App } from './app.js';
import { BackgroundOptions, defaultOptions, resolveOptions, type ResolvedOptions } from './options.js';

/**
 * The one place that knows tsyringe's internals and registrations.
 *
 * `CurrentScope` resolves to the container that is resolving it: tsyringe calls a factory
 * provider with the container `resolve()` was called on, and constructs a class's parameters
 * through that same container. `Background` takes it in its constructor to learn its scope.
 */
export const CurrentScope: InjectionToken<DependencyContainer> = Symbol.for('tsyringe-background.CurrentScope');
globalContainer.register(CurrentScope, { useFactory: (scope) => scope });

const apps = new WeakMap<DependencyContainer, App>();

/**
 * The application a container belongs to: that of the nearest ancestor-or-self container that
 * registers `{ root: true }` options, or else of the top-most container.
 */
export function appOf(scope: DependencyContainer): App {
  for (let c: DependencyContainer | undefined = scope; c !== undefined; c = parentOf(c)) {
    const known = apps.get(c);
    if (known !== undefined) {
      known.configure(scopeOptions(c));
      return known;
    }
    if (parentOf(c) === undefined || resolveOptions(ownOptions(c)).root) {
      const app = new App(scopeOptions(c));
      apps.set(c, app);
      return app;
    }
  }
  throw new Error('unreachable: every container chain ends at a root');
}

/**
 * The options that apply to a scope: every registration from the top-most container down to
 * this one, merged field by field over the defaults, the nearest winning.
 */
export function scopeOptions(scope: DependencyContainer): ResolvedOptions {
  const parent = parentOf(scope);
  const base = parent === undefined ? defaultOptions : scopeOptions(parent);
  return resolveOptions(ownOptions(scope), base);
}

/** Whether this container is the root of its application. */
export function isAppRoot(scope: DependencyContainer): boolean {
  return apps.has(scope) || parentOf(scope) === undefined;
}

function ownOptions(scope: DependencyContainer): unknown {
  return scope.isRegistered(BackgroundOptions, false) ? scope.resolve(BackgroundOptions) : undefined;
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

/** Whether tsyringe has disposed this container (its private `disposed` flag, stable through 4.x). */
export function isDisposed(scope: DependencyContainer): boolean {
  return (scope as unknown as { disposed?: boolean }).disposed === true;
}
