/**
 * The library under a test's fake clock (an outside probe of users testing their own code): a
 * turn of the event loop is not time, so fake timers neither hold a sync task's start nor, once a
 * test ends with a turn they took, stop an application's tasks for good; a timeout is judged by
 * the clock its timer runs on; a one-off delay or an `every` period whose timer fired has waited,
 * whatever `Date` says; a cron schedule notices a clock that jumped forward within a minute.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as realSleep } from 'node:timers/promises';
import { afterEach, expect, it, vi } from 'vitest';
import { Lifecycle } from 'tsyringe';
import { Background, defineTask, disposeScope, observeTasks, shutdown, type TaskEvent } from '../src/index.js';
import { captureLogger, deferred, freshApp } from './helpers.js';

const roots: ReturnType<typeof freshApp>[] = [];
afterEach(async () => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  for (const root of roots.splice(0)) await shutdown({ container: root, timeoutMs: 100 });
});

function app() {
  const root = freshApp({ logger: captureLogger() });
  roots.push(root);
  return { root, bg: root.createChildContainer().resolve(Background) };
}

/** Whether `promise` settles within `ms` of real time (a test's fake timers do not count). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = promise.then(
    () => true,
    () => true,
  );
  return Promise.race([settled, realSleep(ms).then(() => false)]);
}

it('starts a sync task under vi.useFakeTimers() without the clock being advanced: drain() resolves', async () => {
  const { bg } = app();
  vi.useFakeTimers();
  const sent: string[] = [];
  const handle = bg.add((to: string) => void sent.push(to), 'a@b.c');
  expect(await settlesWithin(bg.drain(), 2_000)).toBe(true);
  expect([handle.status, sent]).toEqual(['succeeded', ['a@b.c']]);
});

it('runs every task of a burst longer than a slice under fake timers, and tasks after real timers are back', async () => {
  const { bg } = app();
  vi.useFakeTimers();
  let ran = 0;
  for (let i = 0; i < 3_000; i++) bg.add(async () => void ran++);
  expect(await settlesWithin(bg.drain(), 5_000)).toBe(true);
  expect(ran).toBe(3_000);
  // A sync task whose turn comes after the test's fake timers were removed.
  bg.add(() => void ran++);
  vi.useRealTimers();
  bg.add(async () => void ran++);
  bg.add(() => void ran++);
  expect(await settlesWithin(bg.drain(), 2_000)).toBe(true);
  expect(ran).toBe(3_003);
});

it('judges a timeout by the clock its timer runs on: a task that took real time while the fake clock stood still has not timed out', async () => {
  const { bg } = app();
  vi.useFakeTimers();
  const handle = bg.with({ timeoutMs: 20 }).add(async () => {
    await realSleep(60);
    return 'done';
  });
  expect(await settlesWithin(handle.result(), 2_000)).toBe(true);
  expect([handle.status, await handle.result()]).toEqual(['succeeded', 'done']);
  // And the fake clock, advanced, times one out.
  const slow = bg.with({ timeoutMs: 20 }).add(async () => new Promise(() => undefined));
  await vi.advanceTimersByTimeAsync(20);
  expect(slow.status).toBe('timedOut');
});

it('runs a delayed task and an every schedule once their fake timers have waited, though Date is left real', async () => {
  const { bg } = app();
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  let ticks = 0;
  const later = bg.with({ delayMs: 1_000 }).add(async () => 'later');
  const schedule = bg.with({ every: 100 }).add(async () => void ticks++);
  // Its timer is set for its due time less the real Date's time since add() read it: a
  // millisecond boundary crossed in between (a cold start) makes the wait 999 ms of fake time.
  await vi.advanceTimersByTimeAsync(990);
  expect(later.status).toBe('delayed');
  await vi.advanceTimersByTimeAsync(10);
  expect(await settlesWithin(later.result(), 2_000)).toBe(true);
  expect(later.status).toBe('succeeded');
  // 1 000 ms of fake time: ten periods (the tenth may be on its way).
  expect(ticks).toBeGreaterThanOrEqual(9);
  schedule.cancel();
});

it('waits a delay whole under fake setTimeout with a real Date, however far the clock moves while add() runs', async () => {
  const { bg } = app();
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  // Each read of the wall clock a millisecond later than the one before: a boundary crossed at every read.
  let reads = Date.now();
  vi.spyOn(Date, 'now').mockImplementation(() => reads++);
  const later = bg.with({ delayMs: 1_000 }).add(async () => 'later');
  vi.mocked(Date.now).mockRestore();
  await vi.advanceTimersByTimeAsync(999);
  expect(later.status).toBe('delayed');
  await vi.advanceTimersByTimeAsync(1);
  expect(await settlesWithin(later.result(), 2_000)).toBe(true);
});

it('runs a delayed task once its timer has waited, when the clock was set back meanwhile', async () => {
  const { bg } = app();
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  const later = bg.with({ delayMs: 60_000 }).add(async () => 'later');
  vi.setSystemTime(Date.now() - 3_600_000);
  await vi.advanceTimersByTimeAsync(60_000);
  expect(later.status).toBe('succeeded');
});

it('keeps to its grid when its timer fires a moment early by the wall clock, and runs no tick twice', async () => {
  const { bg } = app();
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  const starts: number[] = [];
  const t0 = Date.now();
  const schedule = bg.with({ every: 1_000 }).add(async () => void starts.push(Date.now() - t0));
  // The wall clock a millisecond behind the timers: each timer fires 1 ms before its tick's time.
  await vi.advanceTimersByTimeAsync(999);
  vi.setSystemTime(Date.now() - 1);
  await vi.advanceTimersByTimeAsync(1);
  expect(starts).toEqual([]);
  await vi.advanceTimersByTimeAsync(1);
  expect(starts).toEqual([1_000]);
  await vi.advanceTimersByTimeAsync(1_000);
  expect(starts).toEqual([1_000, 2_000]);
  schedule.cancel();
});

it('runs a cron time within a minute when the wall clock jumps forward past it (a machine resumed), not a jump later', async () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: new Date('2026-12-07T08:00:00Z') });
  const { bg } = app();
  const starts: string[] = [];
  const schedule = bg.with({ cron: '0 0 9 * * *', tz: 'UTC' }).add(async () => void starts.push(new Date().toISOString()));
  await vi.advanceTimersByTimeAsync(10 * 60_000);
  vi.setSystemTime(new Date('2026-12-07T08:59:59Z'));
  await vi.advanceTimersByTimeAsync(61_000);
  expect(starts).toHaveLength(1);
  expect(Date.parse(starts[0]!) - Date.parse('2026-12-07T09:00:00Z')).toBeLessThanOrEqual(60_000);
  schedule.cancel();
});

it('a definition run under fake timers injects its dependencies as on real ones', async () => {
  const { bg } = app();
  vi.useFakeTimers();
  const greet = defineTask({ name: 'greet' }, (name: string) => `hello ${name}`);
  expect(await settlesWithin(bg.add(greet, 'ada').result(), 2_000)).toBe(true);
  await expect(bg.add(greet, 'bob').result()).resolves.toBe('hello bob');
});

it("runs tasks and drains under fake timers that take queueMicrotask too (Jest's default), the clock not advanced", async () => {
  const { bg } = app();
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'queueMicrotask', 'Date'] });
  const ran: string[] = [];
  const first = bg.add(async () => void ran.push('async'));
  bg.with({ after: [first] }).add(() => void ran.push('after'));
  bg.add(() => void ran.push('sync'));
  expect(await settlesWithin(bg.drain(), 2_000)).toBe(true);
  expect(ran.sort()).toEqual(['after', 'async', 'sync']);
});

it("counts the wait of a task that joined its queue at the clock's 0 (a fake performance clock starts there)", async () => {
  const root = freshApp({ logger: captureLogger(), concurrency: 1 });
  roots.push(root);
  const bg = root.createChildContainer().resolve(Background);
  const events: TaskEvent[] = [];
  const stop = observeTasks((event) => void events.push(event), { container: root });
  let now = 0;
  vi.spyOn(performance, 'now').mockImplementation(() => now);
  const gate = deferred();
  bg.add(async function first() {
    await gate.promise;
  });
  const second = bg.add(async function second() {});
  now = 2_000;
  gate.resolve();
  await second.result();
  stop();
  expect(events.find((event) => event.type === 'started' && event.name === 'second')).toMatchObject({ waitedMs: 2_000 });
});

it("a scope's drain deadline set before the wall clock is set back an hour abandons its task at its time", async () => {
  const root = freshApp({ logger: captureLogger(), drainTimeoutMs: 400 });
  roots.push(root);
  const hung = deferred();
  const first = root.createChildContainer();
  const handle = first.resolve(Background).add(() => hung.promise);
  const since = performance.now();
  const disposed = Promise.resolve(first.dispose());
  // An NTP step back of an hour while the scope drains, then another scope's shorter deadline.
  vi.useFakeTimers({ toFake: ['Date'], now: Date.now() - 3_600_000 });
  const second = root.createChildContainer();
  second.resolve(Background).add(() => hung.promise);
  await second.resolve(Background)[Symbol.asyncDispose]().catch(() => undefined);
  expect(await settlesWithin(disposed, 3_000)).toBe(true);
  expect(handle.status).toBe('abandoned');
  expect(performance.now() - since).toBeGreaterThanOrEqual(390);
  hung.resolve();
});

it("the application's close keeps its deadline when the wall clock is set back an hour during the close", async () => {
  const logger = captureLogger();
  const root = freshApp({ logger });
  roots.push(root);
  /** A request's database session whose close never answers. */
  class Session {
    dispose(): Promise<void> {
      return new Promise(() => undefined);
    }
  }
  const scope = root.createChildContainer();
  scope.register(Session, { useClass: Session }, { lifecycle: Lifecycle.ContainerScoped });
  scope.resolve(Session);
  const gate = deferred();
  scope.resolve(Background).add(() => gate.promise);
  void disposeScope(scope);
  const since = performance.now();
  const closing = shutdown({ container: root, timeoutMs: 400 });
  vi.useFakeTimers({ toFake: ['Date'], now: Date.now() - 3_600_000 });
  gate.resolve();
  expect(await settlesWithin(closing, 3_000)).toBe(true);
  expect(performance.now() - since).toBeGreaterThanOrEqual(390);
});
