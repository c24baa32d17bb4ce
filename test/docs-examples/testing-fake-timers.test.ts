/**
 * docs/testing.md, "Fake timers", as written there: delays and retries on Vitest's fake clock, a
 * sync task that starts without the clock being advanced, and the close in afterEach made while
 * the fake timers are installed.
 */
import 'reflect-metadata';
import { readFile } from 'node:fs/promises';
import { container, type DependencyContainer } from 'tsyringe';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { Background, BackgroundOptions, shutdown } from '../../src/index.js';
import { Mailer, sendWelcome } from './signup.js';

// #region docs
let app: DependencyContainer;
const warnings: string[] = [];

beforeEach(() => {
  vi.useFakeTimers();
  const logger = { error() {}, warn: (_fields: object, message: string) => { warnings.push(message); }, info() {}, debug() {} };
  app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, logger } });
});
afterEach(async () => {
  // Closed while the fake timers are installed, and advanced past its deadline: a timer made
  // under them (a task's delay, the drain's deadline) never fires once they are removed.
  const closing = shutdown({ container: app, timeoutMs: 1_000 });
  await vi.advanceTimersByTimeAsync(1_000);
  await closing;
  vi.useRealTimers();
});

it('sends the reminder a day later, and again a minute after a refusal', async () => {
  const sent: string[] = [];
  let refusals = 1;
  const scope = app.createChildContainer();
  scope.register(Mailer, { useValue: { send: async (to: string) => {
    if (refusals-- > 0) throw new Error('greylisted');
    sent.push(to);
  } } });
  const bg = scope.resolve(Background);
  const reminder = bg.with({ delayMs: 24 * 3_600_000, retries: 1, backoff: { baseMs: 60_000, jitter: 0 } }).add(sendWelcome, 'a@b.c');
  await vi.advanceTimersByTimeAsync(24 * 3_600_000 - 1);
  expect(reminder.status).toBe('delayed');
  await vi.advanceTimersByTimeAsync(61_000);   // the day; then the minute the retry waits, and a little more
  await reminder.result();
  expect(sent).toEqual(['a@b.c']);
  expect(warnings).toEqual(['task "sendWelcome" failed (attempt 1 of 2); retrying in 60000 ms']);
});

it('runs a sync task, and one that takes real time, without the clock being advanced', async () => {
  const bg = app.createChildContainer().resolve(Background);
  const counted = bg.add((n: number) => n + 1, 41);
  const slow = bg.with({ timeoutMs: 10 }).add(async () => {
    await readFile(new URL(import.meta.url));   // real I/O, which takes real time: the fake clock stands still
    return 'done';
  });
  await bg.drain();
  expect([await counted.result(), await slow.result()]).toEqual([42, 'done']);
});
// #endregion docs
