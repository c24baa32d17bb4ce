/**
 * How the main thread learns that a worker task has reached its thread, without a message per
 * task: shared memory that every thread of the pool sees. Handing a task to Piscina is not
 * starting it (it waits in Piscina's queue, or for a thread that is still starting), and until
 * it starts it is `queued`, not `running`.
 *
 * One 64-bit cell per task in flight. The main thread takes a free cell for each attempt and
 * writes a negative token in it (waiting); the worker, as it starts the task, swaps that token
 * for the time (epoch ms, positive) if, and only if, the cell still holds its token, so a late
 * write from a thread that was being stopped can never mark another task's cell.
 *
 * A second cell per attempt, in the same way, says when the task ended on its thread: the main
 * thread hears of it only once it takes the answer in, which a busy event loop delays (a task
 * that ended within its `timeoutMs` was timed out, and ran again, because the main thread was
 * held when its answer came). So an attempt is judged, and its duration measured, by its thread.
 */

/** One attempt's cell: where its start is marked, once the worker reaches it. */
export interface StartMark {
  /** Its cell, or -1 when none was free (the attempt then counts as started when handed over). */
  readonly slot: number;
  readonly token: number;
  /** Once the attempt is over: when it started (epoch ms), or when it ended if it never started. */
  endedAt: number;
  /** Once the attempt is over: when its thread ended it (epoch ms), 0 if it never did (or never started). */
  finishedAt: number;
}

/** The main thread's side: the cells, which ones are free, and whether an attempt started. */
export class StartMarks {
  /** What every worker thread is given, once. */
  readonly buffer: SharedArrayBuffer;
  /**
   * One flag per cell, set when the attempt of that cell is aborted: a task's synchronous loop
   * reads it through `ctx.signal.aborted` without yielding (the abort's message would only
   * arrive once it yields).
   */
  readonly abortBuffer: SharedArrayBuffer;
  /** The start cells, then as many end cells (an attempt's at `size + slot`). */
  readonly #cells: BigInt64Array;
  readonly #size: number;
  readonly #aborts: Int32Array;
  readonly #free: number[] = [];
  #token = 0;

  constructor(size: number) {
    this.#size = size;
    this.buffer = new SharedArrayBuffer(2 * size * BigInt64Array.BYTES_PER_ELEMENT);
    this.#cells = new BigInt64Array(this.buffer);
    this.abortBuffer = new SharedArrayBuffer(size * Int32Array.BYTES_PER_ELEMENT);
    this.#aborts = new Int32Array(this.abortBuffer);
    for (let slot = size - 1; slot >= 0; slot--) this.#free.push(slot);
  }

  /** A cell for an attempt about to be handed to the pool, marked waiting. */
  take(): StartMark {
    const slot = this.#free.pop();
    if (slot === undefined) return { slot: -1, token: 0, endedAt: Date.now(), finishedAt: 0 };
    const token = ++this.#token;
    Atomics.store(this.#aborts, slot, 0);
    Atomics.store(this.#cells, this.#size + slot, BigInt(-token));
    Atomics.store(this.#cells, slot, BigInt(-token));
    return { slot, token, endedAt: 0, finishedAt: 0 };
  }

  /** When the attempt started on its thread (epoch ms), or 0 while it still waits for one. */
  startedAt(mark: StartMark): number {
    if (mark.endedAt !== 0) return mark.endedAt;
    const value = Atomics.load(this.#cells, mark.slot);
    return value > 0n ? Number(value) : 0;
  }

  /** When the attempt's thread ended it (epoch ms), or 0 while it has not (or never started it). */
  finishedAt(mark: StartMark): number {
    if (mark.endedAt !== 0) return mark.finishedAt;
    const value = Atomics.load(this.#cells, this.#size + mark.slot);
    return value > 0n ? Number(value) : 0;
  }

  /** Marks the attempt aborted, for its task to see at once. */
  abort(mark: StartMark): void {
    if (mark.slot >= 0 && mark.endedAt === 0) Atomics.store(this.#aborts, mark.slot, 1);
  }

  /** Frees the attempt's cell once the pool has answered for it. */
  release(mark: StartMark): void {
    if (mark.endedAt !== 0) return;
    mark.finishedAt = this.finishedAt(mark);
    mark.endedAt = this.startedAt(mark) || Date.now();
    Atomics.store(this.#cells, this.#size + mark.slot, 0n);
    Atomics.store(this.#cells, mark.slot, 0n);
    this.#free.push(mark.slot);
  }
}

/** The worker's side: marks the attempt of `slot` and `token` started now, in `cells` (a view of {@link StartMarks.buffer}). */
export function markStarted(cells: BigInt64Array, slot: number, token: number): void {
  if (slot >= 0) Atomics.compareExchange(cells, slot, BigInt(-token), BigInt(Date.now()));
}

/**
 * The worker's side: marks the attempt of `slot` and `token` ended now, in `cells` (a view of
 * {@link StartMarks.buffer}), before its answer goes.
 */
export function markEnded(cells: BigInt64Array, slot: number, token: number): void {
  if (slot >= 0) Atomics.compareExchange(cells, cells.length / 2 + slot, BigInt(-token), BigInt(Date.now()));
}

/** The worker's side: whether the attempt of `slot` was aborted, in `aborts` (a view of {@link StartMarks.abortBuffer}). */
export function isAborted(aborts: Int32Array, slot: number): boolean {
  return slot >= 0 && Atomics.load(aborts, slot) === 1;
}
