#!/usr/bin/env node
/**
 * Soak: the load scenario of the fault-and-load suite (test/fixtures/load-scenario.mjs) at full
 * scale, against the built package (dist/). Not part of `npm test`, which runs the same scenario
 * scaled down (test/load.test.ts: 1e5 tasks across 1e3 scopes, in a few seconds).
 *
 *   npm run build
 *   node --expose-gc scripts/soak.mjs [--tasks 1000000] [--scopes 10000] [--waves 10]
 *                                     [--rounds 3] [--seed 24301] [--concurrency 100]
 *                                     [--max-gap-ms 250] [--max-heap-mb 8] [--settle-ms 10500]
 *
 * Each round adds `tasks` trivial tasks across `scopes` request scopes of a fresh application,
 * `waves` bursts of scopes one after another (each drained before the next; `--waves 1` queues
 * all of them at once, about 1 KB of heap per queued task), with planned failures, retries,
 * delays, timeouts, cancellations, skips and abandonments, the seed changing each round. After
 * each round it checks, and prints:
 * - the books: the planned outcome of every task, its handle's status, each scope's `stats()` and
 *   the application's `stats({ application: true })` agree exactly, and
 *   succeeded + failed + timedOut + cancelled + skipped + abandoned = added;
 * - the log: one error per failed or timed-out task and per abandoning scope, one warning per
 *   retry, one debug entry per cancellation or skip;
 * - starvation: the worst gap of a 10 ms interval while the scopes drained (≤ --max-gap-ms);
 * - the heap after full collections, against the one before the first round: printed at once,
 *   and checked (≤ --max-heap-mb) after --settle-ms more, by default the default drain deadline
 *   (10 s) and a little: a disposed scope's deadline entry stays on the shared deadline timer,
 *   holding the scope's bookkeeping (and here the whole application), until that deadline passes;
 * - no timer, immediate or handle left active, no listener left on the process.
 * Exits 1 if any check fails. Without --expose-gc it enables collection through node:v8 itself.
 */
import 'reflect-metadata';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parseArgs } from 'node:util';
import { container } from 'tsyringe';
import * as lib from '../dist/index.js';
import { runLoad } from '../test/fixtures/load-scenario.mjs';

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: '1000000' },
    scopes: { type: 'string', default: '10000' },
    waves: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    seed: { type: 'string', default: '24301' },
    concurrency: { type: 'string', default: '100' },
    'max-gap-ms': { type: 'string', default: '250' },
    'max-heap-mb': { type: 'string', default: '8' },
    'settle-ms': { type: 'string', default: '10500' },
  },
});
const number = (name) => {
  const value = Number(values[name]);
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`--${name} must be a positive number, got ${values[name]}`);
  return value;
};
const [tasks, scopes, waves, rounds, seed, concurrency, maxGapMs, maxHeapMb] = [
  'tasks', 'scopes', 'waves', 'rounds', 'seed', 'concurrency', 'max-gap-ms', 'max-heap-mb',
].map(number);
const settleMs = Number(values['settle-ms']);
if (!Number.isSafeInteger(settleMs) || settleMs < 0) throw new RangeError(`--settle-ms must be a non-negative integer, got ${values['settle-ms']}`);

let gc = globalThis.gc;
if (typeof gc !== 'function') {
  setFlagsFromString('--expose-gc');
  gc = runInNewContext('gc');
}
const MB = 1024 * 1024;
async function settledHeap() {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return getHeapStatistics().used_heap_size;
}
const resources = () => {
  const counts = {};
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1;
  return counts;
};
const listeners = () => Object.fromEntries(process.eventNames().map((name) => [String(name), process.listenerCount(name)]));

const unhandled = [];
process.on('unhandledRejection', (reason) => unhandled.push(reason));
const listenersBefore = JSON.stringify(listeners());

console.log(`soak: ${rounds} round(s) of ${tasks} tasks across ${scopes} scopes in ${waves} wave(s), concurrency ${concurrency}, node ${process.version}`);
await runLoad(lib, container, { tasks: Math.min(tasks, 2_000), scopes: Math.min(scopes, 20), seed: 1, concurrency });
const heapBefore = await settledHeap();
const resourcesBefore = resources();
let failures = 0;
const check = (ok, what) => {
  if (!ok) failures++;
  console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${what}`);
};

for (let round = 1; round <= rounds; round++) {
  const roundSeed = seed + round - 1;
  const startedAt = performance.now();
  // The report holds counts only: every task, handle and scope is out of reach once it returns.
  const report = await runLoad(lib, container, {
    tasks,
    scopes,
    waves,
    seed: roundSeed,
    concurrency,
    onWave: (done, total) => {
      if (process.stdout.isTTY && total > 1) process.stdout.write(`  wave ${done}/${total}\r`);
    },
  });
  const seconds = (performance.now() - startedAt) / 1000;
  if (process.stdout.isTTY) process.stdout.write('\x1b[2K');
  const { added, planned, observed, stats, logged, timing, abandonScopes, scopeMismatches, byKind } = report;
  const finals = ['succeeded', 'failed', 'timedOut', 'cancelled', 'skipped', 'abandoned'];
  const sum = finals.reduce((total, status) => total + stats.byStatus[status], 0);
  console.log(`round ${round} (seed ${roundSeed}): ${added} tasks, ${scopes} scopes (${abandonScopes} abandoning) in ${seconds.toFixed(1)} s ` +
    `(adding ${(timing.addMs / 1000).toFixed(1)} s, draining ${(timing.drainMs / 1000).toFixed(1)} s, ${Math.round(added / seconds)} tasks/s, ` +
    `peak heap ${(report.peakHeapBytes / MB).toFixed(0)} MB)`);
  console.log(`  outcomes ${JSON.stringify(planned)}`);
  check(Object.keys(observed).every((status) => finals.includes(status)) && finals.every((status) => observed[status] === planned[status]),
    `every handle reached its planned outcome ${JSON.stringify(observed)}`);
  check(stats.total === added && sum === added && stats.queued === 0 && stats.running === 0 &&
    Object.entries(planned).every(([status, n]) => stats.byStatus[status] === n),
    `stats({ application: true }): total ${stats.total}, final statuses sum to ${sum}, added ${added}`);
  check(scopeMismatches.length === 0, `every scope's stats() agrees with its plan${scopeMismatches.length ? `: ${JSON.stringify(scopeMismatches[0])}` : ''}`);
  check(logged.error === planned.failed + planned.timedOut + abandonScopes && logged.debug === planned.cancelled + planned.skipped &&
    logged.warn === (byKind.flaky ?? 0) && logged.info === 0, `log entries ${JSON.stringify(logged)}`);
  check(timing.worstGapMs < maxGapMs, `worst 10 ms-timer gap while draining ${timing.worstGapMs.toFixed(1)} ms (ending ${(timing.worstGapAt / 1000).toFixed(2)} s in; ${timing.ticks} ticks) < ${maxGapMs} ms`);
  const atOnce = await settledHeap();
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  const heap = await settledHeap();
  check(Math.abs(heap - heapBefore) < maxHeapMb * MB,
    `heap after collection ${(heap / MB).toFixed(1)} MB ${settleMs} ms after the round (at once ${(atOnce / MB).toFixed(1)} MB), ` +
      `started at ${(heapBefore / MB).toFixed(1)} MB (${((heap - heapBefore) / MB).toFixed(2)} MB)`);
  const left = Object.entries(resources()).filter(([type, count]) => count > (resourcesBefore[type] ?? 0));
  check(left.length === 0, `no active timers or handles left${left.length ? `: ${JSON.stringify(left)}` : ''}`);
  check(JSON.stringify(listeners()) === listenersBefore, 'no listeners left on the process');
  check(unhandled.length === 0, `no unhandled rejection${unhandled.length ? `: ${String(unhandled[0])}` : ''}`);
}
console.log(failures === 0 ? 'soak: all checks passed' : `soak: ${failures} check(s) failed`);
process.exitCode = failures === 0 ? 0 : 1;
