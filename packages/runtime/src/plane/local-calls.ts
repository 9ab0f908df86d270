import type { Codec } from '../codec/codec';
import { TroupeError, type WireError } from '../errors';
import type { TransportMessage } from '../transport/transport';
import { H } from '../wire/protocol';

/**
 * In-process calls: a unary call whose target instance lives in the
 * caller's own runtime goes straight into that instance's mailbox instead of
 * over the transport (embedded runtimes always; on NATS whenever the router
 * picked an instance of this process). Everything the bus path does is kept
 * — the mailbox bound and OVERLOADED, concurrency, the deadline and TIMEOUT,
 * cancel, errors with their codes and data, the payload limit, metrics,
 * request id, metadata and trace context — only the transport is skipped.
 * Copy semantics are kept too: the handler gets a copy of the request and
 * the caller a copy of the reply, made as msgpack would ({@link copyValue}),
 * unless the endpoint declares its values immutable (`@endpoint({ immutable:
 * true })`, as Orleans' `[Immutable]`): then both pass by reference, only
 * measured ({@link sizeValue}). What differs is written in docs/design-departures.md.
 */

/** An instance endpoint reachable in-process: one mailbox. */
export interface LocalTarget {
  /** Offers the request to the mailbox (answers through `req`, possibly synchronously). */
  dispatch(req: LocalRequest): void;
  /** The caller cancelled (or its deadline passed upstream): aborts the handler if it is running. */
  cancel(req: LocalRequest, code: 'TIMEOUT' | 'CANCELLED'): void;
  /** The caller asked the handler to stop: it finishes within `graceMs` or is killed. */
  stop(req: LocalRequest, graceMs: number): void;
  /** The endpoint declares its requests and replies immutable (`@endpoint({ immutable: true })`): both pass by reference ({@link sizeValue}). */
  readonly immutable: boolean;
  /** The in-process targets it is listed in: its own runtime's (a transport shared by two runtimes delivers to both's). */
  readonly listedIn: LocalTargets;
}

/** Who gets the answer of a {@link LocalRequest}: the caller's unary call. */
export interface LocalSink {
  waiting(req: LocalRequest): boolean;
  /** Takes the reply; returns the clock reading (`now()`) the caller's meter took, NaN when none. */
  localReply(req: LocalRequest, value: unknown): number;
  localError(req: LocalRequest, err: WireError): void;
}

/**
 * The in-process mailbox subjects of one runtime: `{ns}.{comp}.{ep}.{id}` →
 * the instance endpoint. An instance is listed from the moment it serves
 * until just before its mailbox subscription goes (so a call to it then sees
 * "no responders" on the bus, as any caller would). Held by the plane.
 *
 * A listed endpoint is the target its mailbox subscription delivers to. On a
 * transport that indexes its own subscriptions by subject (the memory
 * network: `Transport.targetOf`) they are looked up there and only counted
 * here: 100,000 idle embedded instances hold no second hash-table entry each
 * (≈ 37 B). Otherwise (NATS) they are kept in a map by subject.
 */
export class LocalTargets {
  private readonly targets: Map<string, LocalTarget> | undefined;
  /** Listed now, when {@link targets} is the transport's. */
  private listed = 0;

  /**
   * `enabled` false (runtime option `localCalls: false`): every call goes over the transport.
   * `targetOf`: the transport's own lookup of what its subscription to a literal subject delivers to.
   */
  constructor(
    readonly enabled: boolean,
    private readonly targetOf?: (subject: string) => object | undefined,
  ) {
    this.targets = targetOf === undefined ? new Map() : undefined;
  }

  get(subject: string): LocalTarget | undefined {
    if (this.targets !== undefined) return this.targets.size === 0 ? undefined : this.targets.get(subject);
    // Listed targets are the only mailbox subscriptions of this connection that deliver to an object with `dispatch`.
    if (this.listed === 0) return undefined;
    const t = (this.targetOf as (subject: string) => object | undefined)(subject);
    return t !== undefined && typeof (t as Partial<LocalTarget>).dispatch === 'function' && (t as LocalTarget).listedIn === this
      ? (t as LocalTarget)
      : undefined;
  }

  /** Lists `target` under `subject`: call once its mailbox subscription (to `target`) is made. */
  add(subject: string, target: LocalTarget): void {
    if (!this.enabled) return;
    if (this.targets !== undefined) this.targets.set(subject, target);
    else this.listed++;
  }

  /** Unlists `target`: call just before its mailbox subscription goes (a second call for it is a no-op). */
  delete(subject: string, target: LocalTarget): void {
    if (this.targets !== undefined) {
      if (this.targets.get(subject) === target) this.targets.delete(subject);
    } else if (this.enabled && this.listed > 0 && this.get(subject) === target) this.listed--;
  }

  /**
   * Dispatches `req` to `target` in the event loop's check phase
   * (`setImmediate`), as the memory network delivers: the caller's `call()`
   * has returned first, a chain of in-process calls does not grow the stack,
   * and a caller that awaits calls in a loop still lets timers (deadlines)
   * and I/O run — a microtask would starve them. One immediate drains every
   * request scheduled meanwhile. A request whose call settled meanwhile
   * (cancelled, timed out) is dropped.
   */
  schedule(target: LocalTarget, req: LocalRequest): void {
    this.pending.push(target, req);
    if (this.pending.length === 2) setImmediate(this.drain);
  }

  private pending: Array<LocalTarget | LocalRequest> = [];

  private readonly drain = (): void => {
    const batch = this.pending;
    this.pending = [];
    // A request that finished synchronously hands the next one the clock reading its caller took as it ended, as the
    // next one's start (nothing but this loop runs in between): one clock read fewer per request on each side.
    let at = Number.NaN;
    for (let i = 0; i < batch.length; i += 2) {
      const req = batch[i + 1] as LocalRequest;
      if (!req.live) continue;
      req.at = at;
      (batch[i] as LocalTarget).dispatch(req);
      at = req.endedAt;
    }
  };

  /** Instance endpoints listed now (leak tests). */
  get size(): number {
    return this.targets !== undefined ? this.targets.size : this.listed;
  }
}

/**
 * One attempt of an in-process unary call: what reaches the mailbox. It reads
 * like the message the bus would deliver (`header()` gives the budget, request
 * id, trace context and metadata the call carries), so the instance handles
 * both through one path; `request` is already the handler's own copy.
 */
export class LocalRequest implements TransportMessage {
  /** Set by the instance when the handler got `request` (a later attempt then needs a fresh copy). */
  started = false;
  /** A `now()` reading made just before this request was dispatched (the drain's), NaN when none: its start time. */
  at = Number.NaN;
  /** The `now()` reading its caller's meter took as it received the reply, NaN when none. */
  endedAt = Number.NaN;
  // What a bus message has and an in-process request never does: on the prototype, not three slots per call.
  get reply(): undefined {
    return undefined;
  }
  get data(): Uint8Array {
    return EMPTY;
  }
  get noResponders(): false {
    return false;
  }

  /** The mailbox subject. */
  readonly subject: string;
  /** The handler's copy of the request. */
  readonly request: unknown;
  /** The request's encoded size (msgpack), for byte counters. */
  readonly size: number;
  /** The budget its header carries (ms, at least 1). */
  readonly budget: number;
  /** The caller's deadline (epoch ms): the handler's, when it runs as it arrives. */
  readonly deadline: number;
  private readonly headers: Record<string, string>;
  /** The headers carry the budget alone (a plain call): {@link header} answers without a keyed lookup. */
  private readonly plain: boolean;

  constructor(
    private readonly sink: LocalSink,
    copied: Copied,
    to: { readonly subject: string; readonly headers: Record<string, string>; readonly plain: boolean; readonly budget: number; readonly deadline: number },
  ) {
    this.subject = to.subject;
    this.request = copied.value;
    this.size = copied.size;
    this.headers = to.headers;
    this.plain = to.plain;
    this.budget = to.budget;
    this.deadline = to.deadline;
  }

  header(name: string): string | undefined {
    // The instance asks for several names per request: one keyed load site seeing them all goes megamorphic.
    if (this.plain) return name === H.TIMEOUT ? this.headers[H.TIMEOUT] : undefined;
    return this.headers[name];
  }

  /** Whether the call still waits for this attempt (a settled call's request is not dispatched). */
  get live(): boolean {
    return this.sink.waiting(this);
  }

  /** The request id the bus would name it by: the propagated one, else a fresh one. */
  get requestId(): string | undefined {
    return this.headers[H.ID];
  }

  /** The handler's value, already copied ({@link copyValue}). */
  answer(value: unknown): void {
    this.endedAt = this.sink.localReply(this, value);
  }

  /** An error, as the bus would carry it ({@link localWireError}). */
  fail(err: WireError): void {
    this.sink.localError(this, err);
  }
}

const EMPTY = new Uint8Array(0);

/** A copied value and the size msgpack would encode it to. */
export interface Copied {
  readonly value: unknown;
  readonly size: number;
}

/**
 * A copy of `value` as the codec would deliver it, and its exact msgpack size
 * — without encoding. Plain data (plain objects, arrays, strings, numbers,
 * booleans, null, `Uint8Array`, `Date`, bigint) is copied directly, with the
 * codec's rules: `undefined` map values are dropped, `undefined` elsewhere
 * becomes `null`, `-0` becomes `0`, binary arrives as a `Uint8Array`.
 * Anything else (class instances, `Map`, a `__proto__` key, deep nesting,
 * functions) takes the codec's own round trip, so it behaves (and fails)
 * exactly as over the bus. Throws the codec's `BAD_REQUEST` for what it
 * cannot carry.
 *
 * @example
 * copyValue(codec, { a: 1, b: undefined }); // { value: { a: 1 }, size: 3 }
 */
export function copyValue(codec: Codec, value: unknown): Copied {
  size = 0;
  try {
    const v = copy(value, 0);
    return { value: v, size };
  } catch (err) {
    if (err !== NOT_PLAIN) throw err;
  }
  const bytes = codec.encode(value);
  return { value: codec.decode(bytes), size: bytes.length };
}

/**
 * `value` itself and the size msgpack would encode it to, for an endpoint
 * that declares its values immutable: nothing is copied. Plain data is
 * measured by a walk that allocates nothing; anything else is encoded once
 * for its size, so what the codec cannot carry fails with the codec's own
 * error, as over the bus.
 *
 * @example
 * sizeValue(codec, { a: 1 }); // { value: <the same object>, size: 4 }
 */
export function sizeValue(codec: Codec, value: unknown): Copied {
  size = 0;
  try {
    measure(value, 0);
    return { value, size };
  } catch (err) {
    if (err !== NOT_PLAIN) throw err;
  }
  return { value, size: codec.encode(value).length };
}

/** {@link copy} without the copy: adds `v`'s msgpack size to {@link size}. */
function measure(v: unknown, depth: number): void {
  switch (typeof v) {
    case 'string':
      size += strSize(v);
      return;
    case 'number':
      size += Number.isSafeInteger(v) ? intSize(v) : 9;
      return;
    case 'boolean':
    case 'undefined':
      size += 1;
      return;
    case 'object':
      if (v === null) size += 1;
      else if (depth >= PLAIN_DEPTH) throw NOT_PLAIN;
      else measureObject(v, depth + 1);
      return;
    default:
      throw NOT_PLAIN;
  }
}

function measureObject(v: object, depth: number): void {
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto === Array.prototype) {
    const a = v as unknown[];
    const n = a.length;
    size += n < 16 ? 1 : n < 0x10000 ? 3 : 5;
    // Numbers and strings inline, in two walks as in copyArray (one element kind each).
    if (typeof a[0] === 'number') measureNumbers(a, depth);
    else measureElements(a, depth);
    return;
  }
  if (proto === Object.prototype || proto === null) {
    const o = v as Record<string, unknown>;
    const known = knownShape(o);
    if (known !== undefined && known.measure(o, depth)) return;
    const keys = Object.keys(o);
    const shape = known !== undefined || keys.length === 0 ? undefined : shapeOf(keys);
    if (shape !== undefined && shape.measure(o, depth)) return;
    let n = 0;
    for (const k of keys) {
      const x = o[k];
      if (x === undefined) continue;
      if (k === '__proto__') throw NOT_PLAIN;
      size += strSize(k);
      measure(x, depth);
      n++;
    }
    size += n < 16 ? 1 : n < 0x10000 ? 3 : 5;
    return;
  }
  if (v instanceof Uint8Array && (proto === Uint8Array.prototype || proto === Buffer.prototype)) {
    const n = v.byteLength;
    size += n + (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);
    return;
  }
  if (proto === Date.prototype && Number.isFinite((v as Date).getTime())) {
    size += dateSize((v as Date).getTime());
    return;
  }
  throw NOT_PLAIN;
}

function measureNumbers(a: unknown[], depth: number): void {
  let sz = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    if (typeof x === 'number') sz += numSize(x);
    else measure(x, depth);
  }
  size += sz;
}

function measureElements(a: unknown[], depth: number): void {
  let sz = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    if (typeof x === 'string') sz += strSize(x);
    else measure(x, depth);
  }
  size += sz;
}

/** Thrown inside the walk: this value is not plain data, use the codec. */
const NOT_PLAIN = Symbol('not plain');
/** Deeper than this takes the codec path (it enforces the real depth limit, 100 by default). */
const PLAIN_DEPTH = 32;
/** The size of the value walked now (the walk is synchronous and not re-entrant). */
let size = 0;

function copy(v: unknown, depth: number): unknown {
  switch (typeof v) {
    case 'string':
      size += strSize(v);
      return v;
    case 'number':
      if (Number.isSafeInteger(v)) {
        size += intSize(v);
        return v === 0 ? 0 : v; // -0 is encoded as the integer 0
      }
      size += 9;
      return v;
    case 'boolean':
      size += 1;
      return v;
    case 'undefined':
      size += 1; // nil
      return null;
    case 'object':
      if (v === null) {
        size += 1;
        return null;
      }
      if (depth >= PLAIN_DEPTH) throw NOT_PLAIN;
      return copyObject(v, depth + 1);
    default:
      // bigint, function, symbol: the codec decides (bigint has an extension, the rest fail there)
      throw NOT_PLAIN;
  }
}

function copyObject(v: object, depth: number): unknown {
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto === Array.prototype) return copyArray(v as unknown[], depth);
  if (proto === Object.prototype || proto === null) {
    const o = v as Record<string, unknown>;
    const known = knownShape(o);
    if (known !== undefined) {
      const out = known.copy(o, depth);
      if (out !== MISSING) return out;
    }
    const keys = Object.keys(o);
    const shape = known !== undefined || keys.length === 0 ? undefined : shapeOf(keys);
    if (shape !== undefined) {
      const out = shape.copy(o, depth);
      if (out !== MISSING) return out;
    }
    return copyKeys(o, keys, depth);
  }
  if (v instanceof Uint8Array && (proto === Uint8Array.prototype || proto === Buffer.prototype)) {
    const n = v.byteLength;
    size += n + (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);
    return new Uint8Array(v);
  }
  if (proto === Date.prototype) {
    const ms = (v as Date).getTime();
    if (!Number.isFinite(ms)) throw NOT_PLAIN;
    size += dateSize(ms);
    return new Date(ms);
  }
  throw NOT_PLAIN;
}

/**
 * An array: `slice()` keeps the source's elements kind (a fresh `new Array(n)`
 * filled element by element walks V8 through kind transitions), then only
 * what must change is stored — nested objects (copied), and `undefined` or
 * `-0`, which msgpack carries as `null` and `0`.
 */
function copyArray(a: unknown[], depth: number): unknown[] {
  const n = a.length;
  size += n < 16 ? 1 : n < 0x10000 ? 3 : 5;
  // Two walks, each with its own type feedback: arrays of numbers (often unboxed doubles) and the rest. One walk seeing
  // both element kinds reads every element polymorphically, boxing doubles — 4× slower on a two-element array.
  return typeof a[0] === 'number' ? copyNumbers(a.slice(), depth) : copyElements(a.slice(), depth);
}

function copyNumbers(out: unknown[], depth: number): unknown[] {
  let sz = 0;
  for (let i = 0; i < out.length; i++) {
    const x = out[i];
    if (typeof x === 'number') {
      sz += numSize(x);
      if (x === 0) out[i] = 0; // -0 too, which becomes 0
    } else {
      const c = copy(x, depth);
      if (c !== x) out[i] = c;
    }
  }
  size += sz;
  return out;
}

function copyElements(out: unknown[], depth: number): unknown[] {
  let sz = 0;
  for (let i = 0; i < out.length; i++) {
    const x = out[i];
    // Strings inline (most elements): no call into the general walk.
    if (typeof x === 'string') sz += strSize(x);
    else {
      const c = copy(x, depth);
      if (c !== x || x === 0) out[i] = c; // x === 0 holds for -0 too, which becomes 0
    }
  }
  size += sz;
  return out;
}

/** The general object walk: drops `undefined` values, as the codec does (`ignoreUndefined`). */
function copyKeys(o: Record<string, unknown>, keys: string[], depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const k of keys) {
    const x = o[k];
    if (x === undefined) continue;
    if (k === '__proto__') throw NOT_PLAIN;
    size += strSize(k);
    out[k] = copy(x, depth);
    n++;
  }
  size += n < 16 ? 1 : n < 0x10000 ? 3 : 5;
  return out;
}

/**
 * One object shape (its own keys, in order) and a copier compiled for it: a
 * function that reads each key once and returns a new object literal, so the
 * copy is born with its final hidden class. Building the copy key by key
 * through a megamorphic keyed store instead costs a map transition and a
 * property-array growth per key — most of the in-process call's copy time in
 * profiles (issue #13). The copier returns {@link MISSING} when a value is
 * `undefined` (the codec drops that key; {@link copyKeys} does it).
 */
interface Shape {
  readonly keys: readonly string[];
  readonly copy: (o: Record<string, unknown>, depth: number) => unknown;
  /** {@link measure}s each value (and the keys and map header); false (nothing added) when one is `undefined`. */
  readonly measure: (o: Record<string, unknown>, depth: number) => boolean;
  /** The next shape with the same first key. */
  next: Shape | undefined;
}

const MISSING = Symbol('a value is undefined');
/** Compiled shapes by first key. Bounded: past {@link MAX_SHAPES} new shapes take the general walk. */
const shapes = new Map<string, Shape>();
let shapeCount = 0;
/** Enough for the message types of an application; a program that makes keys up (ids as keys) stops compiling here. */
const MAX_SHAPES = 512;
/** Wider objects take the general walk (a copier's source and parameters grow with its keys). */
const MAX_SHAPE_KEYS = 64;

function shapeOf(keys: string[]): Shape | undefined {
  const first = keys[0] as string;
  let s = shapes.get(first);
  for (; s !== undefined; s = s.next) if (sameKeys(s.keys, keys)) return s;
  if (shapeCount >= MAX_SHAPES || keys.length > MAX_SHAPE_KEYS || keys.includes('__proto__')) return undefined;
  try {
    s = compileShape(keys);
  } catch {
    // Code generation is off (`node --disallow-code-generation-from-strings`): every object takes the general walk.
    shapeCount = MAX_SHAPES;
    return undefined;
  }
  shapeCount++;
  s.next = shapes.get(first);
  shapes.set(first, s);
  lastFirst = undefined; // the chain's head changed
  return s;
}

/**
 * The compiled shape whose keys `o` has, found without `Object.keys` (an array per object: a tenth of what an
 * in-process call allocates): `for…in` reads V8's enum cache of the object's map. It also lists inherited enumerable
 * keys, so an object with any (a polluted prototype) matches no shape here and takes {@link shapeOf} with its own keys.
 */
function knownShape(o: Record<string, unknown>): Shape | undefined {
  // One walk: the first key picks the newest shape with that first key and the rest are compared against it as they
  // come (reading the first key alone, then walking again to compare, was half of this function's time; issue #13).
  // Only a mismatch walks again, over the older shapes with the same first key.
  let s: Shape | undefined;
  let keys: readonly string[] = NO_KEYS;
  let i = 0;
  for (const k in o) {
    if (i === 0) {
      // The last first key looked up, checked before the map (keys from for…in are internalized: a pointer compare).
      s = k === lastFirst ? lastFirstShape : shapes.get(k);
      if (s === undefined) return undefined;
      lastFirst = k;
      lastFirstShape = s;
      keys = s.keys;
    } else if (i === keys.length || k !== keys[i]) return olderShape(o, s);
    i++;
  }
  return i === keys.length ? s : olderShape(o, s);
}

const NO_KEYS: readonly string[] = [];
/** {@link knownShape}'s last hit by first key: the newest shape with the first key `lastFirst` (see {@link shapeOf}). */
let lastFirst: string | undefined;
let lastFirstShape: Shape | undefined;

/** {@link knownShape}'s slow path: the shapes after `s` with the same first key, each compared by a walk of its own. */
function olderShape(o: Record<string, unknown>, s: Shape | undefined): Shape | undefined {
  for (s = s?.next; s !== undefined; s = s.next) if (hasKeys(o, s.keys)) return s;
  return undefined;
}

function hasKeys(o: Record<string, unknown>, keys: readonly string[]): boolean {
  const n = keys.length;
  let i = 0;
  for (const k in o) {
    if (i === n || k !== keys[i]) return false;
    i++;
  }
  return i === n;
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function compileShape(keys: string[]): Shape {
  let keysSize = 0;
  for (const k of keys) keysSize += strSize(k);
  const n = keys.length;
  keysSize += n < 16 ? 1 : n < 0x10000 ? 3 : 5;
  // Keys enter the source only as JSON string literals (JSON.stringify escapes them); `__proto__` never gets here.
  const names = keys.map((k) => JSON.stringify(k));
  const reads = (decl: string): string => names.map((k, i) => `${decl} v${i} = o[${k}];`).join(' ');
  const anyUndefined = names.map((_, i) => `v${i} === undefined`).join(' || ');
  // Strings, numbers and booleans are sized inline, each field at its own site (so each site sees one type), into a
  // local sum added once; only objects go through the general walk (which adds to the module's size itself).
  // Each string field remembers its last short string and that string's size (`l`/`z`, in the compiled closure): a
  // field whose value repeats — an enum-like field, or a reply carrying the request's strings back, whose copy the
  // request's copy just sized — skips the ASCII scan, a third of a copy's time (issue #13). Only strings the scan
  // would size (< 32 units) are kept, so what a shape retains is bounded by its field count. A field whose values
  // keep changing stops remembering (`m`, misses since the last hit): storing a fresh string into the long-lived
  // closure is an old-to-new write, dearer than the scan it saves; it tries again every CACHE_RETRY values.
  const inline = (i: number, num: string, other: string): string =>
    `if (typeof v${i} === 'string') { if (m${i} < ${CACHE_MISSES} && v${i} === l${i}) { s += z${i}; m${i} = 0; } else { const t = S(v${i}); s += t; ` +
    `if (++m${i} <= ${CACHE_MISSES}) { if (v${i}.length < ${ASCII_SCAN_MAX}) { l${i} = v${i}; z${i} = t; } } else if (m${i} >= ${CACHE_RETRY}) m${i} = 0; } } ` +
    `else if (typeof v${i} === 'number') { s += N(v${i}); ${num}} ` +
    `else if (typeof v${i} !== 'boolean') ${other}`;
  // -0 is encoded as the integer 0; booleans are 1 byte, counted with the keys below.
  const copies = names.map((_, i) => inline(i, `if (v${i} === 0) v${i} = 0; `, `v${i} = c(v${i}, d); else s += 1;`)).join(' ');
  const fields = names.map((k, i) => `${k}: v${i}`).join(', ');
  const cache = names.map((_, i) => `let l${i} = null, z${i} = 0, m${i} = 0;`).join(' ');
  const source = `${cache} return (o, d) => { ${reads('let')} if (${anyUndefined}) return m; let s = ${keysSize}; ${copies} z(s); return { ${fields} }; };`;
  const measures = names.map((_, i) => inline(i, '', `c(v${i}, d); else s += 1;`)).join(' ');
  const measureSource = `${cache} return (o, d) => { ${reads('const')} if (${anyUndefined}) return false; let s = ${keysSize}; ${measures} z(s); return true; };`;
  // A copier and a measurer per shape, compiled once: their source is built from JSON-escaped keys and numbers only.
  const makeCopy = new Function('c', 'm', 'S', 'N', 'z', source) as (c: typeof copy, m: typeof MISSING, ...h: Helpers) => Shape['copy'];
  const makeMeasure = new Function('c', 'S', 'N', 'z', measureSource) as (c: typeof measure, ...h: Helpers) => Shape['measure'];
  return { keys, copy: makeCopy(copy, MISSING, strSize, numSize, addSize), measure: makeMeasure(measure, strSize, numSize, addSize), next: undefined };
}

/** What a compiled shape calls: a string's size, a number's size, and the add to the module's {@link size}. */
type Helpers = [typeof strSize, typeof numSize, typeof addSize];

function addSize(n: number): void {
  size += n;
}

/** A number's msgpack size: an integer format when it is a safe integer, else a float64. */
function numSize(v: number): number {
  return Number.isSafeInteger(v) ? intSize(v) : 9;
}

/** A compiled shape's string field stops remembering its last string after this many misses in a row (see compileShape)… */
const CACHE_MISSES = 4;
/** …and tries again after this many values. */
const CACHE_RETRY = 64;

/** Shorter strings are sized by a scan for non-ASCII units; longer ones by `Buffer.byteLength` (a native call). */
const ASCII_SCAN_MAX = 32;

function strSize(s: string): number {
  const n = s.length < ASCII_SCAN_MAX && isAscii(s) ? s.length : Buffer.byteLength(s, 'utf8');
  return n + (n < 32 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** msgpack's integer formats: fixint, 8, 16, 32 or 64 bits. */
function intSize(v: number): number {
  if (v >= 0) return v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : v < 0x100000000 ? 5 : 9;
  return v >= -0x20 ? 1 : v >= -0x80 ? 2 : v >= -0x8000 ? 3 : v >= -0x80000000 ? 5 : 9;
}

/** msgpack's timestamp extension: 32, 64 or 96 bits of payload behind its ext header. */
function dateSize(ms: number): number {
  const sec = Math.floor(ms / 1000);
  const nsec = (ms - sec * 1000) * 1e6;
  if (sec >= 0 && sec < 0x400000000) return nsec === 0 && sec < 0x100000000 ? 6 : 10;
  return 15;
}

/**
 * The error as the bus carries it: `err.toJSON()` (with `stack` in dev
 * mode), copied through {@link copyValue}; data the codec cannot carry, or
 * an error body past the payload limit, is dropped as `sendError` drops it
 * on the bus.
 */
export function localWireError(codec: Codec, wire: WireError, maxBody: number): WireError {
  let c: Copied;
  try {
    c = copyValue(codec, wire);
  } catch {
    c = copyValue(codec, { code: wire.code, message: wire.message });
  }
  if (c.size > maxBody) c = copyValue(codec, { code: wire.code, message: wire.message.slice(0, 1024) });
  return c.value as WireError;
}

/** The size the transport would count for `headers` (NATS/1.0 block). */
export function headerBlockSize(headers: Record<string, string>): number {
  let n = 12;
  for (const k in headers) n += k.length + Buffer.byteLength(headers[k] as string) + 4;
  return n;
}

/** `PAYLOAD_TOO_LARGE` as the transport raises it for a message that does not fit. */
export function tooLarge(size: number, max: number, what: string): TroupeError {
  return new TroupeError('PAYLOAD_TOO_LARGE', `message of ${size} bytes to ${what} exceeds the max payload of ${max} bytes`, { data: { size, max } });
}
