/**
 * The library's own async context, which holds no caller's AsyncLocalStorage store. A timer, a
 * thread, a connection takes the stores of the context it is made in and keeps them as long as it
 * lives: what the library makes lazily and keeps (the records' sweeper, the drain deadlines'
 * timer, the worker pool and its threads, the durable backend's event stream) would otherwise
 * keep the stores of whichever request happened to make it first (its request object, its
 * logger), for as long as the process runs.
 */
import { AsyncResource } from 'node:async_hooks';

/** Made as the library loads, in no request's context. */
export const ownContext = new AsyncResource('tsyringe-background');

/** Calls `make` in the library's own context: what it makes keeps no caller's stores. */
export function inOwnContext<T>(make: () => T): T {
  return ownContext.runInAsyncScope(make);
}
