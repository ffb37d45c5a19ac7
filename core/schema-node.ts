/**
 * The schema node every kind of schema extends (core/schema.ts says what the validator is and the rules a caller
 * can rely on): a parse's issues and path (Run), the wrappers every node offers (optional, nullable, default,
 * prefault), refinements and transforms. The helpers exported here are for the other schema files.
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

export function messageOf(custom: Message | undefined, fallback: string): string {
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
export class Run {
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

export function invalidType(run: Run, expected: string, value: unknown): void {
  run.add('invalid_type', `Invalid input: expected ${expected}, received ${typeName(value)}`, { expected });
}

/** True for an object that is not an array; reports the wrong type otherwise. */
export function isObject(value: unknown, run: Run): value is Record<string, unknown> {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return true;
  invalidType(run, 'object', value);
  return false;
}

/** A copy of a default value, so a result that is frozen or changed never touches the schema's own. */
function copyOf<T>(value: T): T {
  return value !== null && typeof value === 'object' ? structuredClone(value) : value;
}

/** Sets `key` on a result object, `__proto__` included (as an own property, never the prototype). */
export function setKey(out: Record<string, unknown>, key: string, value: unknown): void {
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
