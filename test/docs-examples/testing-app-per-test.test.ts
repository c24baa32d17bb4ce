/**
 * docs/testing.md, "An application per test", as written there: a fresh application per test, the
 * code under test resolved from a child of it with a fake, `drain()` before asserting, and a
 * logger that records failures.
 */
import 'reflect-metadata';
import { container, type DependencyContainer } from 'tsyringe';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { Background, BackgroundOptions, shutdown } from '../../src/index.js';
import { Mailer, sendWelcome } from './signup.js';

// #region docs
let app: DependencyContainer;
let failures: unknown[];

beforeEach(() => {
  failures = [];
  const logger = { error: (fields: Record<string, unknown>) => { failures.push(fields.err); }, warn() {}, info() {}, debug() {} };
  app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, logger } });
});
afterEach(() => shutdown({ container: app }));   // closes this test's application

it('sends the welcome mail', async () => {
  const sent: string[] = [];
  const scope = app.createChildContainer();
  scope.register(Mailer, { useValue: { send: async (to: string) => { sent.push(to); } } });
  const bg = scope.resolve(Background);
  bg.add(sendWelcome, 'a@b.c');
  await bg.drain();
  expect(sent).toEqual(['a@b.c']);
  expect(failures).toEqual([]);
});
// #endregion docs

it('records a failure through the logger (the mailer not faked)', async () => {
  const bg = app.createChildContainer().resolve(Background);
  bg.add(sendWelcome, 'a@b.c');
  await bg.drain();
  expect(failures).toEqual([new Error('no SMTP server here: the test should have faked the mailer (to a@b.c)')]);
});
