/**
 * Cron tasks: a cron expression (croner's syntax, seconds allowed) in a time zone; the first
 * run at the next time the expression names. By default every second, to see it run quickly;
 * the test runs '0 0 9 * * *' in Europe/Paris under a fake clock.
 * Run: npx tsx test/docs-examples/cron.ts
 */
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, shutdown } from '../../src/index.js';

export async function main(cron = '* * * * * *', tz = 'Europe/Paris', runs = 2) {
  const app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true } });
  const bg = app.createChildContainer().resolve(Background);

  const times: string[] = [];
  let done!: () => void;
  const enough = new Promise<void>((resolve) => (done = resolve));
  const digest = bg.with({ cron, tz }).add(async function dailyDigest() {
    times.push(new Date().toISOString());
    if (times.length === runs) done();
  });
  await enough;
  digest.cancel();
  await shutdown({ container: app });
  return times;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
