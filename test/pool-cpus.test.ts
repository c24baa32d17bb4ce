/**
 * The pool's threads for CPU-bound work in a process that may use fewer CPUs than the machine
 * has: pinned to a CPU another process keeps busy (the other CPU idle), and under a CPU quota
 * (a cgroup, as a container's `--cpus` or a Kubernetes CPU limit sets). In both, a burst of
 * tasks that compute runs on one thread: the idle CPUs are no room for more.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

const fixture = fileURLToPath(new URL('fixtures/pool-threads.mjs', import.meta.url));
const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

/** Starts a process that keeps CPU 0 busy until killed. */
function busyCpu0(): ChildProcess {
  return spawn('taskset', ['-c', '0', process.execPath, '-e', 'for (;;);'], { stdio: 'ignore' });
}

/** A cgroup with a CPU quota of `cpus`, made where this machine lets us (root, v1 or v2); `undefined` where not. */
function quotaGroup(cpus: number): { dir: string; remove(): void } | undefined {
  const name = `tsyringe-background-test-${process.pid}`;
  const v1 = '/sys/fs/cgroup/cpu';
  const v2 = '/sys/fs/cgroup';
  try {
    if (existsSync(`${v1}/cpu.cfs_period_us`)) {
      const dir = `${v1}/${name}`;
      mkdirSync(dir);
      writeFileSync(`${dir}/cpu.cfs_period_us`, '100000');
      writeFileSync(`${dir}/cpu.cfs_quota_us`, String(Math.round(cpus * 100_000)));
      return { dir, remove: () => rmdirSync(dir) };
    }
    if (readFileSync(`${v2}/cgroup.subtree_control`, 'utf8').split(/\s+/).includes('cpu')) {
      const dir = `${v2}/${name}`;
      mkdirSync(dir);
      writeFileSync(`${dir}/cpu.max`, `${Math.round(cpus * 100_000)} 100000`);
      return { dir, remove: () => rmdirSync(dir) };
    }
  } catch {
    // Not root, or a read-only /sys/fs/cgroup: no quota to test with here.
  }
  return undefined;
}

const stop: (() => void)[] = [];
afterEach(() => {
  for (const done of stop.splice(0)) done();
});

/** Runs `command`, killed at the end of the test if still running: its exit code and output. */
function run(command: string, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  stop.push(() => child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('CPU-bound worker tasks where the process may use fewer CPUs than the machine has', () => {
  it.skipIf(!hasTaskset || cpus().length < 2)('pinned to a CPU another process keeps busy, the other CPUs idle: one thread', async () => {
    const busy = busyCpu0();
    stop.push(() => busy.kill('SIGKILL'));
    const exit = await run('taskset', ['-c', '0', process.execPath, fixture]);
    expect(exit.code, exit.stderr).toBe(0);
    expect(JSON.parse(exit.stdout)).toEqual({ cores: 1, threads: 1 });
  }, 30_000);

  const group = quotaGroup(0.5);
  afterAll(() => group?.remove());
  it.skipIf(group === undefined)('under a CPU quota of half a CPU, on a machine of more: one thread', async () => {
    const exit = await run('sh', ['-c', `echo $$ > ${group!.dir}/cgroup.procs && exec "${process.execPath}" "${fixture}"`]);
    expect(exit.code, exit.stderr).toBe(0);
    expect(JSON.parse(exit.stdout)).toEqual({ cores: 1, threads: 1 });
  }, 30_000);
});
