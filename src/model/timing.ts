/**
 * Deadlines that a held event loop does not turn against work that ended in time. A timer that
 * comes due while the loop is held (a long synchronous stretch) runs before what came meanwhile:
 * a worker thread's answer, an I/O result, Redis's reply, all taken in at the poll phase, after
 * the timers. A deadline that fires late therefore acts a turn later (`setImmediate`, after the
 * poll phase), once that is taken in: without it, a task that had ended in time was abandoned, a
 * scope's disposal logged it as unfinished, and a graceful shutdown exited 1 for work lost that
 * was done.
 */
// Node's own, which a test's fake timers do not replace: the turn a late deadline gives is real.
import { clearImmediate, setImmediate } from 'node:timers';

/** How late, in ms, a deadline may fire and still act at once. */
export const lateMs = 10;

/**
 * The monotonic clock's time, ms, as deadlines measure it: time gone by, which no change of the
 * system clock moves, read from the global `performance` (a test's fake one while installed).
 */
export function monotonicNow(): number {
  return globalThis.performance.now();
}

/** A deadline `ms` from now: `expired` resolves `false` then (a turn later if its timer fired late). */
export interface Expiry {
  readonly expired: Promise<false>;
  /** Cancels it: `expired` then never resolves, and no timer is left. */
  clear(): void;
}

/** A deadline `ms` from now, late-aware ({@link lateMs}). */
export function expiry(ms: number): Expiry {
  let timer: NodeJS.Timeout | undefined;
  let turn: NodeJS.Immediate | undefined;
  const due = monotonicNow() + ms;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => {
      if (monotonicNow() - due > lateMs) turn = setImmediate(resolve, false);
      else resolve(false);
    }, ms);
  });
  return {
    expired,
    clear() {
      clearTimeout(timer);
      clearImmediate(turn);
    },
  };
}
