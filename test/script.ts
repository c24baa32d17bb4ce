/**
 * A built script (an example) run in a process of its own, as its users run it: its output
 * watched for a pattern, its exit awaited. Every process started is tracked, so that a test file
 * can stop what a failed test left running (`stopScripts()` in its `afterEach`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Started {
  child: ChildProcess;
  /** Resolves with the first match of `pattern` in stdout; rejects if the process exits first. */
  waitFor(pattern: RegExp): Promise<RegExpExecArray>;
  exited: Promise<Exit>;
}

const running: ChildProcess[] = [];

/** Starts `node file ...args` (a file `npm test` built); throws at once when it is missing. */
export function startScript(file: string, args: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): Started {
  if (!existsSync(file)) throw new Error(`${file} does not exist: run \`npm run build\` first (\`npm test\` does it)`);
  const child = spawn(process.execPath, [file, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  running.push(child);
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

/** Sends `signal` to every script started here that is still running (a test failed half-way). */
export function stopScripts(signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const child of running.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill(signal);
}
