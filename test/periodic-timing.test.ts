/**
 * When an `every` schedule's ticks come, under fake timers and a clock moved past them (an event
 * loop that stalled, a machine that slept): a missed period is skipped, never caught up with a
 * run right after the late one.
 */
import { afterEach, expect, it, vi } from 'vitest';
import { Background, observeTasks, shutdown } from '../src/index.js';
import { captureLogger, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();
/** A fresh application with its log captured, on a fake clock (timers and Date) at 10:00 UTC, and a Background of a child scope. */
function onFakeClock() {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: new Date('2026-12-06T10:00:00Z') });
  const logger = captureLogger();
  const root = freshApp({ logger });
  return { logger, root, bg: root.createChildContainer().resolve(Background) };
}

afterEach(() => {
  vi.useRealTimers();
});

it('after a stall longer than its period, the next run comes a period after the late one', async () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'Date'] });
  const logger = captureLogger();
  const root = freshApp({ logger });
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
  // The ticks of 150, 200 and 250 ms, which the late one of 100 ms skipped, are logged.
  expect(logger.entries.map((entry) => [entry.level, entry.fields.missed])).toEqual([['warn', 3]]);
  await shutdown({ container: root, timeoutMs: 100 });
});

it('a stall that makes an every schedule skip ticks is logged once at warn: how many, the first, how late', async () => {
  const { logger, root, bg } = onFakeClock();
  const starts: string[] = [];
  const schedule = bg.with({ every: 60_000 }).add(async function cleanup() {
    starts.push(new Date().toISOString());
  });
  await vi.advanceTimersByTimeAsync(60_000); // the first run, on time, at 10:01
  // The event loop held for 9 min 5 s: the 10:02 tick comes at 10:11:05; those of 10:03 to 10:11 are missed.
  vi.setSystemTime(Date.now() + 545_000);
  await vi.advanceTimersByTimeAsync(60_000);
  expect(logger.entries).toEqual([
    {
      level: 'warn',
      fields: { task: 'cleanup', taskId: schedule.id, missed: 9, firstMissedAt: '2026-12-06T10:03:00.000Z', lateMs: 545_000 },
      message:
        `periodic task "cleanup" (#${schedule.id}) skipped 9 tick(s) it missed, the first due at 2026-12-06T10:03:00.000Z: ` +
        'the tick before them ran 545000 ms late (the event loop was held, the machine slept, or the clock was set forward)',
    },
  ]);
  // Nothing else changes: the next tick comes a period after the late one, and says nothing.
  await vi.advanceTimersByTimeAsync(60_000);
  expect(starts).toEqual(['2026-12-06T10:01:00.000Z', '2026-12-06T10:11:05.000Z', '2026-12-06T10:12:05.000Z']);
  expect(logger.entries).toHaveLength(1);
  schedule.cancel();
  await shutdown({ container: root, timeoutMs: 100 });
});

it('a clock set back is no missed tick (every and cron say nothing), though a stall after it is', async () => {
  const { logger, root, bg } = onFakeClock();
  let runs = 0;
  const every = bg.with({ every: 60_000 }).add(async function minutely() {
    runs++;
  });
  const cron = bg.with({ cron: '*/5 * * * *', tz: 'UTC' }).add(async function heartbeat() {
    runs++;
  });
  await vi.advanceTimersByTimeAsync(5 * 60_000);
  vi.setSystemTime(Date.now() - 24 * 3_600_000);
  await vi.advanceTimersByTimeAsync(20 * 60_000);
  // Every minute, and the heartbeat at its first look after the step (the clock's 10:10, 10:15, 10:20, 10:25).
  expect(runs).toBe(5 + 1 + 20 + 4);
  expect(logger.entries).toEqual([]);
  // Held 3 min past the minute's tick (and the heartbeat's): each logs what it skipped.
  vi.setSystemTime(Date.now() + 3 * 60_000);
  await vi.advanceTimersByTimeAsync(5 * 60_000);
  // (The heartbeat's next time, 10:30, was still to come: it missed none.)
  expect(logger.entries.map((entry) => [entry.level, entry.fields.task, entry.fields.missed])).toEqual([['warn', 'minutely', 3]]);
  every.cancel();
  cron.cancel();
  await shutdown({ container: root, timeoutMs: 100 });
});

it('a cron schedule logs the times a stall (or a clock set forward) passed without a run: how many, the first, how late', async () => {
  const { logger, root, bg } = onFakeClock();
  const starts: string[] = [];
  const schedule = bg.with({ cron: '*/5 * * * *', tz: 'UTC' }).add(async function heartbeat() {
    starts.push(new Date().toISOString());
  });
  await vi.advanceTimersByTimeAsync(4 * 60_000);
  // At 10:04 the clock jumps to 10:37:30: the 10:05 time runs at the schedule's next look, a minute
  // after the last (10:38:30); 10:10 to 10:35 are missed.
  vi.setSystemTime(new Date('2026-12-06T10:37:30Z'));
  await vi.advanceTimersByTimeAsync(60_000);
  expect(starts).toEqual(['2026-12-06T10:38:30.000Z']);
  expect(logger.entries).toEqual([
    {
      level: 'warn',
      fields: { task: 'heartbeat', taskId: schedule.id, missed: 6, firstMissedAt: '2026-12-06T10:10:00.000Z', lateMs: 2_010_000 },
      message:
        `periodic task "heartbeat" (#${schedule.id}) skipped 6 tick(s) it missed, the first due at 2026-12-06T10:10:00.000Z: ` +
        'the tick before them ran 2010000 ms late (the event loop was held, the machine slept, or the clock was set forward)',
    },
  ]);
  // The next time comes as before, without a word.
  await vi.advanceTimersByTimeAsync(2 * 60_000);
  expect(starts).toEqual(['2026-12-06T10:38:30.000Z', '2026-12-06T10:40:00.000Z']);
  expect(logger.entries).toHaveLength(1);
  schedule.cancel();
  await shutdown({ container: root, timeoutMs: 100 });
});

it('a cron schedule that missed more times than it counts says "or more"', async () => {
  const { logger, root, bg } = onFakeClock();
  const schedule = bg.with({ cron: '* * * * * *', tz: 'UTC' }).add(async function everySecond() {});
  await vi.advanceTimersByTimeAsync(500);
  vi.setSystemTime(Date.now() + 10 * 60_000);
  await vi.advanceTimersByTimeAsync(1_000);
  expect(logger.entries).toHaveLength(1);
  expect(logger.entries[0]!.fields).toEqual({ task: 'everySecond', taskId: schedule.id, missed: 100, firstMissedAt: '2026-12-06T10:00:02.000Z', lateMs: 600_000 });
  expect(logger.entries[0]!.message).toMatch(/^periodic task "everySecond" \(#\d+\) skipped 100 or more tick\(s\) it missed, the first due at 2026-12-06T10:00:02\.000Z: the tick before them ran 600000 ms late/);
  schedule.cancel();
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
