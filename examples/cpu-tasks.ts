/**
 * CPU-bound tasks, run on the worker-thread pool. Each worker thread imports this module to
 * find them, so it defines tasks and nothing else: no server, no side effects.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { threadId } from 'node:worker_threads';
import { TaskContext, workerTask } from 'tsyringe-background/tasks';

/** How avatars are drawn. Each worker thread's container provides it: see worker-setup.ts. */
export class AvatarConfig {
  constructor(
    /** Cells per side of the square pattern. */
    readonly size: number,
    /** Rounds of SHA-256 that stretch the seed: the CPU cost of one avatar. */
    readonly rounds: number,
  ) {}
}

export interface Avatar {
  userId: number;
  /** A left-right symmetric pattern, one string per row (`#` on, `.` off), and its colour. */
  rows: string[];
  color: string;
  /** Time spent computing, in ms, and the worker thread that spent it. */
  ms: number;
  threadId: number;
}

/**
 * An identicon: the same user always gets the same picture, after `rounds` of hashing. It
 * reports its progress through its TaskContext, which worker tasks get too: each report crosses
 * back to the main thread, where the task's handle shows the last one (`handle.progress`).
 */
export const renderAvatar = workerTask(
  import.meta.url,
  { name: 'renderAvatar', inject: [AvatarConfig, TaskContext] },
  (config, ctx, userId: number): Avatar => {
    const started = performance.now();
    const quarter = Math.ceil(config.rounds / 4);
    let digest = createHash('sha256').update(`avatar:${userId}`).digest();
    for (let round = 1; round < config.rounds; round++) {
      digest = createHash('sha256').update(digest).digest();
      if (round % quarter === 0) ctx.progress(round / config.rounds, 'hashing');
    }
    const { size } = config;
    const on = (row: number, col: number): boolean => ((digest[(row * size + col) % 29] ?? 0) & 1) === 1;
    const rows = Array.from({ length: size }, (_, row) =>
      Array.from({ length: size }, (_, col) => (on(row, Math.min(col, size - 1 - col)) ? '#' : '.')).join(''),
    );
    const color = `#${digest.subarray(29).toString('hex')}`; // the last 3 bytes
    ctx.progress(1, 'drawn');
    return { userId, rows, color, ms: performance.now() - started, threadId };
  },
);
