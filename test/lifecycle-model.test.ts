/**
 * The model-based lifecycle suite: random programs against the public API (test/model/
 * lifecycle-program.ts), every invariant checked after every step, under fake timers and under
 * real ones. `FC_SEED` and `FC_RUNS` change the seed and the number of programs; `npm run soak`
 * runs it long.
 */
import fc from 'fast-check';
import { afterEach, describe, it, vi } from 'vitest';
import { fakeClock, programs, realClock, runProgram } from './model/lifecycle-program.js';
import { watchProcessErrors } from './helpers.js';

const seed = Number(process.env.FC_SEED ?? 20261205);
const runs = (fallback: number): number => Number(process.env.FC_RUNS ?? fallback);
/** Room for a long run (`FC_RUNS`): about 100 ms a program at most. */
const timeout = (fallback: number): number => Math.max(120_000, runs(fallback) * 100);

watchProcessErrors();

afterEach(() => {
  vi.useRealTimers();
});

describe('every task reaches exactly one outcome, whatever the program', () => {
  it('under fake timers', async () => {
    await fc.assert(
      fc.asyncProperty(programs(40), async (program) => {
        vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'clearImmediate', 'Date'] });
        try {
          await runProgram(program, fakeClock);
        } finally {
          vi.useRealTimers();
        }
      }),
      { seed, numRuns: runs(300) },
    );
  }, timeout(300));

  it('under real timers', async () => {
    await fc.assert(
      fc.asyncProperty(programs(25), (program) => runProgram(program, realClock)),
      { seed, numRuns: runs(40) },
    );
  }, timeout(40));
});
