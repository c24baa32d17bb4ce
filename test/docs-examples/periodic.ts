/**
 * Periodic tasks: every N ms, the first run after one period; a failing run is logged and the
 * next tick still comes; a tick is skipped while the previous run is going; stopped by
 * cancel() or by the disposal of the scope.
 * Run: npx tsx test/docs-examples/periodic.ts
 */
import 'reflect-metadata';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { container } from 'tsyringe';
import { Background, BackgroundOptions, shutdown, type BackgroundLogger } from '../../src/index.js';

export async function main() {
  const logs: string[] = [];
  const logger: BackgroundLogger = {
    error: (_fields, message) => {
      logs.push(`error: ${message}`);
    },
    warn: () => undefined,
    info: () => undefined,
    debug: () => undefined,
  };
  const app = container.createChildContainer();
  app.register(BackgroundOptions, { useValue: { root: true, logger } });
  const bg = app.createChildContainer().resolve(Background);

  // 1. Every 5 ms; the second run fails, the third still comes; then cancel().
  let runs = 0;
  let thirdRan!: () => void;
  const third = new Promise<void>((resolve) => (thirdRan = resolve));
  const heartbeat = bg.with({ every: 5 }).add(async function heartbeat() {
    if (++runs === 2) throw new Error('the second run fails');
    if (runs === 3) thirdRan();
  });
  const statusBeforeFirstTick = heartbeat.status;
  await third;
  heartbeat.cancel();
  const stopped = await heartbeat.result().catch((error: unknown) => (error as Error).name);
  await sleep(20);
  const heartbeatRuns = runs; // no run after cancel()

  // 2. No overlap: while a run is going, ticks are skipped.
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let secondStarted!: () => void;
  const second = new Promise<void>((resolve) => (secondStarted = resolve));
  let slowRuns = 0;
  const slow = bg.with({ every: 5 }).add(async function slowSync() {
    if (++slowRuns === 2) secondStarted();
    await gate;
  });
  await sleep(40); // several ticks pass while the first run waits at the gate
  const runsWhileBlocked = slow.attempt; // runs started so far
  open();
  await second;
  slow.cancel();

  // 3. Disposal of its scope stops a periodic task.
  const scope = app.createChildContainer();
  const scoped = scope.resolve(Background).with({ every: 5 }).add(async function cleanup() {});
  await scope.resolve(Background).dispose();
  const stopReason = await scoped.result().catch((error: unknown) => String((error as Error).cause));

  await shutdown({ container: app });
  return { statusBeforeFirstTick, heartbeatRuns, stopped, runsWhileBlocked, slowStatus: slow.status, scoped: scoped.status, stopReason, logs };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main());
