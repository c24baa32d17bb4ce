import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { startScript, stopScripts, type Exit, type Started } from './script.js';

/** Generous: a run takes a few seconds (the 500 ms mails, 20 at a time, and the avatars). */
const timeout = 60_000;
/** The compiled example; `npm test` builds it first. */
const serverJs = fileURLToPath(new URL('../examples/dist/server.js', import.meta.url));

const start = (...args: string[]): Started => startScript(serverJs, args);

interface Summary {
  requests: number;
  answeredFirst: number;
  added: number;
  ran: number;
  succeeded: number;
  failed: number;
  onPurpose: number;
  logged: number;
  timedOut: number;
  abandoned: number;
  /** Attempts after a task's first; the retried tasks all succeeded; mails refused on purpose; warnings logged. */
  retries: { attempts: number; allRecovered: boolean; greylisted: number; logged: number };
  /** Tasks that timed out; lookups made to hang on purpose; lookups stopped by their signal; errors logged. */
  timeouts: { timedOut: number; honoured: boolean; hung: number; stopped: number; logged: number };
  /** Median ms from sign-up to the first start of its welcome mail (high priority) and audit row (low). */
  priorities: { welcome: number; audit: number };
  /** Avatars that reported progress, of those added, and how many last showed each report (`100% "drawn"`). */
  progress: { reported: number; avatars: number; lastSeen: Record<string, number> };
  shutdownAbandoned: number;
  /** What the shutdown report counts as abandoned since the application started, and of how many. */
  totalAbandoned: number;
  totalTasks: number;
  worker: { added: number; succeeded: number; computingMs: number; threads: number };
  /** Event-loop delay in ms while the worker tasks ran. */
  eventLoop: { p50: number; p99: number; max: number };
}

function summaryOf({ stdout, stderr }: Exit): Summary {
  const matches = (pattern: RegExp): string[] => {
    const match = pattern.exec(stdout);
    if (match === null) throw new Error(`no line matching ${pattern} in the output:\n${stdout}\n${stderr}`);
    return match.slice(1).map((group) => group ?? '');
  };
  const numbers = (pattern: RegExp): number[] => matches(pattern).map(Number);
  const [requests = NaN, answeredFirst = NaN, total = NaN] = numbers(
    /^requests: (\d+), responses before background work finished: (\d+)\/(\d+)$/m,
  );
  expect(total).toBe(requests);
  const [added = NaN, ran = NaN, succeeded = NaN, failed = NaN, onPurpose = NaN, logged = NaN, timedOut = NaN, abandoned = NaN] = numbers(
    /^tasks: added (\d+), ran (\d+) \(succeeded (\d+), failed (\d+) \[on purpose (\d+), logged (\d+)\], timed out (\d+)\), abandoned (\d+)$/m,
  );
  const [attempts = '', recovery = '', greylisted = '', retriesLogged = ''] = matches(
    /^retries: (\d+) attempts retried \((all recovered|\d+ task\(s\) not recovered)\) \[greylisted on purpose (\d+), logged (\d+)\]$/m,
  );
  const [timedOutAgain = '', honoured = '', hung = '', stopped = '', timeoutsLogged = ''] = matches(
    /^timeouts: (\d+) timed out \((signal honoured|signal honoured by \d+ of \d+)\) \[hung on purpose (\d+), stopped (\d+), logged (\d+)\]$/m,
  );
  expect(Number(timedOutAgain)).toBe(timedOut);
  const [welcome = NaN, audit = NaN] = numbers(
    /^priorities: median start after sign-up: welcome mails \(high\) (\d+) ms, audit rows \(low\) (\d+) ms$/m,
  );
  const [reported = '', avatars = '', seen = ''] = matches(/^progress: (\d+)\/(\d+) avatars reported progress, last seen: (.+)$/m);
  const lastSeen: Record<string, number> = {};
  if (seen !== 'nothing') {
    for (const part of seen.split(', ')) {
      const [, report = '', count = ''] = /^(\d+% ".*") ×(\d+)$/.exec(part) ?? [];
      expect(report, `a "last seen" entry: ${part}`).not.toBe('');
      lastSeen[report] = Number(count);
    }
  }
  const [, shutdownAbandoned = NaN, totalAbandoned = NaN, totalTasks = NaN] = numbers(
    /^shutdown: drained in (\d+) ms, abandoned (\d+) \((\d+) since the start, of (\d+) tasks\)$/m,
  );
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
    timedOut,
    abandoned,
    retries: { attempts: Number(attempts), allRecovered: recovery === 'all recovered', greylisted: Number(greylisted), logged: Number(retriesLogged) },
    timeouts: { timedOut, honoured: honoured === 'signal honoured', hung: Number(hung), stopped: Number(stopped), logged: Number(timeoutsLogged) },
    priorities: { welcome, audit },
    progress: { reported: Number(reported), avatars: Number(avatars), lastSeen },
    shutdownAbandoned,
    totalAbandoned,
    totalTasks,
    worker: { added: workerAdded, succeeded: workerSucceeded, computingMs, threads },
    eventLoop: { p50, p99, max },
  };
}

/** The example logger's lines on stderr that match `pattern` (multiline, from a line start). */
const lines = (exit: Exit, pattern: RegExp): string[] => exit.stderr.match(new RegExp(pattern.source, 'gm')) ?? [];
/** One `[error] task "…" failed` line per failure; one `… timed out` line per timeout. */
const failureLines = (exit: Exit): number => lines(exit, /^\[error\] task "\w+" failed/).length;
const timeoutLines = (exit: Exit): number => lines(exit, /^\[error\] task "enrichProfile" timed out .*TaskTimeoutError/).length;
/** Every `[warn]` line, and those announcing a retry of a greylisted welcome mail. */
const warnLines = (exit: Exit): number => lines(exit, /^\[warn\]/).length;
const retryLines = (exit: Exit): number =>
  lines(exit, /^\[warn\] task "sendWelcome" failed \(attempt 1 of 3\); retrying in \d+ ms: TransientMailError: 451 /).length;

afterEach(() => {
  // Only matters when a test failed half-way: never leave a server running.
  stopScripts();
});

describe('examples/server.js', () => {
  it('answers a burst of requests before their background work ends, and accounts for every task', { timeout }, async () => {
    const exit = await start().exited;
    const summary = summaryOf(exit);

    expect(summary.requests).toBeGreaterThan(0);
    expect(summary.answeredFirst).toBe(summary.requests);
    expect(summary.added).toBe(summary.requests * 5); // five tasks per sign-up
    expect(summary.ran).toBe(summary.added);
    expect(summary.succeeded + summary.failed + summary.timedOut).toBe(summary.ran);
    expect(summary.abandoned).toBe(0);
    expect(summary.shutdownAbandoned).toBe(0);
    expect(summary.totalAbandoned).toBe(0);
    expect(summary.totalTasks).toBeGreaterThan(0);
    // Failures: the CRM's, made on purpose, each logged once at error.
    expect(summary.onPurpose).toBeGreaterThan(0);
    expect(summary.failed).toBe(summary.onPurpose);
    expect(summary.logged).toBe(summary.failed);
    expect(failureLines(exit)).toBe(summary.failed);
    // Retries: one per greylisted mail, each logged once at warn (and no other warning), all recovered.
    const { attempts } = summary.retries;
    expect(attempts).toBeGreaterThan(0);
    expect(summary.retries).toEqual({ attempts, allRecovered: true, greylisted: attempts, logged: attempts });
    expect(retryLines(exit)).toBe(attempts);
    expect(warnLines(exit)).toBe(attempts);
    // Timeouts: the lookups made to hang, each stopped by its signal and logged once at error.
    const { timedOut } = summary;
    expect(timedOut).toBeGreaterThan(0);
    expect(summary.timeouts).toEqual({ timedOut, honoured: true, hung: timedOut, stopped: timedOut, logged: timedOut });
    expect(timeoutLines(exit)).toBe(timedOut);
    // Priorities: a sign-up's welcome mail (high) never starts after its audit row (low).
    expect(summary.priorities.welcome).toBeLessThanOrEqual(summary.priorities.audit);
    // Progress, reported from the worker threads: every avatar's last report reached its handle.
    const { reported, avatars, lastSeen } = summary.progress;
    expect(avatars).toBe(summary.requests);
    expect(reported).toBe(avatars);
    expect(lastSeen).toEqual({ '100% "drawn"': summary.requests });
    // One CPU-bound avatar per sign-up, each on a worker thread, all rendered.
    expect(summary.worker.added).toBe(summary.requests);
    expect(summary.worker.succeeded).toBe(summary.worker.added);
    expect(summary.worker.computingMs).toBeGreaterThan(0);
    expect(summary.worker.threads).toBeGreaterThan(0);
    // The event loop's delay while they ran is printed, not judged: it depends on the machine.
    const { p50, p99, max } = summary.eventLoop;
    expect(p50).toBeLessThanOrEqual(p99);
    expect(p99).toBeLessThanOrEqual(max);
    expect(exit.stderr).not.toMatch(/request failed|Unhandled|uncaught/i);
    expect(exit, exit.stderr).toMatchObject({ code: 0, signal: null });
  });

  it('with --serve, serves until SIGTERM, then drains and exits 0 with a summary', { timeout }, async () => {
    const server = start('--serve');
    const [, base = ''] = await server.waitFor(/^listening on (http:\/\/127\.0\.0\.1:\d+)$/m);
    await server.waitFor(/^try: curl /m); // the signal handlers are installed by then
    const [, liveViewUrl = ''] = await server.waitFor(/^live view: (http:\/\/127\.0\.0\.1:\d+\/background\/)$/m);

    const res = await fetch(`${base}/signup?email=ada@example.com`, { method: 'POST' });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({
      userId: 1,
      queued: ['sendWelcome', 'enrichProfile', 'syncToCrm', 'recordAudit', 'renderAvatar'],
    });

    // The live view shows the sign-up's five tasks.
    const page = await fetch(liveViewUrl);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<html');
    const stats = (await (await fetch(`${liveViewUrl}api/stats`)).json()) as { total: number };
    expect(stats.total).toBe(5);
    server.child.kill('SIGTERM');
    const exit = await server.exited;
    const summary = summaryOf(exit);
    // One sign-up: no mail is greylisted, no lookup hangs, the CRM accepts it.
    expect(summary).toMatchObject({ requests: 1, answeredFirst: 1, added: 5, ran: 5, succeeded: 5, failed: 0, timedOut: 0, abandoned: 0 });
    expect(summary.retries).toEqual({ attempts: 0, allRecovered: true, greylisted: 0, logged: 0 });
    expect(summary.timeouts).toEqual({ timedOut: 0, honoured: true, hung: 0, stopped: 0, logged: 0 });
    expect(summary.progress.avatars).toBe(1);
    expect(summary.worker).toMatchObject({ added: 1, succeeded: 1, threads: 1 });
    expect(summary.shutdownAbandoned).toBe(0);
    expect(summary.totalAbandoned).toBe(0);
    expect(summary.totalTasks).toBeGreaterThan(0);
    expect(exit.stderr).toBe('');
    expect(exit, exit.stderr).toMatchObject({ code: 0, signal: null });
  });
});
