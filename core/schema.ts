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

import type { Message, Schema } from './schema-node.ts';
import {
  EnumSchema,
  LiteralSchema,
  NumberSchema,
  type Primitive,
  StringSchema,
  BooleanSchema,
  UnknownSchema,
} from './schema-scalars.ts';
import {
  ArraySchema,
  DiscriminatedUnionSchema,
  ObjectSchema,
  RecordSchema,
  type Shape,
  UnionSchema,
} from './schema-shapes.ts';

export {
  type CustomIssue,
  type input,
  type Issue,
  type IssueCode,
  type Kind,
  type Message,
  NEVER,
  type output,
  type PathItem,
  Refinement,
  type RefinementContext,
  type SafeParseResult,
  Schema,
  SchemaError,
  Transform,
  Wrapper,
} from './schema-node.ts';
export { EnumSchema, LiteralSchema, NumberSchema, type Primitive, StringSchema } from './schema-scalars.ts';
export {
  ArraySchema,
  DiscriminatedUnionSchema,
  type ObjectInput,
  type ObjectOutput,
  ObjectSchema,
  RecordSchema,
  type Shape,
  UnionSchema,
} from './schema-shapes.ts';

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
