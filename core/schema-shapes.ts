import {
  invalidType,
  isObject,
  type input,
  type Message,
  type output,
  Run,
  Schema,
  setKey,
} from './schema-node.ts';
import { type Bound, bound, LiteralSchema } from './schema-scalars.ts';

/** The schemas of values made of others: lists, objects, records, unions. */

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
      // no array per object unless one has unknown keys: a snapshot message holds thousands of objects
      let unknown: string[] | undefined;
      for (const key in value) {
        if (!Object.hasOwn(value, key) || Object.hasOwn(this.shape, key)) continue;
        unknown ??= [];
        unknown.push(key);
      }
      if (unknown)
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
