/**
 * The times of a cron expression in a time zone, across daylight-saving changes as
 * docs/task-control.md ("Daylight-saving changes") describes them.
 *
 * croner 11.0.1's own zone handling answers otherwise: it drops the skipped times of any
 * expression but a single time (`'0,30 2 * * *'` has no run on Berlin's spring-forward day, and
 * Lord Howe's 30-minute change loses an hourly run) and runs a list of times twice in a repeated
 * hour (its `fixedTimeRule` option mends the lists only). So it is asked only what it gets right:
 * the next wall-clock time the expression matches, computed in UTC, where clocks never change;
 * this module maps that time to an instant with the zone's offsets, read from Intl. (Correcting
 * croner's zoned answers instead would need the same offset arithmetic, and a list of its
 * mistakes.) Far from an offset change, nearly always, that is one croner call and five offset
 * look-ups: about as long as croner's own zoned answer. Near one, a binary search finds the
 * instant of the change. It assumes what holds of every zone's history in Intl (418 zones, 1970 to
 * 2040, scanned): an offset changes at most once in 48 hours; a fall-back repeats at most a day
 * (1 h in most zones, 30 min on Lord Howe, 3 h at Casey in 2023, 7 h at Vostok in 1994).
 */
import type * as Croner from 'croner';
import type { Cron } from 'croner';
import { requireCjs } from './cjs.js';

const dayMs = 86_400_000;
/**
 * Longer than any span a fall-back repeats (3 h missed Vostok's 7 h of 1994: from its fourth
 * hour, the next run was an instant of the first pass, in the past, and the schedule ran at
 * once, again and again). A day costs a longer search only on the two days around a fall-back.
 */
const repeatMs = dayMs;

/**
 * The key of a static method of `Background`, `(expression, tz) => CronTimes` ({@link cronTimes}):
 * how the durable backend, an adapter that sees only the public API, gives BullMQ's job
 * schedulers these times. Not public API; a `Symbol.for`, as the other marks of adapters.
 */
export const cronTimesDoor: unique symbol = Symbol.for('tsyringe-background.cronTimes');

/** When a periodic task with a cron expression runs. */
export interface CronTimes {
  /** The first run strictly after `from`; null when the expression has no further time. */
  nextAfter(from: Date): Date | null;
}

/** Builds the times of `expression` in `tz` (the process's zone if undefined); throws croner's error for an invalid one. */
export function cronTimes(expression: string, tz: string | undefined): CronTimes {
  // Loaded on first use, not at import (worker threads import this library too).
  const { Cron: CronJob, CronPattern } = requireCjs('croner') as typeof Croner;
  const zoned = new CronJob(expression, { paused: true, ...(tz === undefined ? {} : { timezone: tz }) });
  // Throws for a zone croner cannot use: the check at add() that the library always made.
  zoned.nextRun();
  // croner takes an ISO date too, read in the process's zone whatever `tz` says: one time is runAt's.
  if (zoned.getOnce() !== null) throw new TypeError('a date is not a cron expression; give options.runAt for a single run');
  const everyHour = new CronPattern(expression).hour.every(Boolean);
  // `utcOffset: 0` rather than `timezone: 'UTC'`: the same times, without croner's Intl round trips (6 times faster).
  return new WallClockTimes(new CronJob(expression, { paused: true, utcOffset: 0 }), everyHour, tz);
}

/** A fall-back: at `at`, the offset goes from `before` to `after` (less), and the wall-clock times in between come again. */
interface FallBack {
  readonly at: number;
  readonly before: number;
  readonly after: number;
}

/**
 * Wall-clock times are epoch ms read as UTC (a wall time `w` happens at `w - offset`). The runs:
 * each time the expression matches, at its instant; a time the clocks skip, at the end of the
 * gap (several of them, once); a time they repeat, at its first instant, and at its second too
 * when the expression runs in every hour (an interval rather than times of day).
 */
class WallClockTimes implements CronTimes {
  readonly #calendar: Cron;
  readonly #everyHour: boolean;
  readonly #format: Intl.DateTimeFormat;

  constructor(calendar: Cron, everyHour: boolean, tz: string | undefined) {
    this.#calendar = calendar;
    this.#everyHour = everyHour;
    this.#format = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
  }

  nextAfter(from: Date): Date | null {
    const t = from.getTime();
    // The latest wall time reached by `t`: its own, or, in the second pass of a repeated span,
    // the end of that span (the times in it have run in the first pass).
    let reached = t + this.#offset(t);
    // An expression of every hour runs in the second pass too: its next time there, if any.
    let again = Infinity;
    const back = this.#fallBackNear(t);
    if (back !== undefined) {
      const { at, before, after } = back;
      if (at <= t && reached < at + before) reached = at + before - 1;
      if (this.#everyHour && t < at + before - after) {
        const wall = this.#matchAfter(Math.max(at + after - 1, t + after));
        if (wall !== null && wall < at + before) again = wall - after;
      }
    }
    const wall = this.#matchAfter(reached);
    const next = Math.min(wall === null ? Infinity : this.#firstAt(wall), again);
    return next === Infinity ? null : new Date(next);
  }

  /** The first wall time after `wall` that the expression matches. */
  #matchAfter(wall: number): number | null {
    return this.#calendar.nextRun(new Date(wall))?.getTime() ?? null;
  }

  /** The first instant at which the wall clock reads `wall` or later: the end of the gap for a skipped time. */
  #firstAt(wall: number): number {
    // Its instants lie within 14 hours of `wall` read as UTC (offsets span -12 h to +14 h): the
    // offsets a day either side are those before and after any change that touches it.
    const before = this.#offset(wall - dayMs);
    const after = this.#offset(wall + dayMs);
    if (before === after) return wall - before;
    for (const offset of [before, after]) if (this.#offset(wall - offset) === offset) return wall - offset;
    return this.#changeAt(wall - after, wall - before);
  }

  /** The fall-back within `repeatMs` of `t`, if there is one. */
  #fallBackNear(t: number): FallBack | undefined {
    const before = this.#offset(t - repeatMs);
    const after = this.#offset(t + repeatMs);
    return before > after ? { at: this.#changeAt(t - repeatMs, t + repeatMs), before, after } : undefined;
  }

  /** The instant in `(from, to]` at which the offset changes, given that it does once. */
  #changeAt(from: number, to: number): number {
    const offset = this.#offset(from);
    // In whole seconds: an offset changes on one.
    let low = Math.floor(from / 1000);
    let high = Math.ceil(to / 1000);
    while (high - low > 1) {
      const middle = Math.floor((low + high) / 2);
      if (this.#offset(middle * 1000) === offset) low = middle;
      else high = middle;
    }
    return high * 1000;
  }

  /** The zone's offset from UTC at `t`, in ms (the wall time is `t + offset`). */
  #offset(t: number): number {
    const field = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
    for (const { type, value } of this.#format.formatToParts(t)) {
      if (type in field) field[type as keyof typeof field] = Number(value);
    }
    const wall = Date.UTC(field.year, field.month - 1, field.day, field.hour, field.minute, field.second);
    return wall - Math.floor(t / 1000) * 1000;
  }
}
