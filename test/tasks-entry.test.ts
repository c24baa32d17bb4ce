import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import * as root from '../src/index.js';
import { Background, shutdown } from '../src/index.js';
import * as tasks from '../src/tasks.js';
import { whatIsLoaded, withDependency } from './fixtures/lazy-container-tasks.js';
import { captureLogger, freshApp } from './helpers.js';

const run = promisify(execFile);
const dist = (file: string): string => fileURLToPath(new URL(`../dist/${file}`, import.meta.url));
const lister = fileURLToPath(new URL('./fixtures/loaded-modules.mjs', import.meta.url));

/** The library's own modules (dist/…) that importing `file` loads, in a fresh process. */
async function libraryModulesLoadedBy(file: string): Promise<string[]> {
  const { stdout } = await run(process.execPath, [lister, dist(file)]);
  const base = new URL('../dist/', import.meta.url).href;
  return (JSON.parse(stdout) as string[]).filter((url) => url.startsWith(base)).map((url) => url.slice(base.length));
}

it('tsyringe-background/tasks gives the same definitions and token as the root entry', () => {
  for (const name of ['defineTask', 'workerTask', 'TaskContext', 'transfer', 'registerErrorClass', 'priorities'] as const) {
    expect(tasks[name], name).toBe(root[name]);
  }
});

it('tsyringe-background/tasks loads no part of the runner: a thread that imports a task module starts lighter', async () => {
  const light = await libraryModulesLoadedBy('tasks.js');
  expect(light).toContain('model/worker-task.js');
  expect(light.filter((file) => /^(engine|di)\/|^(background|shutdown|graceful|observe|group)\.js$/.test(file))).toEqual([]);
  // The root entry does load them: the check above can fail.
  const full = await libraryModulesLoadedBy('index.js');
  expect(full).toEqual(expect.arrayContaining(['engine/application.js', 'engine/pool.js', 'background.js', 'di/container.js']));
});

it('a worker thread loads tsyringe only for a task that has a dependency to resolve (or a setup module); reflect-metadata always', async () => {
  const root = freshApp({ logger: captureLogger(), pool: { minThreads: 1, maxThreads: 1 } });
  try {
    const bg = root.createChildContainer().resolve(Background);
    // One thread: the second task runs where the first did.
    await expect(bg.add(whatIsLoaded).result()).resolves.toEqual({ tsyringe: false, reflectMetadata: true, attempt: 1 });
    await expect(bg.add(withDependency).result()).resolves.toEqual({ tsyringe: true, reflectMetadata: true, now: 42 });
  } finally {
    await shutdown({ container: root });
  }
});
