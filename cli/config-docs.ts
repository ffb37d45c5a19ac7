import { z } from '../core/index.ts';

interface JsonSchema {
  type?: string | string[];
  format?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  description?: string;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
}

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

function typeOf(s: JsonSchema): string {
  if (s.format) return s.format;
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  const alts = s.anyOf ?? s.oneOf;
  if (alts) return [...new Set(alts.map(typeOf))].join(' \\| ');
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'any'}`;
  if (Array.isArray(s.type)) return s.type.join(' \\| ');
  return s.type ?? 'any';
}

function isHostPort(v: unknown): v is { host: string; port: number } {
  return v !== null && typeof v === 'object' && 'host' in v && 'port' in v;
}

function defaultOf(s: JsonSchema): string {
  const v = s.default;
  if (v === undefined) return '';
  // an object section's default is "every field at its default": its rows below say what that is
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && !isHostPort(v)) return '';
  if (s.format === 'duration' && typeof v === 'number') return `\`"${formatMs(v)}"\``;
  if (s.format === 'host:port' && isHostPort(v)) return `\`"${v.host}:${v.port}"\``;
  return `\`${JSON.stringify(v)}\``;
}

/** The alternatives of a tagged union of objects (`type: static | consul | …`), if `s` is one. */
function taggedForms(s: JsonSchema): { label: string; schema: JsonSchema }[] | undefined {
  const alts = s.anyOf ?? s.oneOf;
  if (!alts?.every((a) => a.type === 'object' && a.properties)) return undefined;
  return alts.map((a, i) => {
    const tag = Object.entries(a.properties ?? {}).find(([, p]) => p.const !== undefined);
    return { label: tag ? `${tag[0]}=${String(tag[1].const)}` : `form ${i + 1}`, schema: a };
  });
}

function walk(s: JsonSchema, path: string, required: boolean, out: ConfigField[]): void {
  const row = (type: string) =>
    out.push({
      path,
      type,
      required: required && s.default === undefined,
      default: defaultOf(s),
      description: s.description ?? '',
    });
  if (s.type === 'object' && s.properties) {
    if (path !== '') row('object');
    for (const [k, v] of Object.entries(s.properties)) {
      walk(v, path === '' ? k : `${path}.${k}`, s.required?.includes(k) ?? false, out);
    }
    return;
  }
  const items = s.type === 'array' ? s.items : undefined;
  const itemForms = items ? taggedForms(items) : undefined;
  if (items?.type === 'object' && items.properties) {
    row('list');
    walk({ ...items, description: undefined }, `${path}[]`, true, out);
    return;
  }
  if (itemForms) {
    row(`list of ${itemForms.map((f) => f.label).join(' \\| ')}`);
    for (const f of itemForms)
      walk({ ...f.schema, description: undefined }, `${path}[]{${f.label}}`, true, out);
    return;
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
 * Every field of a config schema with its type, default and description (from `.describe()`). The
 * input form of the schema gives types, requirement and the defaults written with `.prefault()` (as a
 * file would write them); a `.default()` behind a transform appears only in the output form, from
 * which it is taken and written back in input form (milliseconds as a duration, `{host, port}` as
 * `host:port`).
 */
export function configFields(schema: z.ZodType): ConfigField[] {
  const fields = (io: 'input' | 'output') => {
    const out: ConfigField[] = [];
    walk(z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema, '', true, out);
    return out;
  };
  const outputDefaults = new Map(fields('output').map((f) => [f.path, f.default]));
  return fields('input').map((f) => {
    if (f.default !== '') return f;
    const d = outputDefaults.get(f.path) ?? '';
    return d === '' ? f : { ...f, default: d, required: false };
  });
}

export function renderConfigDocs(schema: z.ZodType, intro: string): string {
  const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const rows = configFields(schema).map(
    (f) =>
      `| \`${f.path}\` | ${f.type} | ${f.required ? 'yes' : ''} | ${f.default} | ${cell(f.description)} |`,
  );
  return `${intro}\n\n| field | type | required | default | meaning |\n|---|---|---|---|---|\n${rows.join('\n')}\n`;
}
