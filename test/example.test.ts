import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

/** Generous: a run takes about a second (most of it the 500 ms of background mail). */
const timeout = 20_000;
/** The compiled example; `npm test` builds it first. */
const serverJs = fileURLToPath(new URL('../examples/dist/server.js', import.meta.url));

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface Started {
  child: ChildProcess;
  /** Resolves with the first match of `pattern` in stdout; rejects if the process exits first. */
  waitFor(pattern: RegExp): Promise<RegExpExecArray>;
  exited: Promise<Exit>;
}

const children: ChildProcess[] = [];

function start(...args: string[]): Started {
  if (!existsSync(serverJs)) {
    throw new Error(`${serverJs} does not exist: run \`npm run build\` first (\`npm test\` does it)`);
  }
  const child = spawn(process.execPath, [serverJs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    for (const check of waiters) check();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<Exit>((resolve, reject) => {
    child.once('error', reject);
    // 'close', not 'exit': by then both pipes have been read to the end.
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  const waitFor = (pattern: RegExp): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const match = pattern.exec(stdout);
        if (match === null) return;
        waiters.delete(check);
        resolve(match);
      };
      waiters.add(check);
      check();
      void exited.then(
        (exit) => reject(new Error(`exited (${exit.code ?? exit.signal}) before printing ${pattern}:\n${exit.stdout}\n${exit.stderr}`)),
        reject,
      );
    });
  return { child, waitFor, exited };
}

interface Summary {
  requests: number;
  answeredFirst: number;
  added: number;
  ran: number;
  succeeded: number;
  failed: number;
  onPurpose: number;
  logged: number;
  abandoned: number;
  shutdownAbandoned: number;
  worker: { added: number; succeeded: number; computingMs: number; threads: number };
  /** Event-loop delay in ms while the worker tasks ran. */
  eventLoop: { p50: number; p99: number; max: number };
}

function summaryOf({ stdout, stderr }: Exit): Summary {
  const numbers = (pattern: RegExp): number[] => {
    const match = pattern.exec(stdout);
    if (match === null) throw new Error(`no line matching ${pattern} in the output:\n${stdout}\n${stderr}`);
    return match.slice(1).map(Number);
  };
  const [requests = NaN, answeredFirst = NaN, total = NaN] = numbers(
    /^requests: (\d+), responses before background work finished: (\d+)\/(\d+)$/m,
  );
  expect(total).toBe(requests);
  const [added = NaN, ran = NaN, succeeded = NaN, failed = NaN, onPurpose = NaN, logged = NaN, abandoned = NaN] = numbers(
    /^tasks: added (\d+), ran (\d+) \(succeeded (\d+), failed (\d+) \[on purpose (\d+), logged (\d+)\]\), abandoned (\d+)$/m,
  );
  const [, shutdownAbandoned = NaN] = numbers(/^shutdown: drained in (\d+) ms, abandoned (\d+)$/m);
  const [workerAdded = NaN, workerSucceeded = NaN, computingMs = NaN, threads = NaN] = numbers(
    /^worker tasks: added (\d+), succeeded (\d+), (\d+) ms of computing on (\d+) thread\(s\)$/m,
  );
  const [p50 = NaN, p99 = NaN, max = NaN] = numbers(
    /^event loop: delay p50 (\d+\.\d) ms, p99 (\d+\.\d) ms, max (\d+\.\d) ms while the worker tasks ran$/m,
  );
  return {
    requests,
    answeredFirst,
    added,
    ran,
    succeeded,
    failed,
    onPurpose,
    logged,
    abandoned,
    shutdownAbandoned,
    worker: { added: workerAdded, succeeded: workerSucceeded, computingMs, threads },
    eventLoop: { p50, p99, max },
  };
}

/** Every failure the example's logger printed: one `[error] task "…" failed` line each. */
const failureLines = (exit: Exit): number => exit.stderr.match(/^\[error\] task "\w+" failed/gm)?.length ?? 0;

afterEach(() => {
  // Only matters when a test failed half-way: never leave a server running.
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill();
});

describe('examples/server.js', () => {
  it('answers a burst of requests before their background work ends, and accounts for every task', { timeout }, async () => {
    const exit = await start().exited;
    const summary = summaryOf(exit);

    expect(summary.requests).toBeGreaterThan(0);
    expect(summary.answeredFirst).toBe(summary.requests);
    expect(summary.added).toBeGreaterThan(summary.requests); // several tasks per request
    expect(summary.ran).toBe(summary.added);
    expect(summary.succeeded + summary.failed).toBe(summary.ran);
    expect(summary.onPurpose).toBeGreaterThan(0);
    expect(summary.failed).toBe(summary.onPurpose);
    expect(summary.logged).toBe(summary.failed);
    expect(failureLines(exit)).toBe(summary.failed);
    expect(summary.abandoned).toBe(0);
    expect(summary.shutdownAbandoned).toBe(0);
    // One CPU-bound avatar per sign-up, each on a worker thread, all rendered.
    expect(summary.worker.added).toBe(summary.requests);
    expect(summary.worker.succeeded).toBe(summary.worker.added);
    expect(summary.worker.computingMs).toBeGreaterThan(0);
    expect(summary.worker.threads).toBeGreaterThan(0);
    // The event loop's delay while they ran is printed, not judged: it depends on the machine.
    const { p50, p99, max } = summary.eventLoop;
    expect(p50).toBeLessThanOrEqual(p99);
    expect(p99).toBeLessThanOrEqual(max);
    expect(exit.stderr).not.toMatch(/\[warn\]|request failed|Unhandled|uncaught/i);
    expect(exit, exit.stderr).toMatchObject({ code: 0, signal: null });
  });

  it('with --serve, serves until SIGTERM, then drains and exits 0 with a summary', { timeout }, async () => {
    const server = start('--serve');
    const [, base = ''] = await server.waitFor(/^listening on (http:\/\/127\.0\.0\.1:\d+)$/m);
    await server.waitFor(/^try: curl /m); // the signal handlers are installed by then

    const res = await fetch(`${base}/signup?email=ada@example.com`, { method: 'POST' });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ userId: 1, queued: ['sendWelcome', 'recordAudit', 'syncToCrm', 'renderAvatar'] });

    server.child.kill('SIGTERM');
    const exit = await server.exited;
    const summary = summaryOf(exit);
    expect(summary).toMatchObject({ requests: 1, answeredFirst: 1, added: 4, ran: 4, succeeded: 4, failed: 0, abandoned: 0 });
    expect(summary.worker).toMatchObject({ added: 1, succeeded: 1, threads: 1 });
    expect(summary.shutdownAbandoned).toBe(0);
    expect(exit, exit.stderr).toMatchObject({ code: 0, signal: null });
  });
});
