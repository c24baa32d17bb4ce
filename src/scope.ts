import { container as globalContainer, type DependencyContainer, type InjectionToken } from 'tsyringe';
import { App } from './app.js';
import { BackgroundOptions, resolveOptions } from './options.js';

/**
 * The one place that knows tsyringe's internals and registrations.
 *
 * `CurrentScope` resolves to the container that is resolving it: tsyringe calls a factory
 * provider with the container `resolve()` was called on, and constructs a class's parameters
 * through that same container. `Background` takes it in its constructor to learn its scope.
 */
export const CurrentScope: InjectionToken<DependencyContainer> = Symbol('tsyringe-background.CurrentScope');
globalContainer.register(CurrentScope, { useFactory: (scope) => scope });

const apps = new WeakMap<DependencyContainer, App>();

/**
 * The application a container belongs to: that of the nearest ancestor-or-self container that
 * registers `{ root: true }` options, or else of the top-most container. tsyringe keeps a
 * child's parent in a private `parent` field (stable through 4.x); it has no public accessor.
 */
export function appOf(scope: DependencyContainer): App {
  for (let c: DependencyContainer | undefined = scope; c !== undefined; c = parentOf(c)) {
    const known = apps.get(c);
    if (known !== undefined) return known;
    const own = c.isRegistered(BackgroundOptions, false) ? resolveOptions(c.resolve(BackgroundOptions)) : undefined;
    if (own?.root === true || parentOf(c) === undefined) {
      const app = new App(own ?? resolveOptions(undefined));
      apps.set(c, app);
      return app;
    }
  }
  throw new Error('unreachable: every container chain ends at a root');
}

/** The options that apply to a scope: the nearest registration, or the defaults. */
export function scopeOptions(scope: DependencyContainer): ReturnType<typeof resolveOptions> {
  return resolveOptions(scope.isRegistered(BackgroundOptions, true) ? scope.resolve(BackgroundOptions) : undefined);
}

/** Whether this container is the root of its application. */
export function isAppRoot(scope: DependencyContainer): boolean {
  return apps.has(scope) || parentOf(scope) === undefined;
}

function parentOf(scope: DependencyContainer): DependencyContainer | undefined {
  return (scope as unknown as { parent?: DependencyContainer }).parent;
}
