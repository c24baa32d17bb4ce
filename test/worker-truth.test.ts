/**
 * Worker tasks, from an outside probe: a task that injects TaskContext, cancelled or abandoned
 * while queued (its thread still running the setup module), never starts; what a worker task
 * throws comes back as its own failure even when it is hard to read (an AggregateError and its
 * `errors`, fields whose getters throw); a result that cannot be sent back (a Proxy, a getter
 * that throws) fails with the documented TypeError naming the task and the path.
 */
import { BroadcastChannel } from 'node:worker_threads';
import type { DependencyContainer } from 'tsyringe';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Background, BackgroundOptions, disposeScope, observeTasks, shutdown, TaskAbandonedError, TaskCancelledError, WorkerTaskError, type TaskEvent, type TaskHandle } from '../src/index.js';
import { setupGateChannel } from './fixtures/worker-truth-setup.js';
import {
  countsCalls,
  echoes,
  returnsProxy,
  returnsThrowingGetter,
  throwsAggregate,
  throwsUnreadable,
  whichThread,
} from './fixtures/worker-truth-tasks.js';
import { captureLogger, failureOf, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();

describe('a worker task that injects TaskContext, given up on while queued (its thread in the setup module)', () => {
  const roots: DependencyContainer[] = [];
  const gate = new BroadcastChannel(setupGateChannel);
  gate.unref();
  afterEach(async () => {
    await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 5_000 })));
  });
  afterAll(() => {
    gate.close();
  });

  /** One thread, whose setup module waits for the test; a grace period no test outlasts. */
  function app(logger = captureLogger()): DependencyContainer {
    const root = freshApp({
      logger,
      pool: { maxThreads: 1, minThreads: 1, terminateAfterMs: 600_000, setupModule: new URL('./fixtures/worker-truth-setup.ts', import.meta.url) },
    });
    roots.push(root);
    return root;
  }

  /** Resolves when a thread's setup module says it waits. */
  const setupWaits = (): Promise<void> =>
    new Promise((resolve) => {
      gate.onmessage = (event) => {
        if ((event as { data?: { what?: string } }).data?.what === 'waiting') resolve();
      };
    });
  /** Adds the counting task, and resolves once its thread waits in the setup module: the task reads 'queued' then. */
  const addWhileSetupWaits = async (bg: Background): Promise<{ handle: TaskHandle; calls: Int32Array }> => {
    const calls = new Int32Array(new SharedArrayBuffer(8));
    const waiting = setupWaits();
    const handle = bg.add(countsCalls, calls);
    await waiting;
    return { handle, calls };
  };
  const releaseSetup = (): void => {
    gate.postMessage({ what: 'go' });
  };

  it('is never called when it is cancelled, and the thread goes on to the next task', async () => {
    const root = app();
    const bg = root.createChildContainer().resolve(Background);
    const { handle, calls } = await addWhileSetupWaits(bg);
    expect(handle.status).toBe('queued');
    expect(handle.cancel('changed my mind')).toBe(true);
    await expect(handle.result()).rejects.toBeInstanceOf(TaskCancelledError);
    // Its attempt never reached a thread: none started.
    expect(handle.attempt).toBe(0);
    releaseSetup();
    // One thread: this task runs after the cancelled one has had its turn.
    await expect(bg.add(whichThread).result()).resolves.toEqual(expect.any(Number));
    expect(Array.from(calls)).toEqual([0, 0]);
    expect(handle.status).toBe('cancelled');
  });

  it('is never called when its scope abandons it at the drain deadline', async () => {
    const root = app();
    const scope = root.createChildContainer();
    scope.register(BackgroundOptions, { useValue: { drainTimeoutMs: 0 } });
    const bg = scope.resolve(Background);
    const { handle, calls } = await addWhileSetupWaits(bg);
    expect(handle.status).toBe('queued');
    await disposeScope(scope);
    expect({ status: handle.status, attempt: handle.attempt }).toEqual({ status: 'abandoned', attempt: 0 });
    await expect(handle.result()).rejects.toBeInstanceOf(TaskAbandonedError);
    releaseSetup();
    await expect(root.createChildContainer().resolve(Background).add(whichThread).result()).resolves.toEqual(expect.any(Number));
    expect(Array.from(calls)).toEqual([0, 0]);
  });

  it("has a durationMs from its thread's start of it: the time its thread spent in the setup module is not its own", async () => {
    const logger = captureLogger();
    const bg = app(logger).createChildContainer().resolve(Background);
    const waiting = setupWaits();
    const handle = bg.add(throwsAggregate);
    await waiting;
    const heldMs = 300;
    await new Promise((resolve) => setTimeout(resolve, heldMs)); // the thread's start-up, made long
    releaseSetup();
    await expect(handle.result()).rejects.toThrow('several failed');
    const [failed] = logger.at('error');
    expect(failed?.fields.taskId).toBe(handle.id);
    // The task throws at once: far below the time held, which it read before.
    expect(failed?.fields.durationMs).toBeLessThan(heldMs / 2);
  });

  it("tells its end with the same durationMs, and none for one cancelled before its thread began it (it never ran)", async () => {
    const root = app();
    const ends: TaskEvent[] = [];
    const stop = observeTasks((event) => void (['succeeded', 'cancelled'].includes(event.type) && ends.push(event)), { container: root });
    const bg = root.createChildContainer().resolve(Background);
    const { handle: cancelled } = await addWhileSetupWaits(bg);
    const ran = bg.add(echoes, 'runs once it is set up');
    const heldMs = 300;
    await new Promise((resolve) => setTimeout(resolve, heldMs)); // the thread's start-up, made long
    expect(cancelled.cancel()).toBe(true);
    releaseSetup();
    await ran.result();
    stop();
    expect(ends.map((event) => [event.id, event.type, 'durationMs' in event ? typeof event.durationMs : '-'])).toEqual([
      [cancelled.id, 'cancelled', 'undefined'],
      [ran.id, 'succeeded', 'number'],
    ]);
    expect((ends[1] as TaskEvent & { durationMs: number }).durationMs).toBeLessThan(heldMs / 2);
  });

  it('still runs when it is not given up on (the check stops only aborted calls)', async () => {
    const root = app();
    const bg = root.createChildContainer().resolve(Background);
    const { handle, calls } = await addWhileSetupWaits(bg);
    // Admitted, waiting for its thread: not started, so no attempt yet, as its status says.
    expect({ status: handle.status, attempt: handle.attempt }).toEqual({ status: 'queued', attempt: 0 });
    expect(bg.get(handle.id)).toMatchObject({ status: 'queued', attempt: 0 });
    releaseSetup();
    await expect(handle.result()).resolves.toBe('ran');
    expect({ status: handle.status, attempt: handle.attempt }).toEqual({ status: 'succeeded', attempt: 1 });
    expect(Array.from(calls)).toEqual([1, 0]);
  });
});

describe('what a worker task throws or returns, when it is hard to read', () => {
  let root: DependencyContainer;
  let bg: Background;
  beforeAll(() => {
    root = freshApp({ logger: captureLogger(), pool: { maxThreads: 1, minThreads: 1 } });
    bg = root.createChildContainer().resolve(Background);
  });
  afterAll(() => shutdown({ container: root }));

  it('rebuilds an AggregateError as one, with its errors rebuilt as causes are', async () => {
    const error = await failureOf(bg.add(throwsAggregate).result());
    expect(error).toBeInstanceOf(AggregateError);
    expect(error.message).toBe('several failed');
    expect(error.stack).toContain('worker-truth-tasks.ts');
    expect(error.cause).toBeInstanceOf(RangeError);
    const errors = (error as unknown as AggregateError).errors as unknown[];
    expect(errors).toHaveLength(3);
    expect(errors[0]).toBeInstanceOf(TypeError);
    expect(errors[0]).toMatchObject({ message: 'first' });
    expect(errors[1]).toBeInstanceOf(Error);
    expect(errors[1]).toMatchObject({ message: 'second', code: 'E_SECOND' });
    expect(errors[2]).toBe('not an error');
  });

  it.each([
    ['message', { name: 'RangeError', message: '(its message could not be read: message getter threw)' }],
    ['stack', { name: 'RangeError', message: 'the task failed' }],
    ['name', { name: 'Error', message: 'the task failed' }],
    ['cause', { name: 'RangeError', message: 'the task failed' }],
  ] as const)("keeps the task's own error when its %s getter throws", async (field, expected) => {
    const error = await failureOf(bg.add(throwsUnreadable, field).result());
    expect(error).not.toBeInstanceOf(WorkerTaskError);
    expect({ name: error.name, message: error.message, code: error.code }).toEqual({ ...expected, code: 'E_TASK' });
    if (expected.name === 'RangeError') expect(error).toBeInstanceOf(RangeError);
    expect(error.cause).toBeUndefined();
  });

  it('fails a Proxy result with the TypeError naming the task and the path', async () => {
    const error = await failureOf(bg.add(returnsProxy).result());
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toBe(
      'worker task "returnsProxy" returned a value that cannot be sent back: result.rows[0] is a Proxy, which cannot cross to another thread; pass the plain data it wraps',
    );
  });

  it('fails a result whose getter throws with the TypeError naming the task and the path', async () => {
    const error = await failureOf(bg.add(returnsThrowingGetter).result());
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toBe('worker task "returnsThrowingGetter" returned a value that cannot be sent back: result.total cannot be read: its getter threw (not computed)');
  });

  it('refuses a Proxy argument at add(), naming its path', () => {
    expect(() => bg.add(echoes, { at: new Proxy({}, {}) })).toThrow(
      new TypeError('bg.add("echoes"): argument #0 (args[0].at) is a Proxy, which cannot cross to another thread; pass the plain data it wraps'),
    );
  });

  it('looks into every element of a long list (walked by index) and names the path of what it refuses', () => {
    class Point {
      constructor(readonly x: number) {}
    }
    const rows: unknown[] = Array.from({ length: 10_000 }, (_, i) => ({ i, tags: ['a'] }));
    rows[7_777] = { i: 7_777, tags: ['a', new Point(1)] };
    expect(() => bg.add(echoes, { rows })).toThrow(
      new TypeError('bg.add("echoes"): argument #0 (args[0].rows[7777].tags[1]) is an instance of Point: it would arrive as a plain object without its class and methods; use plain data instead'),
    );
    const numbers: unknown[] = Array.from({ length: 100_000 }, (_, i) => i);
    numbers.push(function later() {});
    expect(() => bg.add(echoes, numbers)).toThrow(new TypeError('bg.add("echoes"): argument #0 (args[0][100000]) is a function (later), which cannot cross to another thread'));
  });
});
