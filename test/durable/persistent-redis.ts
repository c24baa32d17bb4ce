/**
 * A redis-server that keeps its data on disk (an append-only file, fsynced at every write) and can
 * be stopped and started again on the same port and directory: for the fault tests that restart
 * Redis in the middle of a run. The plain, in-memory server of the other tests is in redis.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis.js';

export interface PersistentRedis {
  readonly port: number;
  readonly connection: { host: string; port: number };
  /** Where the append-only file is. */
  readonly dir: string;
  /** Whether the server runs now. */
  readonly running: boolean;
  /** Starts the server again (same port, same data); resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops the server with SIGTERM (it writes what it has and exits); resolves once it exited. */
  stop(): Promise<void>;
  /** Stops the server if it runs and deletes its directory. */
  remove(): Promise<void>;
}

/** Starts a persistent redis-server on a free port, in a new temporary directory. */
export async function startPersistentRedis(): Promise<PersistentRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tb-redis-'));
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    if (child !== undefined) throw new Error(`redis-server already runs on port ${port}`);
    const started = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = started;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      started.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        output += chunk;
        if (output.includes('Ready to accept connections')) resolve();
      });
      started.once('exit', (code) => {
        if (child === started) child = undefined;
        reject(new Error(`redis-server exited (${code}) before it was ready:\n${output}`));
      });
    });
  };
  const stop = async (): Promise<void> => {
    const running = child;
    if (running === undefined) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGTERM');
    await exited;
    child = undefined;
  };
  await start();
  return {
    port,
    connection: { host: '127.0.0.1', port },
    dir,
    get running() {
      return child !== undefined;
    },
    start,
    stop,
    async remove() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
