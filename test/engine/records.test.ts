import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Records } from '../../src/engine/records.js';

/** An hour: long enough that nothing ages out in a test that is not about age. */
const forever = 3_600_000;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'], now: 1_000_000 });
});

afterEach(() => {
  vi.useRealTimers();
});

/** The numbers from `from` to `to`, both included. */
function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

describe('Records', () => {
  it('lists the finished tasks it keeps, oldest first, as a copy', () => {
    const records = new Records<string>({ maxCount: 10, maxAgeMs: forever });
    expect(records.list()).toEqual([]);
    records.keep('a');
    records.keep('b');
    records.keep('c');
    const listed = records.list();
    expect(listed).toEqual(['a', 'b', 'c']);
    listed.length = 0;
    expect(records.list()).toEqual(['a', 'b', 'c']);
  });

  it('drops the oldest once more than maxCount are kept, one for one', () => {
    const records = new Records<number>({ maxCount: 3, maxAgeMs: forever });
    for (const n of range(1, 3)) records.keep(n);
    expect(records.list()).toEqual([1, 2, 3]);
    records.keep(4);
    expect(records.list()).toEqual([2, 3, 4]);
    records.keep(5);
    records.keep(6);
    expect(records.list()).toEqual([4, 5, 6]);
  });

  it('keeps nothing with maxCount 0', () => {
    const records = new Records<number>({ maxCount: 0, maxAgeMs: forever });
    for (const n of range(1, 2_000)) records.keep(n);
    expect(records.list()).toEqual([]);
  });

  it('forgets entries older than maxAgeMs (an entry exactly maxAgeMs old is still listed)', () => {
    const records = new Records<string>({ maxCount: 10, maxAgeMs: 1_000 });
    records.keep('a');
    vi.advanceTimersByTime(500);
    records.keep('b');
    vi.advanceTimersByTime(500);
    expect(records.list()).toEqual(['a', 'b']);
    vi.advanceTimersByTime(1);
    expect(records.list()).toEqual(['b']);
    vi.advanceTimersByTime(500);
    expect(records.list()).toEqual([]);
    // What aged out never comes back; what is kept now is listed.
    records.keep('c');
    expect(records.list()).toEqual(['c']);
  });

  it('ages entries out even when list() is first called long after they expired', () => {
    const records = new Records<number>({ maxCount: 100, maxAgeMs: 10 });
    for (const n of range(1, 50)) records.keep(n);
    vi.advanceTimersByTime(5);
    for (const n of range(51, 60)) records.keep(n);
    vi.advanceTimersByTime(6);
    expect(records.list()).toEqual(range(51, 60));
  });

  it('applies a longer or shorter maxAgeMs at the next list()', () => {
    const records = new Records<string>({ maxCount: 10, maxAgeMs: 100 });
    records.keep('a');
    vi.advanceTimersByTime(150);
    records.limits = { maxCount: 10, maxAgeMs: 200 };
    expect(records.list()).toEqual(['a']);
    records.keep('b');
    records.limits = { maxCount: 10, maxAgeMs: 100 };
    expect(records.list()).toEqual(['b']);
  });

  it('applies a larger maxCount at the next keep()', () => {
    const records = new Records<number>({ maxCount: 2, maxAgeMs: forever });
    for (const n of range(1, 3)) records.keep(n);
    expect(records.list()).toEqual([2, 3]);
    records.limits = { maxCount: 4, maxAgeMs: forever };
    for (const n of range(4, 7)) records.keep(n);
    expect(records.list()).toEqual([4, 5, 6, 7]);
  });

  // BUG (found writing this test): lowering maxCount is never enforced. keep() drops at most one
  // entry per call (`if`, not `while`) and list() applies only maxAgeMs, so after a lower
  // maxCount each keep() adds one and drops one: the list stays at the old size for good, and
  // maxCount 0 leaves the old entries listed. Application.configure() does lower it (a new root
  // registration). This test states the intended behaviour; `.fails` keeps the suite green until
  // records.ts is fixed, and turns red then, as a reminder to make it a plain `it`.
  it('applies a smaller maxCount at the next call: the list shrinks to it (maxCount 0: nothing)', () => {
    const records = new Records<number>({ maxCount: 5, maxAgeMs: forever });
    for (const n of range(1, 5)) records.keep(n);
    records.limits = { maxCount: 2, maxAgeMs: forever };
    records.keep(6);
    expect(records.list()).toEqual([5, 6]);
    records.limits = { maxCount: 0, maxAgeMs: forever };
    records.keep(7);
    expect(records.list()).toEqual([]);
  });

  it('keeps exactly the last maxCount over 10 000 keeps, across every compaction of its arrays', () => {
    const records = new Records<number>({ maxCount: 10, maxAgeMs: forever });
    for (let n = 1; n <= 10_000; n++) {
      records.keep(n);
      // Around each compaction (the 1 025th drop, then every 1 025 more) and a sample elsewhere.
      const dropped = n - 10;
      if (dropped % 1_025 <= 1 || dropped % 1_025 === 1_024 || n % 997 === 0) {
        expect(records.list()).toEqual(range(Math.max(1, n - 9), n));
      }
    }
    expect(records.list()).toEqual(range(9_991, 10_000));
  });

  it('is right after compaction when the drops came from age rather than maxCount', () => {
    const records = new Records<number>({ maxCount: 5_000, maxAgeMs: 10 });
    for (const n of range(1, 3_000)) records.keep(n);
    vi.advanceTimersByTime(11);
    expect(records.list()).toEqual([]);
    // 3 000 dropped, more than half of what the arrays hold: this keep compacts them.
    records.keep(3_001);
    expect(records.list()).toEqual([3_001]);
    for (const n of range(3_002, 3_010)) records.keep(n);
    vi.advanceTimersByTime(5);
    records.keep(3_011);
    vi.advanceTimersByTime(6);
    expect(records.list()).toEqual([3_011]);
  });

  it('is right past 1 024 and 2 048 drops with a maxCount larger than the compaction threshold', () => {
    // With 1 500 kept, the arrays compact once more than 1 500 entries are dropped (more than half).
    const records = new Records<number>({ maxCount: 1_500, maxAgeMs: forever });
    const checkedAt = new Set([1, 1_024, 1_025, 1_026, 1_500, 1_501, 1_502, 2_048, 2_049, 3_001, 3_002, 3_003]);
    for (let n = 1; n <= 1_500 + 3_003; n++) {
      records.keep(n);
      if (checkedAt.has(n - 1_500)) expect(records.list()).toEqual(range(n - 1_499, n));
    }
  });
});
