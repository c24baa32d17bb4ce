/**
 * What this process may use of the machine, which is not always the machine: a process pinned
 * to some CPUs (`taskset`, a container's cpuset) may run only on those; one under a CPU quota (a
 * container's `--cpus`, a Kubernetes CPU limit) may use only so much CPU time, however many CPUs
 * it sees; one under a pids limit (a container's `--pids-limit`, a pod's pid limit, systemd's
 * `TasksMax`) may start only so many threads. `os.availableParallelism()` knows the first on
 * Linux; Node 20 knows neither of the others, so they are read here from the process's cgroup
 * (v1 or v2, mounted at `/sys/fs/cgroup`).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';

/** What this process may use of the machine's CPUs. */
export interface UsableCpus {
  /** Whole CPUs it may keep busy: those of its affinity, at most its quota rounded up; at least 1. */
  readonly cores: number;
  /** CPU time it may use per unit of wall time: its CPUs, or its quota when that is less (1.5 for `--cpus=1.5`). */
  readonly capacity: number;
  /** The ids of the CPUs of its affinity, when the system tells them (Linux); otherwise any CPU. */
  readonly ids: readonly number[] | undefined;
}

/** Reads a file's text, or `undefined` when it cannot be read. */
export type ReadText = (path: string) => string | undefined;

const readText: ReadText = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

let usable: UsableCpus | undefined;

/** What this process may use of the machine's CPUs, read once (a process's affinity and quota rarely change). */
export function usableCpus(): UsableCpus {
  return (usable ??= cpusOf(readText, availableParallelism()));
}

/** {@link usableCpus} from the files `read` gives, and the affinity's count Node reports. */
export function cpusOf(read: ReadText, parallelism: number): UsableCpus {
  const status = read('/proc/self/status');
  const listed = status === undefined ? undefined : /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1];
  const ids = listed === undefined ? undefined : parseCpuList(listed);
  const affinity = ids !== undefined && ids.length > 0 ? ids.length : Math.max(1, parallelism);
  const quota = cgroupQuota(read);
  const capacity = quota === undefined ? affinity : Math.min(affinity, quota);
  return { cores: Math.max(1, Math.ceil(capacity)), capacity, ids: ids !== undefined && ids.length > 0 ? ids : undefined };
}

/** The ids of a Linux CPU list (`0-3,8,10-11`), in order; empty when it is not one. */
export function parseCpuList(list: string): number[] {
  const ids: number[] = [];
  for (const part of list.trim().split(',')) {
    const range = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (range === null) return [];
    const first = Number(range[1]);
    const last = range[2] === undefined ? first : Number(range[2]);
    for (let id = first; id <= last; id++) ids.push(id);
  }
  return ids;
}

const cgroupRoot = '/sys/fs/cgroup';

/**
 * The process's CPU quota in CPUs (1.5 for 150 ms a 100 ms period), or `undefined` when it has
 * none: the smallest its cgroups set ({@link limitDirs}).
 */
export function cgroupQuota(read: ReadText): number | undefined {
  const quotas = limitDirs(read, 'cpu', ['cpu,cpuacct', 'cpuacct,cpu', 'cpu'], 'cpu.cfs_period_us').map(({ v2, dir }) =>
    // v2: "max 100000", or "150000 100000"; v1: the two numbers in files of their own.
    quotaOf(v2 ? read(`${dir}/cpu.max`)?.trim().split(/\s+/) : [read(`${dir}/cpu.cfs_quota_us`)?.trim(), read(`${dir}/cpu.cfs_period_us`)?.trim()]),
  );
  return least(quotas);
}

/**
 * How many more threads (or processes) this process may start as its cgroups' pids limits say:
 * the least room, `pids.max` less `pids.current`, of its cgroups ({@link limitDirs});
 * `undefined` when none is limited. The room is shared with every process of the cgroup, and
 * counts threads already started.
 */
export function threadRoom(read: ReadText = readText): number | undefined {
  const rooms = limitDirs(read, 'pids', ['pids'], 'pids.max').map(({ dir }) => {
    // "max" (no limit), an unreadable file or the root cgroup, which has neither: no room to take.
    const room = Number(read(`${dir}/pids.max`)?.trim()) - Number(read(`${dir}/pids.current`)?.trim());
    return Number.isFinite(room) ? Math.max(0, room) : undefined;
  });
  return least(rooms);
}

/**
 * The cgroups whose `controller` limits may bound this process: its own and those above it, in
 * the v2 hierarchy at `/sys/fs/cgroup` and in the v1 one mounted at the first of `v1Mounts` (under
 * `/sys/fs/cgroup`) that has one with `v1File`. A container without a cgroup namespace sees its
 * cgroup's path on the host, which does not exist under its own mount (there, its cgroup is the
 * root): paths that do not exist are passed over on the way up.
 */
function limitDirs(read: ReadText, controller: string, v1Mounts: readonly string[], v1File: string): { v2: boolean; dir: string }[] {
  const dirs: { v2: boolean; dir: string }[] = [];
  for (const line of read('/proc/self/cgroup')?.split('\n') ?? []) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (controllers === undefined || path === undefined) continue;
    if (controllers === '') dirs.push(...upFrom(cgroupRoot, path).map((dir) => ({ v2: true, dir })));
    else if (controllers.split(',').includes(controller)) {
      for (const mount of v1Mounts) {
        const found = upFrom(`${cgroupRoot}/${mount}`, path).filter((dir) => read(`${dir}/${v1File}`) !== undefined);
        if (found.length === 0) continue;
        dirs.push(...found.map((dir) => ({ v2: false, dir })));
        break;
      }
    }
  }
  return dirs;
}

/** The least of the `values` given, or `undefined` when there is none. */
function least(values: readonly (number | undefined)[]): number | undefined {
  const kept = values.filter((value): value is number => value !== undefined);
  return kept.length === 0 ? undefined : Math.min(...kept);
}

/** A quota and its period as the files give them, in CPUs; `undefined` for none ("max", -1). */
function quotaOf([quota, period]: readonly (string | undefined)[] = []): number | undefined {
  const us = Number(quota);
  const per = Number(period);
  return quota !== undefined && quota !== 'max' && us > 0 && per > 0 ? us / per : undefined;
}

/** `root` + `path`, then each of its parents up to `root`. */
function upFrom(root: string, path: string): string[] {
  const parts = path.split('/').filter((part) => part !== '' && part !== '.' && part !== '..');
  return parts.map((_, i) => `${root}/${parts.slice(0, parts.length - i).join('/')}`).concat(root);
}

/** Idle and total CPU time so far, summed over some CPUs, in one unit (the ratio is what counts). */
export interface CpuTime {
  readonly idle: number;
  readonly total: number;
}

/**
 * Idle and total CPU time so far of the CPUs `ids` names (every CPU when `undefined`): on Linux
 * from `/proc/stat`, whose lines name each CPU's id (`os.cpus()` lists them by position only);
 * time waiting for I/O counts as idle.
 */
export function cpuTime(ids: readonly number[] | undefined, read: ReadText = readText): CpuTime {
  const stat = ids === undefined ? undefined : read('/proc/stat');
  if (stat !== undefined && ids !== undefined) return statTime(stat, ids);
  let idle = 0;
  let total = 0;
  for (const { times } of cpus()) {
    idle += times.idle;
    total += times.user + times.nice + times.sys + times.idle + times.irq;
  }
  return { idle, total };
}

/** {@link cpuTime} from the text of `/proc/stat`. */
export function statTime(stat: string, ids: readonly number[]): CpuTime {
  const wanted = new Set(ids);
  let idle = 0;
  let total = 0;
  for (const line of stat.split('\n')) {
    const match = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (match === null || !wanted.has(Number(match[1]))) continue;
    // user nice system idle iowait irq softirq steal (guest time is inside user's already)
    const [user = 0, nice = 0, system = 0, idleTicks = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = match[2]!.trim().split(/\s+/).map(Number);
    idle += idleTicks + iowait;
    total += user + nice + system + idleTicks + iowait + irq + softirq + steal;
  }
  return { idle, total };
}

/**
 * The memory this process may still take, in bytes: what is left under its cgroup's memory limit
 * (a container's `--memory`, a pod's limit), or the machine's available memory without one, as
 * Node reads them (`process.availableMemory()`, Node 20.13+); `undefined` where Node cannot say.
 * Over a cgroup's limit the kernel does not refuse memory: it kills the whole process.
 */
export function memoryLeft(): number | undefined {
  const read = (process as { availableMemory?: () => number }).availableMemory;
  if (typeof read !== 'function') return undefined;
  const left = read.call(process);
  return Number.isFinite(left) && left > 0 ? left : undefined;
}
