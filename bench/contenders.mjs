/**
 * The code each contender of an async-dispatch measurement runs: the task, the baselines' "add"
 * and the loops that drive an adder. scenarios.mjs imports this module once per contender, with
 * a query string (`./contenders.mjs?raw`), so that every contender gets its own copy of these
 * functions: in one process, shared functions would see several contenders' objects and be
 * optimized for none (measured: raw dispatch ran 2× slower after Background had used the same
 * no-op task and loop), which flatters the slower contender's ratio.
 */

/** The task: a no-op async function. */
export const noop = async () => {};

/** The log of the raw baseline's `.catch()`. */
export const log = (error) => console.error(error);

/** A task that waits on `gate`. */
export const waiter = (gate) => async () => {
  await gate;
};

/**
 * "Raw" fire-and-forget: `fn().catch(log)`, the promise tracked in a Set until it settles (what a
 * careful hand-written version does, so that shutdown can wait for it). `drain()` resolves once
 * the Set is empty. With a `limit` (p-limit), the call goes through it.
 */
export function tracked(limit) {
  const inflight = new Set();
  let wake;
  const settled = (p) => {
    inflight.delete(p);
    if (inflight.size === 0 && wake !== undefined) {
      const w = wake;
      wake = undefined;
      w();
    }
  };
  const add =
    limit === undefined
      ? (fn) => {
          const p = fn().catch(log);
          inflight.add(p);
          p.then(() => settled(p));
        }
      : (fn) => {
          const p = limit(fn).catch(log);
          inflight.add(p);
          p.then(() => settled(p));
        };
  const drain = () => (inflight.size === 0 ? Promise.resolve() : new Promise((resolve) => (wake = resolve)));
  return { add, drain };
}

/** `batches` batches of 100 no-op tasks, each drained before the next. */
export async function steady(adder, batches) {
  for (let b = 0; b < batches; b++) {
    for (let i = 0; i < 100; i++) adder.add(noop);
    await adder.drain();
  }
}

/** `count` no-op tasks added at once, then drained. */
export async function burst(adder, count) {
  for (let i = 0; i < count; i++) adder.add(noop);
  await adder.drain();
}

/** Adds `count` no-op tasks at once. */
export function addMany(adder, count) {
  for (let i = 0; i < count; i++) adder.add(noop);
}
