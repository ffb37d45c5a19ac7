import fc from 'fast-check';
import { z } from '../../core/index.ts';
import { deepFreeze } from '../../core/config.ts';
import { messageSchema } from '../../federation/messages.ts';

function issues(schema: z.Schema, value: unknown): { path: string; code: string; message: string }[] {
  const r = schema.safeParse(value);
  if (r.success) return [];
  return r.error.issues.map((i) => ({ path: i.path.join('.'), code: i.code, message: i.message }));
}

describe('core/schema: types and checks', () => {
  test('a wrong type names what was expected and what came', () => {
    expect(issues(z.string(), 5)).toEqual([
      { path: '', code: 'invalid_type', message: 'Invalid input: expected string, received number' },
    ]);
    expect(issues(z.number(), Number.NaN)[0]?.message).toBe('Invalid input: expected number, received NaN');
    expect(issues(z.number(), '1')[0]?.message).toBe('Invalid input: expected number, received string');
    expect(issues(z.array(z.string()), {})[0]?.message).toBe(
      'Invalid input: expected array, received object',
    );
    expect(issues(z.strictObject({}), [])[0]?.message).toBe('Invalid input: expected object, received array');
    expect(issues(z.strictObject({}), null)[0]?.message).toBe(
      'Invalid input: expected object, received null',
    );
    expect(issues(z.boolean(), 'true')[0]?.code).toBe('invalid_type');
  });

  test('numbers: finite only; int means a safe integer; bounds inclusive, positive exclusive', () => {
    expect(z.number().safeParse(Number.POSITIVE_INFINITY).success).toBe(false);
    expect(issues(z.number().int(), 1.5)[0]?.message).toBe('Invalid input: expected int, received number');
    expect(
      z
        .number()
        .int()
        .safeParse(2 ** 53).success,
    ).toBe(false);
    expect(
      z
        .number()
        .int()
        .safeParse(2 ** 53 - 1).success,
    ).toBe(true);
    expect(issues(z.number().min(0), -1)[0]?.message).toBe('Too small: expected number to be >=0');
    expect(issues(z.number().max(10), 11)[0]?.message).toBe('Too big: expected number to be <=10');
    expect(z.number().min(0).max(10).safeParse(10).success).toBe(true);
    expect(issues(z.number().positive(), 0)[0]?.message).toBe('Too small: expected number to be >0');
    expect(z.number().nonnegative().safeParse(0).success).toBe(true);
  });

  test('every check of one node reports, with its own message where one was given', () => {
    const s = z
      .string()
      .min(3)
      .regex(/^[a-z]+$/, 'lowercase letters only');
    expect(issues(s, 'A')).toEqual([
      { path: '', code: 'too_small', message: 'Too small: expected string to have >=3 characters' },
      { path: '', code: 'invalid_format', message: 'lowercase letters only' },
    ]);
    expect(issues(z.string().max(2), 'abc')[0]?.message).toBe(
      'Too big: expected string to have <=2 characters',
    );
    expect(issues(z.string().startsWith('/'), 'a')[0]?.message).toBe('Invalid string: must start with "/"');
    expect(issues(z.array(z.number()).min(1, 'give one'), [])[0]?.message).toBe('give one');
  });

  test('a pattern with the g flag gives the same answer every time (no lastIndex carried over)', () => {
    const s = z.string().regex(/^a+$/g);
    for (let i = 0; i < 4; i++) expect(s.safeParse('aaa').success).toBe(true);
  });

  test('trim changes the result before the checks', () => {
    expect(z.string().trim().min(1).safeParse('  ').success).toBe(false);
    expect(z.string().trim().parse('  AbC ')).toBe('AbC');
  });

  test('url: an absolute URL that names a host', () => {
    expect(z.string().url().safeParse('http://127.0.0.1:4318/v1/traces').success).toBe(true);
    expect(issues(z.string().url(), 'not a url')[0]?.message).toBe('Invalid URL');
    expect(z.string().url().safeParse('file:///etc/passwd').success).toBe(false);
  });

  test('literal and enum: the expected value or values', () => {
    expect(issues(z.literal('entry'), 'x')[0]?.message).toBe('Invalid input: expected "entry"');
    expect(issues(z.literal(1, { error: 'expected version 1' }), 2)[0]?.message).toBe('expected version 1');
    expect(issues(z.enum(['a', 'b']), 'c')[0]?.message).toBe('Invalid option: expected one of "a"|"b"');
    expect(z.enum(['a', 'b']).parse('b')).toBe('b');
  });
});

describe('core/schema: objects', () => {
  const s = z.strictObject({ a: z.string(), b: z.number().optional(), c: z.number().default(3) });

  test('a strict object refuses unknown keys, names them, and still checks the known ones', () => {
    const r = s.safeParse({ a: 1, x: 1, y: 2 });
    expect(r.success).toBe(false);
    if (r.success) return;
    expect(r.error.issues.map((i) => [i.code, i.path.join('.'), i.keys])).toEqual([
      ['invalid_type', 'a', undefined],
      ['unrecognized_keys', '', ['x', 'y']],
    ]);
  });

  test('a plain object drops unknown keys (other systems add fields)', () => {
    expect(z.object({ a: z.string() }).parse({ a: 'x', extra: 1 })).toEqual({ a: 'x' });
  });

  test('an absent optional key stays absent; a default fills in; a missing required key is reported', () => {
    const out = s.parse({ a: 'x' });
    expect(out).toEqual({ a: 'x', c: 3 });
    expect(Object.hasOwn(out, 'b')).toBe(false);
    expect(issues(s, {})).toEqual([
      { path: 'a', code: 'invalid_type', message: 'Invalid input: expected string, received undefined' },
    ]);
  });

  test('keys of the prototype are not read as values', () => {
    const proto = { a: 'inherited' };
    expect(s.safeParse(Object.create(proto)).success).toBe(false);
  });

  test('a default is a copy: freezing a result leaves the schema as it was', () => {
    const d = z.strictObject({ list: z.array(z.string()).default(['x']) });
    const first = deepFreeze(d.parse({}));
    expect(Object.isFrozen(first.list)).toBe(true);
    const second = d.parse({});
    expect(Object.isFrozen(second.list)).toBe(false);
    second.list.push('y');
    expect(d.parse({}).list).toEqual(['x']);
  });

  test('a prefault is checked as an input (a duration written as in a file)', () => {
    const p = z
      .string()
      .transform((v) => v.length)
      .prefault('abcd');
    expect(p.parse(undefined)).toBe(4);
    const bad = z.number().min(5).prefault(1);
    expect(bad.safeParse(undefined).success).toBe(false);
  });

  test('nested paths: keys and indexes', () => {
    const n = z.strictObject({ list: z.array(z.strictObject({ port: z.number().int() })) });
    expect(issues(n, { list: [{ port: 1 }, { port: 'x' }] })[0]?.path).toBe('list.1.port');
  });
});

describe('core/schema: refinements and transforms', () => {
  test('a refinement runs when only checks failed (every problem at once), not when a type was wrong', () => {
    const calls: unknown[] = [];
    const s = z.strictObject({ a: z.string().min(2), b: z.number() }).superRefine((v, ctx) => {
      calls.push(v);
      ctx.addIssue({ code: 'custom', path: ['b'], message: 'b is never right' });
    });
    expect(issues(s, { a: 'x', b: 1 }).map((i) => i.path)).toEqual(['a', 'b']);
    expect(calls).toHaveLength(1);
    expect(issues(s, { a: 'xy', b: 'no' }).map((i) => i.message)).toEqual([
      'Invalid input: expected number, received string',
    ]);
    expect(calls).toHaveLength(1);
  });

  test('refine: a message and a path; always: true runs it even on a value of the wrong shape', () => {
    const s = z
      .strictObject({ a: z.number(), b: z.number() })
      .refine((v) => v.a < v.b, { message: 'a must be below b', path: ['a'] });
    expect(issues(s, { a: 2, b: 1 })).toEqual([{ path: 'a', code: 'custom', message: 'a must be below b' }]);
    expect(issues(s, { a: 'x', b: 1 })).toHaveLength(1);
    const always = z
      .strictObject({ a: z.number(), b: z.number() })
      .refine((v) => typeof v.b === 'number' && v.b > 0, { message: 'b must be positive', always: true });
    expect(issues(always, { a: 'x', b: -1 }).map((i) => i.message)).toEqual([
      'Invalid input: expected number, received string',
      'b must be positive',
    ]);
  });

  test('a transform runs only on a valid value; one that reports a problem makes the parse fail', () => {
    let ran = 0;
    const t = z
      .string()
      .min(2)
      .transform((v, ctx) => {
        ran++;
        if (v === 'no') {
          ctx.addIssue({ code: 'custom', message: 'not that one' });
          return z.NEVER;
        }
        return v.length;
      });
    expect(t.parse('abc')).toBe(3);
    expect(issues(t, 'a')[0]?.code).toBe('too_small');
    expect(ran).toBe(1);
    expect(issues(t, 'no')).toEqual([{ path: '', code: 'custom', message: 'not that one' }]);
    // a refinement above a failed transform does not run on its meaningless value
    const above = z.strictObject({ n: t }).refine(() => false, 'should not run');
    expect(issues(above, { n: 'no' }).map((i) => i.message)).toEqual(['not that one']);
  });
});

describe('core/schema: unions, records, arrays', () => {
  test('a union takes the first option that fits, and names the types when none does', () => {
    const u = z.union([z.number().int(), z.string()]);
    expect(u.parse(3)).toBe(3);
    expect(u.parse('3s')).toBe('3s');
    expect(issues(u, true)[0]?.message).toBe('Invalid input: expected number or string, received boolean');
    expect(issues(u, 1.5)[0]?.message).toBe('Invalid input: expected int or string, received number');
    // an option that got past the type says what is wrong with the value
    const ranged = z.union([z.number().min(5), z.string()]);
    expect(issues(ranged, 1)).toEqual([
      { path: '', code: 'too_small', message: 'Too small: expected number to be >=5' },
    ]);
  });

  test('a discriminated union picks its option by the tag, and names the tags it knows', () => {
    const d = z.discriminatedUnion('type', [
      z.strictObject({ type: z.literal('a'), x: z.number() }),
      z.strictObject({ type: z.literal('b'), y: z.string() }),
    ]);
    expect(d.parse({ type: 'b', y: 'ok' })).toEqual({ type: 'b', y: 'ok' });
    expect(issues(d, { type: 'c' })).toEqual([
      { path: 'type', code: 'invalid_value', message: 'Invalid option: expected one of "a"|"b"' },
    ]);
    expect(issues(d, { type: 'a', x: 'no' })[0]?.path).toBe('x');
    expect(() => z.discriminatedUnion('type', [z.strictObject({ type: z.string() })])).toThrow(
      /literal "type"/,
    );
  });

  test('a record checks every key and value; "__proto__" stays an own key', () => {
    const r = z.record(z.string().regex(/^[a-z]+$/), z.number());
    expect(issues(r, { ok: 1, BAD: 2, also: 'x' }).map((i) => i.path)).toEqual(['BAD', 'also']);
    const out = z.record(z.string(), z.number()).parse(JSON.parse('{"__proto__": 1, "a": 2}'));
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.keys(out)).toEqual(['__proto__', 'a']);
  });

  test('an array over its maximum is refused without its items being checked', () => {
    let checked = 0;
    const item = z.number().refine(() => {
      checked++;
      return true;
    });
    const a = z.array(item).max(3);
    expect(issues(a, [1, 2, 3, 4, 5])).toEqual([
      { path: '', code: 'too_big', message: 'Too big: expected array to have <=3 items' },
    ]);
    expect(checked).toBe(0);
    expect(a.parse([1, 2])).toEqual([1, 2]);
    expect(checked).toBe(2);
  });

  test('results are new values: the input is never changed', () => {
    const s = z.strictObject({ name: z.string().trim(), n: z.number().default(1) });
    const input = { name: ' x ' };
    expect(s.parse(input)).toEqual({ name: 'x', n: 1 });
    expect(input).toEqual({ name: ' x ' });
  });

  test('parse throws a SchemaError listing every issue with its path', () => {
    const s = z.strictObject({ a: z.string(), b: z.number() });
    expect(() => s.parse({ a: 1, b: 'x' })).toThrow(z.SchemaError);
    expect(() => s.parse({ a: 1, b: 'x' })).toThrow(
      /a: Invalid input: expected string[\s\S]*b: Invalid input/,
    );
  });

  test('describe and meta give a new node; the one they were called on is unchanged', () => {
    const base = z.string();
    const described = base.describe('what it is').meta({ format: 'thing' });
    expect([described.description, described.format]).toEqual(['what it is', 'thing']);
    expect([base.description, base.format]).toEqual([undefined, undefined]);
    expect(described.min(2).safeParse('a').success).toBe(false);
  });
});

describe('core/schema: untrusted input', () => {
  test('a federation message schema answers any JSON value without throwing', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => {
        const r = messageSchema.safeParse(value);
        expect(typeof r.success).toBe('boolean');
      }),
      { numRuns: 500 },
    );
  });

  test('messages shaped like real ones, with fields changed at random, are refused or accepted whole', () => {
    const entry = {
      v: 1,
      cluster: 'east',
      issuedAt: 1,
      expiresAt: 2,
      type: 'entry',
      namespace: 'shop',
      name: 'orders',
      revision: 1,
      ports: [{ name: 'http', port: 8080, protocol: 'http' }],
      locality: { region: 'r', zone: 'z' },
      gateways: [{ name: 'gw', address: '127.0.0.1:15443' }],
      weight: 1,
    };
    expect(messageSchema.parse(entry)).toEqual(entry);
    const keys = Object.keys(entry);
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 2 }), (key, value) => {
        const changed = { ...entry, [key]: value };
        const r = messageSchema.safeParse(changed);
        if (r.success) expect(r.data).toEqual(changed);
        else expect(r.error.issues.length).toBeGreaterThan(0);
      }),
      { numRuns: 500 },
    );
  });
});
