/**
 * Lifetime mistakes are named (issue 12): a request scope's Background kept by a longer-lived
 * instance fails at add() with an error that says which scope it belonged to, when its disposal
 * began, and the two fixes.
 */
import { inject, injectable, singleton } from 'tsyringe';
import { expect, it } from 'vitest';
import { ApplicationBackground, Background, BackgroundDisposedError, disposeScope, shutdown } from '../src/index.js';
import { captureLogger, deferred, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();

@singleton()
class Mailer {
  constructor(@inject(Background) readonly bg: Background) {}
  sendLater(to: string) {
    return this.bg.add(async function sendMail() {
      return to;
    });
  }
}

it("a @singleton() that got the first request's Background fails on the next request, with an error that says why and what to do", async () => {
  const root = freshApp();
  const first = root.createChildContainer();
  await expect(first.resolve(Mailer).sendLater('a@b.c').result()).resolves.toBe('a@b.c');
  const before = Date.now();
  await disposeScope(first);
  const second = root.createChildContainer();
  let error: unknown;
  try {
    second.resolve(Mailer).sendLater('d@e.f');
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(BackgroundDisposedError);
  const disposed = error as BackgroundDisposedError;
  expect(disposed.scope).toMatch(/^scope #\d+$/);
  expect(disposed.disposedAt).toBeGreaterThanOrEqual(before);
  expect(disposed.message).toMatch(
    new RegExp(
      `^Cannot add task "sendMail": this Background is disposed and accepts no new tasks: it belonged to ${disposed.scope}, ` +
        'whose disposal began at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(\\d+ ms ago\\)\\.',
    ),
  );
  expect(disposed.message).toContain('make that service scoped too (Lifecycle.ContainerScoped), or inject ApplicationBackground');
  // The second fix, applied: the application's Background is never the request's.
  @injectable()
  class BetterMailer {
    constructor(@inject(ApplicationBackground) readonly bg: Background) {}
  }
  await expect(second.resolve(BetterMailer).bg.add(async () => 'sent').result()).resolves.toBe('sent');
  await shutdown({ container: root });
});

it("after shutdown(), the error says the application's close began, and when", async () => {
  const root = freshApp();
  const bg = root.createChildContainer().resolve(Background);
  await shutdown({ container: root });
  expect(() => bg.add(async () => 0)).toThrow(/accepts no new tasks: it belonged to scope #\d+, whose application began closing at \d{4}-/);
  expect(() => root.resolve(Background).add(async () => 0)).toThrow(/it belonged to the application root, whose application began closing at /);
  // Not the advice for a Background kept too long: ApplicationBackground is closed too.
  expect(() => bg.add(async () => 0)).toThrow(/\(shutdown\(\), or the disposal of its root\); no Background of that application takes tasks after that$/);
  expect(() => bg.add(async () => 0)).not.toThrow(/ApplicationBackground/);
});

it('scopes are numbered in the order their Backgrounds are made; roots take no number', async () => {
  const scopeOf = (bg: Background): string | undefined => {
    try {
      bg.add(async () => 0);
    } catch (error) {
      return (error as BackgroundDisposedError).scope;
    }
    throw new Error('add() was expected to throw');
  };
  const first = freshApp();
  const a = first.createChildContainer().resolve(Background);
  const second = freshApp();
  second.resolve(Background); // a root's Background: 'the application root'
  const b = second.createChildContainer().resolve(Background);
  await Promise.all([a.dispose(), b.dispose()]);
  const [numberA, numberB] = [scopeOf(a), scopeOf(b)].map((label) => Number(/^scope #(\d+)$/.exec(label ?? "")?.[1]));
  expect(numberB).toBe(numberA! + 1);
  await Promise.all([shutdown({ container: first }), shutdown({ container: second })]);
});

it("after shutdown() began, a scope that still had work (the close drained it) gives the application's wording too, during the close and after", async () => {
  const root = freshApp({ logger: captureLogger() });
  const bg = root.createChildContainer().resolve(Background);
  const gate = deferred();
  bg.add(() => gate.promise);
  bg.with({ delayMs: 60_000 }).add(async () => 'later');
  const closing = shutdown({ container: root, timeoutMs: 5_000 });
  const during = (): unknown => bg.add(async () => 0);
  expect(during).toThrow(/accepts no new tasks: it belonged to scope #\d+, whose application began closing at \d{4}-.*no Background of that application takes tasks after that$/);
  expect(during).not.toThrow(/ApplicationBackground/);
  gate.resolve();
  await closing;
  expect(during).toThrow(/whose application began closing at /);
  expect(during).not.toThrow(/whose disposal began/);
});
