import { afterEach, expect, it, vi } from 'vitest';
import { Deadlines } from '../src/engine/deadlines.js';
import { lateMs } from '../src/model/timing.js';

afterEach(() => {
  vi.useRealTimers();
});

it('fires each live deadline at its time, in order, on one timer; cancelled ones never fire', () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  const deadlines = new Deadlines();
  const fired: string[] = [];
  deadlines.add(100, () => fired.push('a@100'));
  const cancelled = deadlines.add(100, () => fired.push('cancelled'));
  deadlines.add(50, () => fired.push('b@50'));
  vi.advanceTimersByTime(10);
  deadlines.add(90, () => fired.push('c@100'));
  deadlines.add(200, () => fired.push('d@210'));
  deadlines.cancel(cancelled);
  expect(vi.getTimerCount()).toBe(1);
  vi.advanceTimersByTime(39);
  expect(fired).toEqual([]);
  vi.advanceTimersByTime(1);
  expect(fired).toEqual(['b@50']);
  vi.advanceTimersByTime(50);
  expect(fired).toEqual(['b@50', 'a@100', 'c@100']);
  vi.advanceTimersByTime(109);
  expect(fired).toHaveLength(3);
  vi.advanceTimersByTime(1);
  expect(fired).toEqual(['b@50', 'a@100', 'c@100', 'd@210']);
  expect(vi.getTimerCount()).toBe(0);
});

it('leaves no timer behind once the last deadline is cancelled and its time has come', () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  const deadlines = new Deadlines();
  const fire = vi.fn();
  const first = deadlines.add(1_000, fire);
  const second = deadlines.add(1_000, fire);
  deadlines.cancel(first);
  deadlines.cancel(second);
  deadlines.cancel(second);
  vi.advanceTimersByTime(1_000);
  expect(fire).not.toHaveBeenCalled();
  expect(vi.getTimerCount()).toBe(0);
});

it('a timer that fires late fires every entry due by the clock, after a turn of the event loop, and measures the next wait from the clock', async () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  // The event loop held: the monotonic clock moves on, no timer fires.
  let held = 0;
  const clock = { now: () => globalThis.performance.now() + held };
  const deadlines = new Deadlines(() => clock);
  const start = clock.now();
  const fired: string[] = [];
  const record = (name: string) => (): void => void fired.push(`${name}@${clock.now() - start}`);
  for (const [name, ms] of [['a', 100], ['b', 200], ['c', 300], ['d', 400]] as const) deadlines.add(ms, record(name));
  held = 250;
  vi.advanceTimersByTime(100);
  // Late (by more than lateMs): what came meanwhile is taken in first, the entries fire after it.
  expect(fired).toEqual([]);
  await new Promise((resolve) => setImmediate(resolve));
  expect(fired).toEqual(['a@350', 'b@350', 'c@350']);
  vi.advanceTimersByTime(49);
  expect(fired).toHaveLength(3);
  vi.advanceTimersByTime(1);
  expect(fired).toEqual(['a@350', 'b@350', 'c@350', 'd@400']);
  expect(deadlines.live).toBe(0);
});

it('a deadline that came due late does not fire when what is taken in before it cancels it (a task that ended in time)', async () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  let held = 0;
  const clock = { now: () => globalThis.performance.now() + held };
  const deadlines = new Deadlines(() => clock);
  const fired: string[] = [];
  const late = deadlines.add(100, () => fired.push('late'));
  deadlines.add(100 + lateMs + 50, () => fired.push('later'));
  held = lateMs + 1;
  vi.advanceTimersByTime(100);
  // Its task's answer, taken in before the deadline acts (as the poll phase comes before setImmediate).
  deadlines.cancel(late);
  await new Promise((resolve) => setImmediate(resolve));
  expect(fired).toEqual([]);
  expect(deadlines.live).toBe(1);
  // One fired within lateMs of its time acts at once, as before.
  held = 0;
  vi.advanceTimersByTime(lateMs + 50);
  expect(fired).toEqual(['later']);
  expect(deadlines.live).toBe(0);
});

it('a wall clock set back moves no deadline: one set before the step fires at its time, not an hour late', () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] });
  const deadlines = new Deadlines();
  const fired: string[] = [];
  deadlines.add(600, () => fired.push('before the step'));
  vi.setSystemTime(Date.now() - 3_600_000); // an NTP step back of an hour
  deadlines.add(300, () => fired.push('after the step'));
  vi.advanceTimersByTime(300);
  expect(fired).toEqual(['after the step']);
  vi.advanceTimersByTime(299);
  expect(fired).toHaveLength(1);
  vi.advanceTimersByTime(1);
  expect(fired).toEqual(['after the step', 'before the step']);
  expect(vi.getTimerCount()).toBe(0);
});

it('a wall clock set forward fires no deadline early', () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] });
  const deadlines = new Deadlines();
  const fired: number[] = [];
  deadlines.add(100, () => fired.push(100));
  deadlines.add(1_000, () => fired.push(1_000));
  vi.setSystemTime(Date.now() + 3_600_000);
  vi.advanceTimersByTime(100);
  expect(fired).toEqual([100]);
  vi.advanceTimersByTime(899);
  expect(fired).toEqual([100]);
  vi.advanceTimersByTime(1);
  expect(fired).toEqual([100, 1_000]);
});

it('entries set on a fake clock keep their time left once the real one is back', async () => {
  vi.useFakeTimers();
  const deadlines = new Deadlines();
  const fired: string[] = [];
  deadlines.add(500, () => fired.push('set under fake timers'));
  vi.advanceTimersByTime(200);
  expect(fired).toEqual([]);
  vi.useRealTimers();
  const since = performance.now();
  deadlines.add(100, () => fired.push('set under real timers'));
  await vi.waitFor(() => expect(fired).toHaveLength(2), { timeout: 5_000, interval: 10 });
  // The fake clock's base is not the real one's: without the carry-over the first fired at once, or never.
  expect(fired).toEqual(['set under real timers', 'set under fake timers']);
  expect(performance.now() - since).toBeGreaterThanOrEqual(290);
});

it('keeps no more than a bounded share of cancelled entries while a later one is pending', () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  const deadlines = new Deadlines();
  const fire = vi.fn();
  // Each a scope disposed and drained at once, after one that still drains: its deadline is last.
  deadlines.add(600_000, fire);
  const late = deadlines.add(600_000, fire);
  for (let i = 0; i < 10_000; i++) deadlines.cancel(deadlines.add(599_000, fire));
  expect(deadlines.live).toBe(2);
  expect(deadlines.queued).toBeLessThan(2_100);
  deadlines.cancel(late);
  vi.advanceTimersByTime(600_000);
  expect(fire).toHaveBeenCalledTimes(1);
});

it('a timer set under fake timers that were removed since does not hold the deadlines set after them', async () => {
  vi.useFakeTimers();
  const deadlines = new Deadlines();
  // A scope disposed in a test under fake timers drains before its deadline: its entry is cancelled, the timer stays set.
  deadlines.cancel(deadlines.add(100, () => undefined));
  vi.useRealTimers();
  // The next test's scope, on real timers, with a later deadline.
  const fired: string[] = [];
  deadlines.add(200, () => fired.push('later'));
  await vi.waitFor(() => expect(fired).toEqual(['later']), { timeout: 2_000, interval: 10 });
  expect(deadlines.live).toBe(0);
});
