/**
 * A microtask that a test's fake timers cannot take: Jest's default fakes `queueMicrotask` and
 * `process.nextTick`, and the library's own scheduling (a lane's pump, a drain's end, the tasks
 * that wait for others) would wait for the test to run them. A promise reaction is the same
 * microtask, and no fake reaches it.
 */
const resolved = Promise.resolve();

/** Calls `callback` in a microtask, as `queueMicrotask()` does. */
export function soon(callback: () => void): void {
  void resolved.then(callback);
}
