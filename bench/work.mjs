/**
 * The busy work every benchmark task does: a fixed number of xorshift steps, so that a task
 * costs the same CPU wherever it runs. (A loop that spins until some time has passed would
 * flatter oversubscribed pools: a thread preempted mid-spin still sees its time pass.)
 */
export function spin(iterations) {
  let x = 0x9e3779b9 | 0;
  for (let i = 0; i < iterations; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
  }
  return x >>> 0;
}
