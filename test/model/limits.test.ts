/**
 * What the pool takes for the CPUs and threads this process may use, from the files Linux gives:
 * the affinity (`/proc/self/status`), the cgroup's CPU quota and pids limit (v1 and v2, a
 * container seeing its own cgroup or the host's path of it) and each CPU's times (`/proc/stat`).
 */
import { describe, expect, it } from 'vitest';
import { totalmem } from 'node:os';
import { cgroupQuota, cpusOf, memoryLeft, parseCpuList, statTime, threadRoom, usableCpus, type ReadText } from '../../src/model/limits.js';

/** A file system of the texts given, every other path unreadable. */
const files =
  (texts: Record<string, string>): ReadText =>
  (path) =>
    texts[path];

const status = (list: string): string => `Name:\tnode\nCpus_allowed:\tff\nCpus_allowed_list:\t${list}\nMems_allowed_list:\t0\n`;

describe('parseCpuList', () => {
  it.each([
    ['0', [0]],
    ['0-3', [0, 1, 2, 3]],
    ['0-1,4,6-7\n', [0, 1, 4, 6, 7]],
    ['', []],
    ['0-1,x', []],
  ])('%j', (list, ids) => {
    expect(parseCpuList(list)).toEqual(ids);
  });
});

describe('cgroupQuota', () => {
  it('reads cgroup v2 cpu.max at the process own cgroup, and the smallest of its ancestors', () => {
    const read = files({
      '/proc/self/cgroup': '0::/kubepods/pod1/app\n',
      '/sys/fs/cgroup/kubepods/pod1/app/cpu.max': 'max 100000\n',
      '/sys/fs/cgroup/kubepods/pod1/cpu.max': '150000 100000\n',
      '/sys/fs/cgroup/kubepods/cpu.max': '400000 100000\n',
    });
    expect(cgroupQuota(read)).toBe(1.5);
  });

  it('reads a container own cgroup v2 at the root of its mount (a cgroup namespace: the path is /)', () => {
    expect(cgroupQuota(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '50000 100000\n' }))).toBe(0.5);
  });

  it('reads cgroup v1 cpu.cfs_quota_us, passing over the host path a container without a cgroup namespace sees', () => {
    const read = files({
      '/proc/self/cgroup': '11:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '200000\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupQuota(read)).toBe(2);
  });

  it('reads cgroup v1 mounted as cpu alone', () => {
    const read = files({
      '/proc/self/cgroup': '1:cpu:/job\n2:cpuacct:/job\n',
      '/sys/fs/cgroup/cpu/job/cpu.cfs_quota_us': '25000',
      '/sys/fs/cgroup/cpu/job/cpu.cfs_period_us': '100000',
      '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1',
      '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000',
    });
    expect(cgroupQuota(read)).toBe(0.25);
  });

  it.each([
    ['no cgroup file (not Linux)', {}],
    ['v2 without a limit', { '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'max 100000\n' }],
    ['v1 without a limit', { '/proc/self/cgroup': '3:cpu,cpuacct:/\n', '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n', '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n' }],
    ['a v2 host root, which has no cpu.max', { '/proc/self/cgroup': '0::/user.slice/session-1.scope\n' }],
  ])('is undefined with %s', (_label, texts: Record<string, string>) => {
    expect(cgroupQuota(files(texts))).toBeUndefined();
  });
});

describe('threadRoom', () => {
  it('is the least room (pids.max less pids.current) of the process cgroup v2 and its ancestors', () => {
    const read = files({
      '/proc/self/cgroup': '0::/system.slice/app.service\n',
      '/sys/fs/cgroup/system.slice/app.service/pids.max': '100\n',
      '/sys/fs/cgroup/system.slice/app.service/pids.current': '37\n',
      '/sys/fs/cgroup/system.slice/pids.max': '200\n',
      '/sys/fs/cgroup/system.slice/pids.current': '190\n',
    });
    expect(threadRoom(read)).toBe(10);
  });

  it('reads cgroup v1 pids at its mount, passing over the host path a container without a cgroup namespace sees', () => {
    const read = files({
      '/proc/self/cgroup': '5:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n',
      '/sys/fs/cgroup/pids/pids.max': '64\n',
      '/sys/fs/cgroup/pids/pids.current': '20\n',
    });
    expect(threadRoom(read)).toBe(44);
  });

  it('is 0, not less, when a cgroup is over its limit (lowered below its count)', () => {
    expect(threadRoom(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/pids.max': '10', '/sys/fs/cgroup/pids.current': '12' }))).toBe(0);
  });

  it.each([
    ['no cgroup file (not Linux)', {}],
    ['no limit', { '/proc/self/cgroup': '0::/app\n', '/sys/fs/cgroup/app/pids.max': 'max\n', '/sys/fs/cgroup/app/pids.current': '9\n' }],
    ['a root cgroup, which has no pids files', { '/proc/self/cgroup': '7:pids:/\n' }],
  ])('is undefined with %s', (_label, texts: Record<string, string>) => {
    expect(threadRoom(files(texts))).toBeUndefined();
  });
});

describe('cpusOf', () => {
  it('counts the CPUs of the affinity, whatever Node reports', () => {
    expect(cpusOf(files({ '/proc/self/status': status('2-3') }), 8)).toEqual({ cores: 2, capacity: 2, ids: [2, 3] });
  });

  it('takes the quota when it is less, rounded up to whole cores', () => {
    const read = files({ '/proc/self/status': status('0-15'), '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '150000 100000' });
    expect(cpusOf(read, 16)).toEqual({ cores: 2, capacity: 1.5, ids: Array.from({ length: 16 }, (_, i) => i) });
  });

  it('keeps at least one core under a quota of a fraction of one', () => {
    const read = files({ '/proc/self/status': status('0-3'), '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '10000 100000' });
    expect(cpusOf(read, 4)).toMatchObject({ cores: 1, capacity: 0.1 });
  });

  it('falls back on the count Node reports, and any CPU, where the files are not there', () => {
    expect(cpusOf(files({}), 6)).toEqual({ cores: 6, capacity: 6, ids: undefined });
  });

  it('reads this process: as many cores as Node reports here (no quota on the test machine), or fewer', () => {
    const own = usableCpus();
    expect(own.cores).toBeGreaterThanOrEqual(1);
    expect(own.capacity).toBeLessThanOrEqual(own.cores);
  });
});

describe('statTime', () => {
  const stat = [
    'cpu  400 0 100 1000 20 0 5 0 0 0',
    'cpu0 100 0 50 800 10 0 2 0 0 0',
    'cpu1 300 0 50 200 10 0 3 0 0 0',
    'intr 12345',
  ].join('\n');

  it('sums the CPUs named, I/O wait counted as idle', () => {
    expect(statTime(stat, [0])).toEqual({ idle: 810, total: 962 });
    expect(statTime(stat, [1])).toEqual({ idle: 210, total: 563 });
    expect(statTime(stat, [0, 1])).toEqual({ idle: 1020, total: 1525 });
  });

  it('reads nothing of CPUs the process may not use, nor of the summary line', () => {
    expect(statTime(stat, [5])).toEqual({ idle: 0, total: 0 });
  });
});

describe('memoryLeft()', () => {
  it('reads what Node says is left to the process: a positive byte count no larger than the machine', () => {
    const left = memoryLeft();
    // Node 20.13+ has process.availableMemory(): every Node this project runs on.
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(totalmem());
  });
});
