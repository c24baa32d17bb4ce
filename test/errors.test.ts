import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Background, TaskNonErrorError, type BackgroundLogger, type BackgroundOptions } from '../src/index.js';
import { captureLogger, freshApp, nextTurn, watchProcessErrors } from './helpers.js';

const { unhandled, uncaught } = watchProcessErrors();
afterEach(() => {
  vi.restoreAllMocks();
});

function setup(logger: BackgroundLogger = captureLogger()) {
  const scope = freshApp({ logger }).createChildContainer();
  return scope.resolve(Background);
}

const circular: Record<string, unknown> = { label: 'loop' };
circular.self = circular;

describe('a failing task', () => {
  it.each([
    ['throws synchronously', () => { throw new RangeError('sync boom'); }, RangeError, /sync boom/],
    ['rejects', async () => { await Promise.resolve(); throw new TypeError('async boom'); }, TypeError, /async boom/],
    ['rejects with a string', async () => { throw 'just a string'; }, TaskNonErrorError, /non-Error value: 'just a string'/],
    ['rejects with undefined', async () => { throw undefined; }, TaskNonErrorError, /non-Error value: undefined/],
    ['rejects with a circular object', async () => { throw circular; }, TaskNonErrorError, /non-Error value: <ref \*1> \{ label: 'loop', self: \[Circular \*1\] \}/],
  ])('that %s is logged once with name, id, duration and an error with a stack', async (_label, fn, type, message) => {
    const logger = captureLogger();
    const bg = setup(logger);
    const failing = bg.add(fn);
    const fine = bg.add(async () => 'unaffected');
    await bg.drain();
    await nextTurn();
    const errors = logger.at('error');
    expect(errors).toHaveLength(1);
    const { fields, message: text } = errors[0]!;
    expect(text).toBe(`task "${failing.name}" failed`);
    expect(fields).toMatchObject({ task: failing.name, taskId: failing.id });
    expect(typeof fields.durationMs).toBe('number');
    expect(fields.err).toBeInstanceOf(type);
    expect((fields.err as Error).message).toMatch(message);
    expect((fields.err as Error).stack).toEqual(expect.any(String));
    expect(failing.status).toBe('failed');
    await expect(failing.result()).rejects.toBe(fields.err);
    await expect(fine.result()).resolves.toBe('unaffected');
    expect(unhandled).toEqual([]);
    expect(uncaught).toEqual([]);
  });

  it('keeps the original non-Error value as the cause', async () => {
    const bg = setup();
    const handle = bg.add(async () => {
      throw circular;
    });
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskNonErrorError);
    expect((error as TaskNonErrorError).code).toBe('ERR_TASK_NON_ERROR');
    expect((error as TaskNonErrorError).cause).toBe(circular);
  });

  it('survives a logger that throws', async () => {
    const broken: BackgroundLogger = {
      error: () => {
        throw new Error('logger down');
      },
      warn: () => undefined,
      info: () => undefined,
      debug: () => undefined,
    };
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const bg = setup(broken);
    const failing = bg.add(async () => {
      throw new Error('task failure');
    });
    const next = bg.add(async () => 'still runs');
    await bg.drain();
    await nextTurn();
    expect(failing.status).toBe('failed');
    await expect(next.result()).resolves.toBe('still runs');
    expect(consoleError).toHaveBeenCalledWith(
      '[tsyringe-background] the logger threw while logging:',
      'task "anonymous" failed',
      expect.objectContaining({ err: new Error('task failure') }),
      expect.objectContaining({ message: 'logger down' }),
    );
    expect(unhandled).toEqual([]);
  });
});

describe('a logger whose promise rejects (an async method)', () => {
  it('is survived as one that throws: no unhandled rejection, the task and the others go on', async () => {
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const rejecting: unknown = async () => Promise.reject(new Error('sink down'));
    const bg = setup({ error: rejecting as () => void, warn: () => undefined, info: () => undefined, debug: () => undefined });
    const failing = bg.add(async () => {
      throw new Error('task failure');
    });
    await expect(failing.result()).rejects.toThrow('task failure');
    await expect(bg.add(async () => 'still runs').result()).resolves.toBe('still runs');
    await vi.waitFor(() => expect(consoleError).toHaveBeenCalledWith('[tsyringe-background] the logger threw while logging:', 'task "anonymous" failed', expect.objectContaining({ err: new Error('task failure') }), expect.objectContaining({ message: 'sink down' })));
    expect(unhandled).toEqual([]);
  });
});

describe('loggers', () => {
  it('accepts a pino logger as is', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = pino({ base: null }, sink);
    const options: BackgroundOptions = { logger };
    const bg = freshApp(options).createChildContainer().resolve(Background);
    const handle = bg.add(async function chargeCard() {
      throw new Error('card declined');
    });
    await bg.drain();
    await vi.waitFor(() => expect(lines).toHaveLength(1));
    const entry = JSON.parse(lines[0]!) as Record<string, unknown> & { err: Record<string, unknown> };
    expect(entry).toMatchObject({ level: 50, msg: 'task "chargeCard" failed', task: 'chargeCard', taskId: handle.id });
    expect(entry.err).toMatchObject({ type: 'Error', message: 'card declined' });
    expect(entry.err.stack).toContain('card declined');
  });

  it('writes to the console by default', async () => {
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const bg = freshApp().createChildContainer().resolve(Background);
    bg.add(async function defaultLogged() {
      throw new Error('to the console');
    });
    await bg.drain();
    expect(consoleError).toHaveBeenCalledTimes(1);
    const printed = String(consoleError.mock.calls[0]![0]);
    expect(printed).toContain('task "defaultLogged" failed');
    expect(printed).toContain('Error: to the console');
    expect(printed).toMatch(/at .*errors\.test\.ts/);
  });
});
