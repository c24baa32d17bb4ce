/**
 * The library bundled into an application (an outside probe: esbuild's default bundle): the
 * worker threads' entry is not beside the pool's file any more. Worker tasks fail at once,
 * saying so and what to do, with or without `prewarm` (they hung with it), and the application
 * goes on. Simulated with a copy of dist/ without the entry, run in a process of its own.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

const main = `
import 'reflect-metadata';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, shutdown } from './lib/index.js';
import { doubled } from './tasks.mjs';
const logged = [];
const logger = { error: (fields, message) => logged.push(message), warn() {}, info() {}, debug() {} };
container.register(BackgroundOptions, { useValue: { logger, pool: { prewarm: process.argv[2] === 'prewarm', minThreads: 1 } } });
const handle = container.resolve(Background).add(doubled, 21);
const error = await handle.result({ timeoutMs: 5_000 }).catch((e) => e);
await shutdown({ timeoutMs: 1_000 });
console.log(JSON.stringify({ name: error.name, code: error.code, message: error.message, logged }));
`;

it.each(['cold', 'prewarm'])("fails a worker task at once, saying the library was bundled, when its threads' entry is not there (%s)", async (mode) => {
  const dir = await mkdtemp(join(tmpdir(), 'tsyringe-background-bundled-'));
  dirs.push(dir);
  await cp(join(root, 'dist'), join(dir, 'lib'), { recursive: true });
  await rm(join(dir, 'lib', 'worker', 'thread.js'));
  await symlink(join(root, 'node_modules'), join(dir, 'node_modules'));
  await writeFile(join(dir, 'package.json'), '{ "type": "module" }');
  await writeFile(join(dir, 'tasks.mjs'), "import { workerTask } from './lib/index.js';\nexport const doubled = workerTask(import.meta.url, { name: 'doubled' }, (n) => n * 2);\n");
  await writeFile(join(dir, 'main.mjs'), main);
  const { stdout } = await promisify(execFile)(process.execPath, ['main.mjs', mode], { cwd: dir, timeout: 30_000 });
  const outcome = JSON.parse(stdout) as { name: string; code: string; message: string; logged: string[] };
  expect(outcome).toMatchObject({ name: 'WorkerTaskError', code: 'ERR_WORKER_FAILED' });
  expect(outcome.message).toMatch(/^worker task "doubled" \(#\d+, file:.*tasks\.mjs\) cannot run: the worker pool cannot start: its threads' entry .*thread\.js is not there \(was tsyringe-background bundled into the application\?/);
  if (mode === 'prewarm') expect(outcome.logged).toContainEqual(expect.stringMatching(/^the worker pool could not be prewarmed: the worker pool cannot start/));
});

it.skipIf(!(process.features as { typescript?: unknown }).typescript)(
  "runs a worker task from TypeScript source with Node's own type stripping when tsx is not installed",
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tsyringe-background-strip-'));
    dirs.push(dir);
    await cp(join(root, 'dist'), join(dir, 'lib'), { recursive: true });
    await mkdir(join(dir, 'node_modules'));
    // The library's own dependencies, and no tsx.
    for (const name of ['tsyringe', 'reflect-metadata', 'piscina', 'croner']) await symlink(join(root, 'node_modules', name), join(dir, 'node_modules', name));
    await writeFile(join(dir, 'package.json'), '{ "type": "module" }');
    await writeFile(join(dir, 'tasks.ts'), "import { workerTask } from './lib/index.js';\nexport const doubled = workerTask(import.meta.url, { name: 'doubled' }, (n: number): number => n * 2);\n");
    await writeFile(
      join(dir, 'main.ts'),
      "import 'reflect-metadata';\nimport { container } from 'tsyringe';\nimport { Background, shutdown } from './lib/index.js';\nimport { doubled } from './tasks.ts';\n" +
        'const value = await container.resolve(Background).add(doubled, 21).result({ timeoutMs: 10_000 });\nawait shutdown();\nconsole.log(JSON.stringify({ value }));\n',
    );
    const { stdout } = await promisify(execFile)(process.execPath, ['main.ts'], { cwd: dir, timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({ value: 42 });
  },
);
