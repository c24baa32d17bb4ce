/**
 * A real redis-server for the durable backend's tests, started by the tests themselves on
 * 127.0.0.1 (a free port, no persistence) and stopped after. `.ci/run` installs redis-server;
 * elsewhere, without one, the durable tests are skipped with a notice (and fail under CI).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { afterAll, beforeAll } from 'vitest';

export const hasRedis = spawnSync('redis-server', ['--version']).status === 0;
if (!hasRedis) {
  if (process.env.CI === 'true') throw new Error('redis-server is not installed: .ci/run installs it (apt-get install -y redis-server)');
  console.warn('[durable tests] redis-server is not installed: the durable backend tests are skipped (apt-get install -y redis-server)');
}

export interface RedisServer {
  readonly port: number;
  readonly connection: { host: string; port: number };
  stop(): Promise<void>;
}

/** A port free now (the OS picks it; a race with another process taking it first is unlikely). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts redis-server on `port` (a free one by default) and resolves once it accepts connections. */
export async function startRedis(port?: number): Promise<RedisServer> {
  const chosen = port ?? (await freePort());
  const child: ChildProcess = spawn('redis-server', ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      if (output.includes('Ready to accept connections')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited (${code}) before it was ready:\n${output}`)));
  });
  return {
    port: chosen,
    connection: { host: '127.0.0.1', port: chosen },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * A redis-server for the calling `describe` block: started before its tests, stopped after them.
 * Read its `port` and `connection` inside tests and hooks (not while the block is being defined).
 */
export function redisForSuite(): Pick<RedisServer, 'port' | 'connection'> {
  let server: RedisServer | undefined;
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(() => server?.stop());
  const started = (): RedisServer => {
    if (server === undefined) throw new Error('redisForSuite(): read the server inside a test or a hook, once it has started');
    return server;
  };
  return {
    get port() {
      return started().port;
    },
    get connection() {
      return started().connection;
    },
  };
}
