import { afterEach, expect, it, vi } from 'vitest';
import { Deadlines } from '../src/engine/deadlines.js';

afterEach(() => {
  vi.useRealTimers();
});

it('fires each live deadline at its time, in order, on one timer; cancelled ones never fire', () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
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
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
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
