import { afterEach, describe, expect, it } from 'vitest';
import { Background, shutdown, transfer, type BackgroundOptions } from '../src/index.js';
import { captureLogger, freshApp } from './helpers.js';
import { greet, sumBytes } from './fixtures/worker-tasks.js';

const setupModule = new URL('./fixtures/worker-setup.ts', import.meta.url);
const apps: ReturnType<typeof freshApp>[] = [];
function app(options: BackgroundOptions = {}) {
  const root = freshApp({ logger: captureLogger(), ...options, pool: { setupModule, ...options.pool } });
  apps.push(root);
  return root;
}
afterEach(async () => {
  await Promise.all(apps.splice(0).map((root) => shutdown({ container: root, timeoutMs: 5_000 })));
});

describe('worker tasks', () => {
  it('run on a worker thread with dependencies from the worker container', async () => {
    const bg = app().createChildContainer().resolve(Background);
    const handle = bg.add(greet, 'Ada');
    expect(handle.status).toBe('queued');
    await expect(handle.result()).resolves.toEqual({ text: 'Hello, Ada', taskName: 'greet' });
  });

  it('transfer() moves a buffer at add()', async () => {
    const bg = app().createChildContainer().resolve(Background);
    const bytes = new Uint8Array([1, 2, 3]);
    const handle = bg.add(sumBytes, transfer(bytes));
    expect(bytes.byteLength).toBe(0);
    await expect(handle.result()).resolves.toEqual({ sum: 6, length: 3 });
  });
});
