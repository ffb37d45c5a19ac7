import { invalidType, type Message, messageOf, type Run, Schema } from './schema-node.ts';

/** The schemas of single values: strings, numbers, booleans, anything, one literal, one of a few strings. */

export interface Bound {
  value: number;
  message: string | undefined;
}

export function bound(value: number, message: Message | undefined): Bound {
  return { value, message: message === undefined ? undefined : messageOf(message, '') };
}

interface StringCheck {
  kind: 'regex' | 'startsWith' | 'url';
  test: (s: string) => boolean;
  message: string;
}

export class StringSchema extends Schema<string, string> {
  readonly kind = 'string';
  readonly minLength: Bound | undefined = undefined;
  readonly maxLength: Bound | undefined = undefined;
  readonly checks: readonly StringCheck[] = [];
  readonly trims: boolean = false;

  check(value: unknown, run: Run): unknown {
    if (typeof value !== 'string') {
      invalidType(run, 'string', value);
      return value;
    }
    const s = this.trims ? value.trim() : value;
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

export class BooleanSchema extends Schema<boolean, boolean> {
  readonly kind = 'boolean';

  check(value: unknown, run: Run): unknown {
    if (typeof value !== 'boolean') invalidType(run, 'boolean', value);
    return value;
  }
}

export class UnknownSchema extends Schema<unknown, unknown> {
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
