/**
 * meshfed's schema validator: the config, the federation messages, the policies and the Consul API's answers
 * are checked with it. Schemas are written the way the rest of the code reads them (`z.strictObject({...})`,
 * `.min()`, `.default()`, `.describe()`), every problem of an input is reported at once with its path, and
 * the TypeScript type of what a schema accepts and returns is derived from the schema (`z.output<typeof s>`).
 *
 * Why not a library: a validator package costs every gateway process several MB of idle memory (its code,
 * its sources and the many objects each schema is made of: docs/performance.md, "Idle memory"), and meshfed
 * uses a small, fixed part of what one offers. A schema here is one small object per node, checking is a
 * plain walk of the value, and the config documentation walks the same nodes (cli/config-docs.ts).
 *
 * Rules a caller can rely on:
 * - checks of one node (length, range, pattern) all run, so `.min(1).regex(…)` reports both problems;
 * - a refinement or `superRefine` runs on a value of the right shape (no problem of type below it; failed
 *   length, range or pattern checks do not stop it), and with `always: true` on whatever there is; a
 *   transform runs only on a value that passed everything below it;
 * - `z.strictObject` refuses unknown keys, `z.object` drops them; an array over its `.max()` is refused
 *   without its items being looked at (bounded work for untrusted input);
 * - results are new objects and arrays; `.default()` gives a copy of its value, so freezing a result never
 *   freezes a schema's default.
 */

export type PathItem = string | number;

export type IssueCode =
  | 'invalid_type'
  | 'too_small'
  | 'too_big'
  | 'invalid_format'
  | 'invalid_value'
  | 'unrecognized_keys'
  | 'custom';

export interface Issue {
  code: IssueCode;
  /** where in the input: keys and array indexes from the top */
  path: PathItem[];
  message: string;
  /** for `unrecognized_keys`: the keys that are not part of the object's schema */
  keys?: string[];
  /** for `invalid_type`: the type that was expected */
  expected?: string;
}

/** What `safeParse` reports: every problem found, in input order. */
export class SchemaError extends Error {
  readonly issues: Issue[];
  constructor(issues: Issue[]) {
    super(issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('\n'));
    this.name = 'SchemaError';
    this.issues = issues;
  }
}

export type SafeParseResult<T> = { success: true; data: T } | { success: false; error: SchemaError };

/** A problem a refinement or transform reports; `path` is relative to the value it was given. */
export interface CustomIssue {
  code: 'custom';
  message: string;
  path?: PathItem[];
}

export interface RefinementContext {
  addIssue(issue: CustomIssue): void;
}

/** What a transform returns after it reported a problem (its value is never used). */
export const NEVER = Object.freeze({ never: true }) as never;

/** A check's message: a text, or `{ message }` / `{ error }` (both spellings are accepted). */
export type Message = string | { message?: string; error?: string };

function messageOf(custom: Message | undefined, fallback: string): string {
  if (custom === undefined) return fallback;
  if (typeof custom === 'string') return custom;
  return custom.message ?? custom.error ?? fallback;
}

/**
 * One parse: the issues found so far and the path of the value being checked. A problem of the value's type
 * (wrong type, literal or option; a transform that failed) is fatal: the refinements above it do not run, as
 * they would see a value of another shape. A failed check (length, range, pattern, unknown key, refinement)
 * leaves the shape whole, so the refinements above still run and one parse reports every problem.
 */
class Run {
  readonly issues: Issue[] = [];
  readonly path: PathItem[] = [];
  fatal = 0;

  add(
    code: IssueCode,
    message: string,
    extra?: { keys?: string[]; expected?: string; at?: readonly PathItem[] },
  ): void {
    const path = extra?.at ? [...this.path, ...extra.at] : [...this.path];
    const issue: Issue = { code, path, message };
    if (extra?.keys) issue.keys = extra.keys;
    if (extra?.expected) issue.expected = extra.expected;
    this.issues.push(issue);
    if (code === 'invalid_type' || code === 'invalid_value') this.fatal++;
  }

  context(fatal: boolean): RefinementContext {
    return {
      addIssue: (i) => {
        this.add('custom', i.message, i.path ? { at: i.path } : undefined);
        if (fatal) this.fatal++;
      },
    };
  }
}

/** The type name used in messages: `null`, `array` and `NaN` apart from `typeof`'s. */
function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number' && Number.isNaN(value)) return 'NaN';
  return typeof value;
}

function invalidType(run: Run, expected: string, value: unknown): void {
  run.add('invalid_type', `Invalid input: expected ${expected}, received ${typeName(value)}`, { expected });
}

/** True for an object that is not an array; reports the wrong type otherwise. */
function isObject(value: unknown, run: Run): value is Record<string, unknown> {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return true;
  invalidType(run, 'object', value);
  return false;
}

/** A copy of a default value, so a result that is frozen or changed never touches the schema's own. */
function copyOf<T>(value: T): T {
  return value !== null && typeof value === 'object' ? structuredClone(value) : value;
}

/** Sets `key` on a result object, `__proto__` included (as an own property, never the prototype). */
function setKey(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__')
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  else out[key] = value;
}

export type Kind =
  | 'string'
  | 'number'
  | 'boolean'
  | 'unknown'
  | 'literal'
  | 'enum'
  | 'array'
  | 'object'
  | 'record'
  | 'union'
  | 'discriminated-union'
  | 'optional'
  | 'nullable'
  | 'default'
  | 'prefault'
  | 'refine'
  | 'transform';

export abstract class Schema<O = unknown, I = unknown> {
  /** type-only: what the schema returns */
  declare readonly '~output': O;
  /** type-only: what the schema accepts */
  declare readonly '~input': I;
  abstract readonly kind: Kind;
  /** what the value means, for the config documentation */
  description: string | undefined;
  /** how the value is written (`duration`, `host:port`, …), for the config documentation */
  format: string | undefined;

  /** Checks `value`, adds what is wrong to `run`, returns the result (meaningless when issues were added). */
  abstract check(value: unknown, run: Run): unknown;

  safeParse(value: unknown): SafeParseResult<O> {
    const run = new Run();
    const data = this.check(value, run);
    if (run.issues.length > 0) return { success: false, error: new SchemaError(run.issues) };
    return { success: true, data: data as O };
  }

  parse(value: unknown): O {
    const result = this.safeParse(value);
    if (!result.success) throw result.error;
    return result.data;
  }

  /** A copy of this node with some fields changed (nodes are never changed once made). */
  protected with(patch: object): this {
    return Object.assign(Object.create(Object.getPrototypeOf(this) as object) as this, this, patch);
  }

  describe(description: string): this {
    return this.with({ description });
  }

  /** How the value is written (`duration`, `host:port`), for the config documentation. */
  meta(meta: { format: string }): this {
    return this.with({ format: meta.format });
  }

  optional(): Schema<O | undefined, I | undefined> {
    return new Wrapper('optional', this);
  }

  nullable(): Schema<O | null, I | null> {
    return new Wrapper('nullable', this);
  }

  nullish(): Schema<O | null | undefined, I | null | undefined> {
    return new Wrapper('nullable', new Wrapper('optional', this));
  }

  /** When the value is absent, `value` is the result (a copy of it; not checked). */
  default(value: Exclude<O, undefined>): Schema<Exclude<O, undefined>, I | undefined> {
    return new Wrapper('default', this, value);
  }

  /** When the value is absent, `value` is checked in its place (a default written as the input is). */
  prefault(value: I): Schema<Exclude<O, undefined>, I | undefined> {
    return new Wrapper('prefault', this, value);
  }

  /** `test` must hold for the value (run as the rules at the top of this file say). */
  refine(
    test: (value: O) => unknown,
    options?: Message | { message?: string; path?: PathItem[]; always?: boolean },
  ): Schema<O, I> {
    const opts: { message?: string; error?: string; path?: PathItem[]; always?: boolean } =
      typeof options === 'string' || options === undefined ? { message: options } : options;
    const message = opts.message ?? opts.error ?? 'Invalid input';
    const issue: CustomIssue = opts.path
      ? { code: 'custom', message, path: opts.path }
      : { code: 'custom', message };
    return new Refinement(
      this,
      (value, ctx) => {
        if (!test(value as O)) ctx.addIssue(issue);
      },
      opts.always === true,
    );
  }

  /** `check` reports any number of problems about the value (run as `refine` is). */
  superRefine(check: (value: O, ctx: RefinementContext) => void): Schema<O, I> {
    return new Refinement(this, check as (value: unknown, ctx: RefinementContext) => void, false);
  }

  /** Turns a valid value into another; `fn` may report problems and then return NEVER. */
  transform<R>(fn: (value: O, ctx: RefinementContext) => R): Schema<R, I> {
    return new Transform(this, fn as (value: unknown, ctx: RefinementContext) => unknown);
  }
}

/** A schema's result type. */
export type output<S> = S extends Schema<infer O, unknown> ? O : never;
/** What a schema accepts. */
export type input<S> = S extends Schema<unknown, infer I> ? I : never;

/** optional, nullable, default and prefault: one inner schema and what absence or null means. */
export class Wrapper<O, I> extends Schema<O, I> {
  readonly kind: 'optional' | 'nullable' | 'default' | 'prefault';
  readonly inner: Schema;
  /** the default (output) or prefault (input) value */
  readonly value: unknown;

  constructor(kind: Wrapper<O, I>['kind'], inner: Schema, value?: unknown) {
    super();
    this.kind = kind;
    this.inner = inner;
    this.value = value;
  }

  check(value: unknown, run: Run): unknown {
    switch (this.kind) {
      case 'optional':
        return value === undefined ? undefined : this.inner.check(value, run);
      case 'nullable':
        return value === null ? null : this.inner.check(value, run);
      case 'default':
        return value === undefined ? copyOf(this.value) : this.inner.check(value, run);
      case 'prefault':
        return this.inner.check(value === undefined ? copyOf(this.value) : value, run);
    }
  }
}

export class Refinement<O, I> extends Schema<O, I> {
  readonly kind = 'refine';
  readonly inner: Schema;
  readonly test: (value: unknown, ctx: RefinementContext) => void;
  /** runs even when the value had problems below (it then sees what there is) */
  readonly always: boolean;

  constructor(inner: Schema, test: (value: unknown, ctx: RefinementContext) => void, always: boolean) {
    super();
    this.inner = inner;
    this.test = test;
    this.always = always;
  }

  check(value: unknown, run: Run): unknown {
    const fatal = run.fatal;
    const result = this.inner.check(value, run);
    if (run.fatal === fatal || this.always) this.test(result, run.context(false));
    return result;
  }
}

export class Transform<O, I> extends Schema<O, I> {
  readonly kind = 'transform';
  readonly inner: Schema;
  readonly fn: (value: unknown, ctx: RefinementContext) => unknown;

  constructor(inner: Schema, fn: (value: unknown, ctx: RefinementContext) => unknown) {
    super();
    this.inner = inner;
    this.fn = fn;
  }

  check(value: unknown, run: Run): unknown {
    const before = run.issues.length;
    const result = this.inner.check(value, run);
    if (run.issues.length > before) {
      run.fatal++;
      return result;
    }
    const out = this.fn(result, run.context(true));
    return run.issues.length > before ? undefined : out;
  }
}

interface Bound {
  value: number;
  message: string | undefined;
}

function bound(value: number, message: Message | undefined): Bound {
  return { value, message: message === undefined ? undefined : messageOf(message, '') };
}

interface StringCheck {
  kind: 'regex' | 'startsWith' | 'includes' | 'url';
  test: (s: string) => boolean;
  message: string;
}

export class StringSchema extends Schema<string, string> {
  readonly kind = 'string';
  readonly minLength: Bound | undefined = undefined;
  readonly maxLength: Bound | undefined = undefined;
  readonly checks: readonly StringCheck[] = [];
  readonly trims: boolean = false;
  readonly lowercases: boolean = false;

  check(value: unknown, run: Run): unknown {
    if (typeof value !== 'string') {
      invalidType(run, 'string', value);
      return value;
    }
    let s = value;
    if (this.trims) s = s.trim();
    if (this.lowercases) s = s.toLowerCase();
    const min = this.minLength;
    if (min && s.length < min.value)
      run.add('too_small', min.message ?? `Too small: expected string to have >=${min.value} characters`);
    const max = this.maxLength;
    if (max && s.length > max.value)
      run.add('too_big', max.message ?? `Too big: expected string to have <=${max.value} characters`);
    for (const c of this.checks) if (!c.test(s)) run.add('invalid_format', c.message);
    return s;
  }

  min(length: number, message?: Message): StringSchema {
    return this.with({ minLength: bound(length, message) });
  }

  max(length: number, message?: Message): StringSchema {
    return this.with({ maxLength: bound(length, message) });
  }

  private withCheck(check: StringCheck): StringSchema {
    return this.with({ checks: [...this.checks, check] });
  }

  regex(pattern: RegExp, message?: Message): StringSchema {
    const re = new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ''));
    return this.withCheck({
      kind: 'regex',
      test: (s) => re.test(s),
      message: messageOf(message, `Invalid string: must match pattern ${pattern}`),
    });
  }

  startsWith(prefix: string, message?: Message): StringSchema {
    return this.withCheck({
      kind: 'startsWith',
      test: (s) => s.startsWith(prefix),
      message: messageOf(message, `Invalid string: must start with "${prefix}"`),
    });
  }

  includes(part: string, message?: Message): StringSchema {
    return this.withCheck({
      kind: 'includes',
      test: (s) => s.includes(part),
      message: messageOf(message, `Invalid string: must include "${part}"`),
    });
  }

  /** An absolute URL with a scheme and a host (`new URL` accepts it and it names a host). */
  url(message?: Message): StringSchema {
    return this.withCheck({
      kind: 'url',
      test: (s) => {
        try {
          return new URL(s).hostname !== '';
        } catch {
          return false;
        }
      },
      message: messageOf(message, 'Invalid URL'),
    }).with({ format: this.format ?? 'uri' });
  }

  /** Leading and trailing whitespace is removed before the other checks. */
  trim(): StringSchema {
    return this.with({ trims: true });
  }

  toLowerCase(): StringSchema {
    return this.with({ lowercases: true });
  }
}

export class NumberSchema extends Schema<number, number> {
  readonly kind = 'number';
  readonly integer: boolean = false;
  /** inclusive unless `exclusive` */
  readonly minimum: (Bound & { exclusive: boolean }) | undefined = undefined;
  readonly maximum: Bound | undefined = undefined;

  check(value: unknown, run: Run): unknown {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      invalidType(run, 'number', value);
      return value;
    }
    if (this.integer && !Number.isSafeInteger(value)) {
      run.add('invalid_type', 'Invalid input: expected int, received number', { expected: 'int' });
      return value;
    }
    const min = this.minimum;
    if (min && (min.exclusive ? value <= min.value : value < min.value))
      run.add(
        'too_small',
        min.message ?? `Too small: expected number to be ${min.exclusive ? '>' : '>='}${min.value}`,
      );
    const max = this.maximum;
    if (max && value > max.value)
      run.add('too_big', max.message ?? `Too big: expected number to be <=${max.value}`);
    return value;
  }

  /** a safe integer (exact in a double) */
  int(): NumberSchema {
    return this.with({ integer: true });
  }

  min(value: number, message?: Message): NumberSchema {
    return this.with({ minimum: { ...bound(value, message), exclusive: false } });
  }

  max(value: number, message?: Message): NumberSchema {
    return this.with({ maximum: bound(value, message) });
  }

  positive(message?: Message): NumberSchema {
    return this.with({ minimum: { ...bound(0, message), exclusive: true } });
  }

  nonnegative(message?: Message): NumberSchema {
    return this.min(0, message);
  }
}

class BooleanSchema extends Schema<boolean, boolean> {
  readonly kind = 'boolean';

  check(value: unknown, run: Run): unknown {
    if (typeof value !== 'boolean') invalidType(run, 'boolean', value);
    return value;
  }
}

class UnknownSchema extends Schema<unknown, unknown> {
  readonly kind = 'unknown';

  check(value: unknown): unknown {
    return value;
  }
}

export type Primitive = string | number | boolean;

export class LiteralSchema<T extends Primitive> extends Schema<T, T> {
  readonly kind = 'literal';
  readonly value: T;
  readonly message: string;

  constructor(value: T, message?: Message) {
    super();
    this.value = value;
    this.message = messageOf(message, `Invalid input: expected ${JSON.stringify(value)}`);
  }

  check(value: unknown, run: Run): unknown {
    if (value !== this.value) run.add('invalid_value', this.message);
    return value;
  }
}

export class EnumSchema<T extends string> extends Schema<T, T> {
  readonly kind = 'enum';
  readonly values: readonly T[];
  readonly members: ReadonlySet<unknown>;
  readonly message: string;

  constructor(values: readonly T[], message?: Message) {
    super();
    this.values = values;
    this.members = new Set(values);
    this.message = messageOf(
      message,
      `Invalid option: expected one of ${values.map((v) => JSON.stringify(v)).join('|')}`,
    );
  }

  check(value: unknown, run: Run): unknown {
    if (!this.members.has(value)) run.add('invalid_value', this.message);
    return value;
  }
}

export class ArraySchema<T extends Schema> extends Schema<output<T>[], input<T>[]> {
  readonly kind = 'array';
  readonly item: T;
  readonly minItems: Bound | undefined = undefined;
  readonly maxItems: Bound | undefined = undefined;

  constructor(item: T) {
    super();
    this.item = item;
  }

  check(value: unknown, run: Run): unknown {
    if (!Array.isArray(value)) {
      invalidType(run, 'array', value);
      return value;
    }
    const max = this.maxItems;
    if (max && value.length > max.value) {
      // refused before its items are looked at: an oversized untrusted list costs nothing more
      run.add('too_big', max.message ?? `Too big: expected array to have <=${max.value} items`);
      run.fatal++;
      return value;
    }
    const min = this.minItems;
    if (min && value.length < min.value)
      run.add('too_small', min.message ?? `Too small: expected array to have >=${min.value} items`);
    const out = new Array<unknown>(value.length);
    const path = run.path;
    for (let i = 0; i < value.length; i++) {
      path.push(i);
      out[i] = this.item.check(value[i], run);
      path.pop();
    }
    return out;
  }

  min(length: number, message?: Message): ArraySchema<T> {
    return this.with({ minItems: bound(length, message) });
  }

  max(length: number, message?: Message): ArraySchema<T> {
    return this.with({ maxItems: bound(length, message) });
  }
}

export type Shape = Record<string, Schema<unknown, unknown>>;

type OptionalKeys<T> = { [K in keyof T]-?: undefined extends T[K] ? K : never }[keyof T];
type Flatten<T> = { [K in keyof T]: T[K] } & {};
type WithOptionalKeys<T> = Flatten<
  { [K in Exclude<keyof T, OptionalKeys<T>>]: T[K] } & { [K in OptionalKeys<T>]?: T[K] }
>;
export type ObjectOutput<S extends Shape> = WithOptionalKeys<{ [K in keyof S]: output<S[K]> }>;
export type ObjectInput<S extends Shape> = WithOptionalKeys<{ [K in keyof S]: input<S[K]> }>;

export class ObjectSchema<S extends Shape> extends Schema<ObjectOutput<S>, ObjectInput<S>> {
  readonly kind = 'object';
  readonly shape: S;
  /** unknown keys are refused (true) or dropped (false) */
  readonly strict: boolean;
  readonly keys: readonly string[];

  constructor(shape: S, strict: boolean) {
    super();
    this.shape = shape;
    this.strict = strict;
    this.keys = Object.keys(shape);
  }

  check(value: unknown, run: Run): unknown {
    if (!isObject(value, run)) return value;
    const out: Record<string, unknown> = {};
    const path = run.path;
    for (const key of this.keys) {
      const present = Object.hasOwn(value, key);
      path.push(key);
      const result = this.shape[key]!.check(present ? value[key] : undefined, run);
      path.pop();
      if (present || result !== undefined) out[key] = result;
    }
    if (this.strict) {
      const unknown = Object.keys(value).filter((key) => !Object.hasOwn(this.shape, key));
      if (unknown.length > 0)
        run.add(
          'unrecognized_keys',
          `Unrecognized key${unknown.length > 1 ? 's' : ''}: ${unknown.map((k) => JSON.stringify(k)).join(', ')}`,
          { keys: unknown },
        );
    }
    return out;
  }
}

export class RecordSchema<K extends Schema<string, string>, V extends Schema> extends Schema<
  Record<output<K>, output<V>>,
  Record<input<K>, input<V>>
> {
  readonly kind = 'record';
  readonly key: K;
  readonly value: V;

  constructor(key: K, value: V) {
    super();
    this.key = key;
    this.value = value;
  }

  check(value: unknown, run: Run): unknown {
    if (!isObject(value, run)) return value;
    const out: Record<string, unknown> = {};
    const path = run.path;
    for (const key of Object.keys(value)) {
      path.push(key);
      const k = this.key.check(key, run) as string;
      setKey(out, typeof k === 'string' ? k : key, this.value.check(value[key], run));
      path.pop();
    }
    return out;
  }
}

export class UnionSchema<T extends readonly Schema[]> extends Schema<output<T[number]>, input<T[number]>> {
  readonly kind = 'union';
  readonly options: T;

  constructor(options: T) {
    super();
    this.options = options;
  }

  check(value: unknown, run: Run): unknown {
    const tries: Run[] = [];
    for (const option of this.options) {
      const attempt = new Run();
      attempt.path.push(...run.path);
      const result = option.check(value, attempt);
      if (attempt.issues.length === 0) return result;
      tries.push(attempt);
    }
    run.fatal++;
    // every option refused it: name the types when that is all they said, else the first that got further
    const depth = run.path.length;
    const typeOnly = tries.every(
      (t) =>
        t.issues.length === 1 && t.issues[0]!.code === 'invalid_type' && t.issues[0]!.path.length === depth,
    );
    if (typeOnly) {
      const expected = tries.map((t) => t.issues[0]!.expected);
      invalidType(run, [...new Set(expected)].join(' or '), value);
      return value;
    }
    const further = tries.find((t) => !(t.issues.length === 1 && t.issues[0]!.code === 'invalid_type'));
    run.issues.push(...(further ?? tries[0]!).issues);
    return value;
  }
}

export class DiscriminatedUnionSchema<T extends readonly ObjectSchema<Shape>[]> extends Schema<
  output<T[number]>,
  input<T[number]>
> {
  readonly kind = 'discriminated-union';
  readonly key: string;
  readonly options: T;
  readonly byTag = new Map<unknown, ObjectSchema<Shape>>();
  readonly message: string;

  constructor(key: string, options: T) {
    super();
    this.key = key;
    this.options = options;
    for (const option of options) {
      const tag = option.shape[key];
      if (!(tag instanceof LiteralSchema))
        throw new TypeError(`every option of a discriminated union needs a literal "${key}"`);
      this.byTag.set(tag.value, option);
    }
    const tags = [...this.byTag.keys()].map((t) => JSON.stringify(t)).join('|');
    this.message = `Invalid option: expected one of ${tags}`;
  }

  check(value: unknown, run: Run): unknown {
    if (!isObject(value, run)) return value;
    const option = this.byTag.get(value[this.key]);
    if (!option) {
      run.add('invalid_value', this.message, { at: [this.key] });
      return value;
    }
    return option.check(value, run);
  }
}

export function string(): StringSchema {
  return new StringSchema();
}

export function number(): NumberSchema {
  return new NumberSchema();
}

export function boolean(): Schema<boolean, boolean> {
  return new BooleanSchema();
}

export function unknown(): Schema<unknown, unknown> {
  return new UnknownSchema();
}

export function literal<const T extends Primitive>(value: T, message?: Message): LiteralSchema<T> {
  return new LiteralSchema(value, message);
}

function enumOf<const T extends string>(values: readonly T[], message?: Message): EnumSchema<T> {
  if (values.length === 0) throw new TypeError('an enum needs at least one value');
  return new EnumSchema(values, message);
}
export { enumOf as enum };

export function array<T extends Schema>(item: T): ArraySchema<T> {
  return new ArraySchema(item);
}

/** An object whose unknown keys are refused. */
export function strictObject<S extends Shape>(shape: S): ObjectSchema<S> {
  return new ObjectSchema(shape, true);
}

/** An object whose unknown keys are dropped (for answers of other systems' APIs, which add fields). */
export function object<S extends Shape>(shape: S): ObjectSchema<S> {
  return new ObjectSchema(shape, false);
}

export function record<K extends Schema<string, string>, V extends Schema>(
  key: K,
  value: V,
): RecordSchema<K, V> {
  return new RecordSchema(key, value);
}

export function union<const T extends readonly Schema[]>(options: T): UnionSchema<T> {
  return new UnionSchema(options);
}

/** Objects told apart by the literal value of `key`. */
export function discriminatedUnion<const T extends readonly ObjectSchema<Shape>[]>(
  key: string,
  options: T,
): DiscriminatedUnionSchema<T> {
  return new DiscriminatedUnionSchema(key, options);
}
