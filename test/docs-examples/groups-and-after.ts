/**
 * Groups and `after`: a group awaits its tasks together (all() or allSettled()); a task can
 * run after others, and is skipped, with that task's error as the cause, if one of them fails.
 * Run: npx tsx test/docs-examples/groups-and-after.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, defineTask, shutdown, type TaskSkippedError } from '../../src/index.js';

const order: string[] = [];
const square = defineTask({ name: 'square' }, async (n: number) => n * n);
const extract = defineTask({ name: 'extract' }, async () => {
  order.push('extract');
});
const transform = defineTask({ name: 'transform' }, async () => {
  throw new Error('bad row 7');
});
const load = defineTask({ name: 'load' }, async () => {
  order.push('load');
});
const publish = defineTask({ name: 'publish' }, async () => {
  order.push('publish');
});

export async function main() {
  const app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, logger: { error() {}, warn() {}, info() {}, debug() {} } } });
  const bg = app.createChildContainer().resolve(Background);

  // A group: add like a Background, await together; typed by the result of its tasks.
  const squares = bg.group<number>();
  for (const n of [1, 2, 3]) squares.add(square, n);
  const results: number[] = await squares.all();

  const mixed = bg.group();
  mixed.add(transform);
  mixed.with({ priority: 'high' }).add(square, 4);
  const firstFailure = await mixed.all().catch((error: unknown) => (error as Error).message);
  const settled = (await mixed.allSettled()).map((outcome) => outcome.status);

  // after: start only once these have succeeded.
  const extracted = bg.add(extract);
  const loaded = bg.with({ after: [extracted] }).add(load);
  await loaded.result();
  const broken = bg.add(transform);
  const published = bg.with({ after: [extracted, broken] }).add(publish);
  const skip = (await published.result().catch((error: unknown) => error)) as TaskSkippedError;
  await shutdown({ container: app });
  return {
    results,
    firstFailure,
    settled,
    handles: mixed.handles.length,
    order,
    published: published.status,
    skip: `${skip.code}: ${skip.message}`,
    cause: (skip.cause as Error).message,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
