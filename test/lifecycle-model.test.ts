/**
 * The model-based lifecycle suite: random programs against the public API (test/model/
 * lifecycle-program.ts), every invariant checked after every step, under fake timers and under
 * real ones. `FC_SEED` and `FC_RUNS` change the seed and the number of programs; `npm run soak`
 * runs it long.
 */
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { fakeClock, newTally, programs, realClock, runProgram, type Tally } from './model/lifecycle-program.js';
import { watchProcessErrors } from './helpers.js';

const seed = Number(process.env.FC_SEED ?? 20261205);
const runs = (fallback: number): number => Number(process.env.FC_RUNS ?? fallback);
/** Room for a long run (`FC_RUNS`): about 100 ms a program at most. */
const timeout = (fallback: number): number => Math.max(120_000, runs(fallback) * 100);

watchProcessErrors();

const tallies: Record<string, Tally> = {};
const tally = (name: string): Tally => (tallies[name] ??= newTally());

afterEach(() => {
  vi.useRealTimers();
});

afterAll(() => {
  // What the programs covered: a suite that passes by doing nothing shows here.
  for (const [name, { programs: n, steps, outcomes }] of Object.entries(tallies)) {
    console.log(`lifecycle model, ${name}: ${n} programs, ${steps} steps; outcomes ${JSON.stringify(outcomes)}`);
  }
});

describe('every task reaches exactly one outcome, whatever the program', () => {
  it('under fake timers', async () => {
    await fc.assert(
      fc.asyncProperty(programs(40), async (program) => {
        vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'clearImmediate', 'Date'] });
        try {
          await runProgram(program, fakeClock, tally('fake timers'));
        } finally {
          vi.useRealTimers();
        }
      }),
      { seed, numRuns: runs(1000) },
    );
  }, timeout(1000));

  it('under real timers', async () => {
    await fc.assert(
      fc.asyncProperty(programs(25), (program) => runProgram(program, realClock, tally('real timers'))),
      { seed, numRuns: runs(60) },
    );
  }, timeout(60));

  it('with worker tasks on real threads, under real timers', async () => {
    // Threads make these programs slower: a twentieth of a long run's count.
    const workerRuns = process.env.FC_RUNS === undefined ? 20 : Math.max(1, Math.round(Number(process.env.FC_RUNS) / 20));
    await fc.assert(
      fc.asyncProperty(programs(15, { workers: true }), (program) => runProgram(program, realClock, tally('worker tasks'))),
      { seed, numRuns: workerRuns },
    );
    // The worker lane was exercised: some worker tasks ran to an outcome of their own.
    const outcomes = tally('worker tasks').outcomes;
    expect((outcomes['worker succeeded'] ?? 0) + (outcomes['worker failed'] ?? 0)).toBeGreaterThan(0);
  }, Math.max(120_000, runs(400) * 50));
});
