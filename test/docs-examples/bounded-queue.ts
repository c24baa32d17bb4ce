/**
 * A bounded queue: past maxQueued waiting tasks, add() throws QueueFullError; a producer that
 * would rather wait awaits bg.waitForRoom() before each add().
 * Run: npx tsx test/docs-examples/bounded-queue.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, defineTask, QueueFullError, shutdown } from '../../src/index.js';

let open!: () => void;
const gate = new Promise<void>((resolve) => (open = resolve));
const done: number[] = [];
let firstStarted!: () => void;
const started = new Promise<void>((resolve) => (firstStarted = resolve));

const importBatch = defineTask({ name: 'importBatch' }, async (batch: number) => {
  if (batch === 1) firstStarted();
  await gate;
  done.push(batch);
});

export async function main() {
  const app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, concurrency: 1, maxQueued: 2 } });
  const bg = app.createChildContainer().resolve(Background);

  bg.add(importBatch, 1);
  await started; // batch 1 holds the one slot
  bg.add(importBatch, 2); // waiting: 1
  bg.add(importBatch, 3); // waiting: 2, the most allowed
  let refused = '';
  try {
    bg.add(importBatch, 4);
  } catch (error) {
    if (!(error instanceof QueueFullError)) throw error;
    refused = `${error.code}: ${error.message}`;
  }

  // A producer that waits for room instead of failing.
  const producer = (async () => {
    for (const batch of [4, 5, 6]) {
      await bg.waitForRoom();
      bg.add(importBatch, batch);
    }
  })();
  open();
  await producer;
  await bg.drain();
  await shutdown({ container: app });
  return { refused, done };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
