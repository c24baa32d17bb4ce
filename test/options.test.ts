import { performance } from 'node:perf_hooks';
import { container } from 'tsyringe';
import { describe, expect, it } from 'vitest';
import { Background, BackgroundOptions } from '../src/index.js';
import { captureLogger, deferred, freshApp, nextTurn } from './helpers.js';

function resolveWith(options: unknown): Background {
  const scope = container.createChildContainer();
  scope.register(BackgroundOptions, { useValue: options as BackgroundOptions });
  return scope.resolve(Background);
}

describe('registered options', () => {
  it.each([
    [{ concurrency: 0 }, RangeError, 'options.concurrency must be a positive integer or Infinity, got 0 (number)'],
    [{ concurrency: 2.5 }, RangeError, 'options.concurrency must be a positive integer or Infinity, got 2.5 (number)'],
    [{ concurrency: '10' }, TypeError, 'options.concurrency must be a positive integer or Infinity, got "10" (string)'],
    [{ drainTimeoutMs: -1 }, RangeError, 'options.drainTimeoutMs must be an integer from 0 to 2147483647, got -1 (number)'],
    [{ drainTimeoutMs: Infinity }, RangeError, 'options.drainTimeoutMs must be an integer from 0 to 2147483647, got Infinity (number)'],
    [{ drainTimeoutMs: 2 ** 31 }, RangeError, 'options.drainTimeoutMs must be an integer from 0 to 2147483647, got 2147483648 (number)'],
    [{ warnBlockingMs: NaN }, RangeError, 'options.warnBlockingMs must be a non-negative finite number, got NaN (number)'],
    [{ logger: console.log }, TypeError, 'options.logger must be an object with error, warn, info and debug methods, got function log'],
    [{ logger: { error() {}, warn() {} } }, TypeError, 'options.logger must be an object with error, warn, info and debug methods, got an object'],
    // Every entry would throw as it is written (a class cannot be called): the library's warnings lost.
    [{ logger: { error() {}, warn: class Warn {}, info() {}, debug() {} } }, TypeError, 'options.logger must be an object with error, warn, info and debug methods, got an object'],
    [{ root: 'yes' }, TypeError, 'options.root must be a boolean, got "yes" (string)'],
    [{ concurency: 10 }, TypeError, 'options.concurency is not a known option; known options: concurrency, drainTimeoutMs, warnBlockingMs, logger, root'],
    [42, TypeError, 'options must be an object, got 42 (number)'],
    // Built-ins whose settings would read as no options at all.
    [new Map([['concurrency', 1]]), TypeError, 'options must be an object, got an instance of Map'],
    [null, TypeError, 'BackgroundOptions: the options registered could not be resolved (TypeInfo not known for "undefined"); register an object (tsyringe reads a useValue of null or undefined as no value)'],
  ])('rejects %o at resolution with a %o naming the option, the expectation and the value', (options, type, message) => {
    expect(() => resolveWith(options)).toThrow(type);
    expect(() => resolveWith(options)).toThrow(message);
  });

  it('accepts Infinity concurrency and a zero drain deadline', () => {
    expect(resolveWith({ concurrency: Infinity, drainTimeoutMs: 0, warnBlockingMs: 0 })).toBeInstanceOf(Background);
  });

  it("applies a child's registration to that scope and its children, and the root's app-wide", async () => {
    const rootLogger = captureLogger();
    const childLogger = captureLogger();
    const app = freshApp({ logger: rootLogger, concurrency: 1 });
    const child = app.createChildContainer();
    child.register(BackgroundOptions, { useValue: { logger: childLogger, concurrency: 50 } });
    const grandchild = child.createChildContainer();
    const fail = async () => {
      await Promise.resolve();
      throw new Error('x');
    };
    app.createChildContainer().resolve(Background).add(fail);
    grandchild.resolve(Background).add(fail);
    const running: number[] = [];
    let peak = 0;
    const tracked = async () => {
      running.push(1);
      peak = Math.max(peak, running.length);
      await Promise.resolve();
      running.pop();
    };
    const bg = child.resolve(Background);
    bg.add(tracked);
    bg.add(tracked);
    await Promise.all([bg.drain(), grandchild.resolve(Background).drain(), app.resolve(Background).drain()]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(rootLogger.at('error')).toHaveLength(1);
    expect(childLogger.at('error')).toHaveLength(1);
    expect(peak).toBe(1);
  });

  it('merges registrations field by field, the nearest container winning', async () => {
    const rootLogger = captureLogger();
    const app = freshApp({ logger: rootLogger, warnBlockingMs: 1 });
    const child = app.createChildContainer();
    child.register(BackgroundOptions, { useValue: { warnBlockingMs: 0 } });
    const bg = child.createChildContainer().resolve(Background);
    bg.add(function slow() {
      const until = performance.now() + 5;
      while (performance.now() < until);
    });
    bg.add(async () => {
      throw new Error('logged by the root logger');
    });
    await bg.drain();
    expect(rootLogger.at('error')).toHaveLength(1);
    expect(rootLogger.at('warn')).toHaveLength(0);
  });

  it('follows a concurrency registered on the root after the application started', async () => {
    const app = freshApp({ logger: captureLogger() });
    const first = app.createChildContainer().resolve(Background);
    app.register(BackgroundOptions, { useValue: { root: true, logger: captureLogger(), concurrency: 1 } });
    const later = app.createChildContainer().resolve(Background);
    const gate = deferred();
    const started: string[] = [];
    for (const [name, bg] of [['first', first], ['later', later]] as const) {
      bg.add(async () => {
        started.push(name);
        await gate.promise;
      });
    }
    await nextTurn();
    expect(started).toEqual(['first']);
    gate.resolve();
    await Promise.all([first.drain(), later.drain()]);
    expect(started).toEqual(['first', 'later']);
  });
});
