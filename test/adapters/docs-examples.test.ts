/**
 * Runs the examples of docs/frameworks.md (test/adapters/examples/) against real servers, and
 * checks that each code block of the page, below its imports, is the code its file runs (between
 * `// #region docs` and `// #endregion docs`), so that the page cannot drift from the code.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { main as express } from './examples/express.js';
import { main as fastify } from './examples/fastify.js';
import { main as hono } from './examples/hono.js';
import { watchProcessErrors } from '../helpers.js';

watchProcessErrors();

const root = new URL('../../', import.meta.url);
const signedUp = ['response 202 {"queued":"ada@example.com"}', 'mail to ada@example.com: Welcome! (request r-1)', 'session r-1 closed'];

describe('docs/frameworks.md examples', () => {
  it.each([
    ['express', express],
    ['fastify', fastify],
    ['hono', hono],
  ])('%s.ts: answers at once; the mail goes after the response; the session closes after the mail', async (_name, main) => {
    await expect(main()).resolves.toEqual(signedUp);
  });

  it('shows the code its examples run', async () => {
    const page = await readFile(new URL('docs/frameworks.md', root), 'utf8');
    const blocks = [...page.matchAll(/<!-- runnable: (\S+) -->\n```ts\n([\s\S]*?)```/g)];
    expect(blocks.map(([, file]) => file)).toEqual([
      'test/adapters/examples/express.ts',
      'test/adapters/examples/services.ts',
      'test/adapters/examples/fastify.ts',
      'test/adapters/examples/hono.ts',
    ]);
    for (const [, file, block] of blocks) {
      const source = await readFile(new URL(file!, root), 'utf8');
      const region = /\/\/ #region docs\n([\s\S]*?)\/\/ #endregion docs\n/.exec(source)?.[1];
      const shown = block!.replace(/^import [\s\S]*?;\n/gm, '').replace(/^\n/, '');
      expect(shown, file).toBe(region);
    }
  });
});
