/**
 * An HTTP server that answers at once and does the follow-up work of each request in the
 * background, then drains it: per request, and for the whole app on shutdown.
 *
 * Each sign-up also renders an avatar: CPU-bound work, run on worker threads (cpu-tasks.ts) so
 * that the event loop stays free to answer requests; the summary shows how free it stayed.
 *
 *   npm start                  sends itself 50 sign-ups, shuts down gracefully, prints a summary
 *   npm start -- --serve       serves until SIGTERM or Ctrl-C, then the same
 */
import 'reflect-metadata'; // before any decorator runs: it records the constructor types
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { container, injectable, singleton } from 'tsyringe';
import {
  Background,
  BackgroundDisposedError,
  BackgroundOptions,
  defineTask,
  disposeScope,
  shutdown,
  type BackgroundLogger,
  type TaskHandle,
} from 'tsyringe-background';
import { renderAvatar, type Avatar } from './cpu-tasks.js';

const serveMode = process.argv.includes('--serve');
const REQUESTS = 50;
const CONCURRENT_CLIENTS = 10;
const CRM_FAILS_EVERY = 5;

// --- The application: services and tasks --------------------------------------------------

/** Request-scoped: each request's child container gets its own, registered with useValue. */
class RequestInfo {
  constructor(readonly id: number) {}
}

@singleton()
class Mailer {
  readonly outbox: string[] = [];
  async send(to: string, text: string): Promise<void> {
    await sleep(500); // a slow SMTP round trip: the reason not to make the client wait for it
    this.outbox.push(`${to}: ${text}`);
  }
}

// A task whose dependencies come from the container of the Background it is added to, at
// add() time: the app-wide Mailer, and this request's RequestInfo.
const sendWelcome = defineTask(
  { name: 'sendWelcome', inject: [Mailer, RequestInfo] },
  async (mailer, request, email: string) => {
    await mailer.send(email, `Welcome! (you signed up in request #${request.id})`);
  },
);

// Plain async functions are tasks too; add() passes them its extra arguments.
const auditLog: { userId: number; event: string }[] = [];
async function recordAudit(userId: number): Promise<void> {
  await sleep(20); // a database round trip
  auditLog.push({ userId, event: 'signup' });
}

let crmCalls = 0;
let crmFailures = 0;
async function syncToCrm(userId: number): Promise<void> {
  await sleep(10);
  if (++crmCalls % CRM_FAILS_EVERY === 0) {
    crmFailures++;
    throw new Error(`CRM rejected user ${userId} (every ${CRM_FAILS_EVERY}th call fails on purpose)`);
  }
}

/** The avatar tasks, to sum up their work at the end. */
const avatars: TaskHandle<Avatar>[] = [];

@injectable()
class SignupService {
  // Both come from the request's child container: its own Background (by type, no token
  // needed) and its RequestInfo.
  constructor(
    private readonly bg: Background,
    private readonly request: RequestInfo,
  ) {}

  signUp(email: string): { userId: number; tasks: TaskHandle[] } {
    const userId = this.request.id; // a real service would insert a row here
    // add() returns a handle at once and never throws for a failing task: failures are logged.
    const avatar = this.bg.add(renderAvatar, userId); // CPU-bound: runs on a worker thread
    avatars.push(avatar);
    const tasks = [
      this.bg.add(sendWelcome, email), // bg.add(sendWelcome, 42) would not compile
      this.bg.add(recordAudit, userId),
      this.bg.add(syncToCrm, userId),
      avatar,
    ];
    return { userId, tasks };
  }
}

// --- Wiring ---------------------------------------------------------------------------------
// Options go on the global container before any child container exists (a child reads them
// through its parent; and it gets its own Background only if the library was imported first).

/** A pino-shaped logger that prints one line per entry and counts task failures. */
const logged = { failures: 0, warnings: 0 };
const logger: BackgroundLogger = {
  error: (fields, message) => {
    if (fields.err !== undefined) logged.failures++;
    console.error(`[error] ${message} (#${String(fields.taskId)}): ${String(fields.err)}`);
  },
  warn: (_fields, message) => {
    logged.warnings++;
    console.error(`[warn] ${message}`);
  },
  info: () => undefined,
  debug: () => undefined,
};
container.register(BackgroundOptions, {
  useValue: {
    logger,
    drainTimeoutMs: 5_000,
    pool: {
      // Each worker thread passes its own container to this module's default export (the
      // compiled worker-setup.js, next to this file), which registers what worker tasks inject.
      setupModule: new URL('./worker-setup.js', import.meta.url),
    },
  },
});

// --- HTTP ------------------------------------------------------------------------------------

interface RequestRecord {
  tasks: TaskHandle[];
  /** Whether the response was out while some of the request's tasks were unfinished. */
  answeredFirst?: boolean;
}
const records = new Map<number, RequestRecord>();
const unfinished = ({ tasks }: RequestRecord): boolean =>
  tasks.some((task) => task.status === 'queued' || task.status === 'running');
let lastRequestId = 0;

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method !== 'POST' || url.pathname !== '/signup') {
    res.writeHead(404).end('try: POST /signup?email=ada@example.com\n');
    return;
  }
  const id = ++lastRequestId;
  const scope = container.createChildContainer(); // one scope per request
  scope.register(RequestInfo, { useValue: new RequestInfo(id) });
  try {
    const { userId, tasks } = scope.resolve(SignupService).signUp(url.searchParams.get('email') ?? '');
    const record: RequestRecord = { tasks };
    records.set(id, record);
    // With an outside client, "out" can only mean "handed to the OS"; the burst checks on receipt.
    if (serveMode) res.once('finish', () => (record.answeredFirst = unfinished(record)));
    res.writeHead(202, { 'content-type': 'application/json', 'x-request-id': String(id) });
    res.end(JSON.stringify({ userId, queued: tasks.map((task) => task.name) })); // answered now...
  } catch (error) {
    // add() throws BackgroundDisposedError once shutdown has begun.
    res.writeHead(error instanceof BackgroundDisposedError ? 503 : 500).end(`${String(error)}\n`);
  } finally {
    await disposeScope(scope); // ...and the scope drains after: its tasks first, then the rest
  }
}

const server = createServer((req, res) => {
  handle(req, res).catch((error: unknown) => console.error('request failed:', error));
});
server.listen(0, '127.0.0.1'); // port 0: any free port
await new Promise((resolve) => server.once('listening', resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
console.log(`listening on ${base}`);

// How late the event loop gets to timers, from now until shutdown: the CPU-bound avatars must
// not make it late. (Each sample includes the sampling interval itself; the summary subtracts it.)
const resolution = 5;
const loopDelay = monitorEventLoopDelay({ resolution });
loopDelay.enable();

/** Graceful shutdown: stop accepting, drain every scope within one deadline, report. */
async function stop(): Promise<number> {
  server.close(); // no new connections; idle keep-alive ones are closed
  const report = await shutdown({ timeoutMs: 5_000 }); // intake stops, in-flight work finishes
  server.closeAllConnections(); // whatever a client still held open
  loopDelay.disable();
  const all = [...records.values()];
  const tasks = all.flatMap((record) => record.tasks);
  const count = (status: string): number => tasks.filter((task) => task.status === status).length;
  const [succeeded, failed, abandoned] = [count('succeeded'), count('failed'), count('abandoned')];
  const answeredFirst = all.filter((record) => record.answeredFirst === true).length;
  console.log(`requests: ${all.length}, responses before background work finished: ${answeredFirst}/${all.length}`);
  console.log(
    `tasks: added ${tasks.length}, ran ${succeeded + failed} (succeeded ${succeeded}, failed ${failed} ` +
      `[on purpose ${crmFailures}, logged ${logged.failures}]), abandoned ${abandoned}`,
  );
  const rendered = await Promise.all(avatars.filter((task) => task.status === 'succeeded').map((task) => task.result()));
  const computingMs = Math.round(rendered.reduce((total, avatar) => total + avatar.ms, 0));
  const threads = new Set(rendered.map((avatar) => avatar.threadId)).size;
  console.log(
    `worker tasks: added ${avatars.length}, succeeded ${rendered.length}, ${computingMs} ms of computing on ${threads} thread(s)`,
  );
  const delay = (ns: number): string => Math.max(0, ns / 1e6 - resolution).toFixed(1);
  const [p50, p99, max] = [loopDelay.percentile(50), loopDelay.percentile(99), loopDelay.max].map(delay);
  console.log(`event loop: delay p50 ${p50} ms, p99 ${p99} ms, max ${max} ms while the worker tasks ran`);
  console.log(`shutdown: drained in ${report.durationMs} ms, abandoned ${report.abandoned}`);
  const accounted = succeeded + failed === tasks.length && failed === logged.failures && failed === crmFailures;
  const clean = abandoned === 0 && report.abandoned === 0 && logged.warnings === 0 && answeredFirst === all.length;
  return accounted && clean ? 0 : 1;
}

if (serveMode) {
  const onSignal = (): void => {
    process.off('SIGTERM', onSignal).off('SIGINT', onSignal); // a second Ctrl-C kills at once
    void stop().then((code) => (process.exitCode = code)); // no process.exit(): nothing is left
  };
  process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
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
  process.exitCode = await stop();
}
