/**
 * A callback a worker task leaves behind on its thread (a timer, a rejection nobody handles) can
 * throw after the task has ended, and an idle thread runs it only with its next task. The error
 * is the ended task's: logged with its name and id, and the task the thread runs then goes on.
 */
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Background, shutdown, WorkerTaskError, type BackgroundOptions } from '../src/index.js';
import { leavesExit, leavesRejection, leavesThrow, microtaskThrows, ownTimerThrows, yieldsOnce } from './fixtures/left-behind-tasks.js';
import { captureLogger, freshApp, watchProcessErrors } from './helpers.js';
import { startScript, stopScripts } from './script.js';

const roots: ReturnType<typeof freshApp>[] = [];

/** One thread, so that the next task runs where the callback was left. */
function app(options: BackgroundOptions = {}) {
  const logger = captureLogger();
  const root = freshApp({ logger, ...options, pool: { maxThreads: 1, minThreads: 1, ...options.pool } });
  roots.push(root);
  return { logger, bg: root.createChildContainer().resolve(Background) };
}

watchProcessErrors();
afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root, timeoutMs: 5_000 })));
});

describe('a callback an ended worker task left behind', () => {
  it.each([
    ['throws', leavesThrow, 'threw', 'late boom'],
    ['rejects, unhandled', leavesRejection, 'rejected a promise nothing handled', 'late rejection'],
  ] as const)('%s: logged as that task’s error; the next task on its thread succeeds, on the same thread', async (_, leaves, what, message) => {
    const { bg, logger } = app();
    const culprit = bg.add(leaves);
    const culpritThread = await culprit.result();
    const next = await bg.add(yieldsOnce, 'innocent').result();
    expect(next).toEqual({ label: 'innocent', threadId: culpritThread });
    await vi.waitFor(() => expect(logger.at('error')).toHaveLength(1), { timeout: 5_000, interval: 5 });
    const [entry] = logger.at('error');
    expect(entry!.fields).toMatchObject({ task: leaves.name, taskId: culprit.id, attempt: 1, err: { message } });
    expect(entry!.message).toMatch(
      new RegExp(`^worker task "${leaves.name}" \\(#${culprit.id}, file:.*\\) had ended when a callback it left behind ${what}: ${message}; its thread was running "yieldsOnce" \\(#\\d+\\) by then, which goes on$`),
    );
  });

  it('calls process.exit(): the task running then fails with ERR_WORKER_EXITED naming the ended task, and the pool goes on', async () => {
    const { bg, logger } = app();
    const culprit = bg.add(leavesExit);
    await culprit.result();
    const victim = bg.add(yieldsOnce, 'victim');
    const error = await victim.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkerTaskError);
    expect(error).toMatchObject({ code: 'ERR_WORKER_EXITED' });
    expect((error as Error).message).toMatch(
      new RegExp(
        `^worker task "yieldsOnce" \\(#${victim.id}, file:.*\\) failed: its worker thread exited before the task finished ` +
          `\\(worker exited with code: 3, by process.exit\\(3\\) in a callback that worker task "leavesExit" \\(#${culprit.id}, file:.*\\) left behind after it ended\\) and was replaced$`,
      ),
    );
    expect(logger.entries.find((entry) => entry.fields.task === 'leavesExit')).toMatchObject({
      level: 'error',
      fields: { taskId: culprit.id },
      message: expect.stringMatching(/had ended when a callback it left behind called process\.exit\(3\): its thread ended, failing "yieldsOnce" \(#\d+\)$/) as unknown,
    });
    await expect(bg.add(yieldsOnce, 'after').result()).resolves.toMatchObject({ label: 'after' });
  });

  it("a task's own callback that throws while the task runs still fails that task, and ends its thread", async () => {
    const { bg } = app();
    const error = await bg.add(ownTimerThrows).result().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_WORKER_FAILED' });
    expect((error as Error).message).toMatch(
      /^worker task "ownTimerThrows" \(#\d+, file:.*\) failed in the worker pool: own boom \(thrown outside the task's own call, which ends its thread: /,
    );
    await expect(bg.add(yieldsOnce, 'after').result()).resolves.toMatchObject({ label: 'after' });
  });
});

describe("a callback the setup module left behind", () => {
  it('throws while a task runs: logged as the setup module\'s error; the task and its thread go on', async () => {
    const setupModule = new URL('./fixtures/setup-leaves-throw.ts', import.meta.url);
    const { bg, logger } = app({ pool: { setupModule } });
    const first = (await bg.add(yieldsOnce, 'first').result()) as { threadId: number };
    // The setup's timer is due by now: the idle thread runs it with its next task.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await expect(bg.add(yieldsOnce, 'second').result()).resolves.toEqual({ label: 'second', threadId: first.threadId });
    // Reported over the thread's own channel: it may arrive after the task's answer.
    await vi.waitFor(() =>
      expect(logger.at('error').map((entry) => entry.message)).toEqual([
        expect.stringMatching(/^a callback the setup module file:.*setup-leaves-throw\.ts set up threw: thrown by a timer the setup left; its thread was running "yieldsOnce" \(#\d+\) by then, which goes on$/),
      ]),
    );
  });
  it('throws again and again (an interval): logged once per 10 s a thread, saying how many were not, and the close says the rest', async () => {
    const setupModule = new URL('./fixtures/setup-leaves-interval-throw.ts', import.meta.url);
    const logger = captureLogger();
    // The clock the log's window reads (timers stay real: the threads' intervals run).
    vi.useFakeTimers({ toFake: ['Date', 'performance'] });
    try {
      // A prewarmed thread: its idle event loop runs the interval, each throw reported.
      const root = freshApp({ logger, pool: { maxThreads: 1, minThreads: 1, prewarm: true, setupModule } });
      await root.resolve(Background).add(yieldsOnce, 'first').result();
      const thrown = () => logger.at('error').filter((entry) => entry.message.includes('thrown again and again')).map((entry) => entry.message);
      const repeats = (pattern: RegExp, message: string | undefined) => Number(pattern.exec(message ?? '')?.[1]);
      await vi.waitFor(() => expect(thrown()).toHaveLength(1), { timeout: 5_000, interval: 5 });
      expect(thrown()[0]).toMatch(/^a callback the setup module file:.*setup-leaves-interval-throw\.ts set up threw: thrown again and again by an interval the setup left; (the thread goes on|its thread was running "yieldsOnce" \(#\d+\) by then, which goes on)$/);
      // Forty intervals' worth, counted, not logged.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(thrown()).toHaveLength(1);
      // The window is time gone by: the wall clock set back an hour meanwhile does not hold it.
      vi.setSystemTime(Date.now() - 3_600_000);
      vi.advanceTimersByTime(10_000);
      await vi.waitFor(() => expect(thrown()).toHaveLength(2), { timeout: 5_000, interval: 5 });
      expect(repeats(/goes on \(the same error (\d+) more time\(s\) on this thread since the last entry, not logged: one entry per 10 s\)$/, thrown()[1])).toBeGreaterThan(2);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await shutdown({ container: root, timeoutMs: 5_000 });
      expect(thrown()).toHaveLength(3);
      expect(
        repeats(/^callbacks the setup module file:.*setup-leaves-interval-throw\.ts left behind on worker thread \d+ threw the same error (\d+) more time\(s\) after its last entry, not logged: thrown again and again by an interval the setup left$/, thrown()[2]),
      ).toBeGreaterThan(2);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('a callback the setup module set up while it still runs (an async setup)', () => {
  it("throws: the setup module's error, logged; the task waiting for the setup runs once it is done, on the same thread", async () => {
    const { bg, logger } = app({ pool: { setupModule: new URL('./fixtures/setup-throws-while-setting-up.ts', import.meta.url) } });
    const first = (await bg.add(yieldsOnce, 'first').result()) as { threadId: number };
    await expect(bg.add(yieldsOnce, 'second').result()).resolves.toEqual({ label: 'second', threadId: first.threadId });
    await vi.waitFor(() =>
      expect(logger.at('error').map((entry) => entry.message)).toEqual([
        expect.stringMatching(/^a callback the setup module file:.*setup-throws-while-setting-up\.ts set up threw: thrown while the setup ran; its thread was running "yieldsOnce" \(#\d+\) by then, which goes on$/),
      ]),
    );
  });

  it('calls process.exit(): the task waiting for the setup fails naming the setup module, and is not counted as an idle thread', async () => {
    const { bg, logger } = app({ pool: { setupModule: new URL('./fixtures/setup-exits-while-setting-up.ts', import.meta.url) } });
    const failed = await bg.add(yieldsOnce, 'waits for the setup').result().catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(WorkerTaskError);
    expect(failed).toMatchObject({ code: 'ERR_WORKER_EXITED', message: expect.stringMatching(/by process\.exit\(4\) in the setup module file:.*setup-exits-while-setting-up\.ts, while it set up the thread\) and was replaced$/) as unknown });
    expect(logger.at('error').map((entry) => entry.message)).toContainEqual(
      expect.stringMatching(/^the setup module file:.*setup-exits-while-setting-up\.ts called process\.exit\(4\) while it set up the thread \(its function, or a callback it set up\): its thread ended, failing "yieldsOnce" \(#\d+\)$/),
    );
    expect(logger.at('error').some((entry) => entry.message.includes('idle threads'))).toBe(false);
  });
});

describe('a thread ended by an error thrown outside an ended task', () => {
  afterEach(() => stopScripts());

  it("fails the task whose microtask threw before its answer went, never the next task on the thread (Node 24 keeps a microtask's context: the next task failed about 1 in 3)", { timeout: 60_000 }, async () => {
    const { bg } = app();
    for (let i = 0; i < 8; i++) {
      const failed = await bg.add(microtaskThrows).result().catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(WorkerTaskError);
      expect(failed).toMatchObject({ code: 'ERR_WORKER_FAILED', message: expect.stringContaining('failed in the worker pool: thrown by a microtask') as unknown });
      await expect(bg.add(yieldsOnce, `after ${i}`).result()).resolves.toMatchObject({ label: `after ${i}` });
    }
  });

  it('fails the task it ran with that error, and once shutdown() has resolved the process exits by itself (a thread ended by rethrowing it sometimes never exited)', { timeout: 60_000 }, async () => {
    const script = fileURLToPath(new URL('fixtures/thread-ended-by-error.mjs', import.meta.url));
    // Three at a time, as the hang showed under load (7 of 8 runs of two at a time before).
    for (let round = 0; round < 3; round++) {
      const runs = [0, 1, 2].map(() => {
        const started = startScript(script);
        const killer = setTimeout(() => started.child.kill('SIGKILL'), 10_000);
        return started.exited.finally(() => clearTimeout(killer));
      });
      for (const exit of await Promise.all(runs)) {
        expect({ code: exit.code, signal: exit.signal, stderr: exit.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
        expect(exit.stdout).toMatch(/^ERR_WORKER_FAILED: worker task "throwsInAMicrotask" \(#1, file:.*\) failed in the worker pool: thrown by a microtask \(thrown outside the task's own call/);
      }
    }
  });
});
