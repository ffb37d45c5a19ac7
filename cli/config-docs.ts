import { z } from '../core/index.ts';

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  description?: string;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
}

export interface ConfigField {
  path: string;
  type: string;
  required: boolean;
  default: string;
  description: string;
}

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  const alts = s.anyOf ?? s.oneOf;
  if (alts) return [...new Set(alts.map(typeOf))].join(' \\| ');
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'any'}`;
  if (Array.isArray(s.type)) return s.type.join(' \\| ');
  return s.type ?? 'any';
}

function walk(s: JsonSchema, path: string, required: boolean, out: ConfigField[]): void {
  const fmt = (v: unknown) => (v === undefined ? '' : `\`${JSON.stringify(v)}\``);
  const alts = s.anyOf ?? s.oneOf;
  if (s.type === 'object' && s.properties) {
    if (path !== '') {
      out.push({ path, type: 'object', required, default: '', description: s.description ?? '' });
    }
    for (const [k, v] of Object.entries(s.properties)) {
      walk(v, path === '' ? k : `${path}.${k}`, s.required?.includes(k) ?? false, out);
    }
    return;
  }
  if (s.type === 'array' && s.items?.type === 'object' && s.items.properties) {
    out.push({ path, type: 'list', required, default: fmt(s.default), description: s.description ?? '' });
    walk({ ...s.items, description: undefined }, `${path}[]`, true, out);
    return;
  }
  if (alts?.some((a) => a.type === 'object' && a.properties)) {
    out.push({
      path,
      type: 'one of the forms below',
      required,
      default: fmt(s.default),
      description: s.description ?? '',
    });
    alts.forEach((a, i) => {
      const tag = Object.entries(a.properties ?? {}).find(([, p]) => p.const !== undefined);
      const label = tag ? `${tag[0]}=${String(tag[1].const)}` : `form ${i + 1}`;
      walk(a, `${path}{${label}}`, true, out);
    });
    return;
  }
  out.push({ path, type: typeOf(s), required, default: fmt(s.default), description: s.description ?? '' });
}

/** Every field of a config schema with its type, default and description (from `.describe()`). */
export function configFields(schema: z.ZodType, sample?: unknown): ConfigField[] {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const out: ConfigField[] = [];
  walk(json, '', true, out);
  if (sample !== undefined) {
    // defaults behind transforms (durations, host:port) do not survive JSON Schema: read the
    // effective value of each field from a minimal config parsed by the real schema
    const parsed = schema.safeParse(sample);
    if (parsed.success) {
      for (const f of out) {
        if (f.default !== '' || f.path.includes('[') || f.path.includes('{')) continue;
        const v = f.path
          .split('.')
          .reduce<unknown>(
            (o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined),
            parsed.data,
          );
        if (v === undefined || (typeof v === 'object' && v !== null && !('host' in v))) continue;
        const shown =
          typeof v === 'object' && v !== null && 'host' in v
            ? `"${(v as { host: string }).host}:${(v as unknown as { port: number }).port}"`
            : /integer \\\| string/.test(f.type)
              ? `${JSON.stringify(v)} (ms)`
              : JSON.stringify(v);
        f.default = `\`${shown}\``;
      }
    }
  }
  return out;
}

export function renderConfigDocs(schema: z.ZodType, intro: string, sample?: unknown): string {
  const rows = configFields(schema, sample).map(
    (f) =>
      `| \`${f.path}\` | ${f.type} | ${f.required && f.default === '' ? 'yes' : ''} | ${f.default} | ${f.description.replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`,
  );
  return `${intro}\n\n| field | type | required | default | meaning |\n|---|---|---|---|---|\n${rows.join('\n')}\n`;
}
