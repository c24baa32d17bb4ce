/**
 * Cron schedules across daylight-saving changes (docs/task-control.md, "Daylight-saving
 * changes"): the defects croner 11.0.1 has there, through the public API on a fake clock; then
 * random expressions and zones against a brute-force oracle that walks the clock. `FC_SEED` and
 * `FC_RUNS` change the seed and the number of cases.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Background, shutdown } from '../src/index.js';
import { cronOf } from '../src/model/call-options.js';
import { freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();
afterEach(() => {
  vi.useRealTimers();
});

/** The instants (UTC) a cron schedule runs at over `hours` from `start`, on a fake clock. */
async function runsOf(cron: string, tz: string, start: string, hours: number): Promise<string[]> {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: new Date(start) });
  const root = freshApp();
  const bg = root.createChildContainer().resolve(Background);
  const runs: string[] = [];
  bg.with({ cron, tz }).add(async function tick() {
    runs.push(new Date().toISOString().replace(':00.000Z', 'Z'));
  });
  await vi.advanceTimersByTimeAsync(hours * 3_600_000);
  await shutdown({ container: root, timeoutMs: 100 });
  return runs;
}

it.each([
  {
    why: 'two times inside the skipped hour run once, at the first time after the gap (03:00 CEST)',
    cron: '0,30 2 * * *', tz: 'Europe/Berlin', start: '2026-03-28T12:00:00Z', hours: 48,
    runs: ['2026-03-29T01:00Z', '2026-03-30T00:00Z', '2026-03-30T00:30Z'],
  },
  {
    why: 'two times of a fixed hour inside the repeated hour run once each, at their first occurrence (EDT)',
    cron: '0,30 1 * * *', tz: 'America/New_York', start: '2026-10-31T12:00:00Z', hours: 48,
    runs: ['2026-11-01T05:00Z', '2026-11-01T05:30Z', '2026-11-02T06:00Z', '2026-11-02T06:30Z'],
  },
  {
    why: "Lord Howe's 30-minute spring-forward: the skipped 02:00 runs at 02:30, the first time after the gap",
    cron: '0 * * * *', tz: 'Australia/Lord_Howe', start: '2026-10-03T12:00:00Z', hours: 6,
    runs: ['2026-10-03T12:30Z', '2026-10-03T13:30Z', '2026-10-03T14:30Z', '2026-10-03T15:30Z', '2026-10-03T16:00Z', '2026-10-03T17:00Z', '2026-10-03T18:00Z'],
  },
])('$cron in $tz: $why', async ({ cron, tz, start, hours, runs }) => {
  expect(await runsOf(cron, tz, start, hours)).toEqual(runs);
});

it("a fall-back of more than 3 hours (Vostok's 7 of 1994): every hour runs in both passes, a time of a fixed hour in the first only, never in the past", () => {
  const times = (cron: string, from: string, count: number): string[] => {
    const cronTimes = cronOf(cron, 'Antarctica/Vostok');
    const out: string[] = [];
    for (let next = cronTimes.nextAfter(new Date(from)); next !== null && out.length < count; next = cronTimes.nextAfter(next)) out.push(next.toISOString());
    return out;
  };
  // The clocks went from 00:00 +07 back to 17:00 +00 at 17:00Z on 1994-01-31: both offsets are whole hours.
  expect(times('0 * * * *', '1994-01-31T15:30:00Z', 12)).toEqual(Array.from({ length: 12 }, (_, i) => new Date(Date.parse('1994-01-31T16:00:00Z') + i * 3_600_000).toISOString()));
  // 20:30 came at 13:30Z (+07), and again at 20:30Z (+00): once.
  expect(times('30 20 * * *', '1994-01-31T12:00:00Z', 2)).toEqual(['1994-01-31T13:30:00.000Z', '1994-02-01T20:30:00.000Z']);
  // Asked from inside the second pass, four hours in: the next hour, not an instant of the first pass.
  expect(cronOf('0 * * * *', 'Antarctica/Vostok').nextAfter(new Date('1994-01-31T20:10:00Z'))?.toISOString()).toBe('1994-01-31T21:00:00.000Z');
});

it('refuses an ISO date as cron at add(): croner read it in the process\'s zone whatever tz said, and one time is runAt\'s', () => {
  const bg = freshApp().createChildContainer().resolve(Background);
  expect(() => bg.with({ cron: '2026-03-29T02:30:00', tz: 'America/New_York' })).toThrow(
    'bg.with(options): options.cron "2026-03-29T02:30:00" with options.tz "America/New_York" is not valid: a date is not a cron expression; give options.runAt for a single run',
  );
});

// ---------------------------------------------------------------------------------------------
// The oracle: walk every second or minute, read the wall clock with Intl, apply the rules.

const minute = 60_000;
const hour = 60 * minute;

/** The wall-clock time at `t` in `zone`, as epoch ms read as UTC. */
function wallClock(zone: string): (t: number) => number {
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
  });
  return (t) => {
    const part = Object.fromEntries(format.formatToParts(t).map(({ type, value }) => [type, Number(value)])) as Record<string, number>;
    return Date.UTC(part.year!, part.month! - 1, part.day, part.hour, part.minute, part.second);
  };
}

/** What a generated expression matches: the values of its time fields (`seconds` undefined for five fields). */
interface Spec {
  readonly seconds: ReadonlySet<number> | undefined;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
}

/** How many times each rule decided, over the cases: a suite that passes by doing nothing shows here. */
interface Tally {
  /** Skipped times, run at the end of their gap. */
  skipped: number;
  /** Repeated times run again at their second occurrence, and those not run again. */
  twice: number;
  once: number;
}

/**
 * The runs in `(from, to]`, by the documented rules: a matching wall time runs at its instant; a
 * matching time the clocks skip runs at the first instant after the gap; a repeated time runs at
 * its first occurrence, and at its second only when the expression runs in every hour. A run is
 * an instant: several reasons for one instant make one run.
 */
function oracle(spec: Spec, zone: string, from: number, to: number, tally: Tally): number[] {
  const step = spec.seconds === undefined ? minute : 1000;
  const everyHour = spec.hours.size === 24;
  const seconds = spec.seconds ?? new Set([0]);
  const matches = (wall: number): boolean => {
    const at = new Date(wall);
    return spec.hours.has(at.getUTCHours()) && spec.minutes.has(at.getUTCMinutes()) && seconds.has(at.getUTCSeconds());
  };
  const wallAt = wallClock(zone);
  const runs = new Set<number>();
  // Start early enough to have seen the first pass of any repeated time (at most 1 h here).
  let t = Math.floor((from - 2 * hour) / step) * step;
  let reached = wallAt(t);
  for (t += step; t <= to; t += step) {
    const wall = wallAt(t);
    for (let skipped = reached + step; skipped < wall; skipped += step) {
      if (!matches(skipped)) continue;
      runs.add(t);
      if (t > from) tally.skipped++;
    }
    if (matches(wall) && wall <= reached && t > from) tally[everyHour ? 'twice' : 'once']++;
    if (matches(wall) && (wall > reached || everyHour)) runs.add(t);
    reached = Math.max(reached, wall);
  }
  return [...runs].filter((run) => run > from).sort((a, b) => a - b);
}

/** The instants in 2026 and 2027 at which `zone`'s offset changes. */
function changesOf(zone: string): number[] {
  const wallAt = wallClock(zone);
  const offset = (t: number): number => wallAt(t) - t;
  const changes: number[] = [];
  for (let t = Date.UTC(2026, 0, 1); t < Date.UTC(2028, 0, 1); t += 6 * hour) {
    if (offset(t) === offset(t + 6 * hour)) continue;
    let [low, high] = [t, t + 6 * hour];
    while (high - low > minute) {
      const middle = low + Math.floor((high - low) / 2 / minute) * minute;
      if (offset(middle) === offset(low)) low = middle;
      else high = middle;
    }
    changes.push(high);
  }
  return changes;
}

// ---------------------------------------------------------------------------------------------
// Random expressions: lists of values, ranges and steps, biased to the hours clocks change in.

interface Field {
  readonly text: string;
  readonly values: ReadonlySet<number>;
}

const range = (from: number, to: number, by = 1): number[] => Array.from({ length: Math.floor((to - from) / by) + 1 }, (_, i) => from + i * by);

function field(max: number, likely: readonly number[], { star = true, minStep = 1 } = {}): fc.Arbitrary<Field> {
  const value = fc.oneof(fc.constantFrom(...likely), fc.integer({ min: 0, max }));
  const atom = fc.oneof(
    value.map((v) => ({ text: `${v}`, values: [v] })),
    fc.tuple(value, value).map(([a, b]) => ({ text: `${Math.min(a, b)}-${Math.max(a, b)}`, values: range(Math.min(a, b), Math.max(a, b)) })),
    fc.tuple(value, value, fc.integer({ min: Math.max(minStep, 2), max })).map(([a, b, by]) => ({
      text: `${Math.min(a, b)}-${Math.max(a, b)}/${by}`,
      values: range(Math.min(a, b), Math.max(a, b), by),
    })),
    fc.integer({ min: minStep, max }).map((by) => ({ text: `*/${by}`, values: range(0, max, by) })),
  );
  const list = fc.array(atom, { minLength: 1, maxLength: 3 }).map((atoms) => ({ text: atoms.map((a) => a.text).join(','), values: new Set(atoms.flatMap((a) => a.values)) }));
  return star ? fc.oneof({ arbitrary: fc.constant({ text: '*', values: new Set(range(0, max)) }), weight: 1 }, { arbitrary: list, weight: 3 }) : list;
}

const expressions = (withSeconds: boolean): fc.Arbitrary<{ expression: string; spec: Spec }> =>
  fc
    .record({
      // Seconds: no `*`, and steps of 15 or more, to keep the sequences short.
      seconds: withSeconds ? field(59, [0, 30, 59], { star: false, minStep: 15 }) : fc.constant(undefined),
      minutes: field(59, [0, 15, 30, 45, 59]),
      hours: field(23, [0, 1, 2, 3, 23]),
    })
    .map(({ seconds, minutes, hours }) => ({
      expression: [seconds?.text, minutes.text, hours.text, '*', '*', '*'].filter((part) => part !== undefined).join(' '),
      spec: { seconds: seconds?.values, minutes: minutes.values, hours: hours.values },
    }));

const zones = ['Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'Australia/Sydney', 'Asia/Kolkata', 'America/Santiago', 'UTC'];
/** Each zone's offset changes, or, in a zone without, the instants of Berlin's. */
const anchors = new Map(zones.map((zone) => [zone, changesOf(zone)]));
for (const zone of zones) if (anchors.get(zone)!.length === 0) anchors.set(zone, anchors.get('Europe/Berlin')!);

/** The runs `nextAfter` gives, one after the other, from `from` up to `to` (at most `limit`). */
function sequence(cron: { nextAfter(from: Date): Date | null }, from: number, to: number, limit: number): number[] {
  const runs: number[] = [];
  for (let next = cron.nextAfter(new Date(from)); next !== null && next.getTime() <= to && runs.length < limit; next = cron.nextAfter(next)) {
    runs.push(next.getTime());
  }
  return runs;
}

const seed = Number(process.env.FC_SEED ?? 20261206);
const runs = (fallback: number): number => Number(process.env.FC_RUNS ?? fallback);

describe('the runs of random expressions across the offset changes of 2026 and 2027 match a brute-force walk of the clock', () => {
  it.each([
    { what: 'minutes', withSeconds: false, before: 30 * hour, after: 6 * hour, cases: 150 },
    { what: 'seconds', withSeconds: true, before: 90 * minute, after: 90 * minute, cases: 30 },
  ])('$what', ({ withSeconds, before, after, cases }) => {
    const tally: Tally = { skipped: 0, twice: 0, once: 0 };
    const arbitrary = fc.record({
      cron: expressions(withSeconds),
      zone: fc.constantFrom(...zones),
      change: fc.nat(),
      // Where the walk starts, from the change (ms, so off the cron's grid too), and a few instants to ask from.
      start: fc.integer({ min: -before, max: after / 2 }),
      asks: fc.array(fc.integer({ min: -before, max: after }), { maxLength: 4 }),
    });
    fc.assert(
      fc.property(arbitrary, ({ cron: { expression, spec }, zone, change, start, asks }) => {
        const zoneAnchors = anchors.get(zone)!;
        const at = zoneAnchors[change % zoneAnchors.length]!;
        const [from, to] = [at + start, at + after];
        const expected = oracle(spec, zone, from, to, tally);
        const times = cronOf(expression, zone);
        const got = sequence(times, from, to, 200);
        expect(got.map((t) => new Date(t).toISOString())).toEqual(expected.slice(0, 200).map((t) => new Date(t).toISOString()));
        // From any instant, not only from a run: the first run after it.
        for (const ask of asks.map((offset) => at + offset).filter((t) => t > from && t < to)) {
          const next = expected.find((run) => run > ask);
          if (next !== undefined) expect(times.nextAfter(new Date(ask))?.toISOString()).toBe(new Date(next).toISOString());
        }
      }),
      { seed, numRuns: runs(cases) },
    );
    for (const [rule, count] of Object.entries(tally)) expect(count, `times decided by the rule "${rule}"`).toBeGreaterThan(0);
  });
});
