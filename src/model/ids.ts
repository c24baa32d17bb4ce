/**
 * Task ids: the one place they are handed out. An id is a string, so that a handle means the
 * same thing in logs, HTTP routes and a durable backend (whose job ids are strings); in one
 * process they are `"1"`, `"2"`, … in the order tasks (and each run of a periodic task) were
 * added.
 */
let last = 0;

/** A new task id, unique in this process. */
export function nextTaskId(): string {
  return String(++last);
}
