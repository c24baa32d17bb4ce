/**
 * Helpers shared by the benchmarks (pool.mjs, run.mjs): running one measurement in a fresh child
 * process on a machine that may be shared, and the statistics and printing of the results.
 *
 * A measurement is a child process that prints one JSON line. The parent first waits until other
 * processes leave the CPU nearly idle; a measurement during which they used more than
 * `foreignLimit` of it (read from /proc/stat, less the child's own CPU time) is taken again, up to
 * `attempts` times, and the runner remembers which stayed disturbed and how loaded the machine was.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { spin } from './work.mjs';

export const cores = availableParallelism();

// --- The child side ---------------------------------------------------------------------------

/**
 * When this process was started as a measurement (`--child <json spec>`), runs `measure(spec)`,
 * prints its result as one JSON line with the process's CPU time (`cpuMs`, every thread, those
 * that ended included, plus the `descendantsCpuMs` the result reports for processes it started,
 * such as bench/web.mjs's server) and exits; returns false otherwise.
 */
export async function childMain(measure) {
  const childAt = process.argv.indexOf('--child');
  if (childAt === -1) return false;
  const result = await measure(JSON.parse(process.argv[childAt + 1]));
  const { user, system } = process.cpuUsage();
  result.cpuMs = (user + system) / 1000 + (result.descendantsCpuMs ?? 0);
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
  return true;
}

// --- The parent side --------------------------------------------------------------------------

/**
 * A runner of measurements: `run(spec, options)` runs `script --child spec` in a fresh Node
 * process and returns what it printed, retried while other processes disturb it.
 *
 * @param script path of the script that measures (its `childMain`)
 * @param options.foreignLimit share of the machine's CPU used by other processes above which a measurement is redone
 * @param options.attempts measurements of one spec at most
 * @param options.quietWaitMs how long to wait at most for a quiet machine before each measurement
 *   (a number of ms, or a function returning it, read before each measurement)
 * @param options.label how a spec is named in the report of disturbed measurements
 */
export function childRunner(script, { foreignLimit = 0.1, attempts = 3, quietWaitMs = 120_000, timeoutMs = 120_000, label = defaultLabel } = {}) {
  /** Measurements still disturbed after every attempt, for the report. */
  const disturbed = [];
  /** Every measurement: its label, attempts, the foreign CPU share kept, the time waited for quiet. */
  const log = [];

  /**
   * @param nodeArgs flags for the child's Node (e.g. `--expose-gc`)
   * @param neighbour code of a process to run alongside the measurement (it is killed after); its
   *   share of the machine's CPU is reported as `neighbourShare` and not counted as disturbance
   * @param prefix a command the child runs under (e.g. `['taskset', '-c', '0']`)
   */
  async function run(spec, { nodeArgs = [], neighbour, prefix = [] } = {}) {
    let best;
    let waitedMs = 0;
    let attempt = 1;
    for (; attempt <= attempts; attempt++) {
      waitedMs += await quiet(typeof quietWaitMs === 'function' ? quietWaitMs() : quietWaitMs);
      const other = neighbour === undefined ? undefined : spawn(process.execPath, ['-e', neighbour], { stdio: 'ignore' });
      if (other !== undefined) await sleep(200);
      const before = machineCpu();
      const otherBefore = processCpu(other?.pid);
      const t0 = performance.now();
      let result;
      try {
        result = await spawnChild(script, spec, nodeArgs, timeoutMs, prefix);
      } finally {
        if (other !== undefined) other.kill('SIGKILL');
      }
      const wallMs = performance.now() - t0;
      const after = machineCpu();
      const otherAfter = processCpu(other?.pid);
      if (before === undefined || after === undefined) {
        log.push({ label: label(spec), attempts: attempt, foreign: undefined, waitedMs });
        return result;
      }
      const total = after.total - before.total;
      const neighbourShare = other === undefined ? 0 : (otherAfter - otherBefore) / total;
      if (other !== undefined) result.neighbourShare = neighbourShare;
      const machineShare = (after.busy - before.busy) / total;
      // A measurement that judges its own disturbance (bench/web.mjs redoes its disturbed runs)
      // reports the share it kept as `judgedForeign`.
      result.foreign = result.judgedForeign ?? Math.max(0, machineShare - neighbourShare - result.cpuMs / (wallMs * cores));
      if (best === undefined || result.foreign < best.foreign) best = result;
      if (result.foreign <= foreignLimit) break;
      if (attempt < attempts) note(`other processes used ${(result.foreign * 100).toFixed(0)}% of the CPU meanwhile: measuring again`);
    }
    attempt = Math.min(attempt, attempts);
    log.push({ label: label(spec), attempts: attempt, foreign: best.foreign, waitedMs });
    if (best.foreign > foreignLimit) disturbed.push(`${label(spec)}: ${(best.foreign * 100).toFixed(0)}% foreign CPU`);
    return best;
  }

  return { run, disturbed, log, foreignLimit };
}

function defaultLabel(spec) {
  return `${spec.scenario} ${spec.config ?? spec.variant}`;
}

function spawnChild(script, spec, nodeArgs, timeoutMs, prefix) {
  return new Promise((resolve, reject) => {
    const argv = [process.execPath, ...nodeArgs, script, '--child', JSON.stringify(spec)];
    const proc = spawn(prefix[0] ?? argv.shift(), [...prefix.slice(1), ...argv], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proc.stdout.on('data', (chunk) => (out += chunk));
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`child ${JSON.stringify(spec)} exited with ${code ?? signal}`));
        return;
      }
      resolve(JSON.parse(out.trim().split('\n').at(-1)));
    });
  });
}

/**
 * Waits (up to `maxWaitMs`) until other processes leave the CPU nearly idle (≤ 10% busy over
 * 300 ms); returns how long it waited.
 */
export async function quiet(maxWaitMs = 120_000) {
  const since = performance.now();
  for (;;) {
    const before = machineCpu();
    if (before === undefined) return 0;
    await sleep(300);
    const after = machineCpu();
    const busy = (after.busy - before.busy) / (after.total - before.total);
    if (busy <= 0.1) return performance.now() - since - 300;
    if (performance.now() - since > maxWaitMs) {
      note(`the machine stayed ${(busy * 100).toFixed(0)}% busy for ${Math.round(maxWaitMs / 1000)} s: measuring anyway`);
      return performance.now() - since;
    }
    if (performance.now() - since < 400) note(`the machine is ${(busy * 100).toFixed(0)}% busy with other work: waiting for it to calm down`);
  }
}

/** Busy and total CPU time of the whole machine so far, in jiffies (Linux); undefined elsewhere. */
export function machineCpu() {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = fields;
    const busy = user + nice + system + irq + softirq + steal;
    return { busy, total: busy + idle + iowait };
  } catch {
    return undefined;
  }
}

/** CPU time of a process so far, in jiffies (Linux), or 0. */
export function processCpu(pid) {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime
  } catch {
    return 0;
  }
}

/** Spin iterations per millisecond on this thread, once the function is optimized. */
export function calibrate() {
  let sink = 0;
  for (let i = 0; i < 20; i++) sink ^= spin(1e6);
  const rates = [];
  for (let i = 0; i < 7; i++) {
    const n = 2e7;
    const t0 = performance.now();
    sink ^= spin(n);
    rates.push(n / (performance.now() - t0));
  }
  if (sink === 0.5) console.log(sink); // keeps the work observable
  return median(rates);
}

/** The list rotated left by `by`: the order of a round's configurations. */
export function rotate(list, by) {
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/** A progress line, on stderr. */
export function note(message) {
  process.stderr.write(`  … ${message}\n`);
}

// --- Statistics and printing --------------------------------------------------------------------

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The value below which a share `q` of the sorted values lie (nearest rank). */
export function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
}

/** `median (min–max)`, or just the value when there is one. */
export function summary(values, digits) {
  const f = (v) => v.toFixed(digits);
  if (values.length === 1) return f(values[0]);
  return `${f(median(values))} (${f(Math.min(...values))}–${f(Math.max(...values))})`;
}

export function table(head, rows) {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `  ${cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ')}`;
  console.log(line(head));
  for (const row of rows) console.log(line(row));
}
