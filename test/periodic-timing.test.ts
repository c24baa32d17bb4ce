/**
 * When an `every` schedule's ticks come, under fake timers and a clock moved past them (an event
 * loop that stalled, a machine that slept): a missed period is skipped, never caught up with a
 * run right after the late one.
 */
import { afterEach, expect, it, vi } from 'vitest';
import { Background, observeTasks, shutdown } from '../src/index.js';
import { freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();
afterEach(() => {
  vi.useRealTimers();
});

it('after a stall longer than its period, the next run comes a period after the late one', async () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'Date'] });
  const root = freshApp();
  const bg = root.createChildContainer().resolve(Background);
  const starts: number[] = [];
  const schedule = bg.with({ every: 50 }).add(async function tick() {
    starts.push(Date.now());
  });
  const t0 = Date.now();
  await vi.advanceTimersByTimeAsync(50); // the first run, on time
  // The event loop stalls for 175 ms: the clock moves, no timer runs meanwhile.
  vi.setSystemTime(Date.now() + 175);
  await vi.advanceTimersByTimeAsync(50); // the tick that was due comes late, then the next ones
  await vi.advanceTimersByTimeAsync(120);
  schedule.cancel();
  const gaps = starts.slice(1).map((at, i) => at - starts[i]!);
  expect(starts[0]! - t0).toBe(50);
  expect(gaps.length).toBeGreaterThanOrEqual(2);
  for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(50);
  await shutdown({ container: root, timeoutMs: 100 });
});

it('a stopped schedule stays on record as a finished task does: get() finds it cancelled, until the records drop it', async () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  const root = freshApp({ records: { maxCount: 100, maxAgeMs: 1_000 } });
  const bg = root.createChildContainer().resolve(Background);
  const schedule = bg.with({ every: 60_000 }).add(async function hourly() {});
  const oneOff = bg.with({ delayMs: 60_000 }).add(async function later() {});
  expect([schedule.cancel(), oneOff.cancel()]).toEqual([true, true]);
  expect([bg.get(schedule.id)?.status, bg.get(oneOff.id)?.status]).toEqual(['cancelled', 'cancelled']);
  // From another scope of the application too, as while it was scheduled.
  expect(root.createChildContainer().resolve(Background).get(schedule.id)).toBe(schedule);
  await vi.advanceTimersByTimeAsync(2_500);
  expect([bg.get(schedule.id), bg.get(oneOff.id)]).toEqual([undefined, undefined]);
  await shutdown({ container: root, timeoutMs: 100 });
});

it('after the clock is set back (NTP corrects a clock a day ahead), a cron schedule runs again within a period, not a day later', async () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: new Date('2026-12-06T10:00:00Z') });
  const root = freshApp();
  const bg = root.createChildContainer().resolve(Background);
  const starts: number[] = [];
  const schedule = bg.with({ cron: '*/5 * * * *', tz: 'UTC' }).add(async function heartbeat() {
    starts.push(Date.now());
  });
  await vi.advanceTimersByTimeAsync(5 * 60_000);
  expect(starts).toHaveLength(1);
  vi.setSystemTime(Date.now() - 24 * 3_600_000);
  const stepped = Date.now();
  await vi.advanceTimersByTimeAsync(11 * 60_000);
  expect(starts.length).toBeGreaterThanOrEqual(2);
  expect(starts[1]! - stepped).toBeLessThanOrEqual(10 * 60_000);
  schedule.cancel();
  await shutdown({ container: root, timeoutMs: 100 });
});

it("a scope disposed from an observer of a periodic run's added event drains that run, as a one-off task's", async () => {
  const root = freshApp();
  const scope = root.createChildContainer();
  const bg = scope.resolve(Background);
  let disposal: Promise<void> | undefined;
  const stop = observeTasks((event) => {
    if (event.type === 'added' && event.name === 'tick') disposal ??= bg.dispose();
  }, { container: root });
  let ran = 0;
  const schedule = bg.with({ every: 5 }).add(async function tick() {
    ran++;
  });
  await vi.waitFor(() => expect(disposal).toBeDefined(), { timeout: 2_000, interval: 5 });
  await disposal;
  stop();
  expect({ ran, schedule: schedule.status, runs: schedule.attempt }).toEqual({ ran: 1, schedule: 'cancelled', runs: 1 });
  await shutdown({ container: root, timeoutMs: 100 });
});
