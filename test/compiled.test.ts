import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);

// `npm test` builds dist/ first; this runs worker tasks the way production does, from the
// compiled output, with the pool loading dist/worker.js and no TypeScript loader anywhere.
it('runs worker tasks from the compiled output', async () => {
  const main = fileURLToPath(new URL('./fixtures/compiled/main.mjs', import.meta.url));
  const { stdout } = await run(process.execPath, [main], { timeout: 30_000 });
  const outcome = JSON.parse(stdout) as {
    results: { label: string; n: number; id: number; threadId: number; ext: string }[];
    error: { name: string; message: string; code: string };
    report: { abandoned: number };
    mainThread: number;
  };
  expect(outcome.results.map(({ label, n, ext }) => ({ label, n, ext }))).toEqual(
    [1, 2, 3].map((n) => ({ label: 'set up in the worker', n, ext: '.mjs' })),
  );
  expect(outcome.results.every(({ threadId }) => threadId !== outcome.mainThread)).toBe(true);
  expect(outcome.error).toEqual({ name: 'TypeError', message: 'compiled failure', code: 'E_COMPILED' });
  expect(outcome.report.abandoned).toBe(0);
});
