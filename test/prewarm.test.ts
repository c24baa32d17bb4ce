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
