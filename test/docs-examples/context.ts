/**
 * Task context by injection: a definition asks for `TaskContext` like any dependency and gets
 * its id, name, attempt, signal, a logger carrying its fields, and progress().
 * Run: npx tsx test/docs-examples/context.ts
 */
import 'reflect-metadata';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, defineTask, shutdown, TaskContext, type BackgroundLogger } from '../../src/index.js';

const importRows = defineTask({ name: 'importRows', inject: [TaskContext] }, async (ctx, rows: number) => {
  ctx.logger.info({ rows }, 'import started'); // logged with task, taskId and attempt added
  for (let done = 1; done <= rows; done++) {
    if (ctx.signal.aborted) throw ctx.signal.reason; // cancelled, timed out or abandoned: stop early
    await nextTurn();
    ctx.progress(done / rows, `${done} of ${rows} rows`);
  }
  return { id: ctx.id, name: ctx.name, attempt: ctx.attempt };
});

export async function main() {
  const infos: Record<string, unknown>[] = [];
  const logger: BackgroundLogger = {
    error: () => undefined,
    warn: () => undefined,
    info: (fields, message) => {
      infos.push({ message, ...fields });
    },
    debug: () => undefined,
  };
  const app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, logger } });
  const bg = app.createChildContainer().resolve(Background);

  const handle = bg.add(importRows, 4);
  const context = await handle.result();
  await shutdown({ container: app });
  return { handleId: handle.id, context, progress: handle.progress, logged: infos };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
