/** A short, printable form of any value with its type: `-1 (number)`, `"x" (string)`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `${JSON.stringify(value)} (string)`;
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'object') {
    const name = (value as { constructor?: { name?: string } }).constructor?.name;
    return name && name !== 'Object' ? `an instance of ${name}` : 'an object';
  }
  return `${String(value)} (${typeof value})`; // eslint-disable-line @typescript-eslint/no-base-to-string -- only primitives reach here
}
