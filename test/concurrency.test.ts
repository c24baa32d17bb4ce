import { describe, expect, it } from 'vitest';
import { Background } from '../src/index.js';
import { captureLogger, deferred, freshApp, nextTurn } from './helpers.js';

/** Adds `count` tasks that each wait for `gate`, recording how many run at once. */
function gatedTasks(bgs: Background[], count: number, gate: Promise<void>) {
  const seen = { running: 0, peak: 0, started: [] as number[] };
  for (let i = 0; i < count; i++) {
    bgs[i % bgs.length]!.add(async () => {
      seen.started.push(i);
      seen.peak = Math.max(seen.peak, ++seen.running);
      await gate;
      seen.running--;
    });
  }
  return seen;
}

describe('the application-wide concurrency limit', () => {
  it('is shared by every scope of the application', async () => {
    const app = freshApp({ concurrency: 3, logger: captureLogger() });
    const scopes = [app.createChildContainer(), app.createChildContainer(), app.createChildContainer().createChildContainer()];
    const bgs = [app.resolve(Background), ...scopes.map((scope) => scope.resolve(Background))];
    const gate = deferred();
    const seen = gatedTasks(bgs, 12, gate.promise);
    await nextTurn();
    expect(seen.started).toHaveLength(3);
    gate.resolve();
    await Promise.all(bgs.map((bg) => bg.drain()));
    expect(seen.peak).toBe(3);
    expect(seen.started).toEqual([...Array(12).keys()]);
  });

  it('defaults to 100', async () => {
    const app = freshApp({ logger: captureLogger() });
    const bg = app.createChildContainer().resolve(Background);
    const gate = deferred();
    const seen = gatedTasks([bg], 150, gate.promise);
    await nextTurn();
    expect(seen.started).toHaveLength(100);
    gate.resolve();
    await bg.drain();
    expect(seen.started).toHaveLength(150);
  });

  it('counts sync functions that return a promise until the promise settles', async () => {
    const app = freshApp({ concurrency: 2, logger: captureLogger() });
    const bg = app.createChildContainer().resolve(Background);
    const gates = [deferred(), deferred(), deferred()];
    const started: number[] = [];
    gates.forEach((gate, i) =>
      bg.add(() => {
        started.push(i);
        return gate.promise;
      }),
    );
    await nextTurn();
    await nextTurn();
    expect(started).toEqual([0, 1]);
    gates[0]!.resolve();
    await gates[0]!.promise;
    await nextTurn();
    await nextTurn();
    expect(started).toEqual([0, 1, 2]);
    gates[1]!.resolve();
    gates[2]!.resolve();
    await bg.drain();
  });

  it('is separate for separate applications', async () => {
    const one = freshApp({ concurrency: 1, logger: captureLogger() }).resolve(Background);
    const two = freshApp({ concurrency: 1, logger: captureLogger() }).resolve(Background);
    const gate = deferred();
    const started: string[] = [];
    one.add(async () => {
      started.push('one');
      await gate.promise;
    });
    two.add(async () => {
      started.push('two');
      await gate.promise;
    });
    await nextTurn();
    expect(started).toEqual(['one', 'two']);
    gate.resolve();
    await Promise.all([one.drain(), two.drain()]);
  });

  it('lets timers run while a long burst of instant tasks drains', async () => {
    const app = freshApp({ concurrency: 100, logger: captureLogger() });
    const bg = app.createChildContainer().resolve(Background);
    let timerFired = false;
    let doneWhenTimerFired = -1;
    let done = 0;
    const total = 20_000;
    for (let i = 0; i < total; i++) {
      bg.add(async () => {
        done++;
      });
    }
    setTimeout(() => {
      timerFired = true;
      doneWhenTimerFired = done;
    }, 0);
    await bg.drain();
    expect(timerFired).toBe(true);
    expect(doneWhenTimerFired).toBeLessThan(total);
  });
});
