import { types } from 'node:util';
import { MessagePort } from 'node:worker_threads';
import { describe, messageOf } from '../model/checks.js';
import { maxNesting } from './wire.js';

/** What a worker task may receive as a transferable: memory that moves instead of being copied. */
export type Transferable = ArrayBuffer | ArrayBufferView | MessagePort;

const marked = new WeakSet<object>();

/**
 * Marks an argument of a worker task to be moved to the worker instead of copied: cheap for
 * large binary data, but the caller's buffer is detached (emptied) once `add()` returns.
 *
 * ```ts
 * bg.add(resizeImage, transfer(pixels), 800);   // pixels.byteLength === 0 afterwards
 * ```
 *
 * @returns the same value, so it can be written in place of the argument.
 * @throws TypeError when `value` is none of those, or is (or views) a `SharedArrayBuffer`, which
 * both threads share without moving it: pass it without `transfer()`.
 */
export function transfer<T extends Transferable>(value: T): T {
  if (types.isSharedArrayBuffer(value) || (ArrayBuffer.isView(value) && types.isSharedArrayBuffer(value.buffer))) {
    const what = types.isSharedArrayBuffer(value) ? 'a SharedArrayBuffer' : `${describe(value)} over a SharedArrayBuffer`;
    throw new TypeError(`transfer(value): value is ${what}, which is shared, not transferred: pass it without transfer()`);
  }
  if (!(value instanceof ArrayBuffer || ArrayBuffer.isView(value) || isMessagePort(value))) {
    throw new TypeError(`transfer(value): value must be an ArrayBuffer, a typed array, a DataView or a MessagePort, got ${describe(value)}`);
  }
  marked.add(value);
  return value;
}

/** Objects whose prototype survives structured cloning as it is. */
const cloneable: ReadonlySet<unknown> = new Set([
  Object.prototype,
  null,
  Array.prototype,
  Date.prototype,
  RegExp.prototype,
  Map.prototype,
  Set.prototype,
  ArrayBuffer.prototype,
  DataView.prototype,
  Error.prototype,
  EvalError.prototype,
  RangeError.prototype,
  ReferenceError.prototype,
  SyntaxError.prototype,
  TypeError.prototype,
  URIError.prototype,
  Boolean.prototype,
  Number.prototype,
  String.prototype,
  BigInt.prototype,
  SharedArrayBuffer.prototype,
  Blob.prototype,
]);

/**
 * Host objects among those: structured clone copies what they hold itself (a `Blob`'s bytes,
 * behind internal slots that Node keeps on own symbol-keyed properties), so there is nothing in
 * them to walk, and their own symbols are not data that would be left out.
 */
const hostObjects: ReadonlySet<unknown> = new Set([Blob.prototype]);

/**
 * Checks that a worker task's arguments survive structured cloning as they are, and collects
 * what was marked with {@link transfer}. Throws a `TypeError` naming the task, the argument's
 * position and path, and what is wrong, so that a bad argument fails at `add()` rather than as
 * a late `DataCloneError` (or, worse, as a class instance that silently lost its prototype).
 *
 * @returns the transfer list (empty when nothing was marked)
 */
export function checkCloneable(taskName: string, args: readonly unknown[]): Transferable[] {
  const transferList: Transferable[] = [];
  args.forEach((arg, i) => {
    walk(
      arg,
      `args[${i}]`,
      transferList,
      (path, problem) => {
        throw new TypeError(`bg.add("${taskName}"): argument #${i} (${path}) ${problem}`);
      },
      true,
    );
  });
  return transferList;
}

/**
 * Checks, in the worker, that a task's result survives the trip back; throws a `TypeError`
 * naming the task and the path otherwise (Piscina alone reports an empty object).
 */
export function checkResult(taskName: string, result: unknown): void {
  walk(result, 'result', [], (path, problem) => {
    throw new TypeError(`worker task "${taskName}" returned a value that cannot be sent back: ${path} ${problem}`);
  });
}

/**
 * Where a value is in what is walked: the root's name, or a step from its parent. Made only for
 * values that are looked into, and read as text only when something is wrong: a path string per
 * element of a long list cost more than the walk itself.
 */
type Path = string | Step;

interface Step {
  readonly up: Path;
  readonly key: string | number;
  /** How the key reads after its parent: `.key`, `[key]`, or as it is (`.<map key>`, `.get(x)`). */
  readonly how: 'field' | 'index' | 'raw';
}

function pathText(path: Path): string {
  const steps: Step[] = [];
  let at = path;
  while (typeof at !== 'string') {
    steps.push(at);
    at = at.up;
  }
  let text = at;
  for (let i = steps.length - 1; i >= 0; i--) {
    const { key, how } = steps[i]!;
    text += how === 'field' ? `.${key}` : how === 'index' ? `[${key}]` : String(key);
  }
  return text;
}

/** Whether a value is looked into: objects, and what fails at once (functions, symbols); other primitives cross as they are. */
function looked(value: unknown): boolean {
  const type = typeof value;
  return type === 'object' ? value !== null : type === 'function' || type === 'symbol';
}

/**
 * Lists this long or longer are walked by index: their elements, not their named properties
 * (`Object.keys()` and `Object.getOwnPropertyNames()` of a list make a string of every index: a
 * tenth of a second, and a third, for a million), so a named or non-enumerable property of such a
 * list is not looked for, as a long typed array's own fields are not.
 */
const longList = 4096;

/**
 * Walks a value as structured clone would, calling `fail` at the first thing it would refuse or
 * change. `strict` (arguments, checked at `add()`) refuses too what it would change that a result
 * is let through with: an error of a class of the user's own, a non-enumerable property.
 */
function walk(root: unknown, rootPath: string, transferList: Transferable[], fail: (path: string, problem: string) => never, strict = false): void {
  const seen = new Set<object>();
  const failAt: (path: Path, problem: string) => never = (path, problem) => fail(pathText(path), problem);
  // Cloning reads every field, getters included: one that throws fails the clone too.
  const read = (object: object, key: string | number, up: Path, how: Step['how']): unknown => {
    try {
      return (object as Record<string | number, unknown>)[key];
    } catch (error) {
      return failAt({ up, key, how }, `cannot be read: its getter threw (${messageOf(error)})`);
    }
  };
  /** Visits `object[key]` when it is to be looked into. */
  const child = (object: object, key: string | number, up: Path, how: Step['how'], depth: number): void => {
    const value = read(object, key, up, how);
    if (looked(value)) visit(value, { up, key, how }, depth);
  };
  const visit = (value: unknown, path: Path, depth: number): void => {
    const type = typeof value;
    if (type === 'function' || type === 'symbol') {
      const what = type === 'function' ? `a function (${(value as () => void).name || 'anonymous'})` : `a symbol (${String(value)})`;
      failAt(path, `is ${what}, which cannot cross to another thread`);
    }
    if (type !== 'object' || value === null || seen.has(value as object)) return;
    const object = value as object;
    if (depth > maxNesting) {
      fail(`${shortened(pathText(path))} (level ${depth})`, `is nested more than ${maxNesting} levels deep, past what crosses to another thread safely; flatten it (a list of rows with parent ids, say)`);
    }
    seen.add(object);
    // Structured clone refuses a Proxy, whatever it wraps (and looking into one runs its traps).
    if (types.isProxy(object)) failAt(path, 'is a Proxy, which cannot cross to another thread; pass the plain data it wraps');
    if (marked.has(object)) {
      const moved = ArrayBuffer.isView(object) ? (object.buffer as ArrayBuffer) : (object as Transferable);
      if (moved instanceof ArrayBuffer && isDetached(moved)) {
        failAt(path, 'was marked with transfer() but its buffer was already transferred (it is detached); pass a buffer that still holds its data');
      }
      transferList.push(moved);
      return;
    }
    if (ArrayBuffer.isView(object)) {
      if (strict) {
        const field = types.isTypedArray(object) ? typedArrayField(object) : Object.getOwnPropertyNames(object)[0];
        if (field !== undefined) failAt(path, `is ${describe(object)} with a property of its own (${field}), which structured clone leaves out`);
      }
      return;
    }
    if (isMessagePort(object)) failAt(path, 'is a MessagePort, which can only be moved: mark it with transfer()');
    const prototype: unknown = Object.getPrototypeOf(object);
    const list = Array.isArray(object);
    // Plain data made in another realm (node:vm) is cloned as it is: known by its shape.
    const plain =
      prototype === Object.prototype ||
      prototype === Array.prototype ||
      prototype === null ||
      (list ? isBuiltInPrototype(prototype, 'Array') : isBuiltInPrototype(prototype, 'Object') && Object.getPrototypeOf(prototype) === null);
    const error = !plain && types.isNativeError(object);
    // So are the other built-ins of another realm (a Map made by node:vm arrives as this realm's Map).
    if (!plain && !error && !cloneable.has(prototype) && !isBuiltInPrototype(prototype, builtInName(object))) {
      failAt(path, `is ${describe(object)}: it would arrive as a plain object without its class and methods; use plain data instead`);
    }
    // Structured clone makes an error of the built-in class its name says (Error for any other).
    if (strict && error && !cloneable.has(prototype)) {
      const name = builtInConstructorName(prototype);
      if (name === undefined) {
        failAt(path, `is ${describe(object)}: it would arrive as a plain Error without its class and methods (registerErrorClass() rebuilds errors a worker throws, not arguments); pass it as plain data ({ name, message })`);
      }
      if (!clonedErrors.has(name)) {
        const fields = Object.getOwnPropertyNames(object).filter((key) => !errorFields.has(key));
        const own = fields.length > 0 ? ` without its ${fields.join(', ')}` : '';
        failAt(path, `is ${describe(object)}: structured clone does not keep that class, and it would arrive as a plain Error${own}; pass it as plain data ({ name, message${fields.map((key) => `, ${key}`).join('')} })`);
      }
    }
    if (hostObjects.has(prototype)) return;
    const depthBelow = depth + 1;
    if (plain && list && (object as unknown[]).length >= longList) {
      const length = (object as unknown[]).length;
      for (let i = 0; i < length; i++) child(object, i, path, 'index', depthBelow);
      return;
    }
    let keys: string[] | undefined;
    if (plain) {
      keys = Object.keys(object);
      for (const key of keys) child(object, key, path, list ? 'index' : 'field', depthBelow);
    } else if (error) {
      // Structured clone keeps an error's name, message, stack and cause, not its own fields (nor an own name).
      const field = strict ? Object.getOwnPropertyNames(object).find((key) => !errorFields.has(key)) : Object.keys(object).find((key) => key !== 'cause');
      if (field !== undefined) failAt(path, `is an error with its own field "${field}", which structured clone leaves out; pass it as plain data ({ message, ${field} })`);
      if ('cause' in object) child(object, 'cause', path, 'field', depthBelow);
    } else {
      if (strict) {
        // A Map, Set, Date, RegExp, buffer or boxed primitive arrives with what it holds, not its own fields.
        const field = Object.getOwnPropertyNames(object).find((key) => !isSlotKey(object, key));
        if (field !== undefined) failAt(path, `is ${describe(object)} with a property of its own (${field}), which structured clone leaves out`);
      }
      if (types.isMap(object)) {
        for (const [key, entry] of object) {
          if (looked(key)) visit(key, { up: path, key: '.<map key>', how: 'raw' }, depthBelow);
          if (looked(entry)) visit(entry, { up: path, key: `.get(${String(key)})`, how: 'raw' }, depthBelow);
        }
      } else if (types.isSet(object)) {
        for (const entry of object) if (looked(entry)) visit(entry, { up: path, key: '.<set entry>', how: 'raw' }, depthBelow);
      } else {
        for (const key of Object.keys(object)) child(object, key, path, 'field', depthBelow);
      }
    }
    const symbol = Object.getOwnPropertySymbols(object).find((key) => Object.prototype.propertyIsEnumerable.call(object, key));
    if (symbol !== undefined) failAt(path, `has a symbol-keyed property (${String(symbol)}), which structured clone leaves out`);
    if (strict && plain) {
      const names = Object.getOwnPropertyNames(object);
      // Every own name is enumerable when there are as many as enumerable keys (a list's length aside).
      if (names.length !== keys!.length + (list ? 1 : 0)) {
        const hidden = names.find((key) => !Object.prototype.propertyIsEnumerable.call(object, key) && !(key === 'length' && list));
        if (hidden !== undefined) failAt(path, `has a non-enumerable property (${hidden}), which structured clone leaves out`);
      }
    }
  };
  visit(root, rootPath, 1);
}

/** A path too long to print whole (one nested a thousand levels deep): its start, up to a step. */
function shortened(path: string): string {
  if (path.length <= 80) return path;
  const cut = Math.max(path.lastIndexOf('.', 60), path.lastIndexOf('[', 60));
  return `${path.slice(0, cut > 0 ? cut : 60)}…`;
}

/**
 * Whether a prototype is some realm's prototype of the built-in class `name` (`Object`, `Array`,
 * `Map`…): one made by `node:vm` is not this realm's. Known by its own `constructor`, the engine's
 * function of that name (a class of the user's that extends `Map` is not).
 */
function isBuiltInPrototype(prototype: unknown, name: string | undefined): boolean {
  return name !== undefined && builtInConstructorName(prototype) === name;
}

/** The name of the built-in class whose prototype this is, of any realm; undefined for any other. */
function builtInConstructorName(prototype: unknown): string | undefined {
  if (typeof prototype !== 'object' || prototype === null) return undefined;
  const constructor: unknown = Object.getOwnPropertyDescriptor(prototype, 'constructor')?.value;
  return typeof constructor === 'function' && isBuiltIn(constructor) ? constructor.name : undefined;
}

/**
 * The built-in class whose internal slots an object has, among those structured clone copies as
 * they are (of any realm); undefined for any other object.
 */
function builtInName(object: object): string | undefined {
  if (types.isMap(object)) return 'Map';
  if (types.isSet(object)) return 'Set';
  if (types.isDate(object)) return 'Date';
  if (types.isRegExp(object)) return 'RegExp';
  if (types.isArrayBuffer(object)) return 'ArrayBuffer';
  if (types.isSharedArrayBuffer(object)) return 'SharedArrayBuffer';
  if (types.isNumberObject(object)) return 'Number';
  if (types.isStringObject(object)) return 'String';
  if (types.isBooleanObject(object)) return 'Boolean';
  if (types.isBigIntObject(object)) return 'BigInt';
  return undefined;
}

/** The classes of errors structured clone keeps (by the error's name); any other arrives as an `Error`. */
const clonedErrors: ReadonlySet<string> = new Set(['Error', 'EvalError', 'RangeError', 'ReferenceError', 'SyntaxError', 'TypeError', 'URIError']);

/** An error's own properties that structured clone keeps. */
const errorFields: ReadonlySet<string> = new Set(['message', 'stack', 'cause']);

/**
 * Own properties of a built-in that are its contents or state, not fields of the user's: a boxed
 * string's characters and length, a RegExp's lastIndex (which arrives as 0).
 */
function isSlotKey(object: object, key: string): boolean {
  if (types.isStringObject(object)) return key === 'length' || (/^(?:0|[1-9]\d*)$/.test(key) && Number(key) < (object as string).length);
  return key === 'lastIndex' && types.isRegExp(object);
}

/** Typed arrays up to this long are looked into for fields of their own. */
const shortTypedArray = 256;

/**
 * The first property of a typed array's own that is not one of its indices, or undefined; not
 * looked for in a typed array longer than {@link shortTypedArray}: its keys list every index too
 * (a second for a million of them), a cost every add() of it would pay.
 */
function typedArrayField(view: NodeJS.TypedArray): string | undefined {
  if (view.length > shortTypedArray) return undefined;
  return Object.getOwnPropertyNames(view).find((key) => !/^(?:0|[1-9]\d*)$/.test(key));
}

/** Whether a function is one of the engine's own (its source is not JavaScript's). */
function isBuiltIn(fn: object): boolean {
  return /\{\s*\[native code\]\s*\}$/.test(Function.prototype.toString.call(fn));
}

/** A transferred ArrayBuffer is detached: even an empty slice of it throws. */
function isDetached(buffer: ArrayBuffer): boolean {
  try {
    buffer.slice(0, 0);
    return false;
  } catch {
    return true;
  }
}

function isMessagePort(value: unknown): value is MessagePort {
  return value instanceof MessagePort;
}

/**
 * Every buffer and port in arguments this library cloned itself: they belong to no caller any
 * more, so they can move to the worker rather than be copied again.
 */
export function collectTransfers(args: readonly unknown[]): Transferable[] {
  const found = new Set<Transferable>();
  const seen = new Set<object>();
  const visit = (value: unknown): void => {
    if (typeof value !== 'object' || value === null || seen.has(value)) return;
    seen.add(value);
    if (value instanceof ArrayBuffer) found.add(value);
    else if (ArrayBuffer.isView(value)) {
      if (value.buffer instanceof ArrayBuffer) found.add(value.buffer);
    } else if (isMessagePort(value)) found.add(value);
    else if (value instanceof Map) {
      for (const [key, entry] of value) {
        visit(key);
        visit(entry);
      }
    } else if (value instanceof Set) for (const entry of value) visit(entry);
    else for (const entry of Object.values(value)) visit(entry);
  };
  args.forEach(visit);
  return [...found];
}
