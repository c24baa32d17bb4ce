/**
 * Task ids: the one place they are handed out in this process. A handle's id is a string, so
 * that it means the same thing in logs, HTTP routes and a durable backend (whose job ids are
 * strings too); here it is the decimal form of the task's number in this process's sequence
 * (`"1"`, `"2"`, …), tasks and periodic schedules alike. A task keeps its number and makes the
 * string when it is first read: most ids are never read, and making each one costs more than
 * the rest of `add()` put together.
 */
let last = 0;

/** The next number of this process's task sequence. */
export function nextTaskNumber(): number {
  return ++last;
}

/** The id of the task numbered `n`. */
export function taskIdOf(n: number): string {
  return String(n);
}
