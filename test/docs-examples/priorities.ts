/**
 * Priorities: among tasks waiting for a slot, higher priority starts first; equal priorities
 * keep the order of add().
 * Run: npx tsx test/docs-examples/priorities.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, priorities, shutdown } from '../../src/index.js';

export async function main() {
  const app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, concurrency: 1 } }); // one slot: the rest wait
  const bg = app.createChildContainer().resolve(Background);

  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  bg.add(async function holdsTheSlot() {
    await gate;
  });
  const started: string[] = [];
  const job = (label: string) => async () => {
    started.push(label);
  };
  bg.with({ priority: 'low' }).add(job('low: audit row'));
  bg.add(job('normal: CRM sync 1'));
  bg.with({ priority: 'critical' }).add(job('critical: password reset'));
  bg.with({ priority: 60 }).add(job('60: cache warm-up'));
  bg.with({ priority: 'high' }).add(job('high: welcome mail'));
  bg.add(job('normal: CRM sync 2'));
  open();
  await bg.drain();
  await shutdown({ container: app });
  return { levels: priorities, started };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
