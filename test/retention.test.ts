/**
 * What a long-running task keeps: nothing of the tasks and waits that have ended around it. A
 * task that gates others (`after`), or whose result is polled with a bound, may run for hours;
 * the dependents cancelled meanwhile and the waits that expired must be let go at once, not when
 * it ends (an outside probe: 100 000 of either held 120-140 MB until then).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { afterEach, expect, it } from 'vitest';
import { Background, shutdown, type TaskHandle } from '../src/index.js';
import { sumBytes } from './fixtures/worker-tasks.js';
import { captureLogger, collectGarbage, deferred, expiredWait, freshApp, nextTurn, watchProcessErrors } from './helpers.js';

watchProcessErrors();

const roots: ReturnType<typeof freshApp>[] = [];
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 1_000 })));
});

/** A running task that ends when `gate` opens, on an application that keeps no finished task on record. */
function longRunning() {
  const root = freshApp({ records: { maxCount: 0 } });
  roots.push(root);
  const bg = root.resolve(Background);
  const gate = deferred();
  const long = bg.add(async function long() {
    await gate.promise;
    return 'done';
  });
  return { bg, long, gate };
}

it('a task added after a long-running one and cancelled is let go while that one runs', async () => {
  const { bg, long, gate } = longRunning();
  // Made in a function of their own, so that no variable of the test holds them.
  const cancelledDependent = (): WeakRef<TaskHandle> => {
    const dependent = bg.with({ after: [long] }).add(async function dependent() {});
    if (!dependent.cancel()) throw new Error('the dependent should have been cancelled');
    return new WeakRef(dependent);
  };
  const refs = [cancelledDependent(), cancelledDependent(), cancelledDependent()];
  // One that stays waits, and runs once the long one succeeds.
  let ran = false;
  const kept = bg.with({ after: [long, long] }).add(async function kept() {
    ran = true;
  });
  await nextTurn();
  collectGarbage();
  expect(refs.map((ref) => ref.deref())).toEqual([undefined, undefined, undefined]);
  expect(long.status).toBe('running');
  gate.resolve();
  await kept.result();
  expect(ran).toBe(true);
});

it('a result({ timeoutMs }) wait that expired is let go while the task runs, its error included', async () => {
  const { long, gate } = longRunning();
  const refs = [await expiredWait(long), await expiredWait(long), await expiredWait(long)];
  const waiting = long.result({ timeoutMs: 60_000 });
  await nextTurn();
  collectGarbage();
  expect(refs.map((ref) => ref.deref())).toEqual([undefined, undefined, undefined]);
  gate.resolve();
  await expect(waiting).resolves.toBe('done');
});

it("a periodic task's result({ timeoutMs }) waits that expired are let go while it is scheduled", async () => {
  const root = freshApp();
  roots.push(root);
  const schedule = root.resolve(Background).with({ every: 3_600_000 }).add(async function hourly() {});
  const refs = [await expiredWait(schedule), await expiredWait(schedule), await expiredWait(schedule)];
  await nextTurn();
  collectGarbage();
  expect(refs.map((ref) => ref.deref())).toEqual([undefined, undefined, undefined]);
  expect(schedule.cancel()).toBe(true);
});

it('a closed application nobody holds any more is let go with the tasks it kept on record, before they age out', async () => {
  // Made in a function of its own, so that no variable of the test holds the application.
  const closedApplication = async (): Promise<WeakRef<object>[]> => {
    const root = freshApp();
    const bg = root.createChildContainer().resolve(Background);
    const result = { rows: new Array<number>(2_500).fill(1) };
    const handles = [bg.add(async () => result), bg.with({ every: 60_000 }).add(async () => undefined)];
    await handles[0]!.result();
    handles[1]!.cancel();
    await shutdown({ container: root, timeoutMs: 100 });
    return [new WeakRef(root), new WeakRef(bg), new WeakRef(result), ...handles.map((handle) => new WeakRef(handle))];
  };
  const refs = await closedApplication();
  await nextTurn();
  collectGarbage();
  // The records keep finished tasks for a minute by default: the application went long before that.
  expect(refs.map((ref) => ref.deref() === undefined)).toEqual(refs.map(() => true));
});

it.each([
  ['cancelled', (schedule: TaskHandle) => void schedule.cancel()],
  ['stopped by its scope', () => undefined],
])("a periodic task %s, kept on record, lets go of its disposed scope and what the scope holds (a request's values)", async (_label, stop) => {
  const root = freshApp();
  roots.push(root);
  // Made in a function of its own, so that no variable of the test holds the scope.
  const scopeWithSchedule = async (): Promise<{ id: string; refs: WeakRef<object>[] }> => {
    const scope = root.createChildContainer();
    const request = { id: 'request-1', body: new Array<number>(2_500).fill(1) };
    scope.register('request', { useValue: request });
    const bg = scope.resolve(Background);
    const schedule = bg.with({ every: 60_000 }).add(async function everyMinute() {});
    stop(schedule);
    await bg[Symbol.asyncDispose]();
    return { id: schedule.id, refs: [new WeakRef(scope), new WeakRef(request), new WeakRef(bg)] };
  };
  const { id, refs } = await scopeWithSchedule();
  await nextTurn();
  collectGarbage();
  // On record for a minute (records.maxAgeMs), read back by id: without its scope.
  expect(root.resolve(Background).get(id, { application: true })?.status).toBe('cancelled');
  expect(refs.map((ref) => ref.deref() === undefined)).toEqual([true, true, true]);
});

it("a task cancelled by a service of its scope, kept on record, lets go of that service once the scope is disposed (its error's stack named it)", async () => {
  const root = freshApp();
  roots.push(root);
  const scopeWithCancelledTask = async (): Promise<{ id: string; refs: WeakRef<object>[] }> => {
    const scope = root.createChildContainer();
    const service = {
      request: { id: 'request-2', body: new Array<number>(2_500).fill(1) },
      /** Cancels a task: the error is made with this service's call on its stack. */
      giveUp(handle: TaskHandle): void {
        handle.cancel('no longer needed');
      },
    };
    scope.register('service', { useValue: service });
    const bg = scope.resolve(Background);
    const handle = bg.with({ delayMs: 60_000 }).add(async function later() {});
    scope.resolve<typeof service>('service').giveUp(handle);
    await bg[Symbol.asyncDispose]();
    return { id: handle.id, refs: [new WeakRef(service), new WeakRef(service.request), new WeakRef(scope)] };
  };
  const { id, refs } = await scopeWithCancelledTask();
  await nextTurn();
  collectGarbage();
  expect(root.resolve(Background).get(id, { application: true })?.status).toBe('cancelled');
  expect(refs.map((ref) => ref.deref() === undefined)).toEqual([true, true, true]);
});

it.each([
  ['an async task', (bg: Background) => bg.add(async function seesTheRequest() {})],
  ['a sync task', (bg: Background) => bg.add(function countsTheRequest() {})],
  [
    'a failing task',
    (bg: Background) =>
      bg.add(async function failsTheRequest() {
        throw new Error('failed in a request');
      }),
  ],
  ['a delayed task cancelled', (bg: Background) => bg.with({ delayMs: 60_000 }).add(async function later() {})],
  // The first worker task of its application starts the pool, its threads and its timers.
  ['the first worker task', (bg: Background) => bg.add(sumBytes, new Uint8Array([1, 2]))],
])("%s added in a request's AsyncLocalStorage context lets go of the request's store once ended, its record kept", async (_label, add) => {
  // Its failure logged where nothing else keeps it (the console of the test runner would, a while).
  const logger = captureLogger();
  const root = freshApp({ logger });
  roots.push(root);
  const requestContext = new AsyncLocalStorage<{ request: object }>();
  const bg = root.resolve(Background);
  // Made in a function of its own, so that no variable of the test holds the store.
  const addedInARequest = async (): Promise<{ id: string; ref: WeakRef<object> }> => {
    const store = { request: { id: 'request-3', body: new Array<number>(2_500).fill(1) } };
    const handle = requestContext.run(store, () => add(bg));
    if (handle.status === 'delayed') handle.cancel();
    await handle.result().catch(() => undefined);
    return { id: handle.id, ref: new WeakRef(store) };
  };
  const { id, ref } = await addedInARequest();
  await nextTurn();
  collectGarbage();
  expect(bg.get(id)?.status).toMatch(/^(succeeded|failed|cancelled)$/);
  expect(logger.at('error').length).toBe(bg.get(id)?.status === 'failed' ? 1 : 0);
  expect(ref.deref()).toBeUndefined();
});

it("a task whose result() is awaited in a request's AsyncLocalStorage context lets go of the request's store once ended, its record kept", async () => {
  const root = freshApp();
  roots.push(root);
  const requestContext = new AsyncLocalStorage<{ request: object }>();
  const bg = root.resolve(Background);
  const awaitedInARequest = async (): Promise<{ ids: string[]; seen: unknown[]; ref: WeakRef<object> }> => {
    const store = { request: { id: 'request-4', body: new Array<number>(2_500).fill(1) } };
    // (No expect() in the request: the test runner keeps the promises of its assertions.)
    const { ids, seen } = await requestContext.run(store, async () => {
      const handles = [bg.add(async function oneOff() {}), bg.with({ every: 60_000 }).add(async function everyMinute() {})];
      await handles[0]!.result();
      // What awaits the result goes on in the request's context.
      const after = requestContext.getStore() === store;
      handles[1]!.cancel();
      const stopped = await handles[1]!.result().catch((error: unknown) => (error as Error).name);
      return { ids: handles.map((handle) => handle.id), seen: [after, stopped] };
    });
    return { ids, seen, ref: new WeakRef(store) };
  };
  const { ids, seen, ref } = await awaitedInARequest();
  expect(seen).toEqual([true, 'TaskCancelledError']);
  await nextTurn();
  collectGarbage();
  expect(ids.map((id) => bg.get(id)?.status)).toEqual(['succeeded', 'cancelled']);
  expect(ref.deref()).toBeUndefined();
});
