/**
 * shutdown()'s report tells the whole truth (issue 12): besides what this close abandoned, the
 * application's totals by final status since it started, request scopes' abandoned work
 * included, so that an exit code can reflect every lost task.
 */
import { expect, it } from 'vitest';
import { Background, shutdown } from '../src/index.js';
import { captureLogger, freshApp, nextTurn, watchProcessErrors } from './helpers.js';

watchProcessErrors();

it("counts what request scopes abandoned in totals, and what this close abandoned in abandoned; the books balance", async () => {
  const root = freshApp({ logger: captureLogger(), concurrency: 2, drainTimeoutMs: 10 });
  const never = () => new Promise<never>(() => undefined);
  // Three request scopes each leave two tasks behind at their deadline.
  for (let r = 0; r < 3; r++) {
    const request = root.createChildContainer().resolve(Background);
    request.add(async function stuck() {
      await never();
    });
    request.add(async () => 'done');
    request.add(async function waits() {
      await never();
    });
    await request.dispose();
  }
  const app = root.resolve(Background);
  app.add(async () => 'fine');
  app.add(async () => {
    throw new Error('fails');
  });
  app.add(async function lastOne() {
    await never();
  });
  await nextTurn();
  const report = await shutdown({ container: root, timeoutMs: 10 });
  expect(report.abandoned).toBe(1);
  const { total, ...byStatus } = report.totals;
  expect(total).toBe(12);
  expect(byStatus.abandoned).toBe(1 + 3 * 2);
  expect(Object.values(byStatus).reduce((sum, n) => sum + n, 0)).toBe(total);
  expect(byStatus).toMatchObject({ succeeded: 4, failed: 1 });
  expect(Object.isFrozen(report.totals)).toBe(true);
});
