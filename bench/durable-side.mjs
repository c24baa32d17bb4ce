/**
 * One side of a paired durable measurement (bench/durable.mjs, `pair()`): a process of its own
 * that runs one variant's worker (drain) or producer and worker (e2e) against its own queue, at
 * the same moment as the other side runs another variant on the same redis-server and the same
 * CPU. What the machine does meanwhile (its speed drifts by tens of percent from second to
 * second) it does to both sides at once, so the ratio of their completions over the same window
 * of time keeps the difference of the variants, not the machine's.
 *
 *   node bench/durable-side.mjs '{"variant":"lib","mode":"drain","port":6379,"queueName":"q",...}'
 *
 * Started with an IPC channel: it prepares (drain: every job enqueued, not timed; e2e: the
 * worker started and warm, the producer warm), sends `{ ready: true }`, waits for `'go'`, then
 * runs and sends `{ marks, ... }`: `marks[k]` is when its `(k + 1) × step`th job completed, in
 * ms of the machine's monotonic clock (the same in every process).
 */
import { kit } from './durable.mjs';

const { variant, mode, port, queueName, jobs, concurrency, bodyMs, step } = JSON.parse(process.argv[2]);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const marks = [];
let recording = false;
const onCompletion = (count) => {
  if (recording && count % step === 0) marks.push(now());
};

const { producer, worker, counts } = await kit({ connection: { host: '127.0.0.1', port }, bodyMs, concurrency });
let p;
let w;
if (mode === 'drain') {
  p = await producer(variant, queueName);
  // The producer's warm-up job is one of the jobs.
  for (let i = 0; i < jobs - 1; i++) p.add(i);
  await p.enqueued(jobs - 1);
  await p.close();
} else {
  w = await worker(variant, queueName, onCompletion);
  await w.ready();
  p = await producer(variant, queueName);
  await w.done(1);
  w.reset();
}
const ran = counts.ran;
process.send({ ready: true });
await new Promise((resolve) => process.once('message', resolve));
recording = true;
const goAt = now();
if (mode === 'drain') {
  w = await worker(variant, queueName, onCompletion);
} else {
  for (let i = 0; i < jobs; i++) p.add(i);
}
await w.done(jobs);
recording = false;
if (mode === 'e2e') await p.enqueued(jobs);
await w.close();
if (mode === 'e2e') await p.close();
if (counts.ran - ran !== jobs) throw new Error(`${mode} ${variant}: ${counts.ran - ran} of ${jobs} tasks ran`);
const { user, system } = process.cpuUsage();
process.send({ goAt, marks, logged: counts.logged, cpuMs: (user + system) / 1000 }, () => process.exit(0));
