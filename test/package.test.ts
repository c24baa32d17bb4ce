/**
 * The package people install (issue 12, item 8): what `npm pack` would ship. `npm test` builds
 * dist/ first. publint and @arethetypeswrong/cli check the package itself in .ci/run.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

it('ships the built library, its types, README and LICENSE, with source maps that carry their sources, and nothing else', async () => {
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, timeout: 60_000 });
  const [packed] = JSON.parse(stdout) as [{ files: { path: string }[] }];
  const files = packed.files.map((file) => file.path).sort();
  expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/worker/thread.js', 'dist/engine/pool.js']));
  // Every entry point's files (the root, ./express, ./fastify, ./hono, their ./…/dashboard) are shipped.
  const { exports } = JSON.parse(await readFile(`${root}/package.json`, 'utf8')) as { exports: Record<string, string | Record<string, string>> };
  const targets = Object.values(exports).flatMap((target) => (typeof target === 'string' ? [target] : Object.values(target)));
  expect(targets).toEqual(
    expect.arrayContaining([
      './dist/adapters/express.js',
      './dist/adapters/fastify.d.ts',
      './dist/adapters/hono.js',
      './dist/adapters/express-dashboard.js',
      './dist/adapters/fastify-dashboard.d.ts',
      './dist/adapters/hono-dashboard.js',
    ]),
  );
  expect(files).toEqual(expect.arrayContaining(targets.map((path) => path.replace(/^\.\//, ''))));
  expect(files.filter((path) => !path.startsWith('dist/') && !['LICENSE', 'README.md', 'package.json'].includes(path))).toEqual([]);
  expect(files.filter((path) => /\.ts$/.test(path) && !path.endsWith('.d.ts'))).toEqual([]);
  for (const map of files.filter((path) => path.endsWith('.js.map'))) {
    const { sources, sourcesContent } = JSON.parse(await readFile(`${root}/${map}`, 'utf8')) as { sources: string[]; sourcesContent?: string[] };
    expect(sourcesContent, map).toHaveLength(sources.length);
  }
});

it("README's links work on the registry's page: absolute, into the repository named in package.json, at files and headings that exist", async () => {
  const readme = await readFile(`${root}/README.md`, 'utf8');
  const { homepage } = JSON.parse(await readFile(`${root}/package.json`, 'utf8')) as { homepage: string };
  const repository = `${homepage.replace(/#readme$/, '')}/blob/main/`;
  const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1]!).filter((link) => link !== '');
  expect(links.filter((link) => !/^(https?:\/\/|#)/.test(link))).toEqual([]);
  const own = links.filter((link) => link.startsWith(repository));
  expect(own.length).toBeGreaterThan(20);
  for (const link of own) {
    const [path, anchor] = link.slice(repository.length).split('#') as [string, string | undefined];
    const text = await readFile(`${root}/${path}`, 'utf8');
    if (anchor !== undefined) expect(headingSlugs(text), link).toContain(anchor);
  }
  for (const link of links.filter((l) => l.startsWith('#'))) expect(headingSlugs(readme), link).toContain(link.slice(1));
});

/** The anchors GitHub gives a Markdown file's headings. */
function headingSlugs(markdown: string): string[] {
  return [...markdown.matchAll(/^#{1,6} (.+)$/gm)].map((match) =>
    match[1]!
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-'),
  );
}

it('is required from CommonJS as it is imported (Node 20.19 and later load an ES module with require()), and resolves the same Background', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tsyringe-background-cjs-'));
  try {
    await mkdir(join(dir, 'node_modules'));
    await symlink(root, join(dir, 'node_modules', 'tsyringe-background'));
    for (const peer of ['tsyringe', 'reflect-metadata']) await symlink(join(root, 'node_modules', peer), join(dir, 'node_modules', peer));
    await writeFile(
      join(dir, 'main.cjs'),
      `require('reflect-metadata');
const { container } = require('tsyringe');
const { Background, defineTask, shutdown } = require('tsyringe-background');
const { requestScope } = require('tsyringe-background/express');
const doubled = defineTask({ name: 'doubled' }, async (n) => n * 2);
const bg = container.resolve(Background);
bg.add(doubled, 21).result().then(async (value) => {
  console.log(JSON.stringify({ value, same: container.resolve(Background) === bg, adapter: typeof requestScope }));
  await shutdown();
});
`,
    );
    const { stdout } = await promisify(execFile)(process.execPath, ['main.cjs'], { cwd: dir, timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({ value: 42, same: true, adapter: 'function' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
