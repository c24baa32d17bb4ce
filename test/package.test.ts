/**
 * The package people install (issue 12, item 8): what `npm pack` would ship. `npm test` builds
 * dist/ first. publint and @arethetypeswrong/cli check the package itself in .ci/run.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

it('ships the built library, its types, README and LICENSE, with source maps that carry their sources, and nothing else', async () => {
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, timeout: 60_000 });
  const [packed] = JSON.parse(stdout) as [{ files: { path: string }[] }];
  const files = packed.files.map((file) => file.path).sort();
  expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/worker/thread.js', 'dist/engine/pool.js']));
  expect(files.filter((path) => !path.startsWith('dist/') && !['LICENSE', 'README.md', 'package.json'].includes(path))).toEqual([]);
  expect(files.filter((path) => /\.ts$/.test(path) && !path.endsWith('.d.ts'))).toEqual([]);
  for (const map of files.filter((path) => path.endsWith('.js.map'))) {
    const { sources, sourcesContent } = JSON.parse(await readFile(`${root}/${map}`, 'utf8')) as { sources: string[]; sourcesContent?: string[] };
    expect(sourcesContent, map).toHaveLength(sources.length);
  }
});
