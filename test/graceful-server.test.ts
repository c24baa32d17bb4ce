/**
 * gracefulShutdown() in a real process under load: test/fixtures/graceful-server.mjs (Express, a
 * request scope per request, the built package) takes requests from autocannon on 127.0.0.1, gets
 * SIGTERM in the middle of the load, and must lose nothing.
 *
 * What "accepted" means here: a request the server took (it reached the server's handlers; the
 * fixture counts them). Every one must be answered, with a 2xx, and autocannon must have received
 * every answer. A request the server never took (sent on a connection the server was closing, or
 * to a port no longer listening) fails on the client with a refused or reset connection: that is
 * the only error tolerated, and only after the signal.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { afterEach, describe, expect, it } from 'vitest';
import { deferred } from './helpers.js';
import { startScript, stopScripts } from './script.js';

const fixture = fileURLToPath(new URL('fixtures/graceful-server.mjs', import.meta.url));
const built = fileURLToPath(new URL('../dist/graceful.js', import.meta.url));

afterEach(() => {
  stopScripts('SIGKILL');
});

interface Counters {
  requests: number;
  answered: number;
  unanswered: number;
  tasksAccepted: number;
  tasksCompleted: number;
  tasksRefused: number;
}
interface LogLine {
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

/** The errors a client may see for a request the server never took. */
const notTaken = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE']);

describe('gracefulShutdown() in a child process under load', () => {
  it('SIGTERM mid-load: every request taken is answered 2xx, every task taken is completed, the totals match, exit 0', { timeout: 15_000 }, async () => {
    if (!existsSync(built)) throw new Error(`${built} does not exist: run \`npm run build\` first (\`npm test\` does it)`);
    const server = startScript(fixture);
    const { child } = server;
    const port = Number((await server.waitFor(/^listening (\d+)$/m))[1]);

    // Load: 10 keep-alive connections, each sending its next request as soon as it has an answer.
    const signalAfter = 300;
    const statuses = new Map<number, number>();
    const errors = new Map<string, number>();
    let responses = 0;
    let errorsBeforeSignal = -1;
    const result = deferred<autocannon.Result>();
    // duration: an upper bound; the test stops it once the child has exited (sampleInt: stopped within 50 ms).
    const instance = autocannon({ url: `http://127.0.0.1:${port}/work`, connections: 10, duration: 12, sampleInt: 50 }, (error, done) => {
      if (error === null || error === undefined) result.resolve(done);
      else result.reject(error);
    });
    instance.on('response', (_client, statusCode) => {
      statuses.set(statusCode, (statuses.get(statusCode) ?? 0) + 1);
      if (++responses === signalAfter) {
        errorsBeforeSignal = [...errors.values()].reduce((sum, n) => sum + n, 0);
        child.kill('SIGTERM');
      }
    });
    instance.on('reqError', (error: NodeJS.ErrnoException) => {
      const code = error.code ?? error.message;
      errors.set(code, (errors.get(code) ?? 0) + 1);
    });
    const { stdout, stderr, ...exit } = await server.exited;
    instance.stop();
    const { timeouts, non2xx, mismatches } = await result.promise;

    const found = (prefix: string): string => {
      const line = stdout.split('\n').find((each) => each.startsWith(prefix));
      if (line === undefined) throw new Error(`no line starting with "${prefix}" in the output:\n${stdout}\n${stderr}`);
      return line.slice(prefix.length);
    };
    const counters = JSON.parse(found('counters ')) as Counters;
    const logs = stdout
      .split('\n')
      .filter((line) => line.startsWith('log '))
      .map((line) => JSON.parse(line.slice(4)) as LogLine);
    const summary = logs.find((log) => log.message.startsWith('shut down'));
    const answered2xx = [...statuses].filter(([status]) => status >= 200 && status < 300).reduce((sum, [, n]) => sum + n, 0);
    console.log(
      `SIGTERM after ${signalAfter} responses: ${counters.requests} requests taken, ${answered2xx} answered 2xx to the client, ` +
        `errors ${JSON.stringify(Object.fromEntries(errors))}; ${counters.tasksAccepted} tasks taken, ${counters.tasksCompleted} completed; ${summary?.message}`,
    );

    expect(exit, `${stdout}\n${stderr}`).toEqual({ code: 0, signal: null });
    expect(stderr).toBe('');
    // Requests: every one the server took was answered, and every answer reached the client as a 2xx.
    expect(counters.requests).toBeGreaterThan(signalAfter);
    expect(counters.unanswered).toBe(0);
    expect(counters.answered).toBe(counters.requests);
    expect([...statuses.keys()]).toEqual([200]);
    expect(non2xx).toBe(0);
    expect(answered2xx).toBe(counters.answered);
    // Errors: none before the signal, none a timeout or a mismatch, and after it only requests the server never took.
    expect(errorsBeforeSignal).toBe(0);
    expect(timeouts).toBe(0);
    expect(mismatches).toBe(0);
    for (const code of errors.keys()) expect(notTaken, `error ${code}`).toContain(code);
    // Tasks: every one taken was completed, none refused; the logged totals say the same.
    expect(counters.tasksRefused).toBe(0);
    expect(counters.tasksAccepted).toBe(3 * counters.requests);
    expect(counters.tasksCompleted).toBe(counters.tasksAccepted);
    expect(logs.filter((log) => log.level !== 'info')).toEqual([]);
    expect(summary).toMatchObject({
      level: 'info',
      fields: {
        exitCode: 0,
        abandoned: 0,
        requests: { cutOff: 0 },
        totals: { total: counters.tasksAccepted, succeeded: counters.tasksCompleted, failed: 0, abandoned: 0, timedOut: 0, cancelled: 0, skipped: 0 },
      },
    });
    // Requests were in flight at the signal, and finished during the sequence.
    expect((summary!.fields.requests as { finished: number }).finished).toBeGreaterThan(0);
  });
});

describe("gracefulShutdown()'s default exit in a child process", () => {
  it('waits for what it logged to be written before exiting: a slow reader of its stderr still gets every line and the summary', { timeout: 15_000 }, async () => {
    const flush = startScript(fileURLToPath(new URL('fixtures/graceful-flush.mjs', import.meta.url)));
    await flush.waitFor(/^ready$/m);
    flush.child.kill('SIGTERM');
    // A reader busy meanwhile (a log shipper, a supervisor): the child's writes wait in its stream.
    const until = Date.now() + 400;
    while (Date.now() < until);
    const { code, stderr } = await flush.exited;
    expect(code).toBe(1);
    expect(stderr.match(/application closed with 1 task\(s\) unfinished/g)?.length).toBe(2_000);
    expect(stderr).toMatch(/shut down in \d+ ms with work lost/);
  });

  it('says what it abandons when other code exits the process during the sequence (process.exit() in a library)', { timeout: 15_000 }, async () => {
    const other = startScript(fileURLToPath(new URL('fixtures/graceful-other-exit.mjs', import.meta.url)));
    await other.waitFor(/^ready$/m);
    other.child.kill('SIGTERM');
    const { code, stderr } = await other.exited;
    // Work is lost: not the 0 it was given (node:cluster's workers exit 0 when their primary is gone).
    expect(code).toBe(1);
    expect(stderr).toMatch(
      /the process is exiting \(code 0\) during graceful shutdown, before the sequence has ended \(process\.exit\(\) called by other code\?\); it exits 1 instead, work being lost; abandoning 0 request\(s\) in flight and 1 unfinished task\(s\): outlivesTheExit \(#\d+, running\)/,
    );
  });
});
