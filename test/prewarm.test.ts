/**
 * pool: { prewarm: true } (issue 15, item 8): the pool starts with the application, and each of
 * its minThreads threads runs the setup module and imports the known worker task modules before
 * any worker task is added. Threads say so on a BroadcastChannel, which the test listens to.
 */
import { BroadcastChannel } from 'node:worker_threads';
import { afterEach, expect, it, vi } from 'vitest';
import { appOf } from '../src/di/container.js';
import { Background, BackgroundOptions, shutdown } from '../src/index.js';
import { announcedDouble } from './fixtures/announced-tasks.js';
import { captureLogger, freshApp, watchProcessErrors } from './helpers.js';

watchProcessErrors();
const roots: ReturnType<typeof freshApp>[] = [];
const channels: BroadcastChannel[] = [];
afterEach(async () => {
  for (const channel of channels.splice(0)) channel.close();
  await Promise.all(roots.splice(0).map((root) => shutdown({ container: root })));
});

/** What the threads announce. */
function listen(): { what: string; threadId: number }[] {
  const heard: { what: string; threadId: number }[] = [];
  const channel = new BroadcastChannel('tsyringe-background:test:prewarm');
  channel.onmessage = (event) => heard.push((event as { data: { what: string; threadId: number } }).data);
  channels.push(channel);
  return heard;
}

const setupModule = new URL('./fixtures/announcing-setup.ts', import.meta.url);

it('starts minThreads threads with the application, each set up and with the task modules imported, before any worker task', async () => {
  const heard = listen();
  const root = freshApp({ logger: captureLogger(), pool: { prewarm: true, minThreads: 2, maxThreads: 2, setupModule } });
  roots.push(root);
  const bg = root.createChildContainer().resolve(Background);
  expect(appOf(root).hasPool).toBe(true);
  await vi.waitFor(
    () => {
      expect(heard.filter((m) => m.what === 'setup')).toHaveLength(2);
      expect(heard.filter((m) => m.what === 'module')).toHaveLength(2);
    },
    { timeout: 15_000, interval: 20 },
  );
  expect(new Set(heard.map((m) => m.threadId)).size).toBe(2);
  expect(bg.stats({ application: true }).total).toBe(0);
  await expect(bg.add(announcedDouble, 21).result()).resolves.toBe(42);
  // The first task found everything ready: nothing was set up or imported again.
  expect(heard).toHaveLength(4);
});

it('starts nothing before the first worker task by default', async () => {
  const heard = listen();
  const root = freshApp({ logger: captureLogger(), pool: { minThreads: 1, maxThreads: 1, setupModule } });
  roots.push(root);
  root.createChildContainer().resolve(Background);
  expect(appOf(root).hasPool).toBe(false);
  await expect(root.resolve(Background).add(announcedDouble, 2).result()).resolves.toBe(4);
  expect(heard.map((m) => m.what).sort()).toEqual(['module', 'setup']);
});

it('is validated like the other pool options', () => {
  const root = freshApp();
  root.register(BackgroundOptions, { useValue: { root: true, pool: { prewarm: 1 } } as unknown as BackgroundOptions });
  expect(() => root.resolve(Background)).toThrow('options.pool.prewarm must be a boolean, got 1 (number)');
});

it("logs what a callback the setup module left behind throws, naming the module, and the prewarmed threads go on (they used to die and be replaced, running the setup again, for ever)", async () => {
  const logger = captureLogger();
  const leaves = new URL('./fixtures/setup-leaves-throw.ts', import.meta.url);
  const root = freshApp({ logger, pool: { prewarm: true, minThreads: 2, maxThreads: 2, setupModule: leaves } });
  roots.push(root);
  const bg = root.createChildContainer().resolve(Background);
  await vi.waitFor(() => expect(logger.at('error')).toHaveLength(2), { timeout: 10_000, interval: 20 });
  for (const entry of logger.at('error')) {
    expect(entry.message).toMatch(/^a callback the setup module file:.*setup-leaves-throw\.ts set up threw: thrown by a timer the setup left; the thread goes on$/);
    expect(entry.fields).toMatchObject({ setupModule: leaves.href });
  }
  await expect(bg.add(announcedDouble, 4).result()).resolves.toBe(8);
  expect(appOf(root).pool.threads).toBe(2);
  expect(logger.at('error')).toHaveLength(2);
});

it.each([
  ['after it has run', 'setup-leaves-exit.ts'],
  ['while it still runs', 'setup-exits-while-setting-up.ts'],
])('stops prewarming once callbacks the setup module set up (%s) have ended 3 idle threads with process.exit(), saying so: threads then run it with their first task', async (_when, fixture) => {
  const logger = captureLogger();
  const leaves = new URL(`./fixtures/${fixture}`, import.meta.url);
  // One thread: each is replaced only once the one before has ended, so none is set up past the third.
  const root = freshApp({ logger, pool: { prewarm: true, minThreads: 1, maxThreads: 1, setupModule: leaves } });
  roots.push(root);
  const bg = root.createChildContainer().resolve(Background);
  const stopped = (): string[] => logger.at('error').map((entry) => entry.message).filter((message) => message.includes('no longer run it'));
  await vi.waitFor(() => expect(stopped()).toHaveLength(1), { timeout: 15_000, interval: 20 });
  expect(stopped()[0]).toMatch(/^the setup module file:.*(setup-leaves-exit|setup-exits-while-setting-up)\.ts has ended 3 idle threads \(process\.exit\(\) in a callback it set up\): new threads no longer run it as they start \(prewarm\), only with their first task$/);
  const exits = (): number => logger.at('error').filter((entry) => /called process\.exit\(\d\)( while it set up the thread \(its function, or a callback it set up\))?: its thread ended, and was replaced$/.test(entry.message)).length;
  expect(exits()).toBe(3);
  // Its replacement started without the setup: it is not ended (5 times the setup's own timer).
  await vi.waitFor(() => expect(appOf(root).pool.threads).toBe(1), { timeout: 10_000, interval: 20 });
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  expect(exits()).toBe(3);
  // A task's thread runs the setup first: after it has run, the setup's timer ends the thread
  // once the task is done; while it still runs, with the task waiting for it, which fails.
  const outcome = bg.add(announcedDouble, 4).result();
  if (fixture === 'setup-leaves-exit.ts') await expect(outcome).resolves.toBe(8);
  else await expect(outcome).rejects.toMatchObject({ code: 'ERR_WORKER_EXITED', message: expect.stringMatching(/in the setup module .*, while it set up the thread\) and was replaced$/) as unknown });
});
