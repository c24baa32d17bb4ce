/**
 * The pool in a process that may use less than the machine has. Fewer CPUs: pinned to a CPU
 * another process keeps busy (the other CPU idle), and under a CPU quota (a cgroup, as a
 * container's `--cpus` or a Kubernetes CPU limit sets); in both, a burst of tasks that compute
 * runs on one thread, the idle CPUs being no room for more. Fewer threads: under a cgroup's pids
 * limit (a container's `--pids-limit`, a pod's pid limit), known as the pool starts or met when
 * a thread is refused, the pool keeps to the threads it may have, and no task fails or is lost.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const fixture = fileURLToPath(new URL('fixtures/pool-threads.mjs', import.meta.url));
const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

/** Starts a process that keeps CPU 0 busy until killed. */
function busyCpu0(): ChildProcess {
  return spawn('taskset', ['-c', '0', process.execPath, '-e', 'for (;;);'], { stdio: 'ignore' });
}

/**
 * A cgroup made under `parent` and set up by `setUp`, where this machine lets a test make one and
 * move a process into it (root, a writable /sys/fs/cgroup); `undefined` where it does not.
 */
function makeGroup(parent: string, name: string, setUp: (dir: string) => void): string | undefined {
  const dir = `${parent}/${name}`;
  try {
    mkdirSync(dir);
  } catch {
    return undefined;
  }
  try {
    setUp(dir);
    // A process that moves itself in, then ends.
    if (spawnSync('sh', ['-c', `echo $$ > ${dir}/cgroup.procs`]).status === 0) return dir;
  } catch {
    // A limit it may not set: no group to test with here.
  }
  removeWhenEmpty(dir);
  return undefined;
}

/** Where a test may make a cgroup of `controller`: its v1 mount (which has `v1File`), or v2's root when the controller is enabled there. */
function parentWith(controller: string, v1File: string): string | undefined {
  const v1 = `/sys/fs/cgroup/${controller}`;
  if (existsSync(`${v1}/${v1File}`)) return v1;
  try {
    return readFileSync('/sys/fs/cgroup/cgroup.subtree_control', 'utf8').split(/\s+/).includes(controller) ? '/sys/fs/cgroup' : undefined;
  } catch {
    return undefined;
  }
}

/** A cgroup whose pids limit the test sets (v1's pids controller, or v2's), where this machine lets us make one. */
function pidsGroup(): { dir: string; setMax(max: number): void; current(): number; remove(): void } | undefined {
  const parent = parentWith('pids', 'cgroup.procs');
  const dir = parent === undefined ? undefined : makeGroup(parent, `tsyringe-background-pids-${process.pid}`, () => undefined);
  if (dir === undefined) return undefined;
  return {
    dir,
    setMax: (max) => writeFileSync(`${dir}/pids.max`, String(max)),
    current: () => Number(readFileSync(`${dir}/pids.current`, 'utf8')),
    // Its processes ended; a process killed may not have left it yet.
    remove: () => void (existsSync(dir) && removeWhenEmpty(dir)),
  };
}

/** Whether this machine lets a test make the group `make` makes (made, then removed). */
function canMake(make: () => { remove(): void } | undefined): boolean {
  const group = make();
  group?.remove();
  return group !== undefined;
}

/** Removes a cgroup once its last process has left it (a killed one leaves within a few ms), giving up after 2 s. */
function removeWhenEmpty(dir: string): void {
  for (const until = Date.now() + 2_000; ; ) {
    try {
      rmdirSync(dir);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() > until) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

/** A cgroup with a CPU quota of `cpus`, made where this machine lets us (root, v1 or v2); `undefined` where not. */
function quotaGroup(cpus: number): { dir: string; remove(): void } | undefined {
  const parent = parentWith('cpu', 'cpu.cfs_period_us');
  const quota = Math.round(cpus * 100_000);
  const dir =
    parent === undefined
      ? undefined
      : makeGroup(parent, `tsyringe-background-test-${process.pid}`, (made) => {
          if (parent.endsWith('/cpu')) {
            writeFileSync(`${made}/cpu.cfs_period_us`, '100000');
            writeFileSync(`${made}/cpu.cfs_quota_us`, String(quota));
          } else writeFileSync(`${made}/cpu.max`, `${quota} 100000`);
        });
  return dir === undefined ? undefined : { dir, remove: () => removeWhenEmpty(dir) };
}

/** A cgroup with a memory limit of `mb` MB and no swap (v1 or v2), made where this machine lets us; `undefined` where not. */
function memoryGroup(mb: number): { dir: string; remove(): void } | undefined {
  const parent = parentWith('memory', 'memory.limit_in_bytes');
  const bytes = String(mb * 2 ** 20);
  const dir =
    parent === undefined
      ? undefined
      : makeGroup(parent, `tsyringe-background-memory-${process.pid}`, (made) => {
          const [limit, swap] = parent.endsWith('/memory') ? ['memory.limit_in_bytes', 'memory.memsw.limit_in_bytes'] : ['memory.max', 'memory.swap.max'];
          writeFileSync(`${made}/${limit}`, bytes);
          // Without swap accounting there is no such file (and then a machine without swap is needed).
          if (existsSync(`${made}/${swap}`)) writeFileSync(`${made}/${swap}`, parent.endsWith('/memory') ? bytes : '0');
        });
  return dir === undefined ? undefined : { dir, remove: () => removeWhenEmpty(dir) };
}

const stop: (() => void)[] = [];
afterEach(() => {
  for (const done of stop.splice(0)) done();
});

/**
 * Runs `command`, killed at the end of the test if still running: its exit code and output. With
 * `ready`, once its output says "ready" that is called, then a line is written to its stdin.
 */
function run(command: string, args: readonly string[], ready?: () => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  stop.push(() => child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  let told = ready === undefined;
  if (told) child.stdin.end();
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (told || !stdout.includes('ready\n')) return;
    told = true;
    ready!();
    child.stdin.end('go\n');
  });
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

  // Made for its tests only (a run that filters them out runs no afterAll() to remove it).
  const quotas = canMake(() => quotaGroup(0.5));
  let group: ReturnType<typeof quotaGroup>;
  beforeAll(() => void (group = quotas ? quotaGroup(0.5) : undefined));
  afterAll(() => group?.remove());
  it.skipIf(!quotas)('under a CPU quota of half a CPU, on a machine of more: one thread', async () => {
    const exit = await run('sh', ['-c', `echo $$ > ${group!.dir}/cgroup.procs && exec "${process.execPath}" "${fixture}"`]);
    expect(exit.code, exit.stderr).toBe(0);
    expect(JSON.parse(exit.stdout)).toEqual({ cores: 1, threads: 1 });
  }, 30_000);
});

describe('worker tasks in a process whose cgroup limits the threads it may start', () => {
  const pidsFixture = fileURLToPath(new URL('fixtures/pool-pids.mjs', import.meta.url));
  const limits = canMake(pidsGroup);
  let group: ReturnType<typeof pidsGroup>;
  beforeAll(() => void (group = limits ? pidsGroup() : undefined));
  afterAll(() => group?.remove());
  /** Runs the fixture in the group, its limit set by `limit` (from the group's count) once it is ready. */
  const burst = async (limit: (current: number) => number, ...args: string[]): Promise<{ ended: string[]; ok: number; threads: number; logged: string[] }> => {
    group!.setMax(1_000_000);
    const exit = await run('sh', ['-c', `echo $$ > ${group!.dir}/cgroup.procs && exec "${process.execPath}" "${pidsFixture}" ${args.join(' ')}`], () => group!.setMax(limit(group!.current())));
    expect(exit.code, exit.stderr).toBe(0);
    return JSON.parse(exit.stdout.slice(exit.stdout.indexOf('\n') + 1)) as never;
  };

  it.skipIf(!limits)('known as the pool starts (room for 6 more): it starts 2 threads of its 16, says why, and every task runs', async () => {
    const result = await burst((current) => current + 6);
    expect(result).toMatchObject({ ended: ['ok'], ok: 24 });
    expect(result.threads).toBeLessThanOrEqual(2);
    expect(result.logged).toEqual([
      'warn: the worker pool keeps to 2 thread(s), not maxThreads 16: this process may start only so many more threads (its cgroup\'s pids.max, less the threads and processes it counts already)',
    ]);
  }, 60_000);

  it.skipIf(!limits)('met when a thread is refused (no room left once the pool has its threads): it keeps to those, and every task runs', async () => {
    const result = await burst((current) => current, 'warm');
    expect(result).toMatchObject({ ended: ['ok'], ok: 24 });
    expect(result.logged).toHaveLength(1);
    expect(result.logged[0]).toMatch(/^warn: the worker pool keeps to \d+ thread\(s\), not maxThreads 16: the system refused a new worker thread \(EAGAIN: a cgroup's pids limit, ulimit -u, or memory\)$/);
  }, 60_000);

  it.skipIf(!limits)('met when a task that outlasts its timeout has its thread terminated (Piscina starts another at once, refused): the task times out, the process lives, and every task after runs', async () => {
    const result = await burst((current) => current, 'abort');
    expect(result).toMatchObject({ ended: ['ok'], ok: 24, timeouts: ['ERR_TASK_TIMEOUT', 'ERR_TASK_TIMEOUT'] });
    expect(result.logged.filter((line) => line.startsWith('warn: the worker pool keeps to'))).toHaveLength(1);
    expect(result.logged.filter((line) => !line.startsWith('warn: the worker pool keeps to'))).toEqual([expect.stringMatching(/timed out/), expect.stringMatching(/timed out/)]);
  }, 60_000);
});

describe('worker tasks in a process whose cgroup limits its memory', () => {
  const memoryFixture = fileURLToPath(new URL('fixtures/pool-memory.mjs', import.meta.url));
  // No swap: a limit then ends in the OOM killer, not in swapping.
  const noSwap = /^SwapTotal:\s+0 kB$/m.test(readFileSync('/proc/meminfo', 'utf8'));
  const limits = noSwap && canMake(() => memoryGroup(256));
  let group: ReturnType<typeof memoryGroup>;
  beforeAll(() => void (group = limits ? memoryGroup(256) : undefined));
  afterAll(() => group?.remove());

  it.skipIf(!limits)('40 waiting tasks whose threads hold 6 MB each on the default maxThreads (40) in 256 MB: the pool starts only the threads the memory left holds, and every task runs (the kernel killed the whole process before)', async () => {
    const exit = await run('sh', ['-c', `echo $$ > ${group!.dir}/cgroup.procs && exec "${process.execPath}" "${memoryFixture}" 6 40`]);
    expect(exit.code, exit.stderr).toBe(0);
    const result = JSON.parse(exit.stdout) as { ended: string[]; ok: number; threads: number; logged: string[] };
    expect(result).toMatchObject({ ended: ['ok'], ok: 40 });
    expect(result.threads).toBeLessThan(40);
    // Said once, when the window would have widened and the memory held it back (a machine whose
    // CPUs other tests keep busy may never want it wider: then there is nothing to say).
    expect(result.logged.length).toBeLessThanOrEqual(1);
    for (const line of result.logged) expect(line).toMatch(/^warn: the worker pool runs no more than \d+ task\(s\) at once for now, not maxThreads 40: the memory left to this process \(\d+ MB, under its cgroup's limit or the machine's\) holds no more: a thread of this pool takes up to \d+ MB, counted twice for threads still growing, and one more thread's worth is kept free; the other tasks wait$/);
  }, 60_000);
});
