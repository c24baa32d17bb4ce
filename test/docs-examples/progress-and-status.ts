/**
 * Progress and status: handle.status, handle.progress, result({ timeoutMs }), and the
 * Background's get(), list() and stats(), with finished tasks kept within `records`.
 * Run: npx tsx test/docs-examples/progress-and-status.ts
 */
import 'reflect-metadata';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, defineTask, shutdown, TaskContext } from '../../src/index.js';

let open!: () => void;
const gate = new Promise<void>((resolve) => (open = resolve));

const importRows = defineTask({ name: 'importRows', inject: [TaskContext] }, async (ctx, rows: number) => {
  ctx.progress(0.5, 'half way');
  await gate;
  ctx.progress(1, 'done');
  return rows;
});

export async function main() {
  const app = container.createChildContainer();
  // Keep at most 2 finished tasks on record, for 250 ms: enough to see them go.
  app.register(BackgroundOptions, { useValue: { root: true, concurrency: 1, records: { maxCount: 2, maxAgeMs: 250 } } });
  const bg = app.createChildContainer().resolve(Background);

  const rows = bg.add(importRows, 500);
  const report = bg.add(async function buildReport() {
    return 'report';
  });
  await sleep(1);
  const whileRunning = {
    statuses: [rows.status, report.status],
    progress: rows.progress,
    running: bg.list({ status: 'running' }).map((handle) => handle.name),
    stats: bg.stats(),
  };
  const waited = await rows.result({ timeoutMs: 5 }).catch((error: unknown) => (error as Error).message);
  open();
  const result = await rows.result();
  await bg.drain();
  const finished = {
    result,
    progress: rows.progress,
    found: bg.get(rows.id) === rows,
    listed: bg.list().map((handle) => `${handle.name}: ${handle.status}`),
    stats: bg.stats(),
  };
  bg.add(async function third() {}); // a third finished task pushes the oldest off the record
  await bg.drain();
  const afterThird = { found: bg.get(rows.id) !== undefined, listed: bg.list().length };
  await sleep(300); // past records.maxAgeMs
  const later = { listed: bg.list().length, succeeded: bg.stats().byStatus.succeeded };
  await shutdown({ container: app });
  return { whileRunning, waited, finished, afterThird, later };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.dir(await main(), { depth: 4 });
