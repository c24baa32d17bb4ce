/**
 * The docs' runnable code blocks: each block marked `<!-- runnable: file -->` on docs/frameworks.md,
 * docs/observability.md and docs/testing.md must be, below its imports, the code its file runs
 * (between `// #region docs` and `// #endregion docs`), so that the pages cannot drift from the
 * code. Runs the examples of docs/frameworks.md (test/adapters/examples/) against real servers and
 * those of docs/observability.md (test/docs-examples/), and checks what they return; those of
 * docs/testing.md are test files (test/docs-examples/testing-*.test.ts) and run on their own.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { main as express } from './examples/express.js';
import { main as fastify } from './examples/fastify.js';
import { main as graceful } from './examples/graceful.js';
import { main as hono } from './examples/hono.js';
import { main as liveViewExpress } from './examples/live-view-express.js';
import { main as liveViewFastify } from './examples/live-view-fastify.js';
import { main as liveViewHono } from './examples/live-view-hono.js';
import { main as dashboardExpress } from './examples/dashboard-express.js';
import { hasRedis } from '../durable/redis.js';
import { watchProcessErrors } from '../helpers.js';

watchProcessErrors();

const root = new URL('../../', import.meta.url);
const signedUp = ['response 202 {"queued":"ada@example.com"}', 'mail to ada@example.com: Welcome! (request r-1)', 'session r-1 closed'];

/** Each page's runnable blocks, in the order they appear on it. */
const runnable: Record<string, string[]> = {
  'docs/frameworks.md': [
    'test/adapters/examples/graceful.ts',
    'test/adapters/examples/express.ts',
    'test/adapters/examples/services.ts',
    'test/adapters/examples/fastify.ts',
    'test/adapters/examples/hono.ts',
    'test/adapters/examples/live-view-express.ts',
    'test/adapters/examples/live-view-fastify.ts',
    'test/adapters/examples/live-view-hono.ts',
    'test/adapters/examples/dashboard-express.ts',
  ],
  'docs/observability.md': ['test/docs-examples/observe-tasks.ts', 'test/docs-examples/wrap-attempts.ts', 'test/docs-examples/opentelemetry.ts'],
  'docs/testing.md': [
    'test/docs-examples/testing-app-per-test.test.ts',
    'test/docs-examples/testing-pool-inline.test.ts',
    'test/docs-examples/testing-pool-per-file.test.ts',
    'test/docs-examples/testing-fake-timers.test.ts',
  ],
};

describe('runnable code blocks', () => {
  it.each(Object.entries(runnable))('%s shows the code its examples run', async (page, files) => {
    const text = await readFile(new URL(page, root), 'utf8');
    const blocks = [...text.matchAll(/<!-- runnable: (\S+) -->\n```ts\n([\s\S]*?)```/g)];
    expect(blocks.map(([, file]) => file)).toEqual(files);
    for (const [, file, block] of blocks) {
      const source = await readFile(new URL(file!, root), 'utf8');
      const region = /\/\/ #region docs\n([\s\S]*?)\/\/ #endregion docs\n/.exec(source)?.[1];
      const shown = block!.replace(/^import [\s\S]*?;\n/gm, '').replace(/^\n/, '');
      expect(shown, file).toBe(region);
    }
  });
});

describe('docs/frameworks.md examples', () => {
  it.each([
    ['express', express],
    ['fastify', fastify],
    ['hono', hono],
  ])('%s.ts: answers at once; the mail goes after the response; the session closes after the mail', async (_name, main) => {
    await expect(main()).resolves.toEqual(signedUp);
  });

  it('graceful.ts: a request in flight at close() is answered, its task completes, then the report, then Fastify closes', async () => {
    await expect(graceful()).resolves.toEqual({
      log: [
        'shutdown began',
        'response 202 {"queued":"ada@example.com"} (connection: close)',
        'mail to ada@example.com: Welcome! (request r-1)',
        'session r-1 closed',
        'info: shut down gracefully: 1 request(s) finished in flight, 0 cut off; 1 task(s) since the start: 1 succeeded, 0 failed, 0 timed out, 0 cancelled, 0 skipped, 0 abandoned',
        'fastify onClose',
      ],
      report: {
        requests: { finished: 1, cutOff: 0 },
        abandoned: 0,
        totals: { total: 1, succeeded: 1, failed: 0, cancelled: 0, timedOut: 0, skipped: 0, abandoned: 0 },
        exitCode: 0,
      },
    });
  });

  it.each([
    ['express', liveViewExpress],
    ['fastify', liveViewFastify],
    ['hono', liveViewHono],
  ])('live-view-%s.ts: behind the login, the page, api/stats and api/tasks/:id of a running task', async (_name, main) => {
    const { id, ...seen } = await main();
    expect(seen).toEqual({
      withoutLogin: [401, 401],
      page: '200 text/html; charset=utf-8',
      stats: { running: 1, queued: 0 },
      task: { id, name: 'importRows', status: 'running', attempt: 1, progress: { fraction: 0.4, message: 'rows 40 of 100' }, error: null },
    });
  });

  it.skipIf(!hasRedis)('dashboard-express.ts: behind the login, bull-board shows the queued durable job, read-only; the live view links to it', async () => {
    await expect(dashboardExpress()).resolves.toEqual({
      withoutLogin: [401, 401],
      queues: [{ name: 'app', readOnlyMode: true, queued: 1, jobs: [{ ok: true, name: 'sendInvoice', args: ['inv-1'] }] }],
      page: '200 text/html; charset=utf-8',
      pause: 405,
      liveViewLinks: true,
    });
  });
});

// These run their docs code as their module loads (as at an application's start): imported here, inside their test.
describe('docs/observability.md examples', () => {
  it('observe-tasks.ts: prints a failed task once, after its last attempt; nothing once stopped', async () => {
    const { main } = await import('../docs-examples/observe-tasks.js');
    const { id, printed } = await main();
    expect(printed).toEqual([[`task chargeCard #${id} failed after 2 attempt(s)`, 'Error: card declined']]);
  });

  it("wrap-attempts.ts: each task's code, across its awaits, sees its own store; code outside a task sees none", async () => {
    const { main } = await import('../docs-examples/wrap-attempts.js');
    const { ids, seen } = await main();
    expect(seen).toEqual({ [ids[0]!]: ids[0], [ids[1]!]: ids[1], outside: 'none' });
  });

  it("opentelemetry.ts: the task's span is a child of the span active at add(), and the parent of the task's own span", async () => {
    const { main } = await import('../docs-examples/opentelemetry.js');
    const { spans, traces, task } = await main();
    expect(spans).toEqual([
      ['POST /signup', null],
      ['sendWelcome', 'POST /signup'],
      ['smtp send to ada@example.com', 'sendWelcome'],
    ]);
    expect(traces).toBe(1);
    expect(task.attributes).toMatchObject({
      'background.task.name': 'sendWelcome',
      'background.task.id': task.id,
      'background.task.attempt': 1,
      'background.task.outcome': 'succeeded',
    });
    expect(task.status).toBe(1); // OK
  });
});
