/**
 * The durable example (`npm run example:durable`, examples/durable.ts), run as its users run it:
 * the built file in a process of its own, starting its own redis-server and worker processes.
 * Checked: its summary (nothing lost, every job completed, only the killed worker's jobs run
 * twice), its exit code, that it leaves no process behind (at the end and on Ctrl-C), and what it
 * says when redis-server is not installed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startScript, stopScripts, type Exit, type Started } from '../script.js';
import { hasRedis } from './redis.js';

/** The compiled example; `npm test` builds it first. */
const durableJs = fileURLToPath(new URL('../../examples/dist/durable.js', import.meta.url));
/** Generous: a run takes about 5 s (redis-server, two worker processes, 400 jobs, 2 s locks). */
const timeout = 40_000;

afterEach(() => {
  // Only matters when a test failed half-way: SIGINT lets the example stop what it started.
  stopScripts('SIGINT');
});

const start = (env: NodeJS.ProcessEnv = process.env): Started => startScript(durableJs, [], env);

/** The numbers of a line of `stdout` matching `pattern`; fails the test, showing the output, when there is none. */
function numbers(exit: Exit, pattern: RegExp): number[] {
  const match = pattern.exec(exit.stdout);
  expect(match, `a line matching ${pattern} in:\n${exit.stdout}\n${exit.stderr}`).not.toBeNull();
  return match!.slice(1).map(Number);
}

/** Whether something accepts connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The port of the example's redis-server and the pids of its worker processes, from its first lines. */
function processesOf(stdout: string): { port: number; workers: number[] } {
  const [, port = ''] = /^redis-server \S+ on 127\.0\.0\.1:(\d+) /m.exec(stdout) ?? [];
  const [, first = '', second = ''] = /^2 worker processes \(pids (\d+), (\d+)\)/m.exec(stdout) ?? [];
  return { port: Number(port), workers: [Number(first), Number(second)] };
}

describe.skipIf(!hasRedis)('examples/durable.js, with redis-server installed', () => {
  it('kills one of two workers mid-run, completes every job, loses none, and runs twice only jobs the killed worker held', { timeout }, async () => {
    const exit = await start().exited;
    expect(exit, exit.stderr).toMatchObject({ code: 0, signal: null });
    // Nothing on stderr but the surviving worker saying which jobs it takes again (the killed one's).
    const said = exit.stderr.split('\n').filter((line) => line !== '');
    for (const line of said) expect(line).toMatch(/^\[worker \d+\] \[tsyringe-background\] durable job \S+ \(task "(chargeInvoice|sendReceipt)"\) is taken again: /);

    const [added = NaN] = numbers(exit, /^jobs added: (\d+)$/m);
    const [completed = NaN, failed = NaN] = numbers(exit, /^completed: (\d+) \(failed (\d+)\), in \d+\.\d s$/m);
    const [takenAgain = NaN] = numbers(exit, /^taken again after the crash: (\d+) /m);
    const [twice = NaN] = numbers(exit, /^run twice because of the crash: (\d+)/m);
    const [lost = NaN] = numbers(exit, /^lost: (\d+)/m);
    expect(added).toBe(400);
    expect(completed).toBe(added);
    expect(failed).toBe(0);
    expect(lost).toBe(0);
    // The killed worker ran 4 jobs at a time: at most those are taken again, and only those run twice.
    expect(takenAgain).toBeLessThanOrEqual(4);
    // Those whose task had begun, and any the killed worker had taken without beginning it yet.
    expect(said.length).toBeGreaterThanOrEqual(takenAgain);
    expect(said.length).toBeLessThanOrEqual(4);
    expect(twice).toBeLessThanOrEqual(takenAgain);
    expect(exit.stdout).not.toMatch(/WITHOUT a crash/);
    const [killedAfter = NaN] = numbers(exit, /^killed worker \d+ with SIGKILL after (\d+) jobs had completed; worker \d+ carries on$/m);
    expect(killedAfter).toBeLessThan(added);
    // A few lines, not a log.
    expect(exit.stdout.trim().split('\n').length).toBeLessThanOrEqual(10);

    // Nothing left running: its redis-server and both workers are gone.
    const { port, workers } = processesOf(exit.stdout);
    expect(await listening(port)).toBe(false);
    expect(workers.filter(alive)).toEqual([]);
  });

  it('on Ctrl-C (SIGINT) mid-run, stops its workers and redis-server and exits 130', { timeout }, async () => {
    const run = start();
    await run.waitFor(/^added \d+ durable jobs/m);
    run.child.kill('SIGINT');
    const exit = await run.exited;
    expect(exit, exit.stderr).toMatchObject({ code: 130, signal: null });
    expect(exit.stderr.trim()).toBe('SIGINT: stopping the workers and redis-server');
    const { port, workers } = processesOf(exit.stdout);
    expect(await listening(port)).toBe(false);
    expect(workers.filter(alive)).toEqual([]);
  });
});

describe('examples/durable.js, without redis-server', () => {
  const emptyDir = mkdtempSync(join(tmpdir(), 'tb-no-redis-'));
  afterAll(() => rmSync(emptyDir, { recursive: true, force: true }));

  it('says how to install it and exits 1, without a stack trace', { timeout }, async () => {
    // A PATH where no redis-server is found (node itself is started by its full path).
    const exit = await start({ ...process.env, PATH: emptyDir }).exited;
    expect(exit).toMatchObject({ code: 1, signal: null, stdout: '' });
    expect(exit.stderr).toMatch(/needs redis-server, which is not installed/);
    expect(exit.stderr).toContain('apt-get install redis-server');
    expect(exit.stderr).toContain('brew install redis');
    expect(exit.stderr).not.toMatch(/^\s+at /m);
  });
});
