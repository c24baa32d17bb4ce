/**
 * Worker tasks of the benchmark, defined with the built library. Every worker thread of the
 * pool imports this module, so it has no side effects beyond defining the tasks.
 */
import { workerTask } from '../dist/tasks.js';
import { spin } from './work.mjs';

/** CPU-bound work: `iterations` steps of {@link spin}. */
export const busy = workerTask(import.meta.url, { name: 'busy' }, (iterations) => spin(iterations));

/** Nothing at all: the round trip through the pool. */
export const noop = workerTask(import.meta.url, { name: 'noop' }, () => 0);

/**
 * Counts itself in at `cell[1]`, then blocks its thread until `cell[0]` becomes non-zero: holds
 * one thread per task, so that N of them prove N live threads that have loaded this module.
 */
export const hold = workerTask(import.meta.url, { name: 'hold' }, (cell) => {
  Atomics.add(cell, 1, 1);
  Atomics.wait(cell, 0, 0);
  return 0;
});

/** A small argument in, a small value out: what a typical fire-and-forget worker task sends. */
export const echo = workerTask(import.meta.url, { name: 'echo' }, (user) => user.id);
