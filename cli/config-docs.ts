import { z } from '../core/index.ts';

export interface ConfigField {
  path: string;
  type: string;
  /** the field must be written: it has no default and is not optional */
  required: boolean;
  /** the default as it would be written in the file; '' when there is none */
  default: string;
  description: string;
}

const UNITS: [string, number][] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
];

/** 300000 → "5m": a duration default written the way an operator writes it. */
function formatMs(ms: number): string {
  for (const [unit, size] of UNITS) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

function isHostPort(v: unknown): v is { host: string; port: number } {
  return v !== null && typeof v === 'object' && 'host' in v && 'port' in v;
}

/** A field's default as written in a config file ('' for none, or an object section's "every field at its default"). */
function written(v: unknown, format: string | undefined): string {
  if (v === undefined) return '';
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && !isHostPort(v)) return '';
  if (format === 'duration' && typeof v === 'number') return `\`"${formatMs(v)}"\``;
  if (format === 'host:port' && isHostPort(v)) return `\`"${v.host}:${v.port}"\``;
  return `\`${JSON.stringify(v)}\``;
}

/** What a field node is under its wrappers: the node that says its type, and what the wrappers add. */
interface Unwrapped {
  node: z.Schema;
  /** absent is fine (optional, or a default) */
  optional: boolean;
  /** the default as written in a file */
  default: string;
  description: string | undefined;
  format: string | undefined;
}

function unwrap(s: z.Schema): Unwrapped {
  const u: Unwrapped = { node: s, optional: false, default: '', description: undefined, format: undefined };
  let defaultValue: unknown;
  for (let n: z.Schema = s; ; ) {
    u.description ??= n.description;
    u.format ??= n.format;
    if (n instanceof z.Wrapper) {
      if (n.kind !== 'nullable') u.optional = true;
      if ((n.kind === 'default' || n.kind === 'prefault') && defaultValue === undefined)
        defaultValue = n.value;
      n = n.inner;
    } else if (n instanceof z.Refinement || n instanceof z.Transform) {
      n = n.inner;
    } else {
      u.node = n;
      break;
    }
  }
  u.default = written(defaultValue, u.format);
  return u;
}

function typeOf(s: z.Schema): string {
  const u = unwrap(s);
  if (u.format) return u.format;
  const n = u.node;
  if (n instanceof z.NumberSchema) return n.integer ? 'integer' : 'number';
  if (n instanceof z.EnumSchema) return n.values.map((v) => JSON.stringify(v)).join(' \\| ');
  if (n instanceof z.LiteralSchema) return JSON.stringify(n.value);
  if (n instanceof z.UnionSchema) return [...new Set(n.options.map(typeOf))].join(' \\| ');
  if (n instanceof z.ArraySchema) return `list of ${typeOf(n.item)}`;
  if (n instanceof z.RecordSchema) return 'object';
  return n.kind === 'unknown' ? 'any' : n.kind;
}

/** The forms of a tagged union of objects (`type: static | consul | …`), if `s` is one. */
function taggedForms(s: z.Schema): { label: string; schema: z.Schema }[] | undefined {
  const n = unwrap(s).node;
  if (!(n instanceof z.DiscriminatedUnionSchema)) return undefined;
  return n.options.map((o: z.ObjectSchema<z.Shape>) => {
    const tag = o.shape[n.key] as z.LiteralSchema<z.Primitive>;
    return { label: `${n.key}=${String(tag.value)}`, schema: o };
  });
}

function walk(s: z.Schema, path: string, required: boolean, out: ConfigField[], describe = true): void {
  const u = unwrap(s);
  const row = (type: string) =>
    out.push({
      path,
      type,
      required: required && !u.optional,
      default: u.default,
      description: (describe && u.description) || '',
    });
  const n = u.node;
  if (n instanceof z.ObjectSchema) {
    if (path !== '') row('object');
    for (const [k, v] of Object.entries(n.shape as z.Shape))
      walk(v, path === '' ? k : `${path}.${k}`, true, out);
    return;
  }
  if (n instanceof z.ArraySchema && !u.format) {
    const item = unwrap(n.item).node;
    if (item instanceof z.ObjectSchema) {
      row('list');
      walk(n.item, `${path}[]`, true, out, false);
      return;
    }
    const itemForms = taggedForms(n.item);
    if (itemForms) {
      row(`list of ${itemForms.map((f) => f.label).join(' \\| ')}`);
      for (const f of itemForms) walk(f.schema, `${path}[]{${f.label}}`, true, out, false);
      return;
    }
  }
  const forms = taggedForms(s);
  if (forms) {
    row('one of the forms below');
    for (const f of forms) walk(f.schema, `${path}{${f.label}}`, true, out);
    return;
  }
  row(typeOf(s));
}

/**
 * Every field of a config schema with its type, default and description (from `.describe()`): the schema's
 * nodes walked from the top. A default written with `.prefault()` is shown as the file would write it; one
 * written with `.default()` (a result, such as milliseconds or `{ host, port }`) is written back in input
 * form (a duration, `host:port`).
 */
export function configFields(schema: z.Schema): ConfigField[] {
  const out: ConfigField[] = [];
  walk(schema, '', true, out);
  return out;
}

export function renderConfigDocs(schema: z.Schema, intro: string): string {
  const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const rows = configFields(schema).map(
    (f) =>
      `| \`${f.path}\` | ${f.type} | ${f.required ? 'yes' : ''} | ${f.default} | ${cell(f.description)} |`,
  );
  return `${intro}\n\n| field | type | required | default | meaning |\n|---|---|---|---|---|\n${rows.join('\n')}\n`;
}
