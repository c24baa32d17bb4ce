/**
 * An HTTP server that answers at once and does the follow-up work of each request in the
 * background, then drains it: per request, and for the whole app on shutdown.
 *
 * Each sign-up queues a welcome mail (high priority, retried when the relay greylists it), a
 * company lookup (with a timeout), a CRM sync, an audit row (low priority) and an avatar:
 * CPU-bound work, run on worker threads (cpu-tasks.ts) so that the event loop stays free to
 * answer requests, reporting its progress as it goes. See signup.ts for the tasks.
 *
 * It runs on Fastify with the library's request scopes (tsyringe-background/fastify), serves the
 * live view of its tasks at /background/, and shuts down with gracefulShutdown().
 *
 *   npm start                  sends itself 50 sign-ups, shuts down gracefully, prints a summary
 *   npm start -- --serve       serves (and prints the live view's URL) until SIGTERM or Ctrl-C, then the same
 */
import 'reflect-metadata'; // before any decorator runs: it records the constructor types
import { request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { container } from 'tsyringe';
import Fastify from 'fastify';
import {
  BackgroundDisposedError,
  BackgroundOptions,
  gracefulShutdown,
  TaskTimeoutError,
  type BackgroundLogger,
  type TaskHandle,
  type TaskStatus,
} from 'tsyringe-background';
import { liveView, requestScope } from 'tsyringe-background/fastify';
import type { Avatar } from './cpu-tasks.js';
import { CompanyDirectory, crm, Mailer, RequestInfo, SignupService, startedAfter } from './signup.js';

const serveMode = process.argv.includes('--serve');
const REQUESTS = 50;
const CONCURRENT_CLIENTS = 10;

// --- Wiring ---------------------------------------------------------------------------------
// Options go on the global container before any child container exists (a child reads them
// through its parent; and it gets its own Background only if the library was imported first).

/**
 * A pino-shaped logger that prints one line per entry and counts what it logs: failures,
 * timeouts and abandoned work at error; at warn, retries (expected: the relay greylists on
 * purpose) and the rest.
 */
const logged = { failures: 0, timeouts: 0, retries: 0, abandonments: 0, otherWarnings: 0 };
const logger: BackgroundLogger = {
  error: (fields, message) => {
    if (fields.abandoned !== undefined) {
      logged.abandonments++;
      console.error(`[error] ${message}`);
      return;
    }
    if (fields.err instanceof TaskTimeoutError) logged.timeouts++;
    else if (fields.err !== undefined) logged.failures++;
    console.error(`[error] ${message} (#${String(fields.taskId)}): ${String(fields.err)}`);
  },
  warn: (fields, message) => {
    if (fields.retryInMs !== undefined) logged.retries++;
    else logged.otherWarnings++;
    console.error(`[warn] ${message}${fields.err instanceof Error ? `: ${String(fields.err)}` : ''}`);
  },
  info: () => undefined,
  debug: () => undefined,
};
container.register(BackgroundOptions, {
  useValue: {
    logger,
    // Generous: the avatars take about 2 s of two threads here, and several times that on a busy
    // machine; a request's scope waits that long for its tasks before abandoning them.
    drainTimeoutMs: 30_000,
    // At most 20 event-loop tasks at once, application-wide (20 connections to the relay, the
    // CRM…); the others wait for a slot, higher priority first: welcome mails before audit rows.
    concurrency: 20,
    pool: {
      // Each worker thread passes its own container to this module's default export (the
      // compiled worker-setup.js, next to this file), which registers what worker tasks inject.
      setupModule: new URL('./worker-setup.js', import.meta.url),
    },
  },
});

// --- HTTP (Fastify) --------------------------------------------------------------------------

interface RequestRecord {
  tasks: TaskHandle[];
  avatar: TaskHandle<Avatar>;
  /** Whether the response was out while some of the request's tasks were unfinished. */
  answeredFirst?: boolean;
}
const records = new Map<number, RequestRecord>();
const live: readonly TaskStatus[] = ['delayed', 'queued', 'running', 'retrying'];
const unfinished = ({ tasks }: RequestRecord): boolean => tasks.some((task) => live.includes(task.status));
let lastRequestId = 0;

const app = Fastify();
// A child container per request, as request.diScope; disposed after the response (its tasks
// drained first, then its other instances), never delaying it.
await app.register(requestScope, {
  logger,
  register: (scope) => scope.register(RequestInfo, { useValue: new RequestInfo(++lastRequestId) }),
});
// The live view of the application's tasks (put it behind your authentication in production).
await app.register(liveView, { prefix: '/background' });

app.post<{ Querystring: { email?: string } }>('/signup', (request, reply) => {
  const scope = request.diScope;
  const { id } = scope.resolve(RequestInfo);
  try {
    const { userId, tasks, avatar } = scope.resolve(SignupService).signUp(request.query.email ?? '');
    const record: RequestRecord = { tasks, avatar };
    records.set(id, record);
    // With an outside client, "out" can only mean "handed to the OS"; the burst checks on receipt.
    if (serveMode) reply.raw.once('finish', () => (record.answeredFirst = unfinished(record)));
    return reply.code(202).header('x-request-id', String(id)).send({ userId, queued: tasks.map((task) => task.name) }); // answered now
  } catch (error) {
    // add() throws BackgroundDisposedError once shutdown has begun.
    return reply.code(error instanceof BackgroundDisposedError ? 503 : 500).send(`${String(error)}\n`);
  }
});

await app.listen({ port: 0, host: '127.0.0.1' }); // port 0: any free port
const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
console.log(`listening on ${base}`);

// How late the event loop gets to timers, from now until shutdown: the CPU-bound avatars must
// not make it late. (Each sample includes the sampling interval itself; the summary subtracts it.)
const resolution = 5;
const loopDelay = monitorEventLoopDelay({ resolution });
loopDelay.enable();

/**
 * Graceful shutdown, in one call: on a signal (in --serve mode) or when the burst is over, stop
 * accepting, let the requests in flight finish, drain every scope and the application within one
 * deadline, close the worker pool. A second Ctrl-C exits at once, listing what it abandons.
 */
const graceful = gracefulShutdown({
  server: app.server,
  timeoutMs: 30_000,
  signals: serveMode ? ['SIGTERM', 'SIGINT'] : [],
  // After a signal's sequence: the summary, then exit (the worse code); a second signal exits at once.
  exit: (code) => {
    if (code >= 128) process.exit(code);
    void summarize().then((ours) => process.exit(Math.max(code, ours)));
  },
});

/** Shuts down (or joins the shutdown under way), prints the summary; 0 when all is accounted for. */
async function summarize(): Promise<number> {
  const report = await graceful.close();
  loopDelay.disable();
  const all = [...records.values()];
  const tasks = all.flatMap((record) => record.tasks);
  const count = (status: TaskStatus): number => tasks.filter((task) => task.status === status).length;
  const [succeeded, failed, timedOut, abandoned] = [count('succeeded'), count('failed'), count('timedOut'), count('abandoned')];
  const answeredFirst = all.filter((record) => record.answeredFirst === true).length;
  console.log(`requests: ${all.length}, responses before background work finished: ${answeredFirst}/${all.length}`);
  console.log(
    `tasks: added ${tasks.length}, ran ${succeeded + failed + timedOut} (succeeded ${succeeded}, failed ${failed} ` +
      `[on purpose ${crm.failures}, logged ${logged.failures}], timed out ${timedOut}), abandoned ${abandoned}`,
  );
  // Retries: every attempt after a task's first, each logged at warn; a retried task recovered if it succeeded.
  const retried = tasks.filter((task) => task.attempt > 1);
  const retries = retried.reduce((total, task) => total + task.attempt - 1, 0);
  const unrecovered = retried.filter((task) => task.status !== 'succeeded').length;
  const { greylisted } = container.resolve(Mailer);
  const recovery = unrecovered === 0 ? 'all recovered' : `${unrecovered} task(s) not recovered`;
  console.log(`retries: ${retries} attempts retried (${recovery}) [greylisted on purpose ${greylisted}, logged ${logged.retries}]`);
  const { hung, stopped } = container.resolve(CompanyDirectory);
  const honoured = stopped === timedOut ? 'signal honoured' : `signal honoured by ${stopped} of ${timedOut}`;
  console.log(`timeouts: ${timedOut} timed out (${honoured}) [hung on purpose ${hung}, stopped ${stopped}, logged ${logged.timeouts}]`);
  const median = (values: number[]): string => (values.length === 0 ? '-' : `${Math.round(values.sort((x, y) => x - y)[values.length >> 1]!)}`);
  console.log(
    `priorities: median start after sign-up: welcome mails (high) ${median(startedAfter.welcome)} ms, ` +
      `audit rows (low) ${median(startedAfter.audit)} ms`,
  );
  const avatars = all.map((record) => record.avatar);
  const lastSeen = new Map<string, number>(); // what the avatars last reported through ctx.progress()
  for (const { progress } of avatars) {
    const seen = progress && `${Math.round(progress.fraction * 100)}% "${progress.message ?? ''}"`;
    if (seen !== undefined) lastSeen.set(seen, (lastSeen.get(seen) ?? 0) + 1);
  }
  const reported = [...lastSeen.values()].reduce((total, n) => total + n, 0);
  const seen = [...lastSeen].map(([report, n]) => `${report} ×${n}`).join(', ') || 'nothing';
  console.log(`progress: ${reported}/${avatars.length} avatars reported progress, last seen: ${seen}`);
  const rendered = await Promise.all(avatars.filter((task) => task.status === 'succeeded').map((task) => task.result()));
  const computingMs = Math.round(rendered.reduce((total, avatar) => total + avatar.ms, 0));
  const threads = new Set(rendered.map((avatar) => avatar.threadId)).size;
  console.log(
    `worker tasks: added ${avatars.length}, succeeded ${rendered.length}, ${computingMs} ms of computing on ${threads} thread(s)`,
  );
  const delay = (ns: number): string => Math.max(0, ns / 1e6 - resolution).toFixed(1);
  const [p50, p99, max] = [loopDelay.percentile(50), loopDelay.percentile(99), loopDelay.max].map(delay);
  console.log(`event loop: delay p50 ${p50} ms, p99 ${p99} ms, max ${max} ms while the worker tasks ran`);
  console.log(`shutdown: drained in ${report.durationMs} ms, abandoned ${report.abandoned} (${report.totals.abandoned} since the start, of ${report.totals.total} tasks)`);
  // Exit 0 only when every task is accounted for, and everything that went wrong was meant to.
  const accounted = succeeded + failed + timedOut === tasks.length && abandoned === 0 && report.totals.abandoned === 0;
  const onPurpose = failed === crm.failures && timedOut === hung && retries === greylisted && unrecovered === 0;
  const allLogged =
    logged.failures === failed && logged.timeouts === timedOut && logged.retries === retries && logged.abandonments === 0 && logged.otherWarnings === 0;
  return accounted && onPurpose && allLogged && stopped === timedOut && answeredFirst === all.length ? 0 : 1;
}

if (serveMode) {
  console.log(`live view: ${base}/background/`);
  console.log(`try: curl -i -X POST '${base}/signup?email=ada@example.com'   (Ctrl-C to stop)`);
} else {
  // A burst of sign-ups from a few concurrent clients, over real HTTP. (node:http, not fetch:
  // fetch's first call loads undici, a pause long enough to blur what is measured here.)
  const post = (path: string): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      request(`${base}${path}`, { method: 'POST' }, (res) => res.resume().once('end', () => resolve(res)))
        .once('error', reject)
        .end();
    });
  let sent = 0;
  const client = async (): Promise<void> => {
    while (sent < REQUESTS) {
      const res = await post(`/signup?email=user${++sent}@example.com`);
      // The response is all here: is that request's background work still going?
      const record = records.get(Number(res.headers['x-request-id']));
      if (res.statusCode === 202 && record) record.answeredFirst = unfinished(record);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENT_CLIENTS }, client));
  process.exitCode = await summarize();
}
