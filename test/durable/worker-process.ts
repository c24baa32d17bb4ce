/**
 * A durable worker in a process of its own (test/fixtures/durable-worker.mjs, on the built
 * package): started, told what to do on stdin, and awaited line by line on stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const fixture = fileURLToPath(new URL('../fixtures/durable-worker.mjs', import.meta.url));
const built = fileURLToPath(new URL('../../dist/adapters/bullmq.js', import.meta.url));

export interface WorkerProcessConfig {
  port: number;
  queueName: string;
  /** The file the hold task appends its effects to. */
  effects: string;
  concurrency?: number;
  /** BullMQ worker options, passed to startWorkers({ workerOptions }). */
  workerOptions?: Record<string, unknown>;
}

export interface WorkerProcess {
  readonly pid: number;
  /** Every line printed so far. */
  readonly lines: readonly string[];
  /**
   * Resolves with the first line (printed so far or later) that matches; rejects if the process
   * exits first, or after `timeoutMs` (a bound for a failing test, not a wait).
   */
  line(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Resolves with the first `count` lines (printed so far or later) that match; rejects as `line()` does. */
  matches(pattern: RegExp, count: number, timeoutMs?: number): Promise<RegExpExecArray[]>;
  send(line: string): void;
  kill(signal: NodeJS.Signals): void;
  /** Resolves when the process has exited and its output is read. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** What it wrote to stderr. */
  readonly stderr: string;
}

const started = new Set<ChildProcess>();

/** Kills (SIGKILL) every worker process still running: for afterEach. */
export function killWorkerProcesses(): void {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  started.clear();
}

/** Starts a worker process; resolves once it printed `ready`. */
export async function startWorkerProcess(config: WorkerProcessConfig): Promise<WorkerProcess> {
  if (!existsSync(built)) throw new Error(`${built} does not exist: run \`npm run build\` first (\`npm test\` does it)`);
  const child = spawn(process.execPath, [fixture, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] });
  started.add(child);
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  let closed = false;
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    for (const wake of waiters) wake();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.on('error', () => undefined); // a killed process's pipe
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      closed = true;
      resolve({ code, signal });
      for (const wake of waiters) wake();
    });
  });
  const matching = (pattern: RegExp, count: number, timeoutMs = 15_000): Promise<RegExpExecArray[]> =>
    new Promise((resolve, reject) => {
      const fail = (why: string): void => {
        waiters.delete(check);
        clearTimeout(timer);
        reject(new Error(`worker process ${child.pid} ${why} before printing ${count} × ${pattern}; it printed:\n${lines.join('\n')}\n${stderr}`));
      };
      const check = (): void => {
        const found = lines.map((line) => pattern.exec(line)).filter((match) => match !== null);
        if (found.length >= count) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found.slice(0, count));
        } else if (closed) {
          fail(`exited (${child.exitCode ?? child.signalCode})`);
        }
      };
      const timer = setTimeout(() => fail(`waited ${timeoutMs} ms`), timeoutMs);
      waiters.add(check);
      check();
    });
  const worker: WorkerProcess = {
    pid: child.pid!,
    lines,
    line: async (pattern, timeoutMs) => (await matching(pattern, 1, timeoutMs))[0]!,
    matches: matching,
    send: (line) => void child.stdin.write(`${line}\n`),
    kill: (signal) => void child.kill(signal),
    exited,
    get stderr() {
      return stderr;
    },
  };
  await worker.line(/^ready$/);
  return worker;
}
