/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), enough to prove that
 * /metrics parses: every sample line is `name{labels} value`, every family has HELP and TYPE
 * before its samples, and names and label names are legal.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseLabels(text: string, line: number): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf('=', i);
    if (eq === -1) throw new Error(`line ${line}: label without "="`);
    const key = text.slice(i, eq).trim();
    if (!LABEL.test(key)) throw new Error(`line ${line}: bad label name ${JSON.stringify(key)}`);
    if (text[eq + 1] !== '"') throw new Error(`line ${line}: label value must be quoted`);
    let j = eq + 2;
    let value = '';
    while (j < text.length && text[j] !== '"') {
      if (text[j] === '\\') {
        const n = text[j + 1];
        value += n === 'n' ? '\n' : (n ?? '');
        j += 2;
      } else {
        value += text[j];
        j++;
      }
    }
    if (text[j] !== '"') throw new Error(`line ${line}: unterminated label value`);
    out[key] = value;
    i = j + 1;
    if (text[i] === ',') i++;
  }
  return out;
}

function familyOf(sample: string, families: Map<string, Family>): Family | undefined {
  if (families.has(sample)) return families.get(sample);
  for (const suffix of ['_bucket', '_sum', '_count', '_total', '_created']) {
    if (sample.endsWith(suffix)) {
      const f = families.get(sample.slice(0, -suffix.length));
      if (f) return f;
    }
  }
  return undefined;
}

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  text.split('\n').forEach((raw, idx) => {
    const line = idx + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('# HELP ') || raw.startsWith('# TYPE ')) {
      const [, kind, name, ...rest] = raw.split(' ');
      if (!name || !NAME.test(name)) throw new Error(`line ${line}: bad metric name in ${kind}`);
      const f = families.get(name) ?? { name, type: 'untyped', help: '', samples: [] };
      if (kind === 'HELP') f.help = rest.join(' ');
      else {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest[0] ?? '')) {
          throw new Error(`line ${line}: unknown TYPE ${rest[0]}`);
        }
        f.type = rest[0]!;
      }
      families.set(name, f);
      return;
    }
    if (raw.startsWith('#')) return;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/.exec(raw);
    if (!m) throw new Error(`line ${line}: not a sample: ${raw}`);
    const value = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
    if (Number.isNaN(value) && m[4] !== 'NaN') throw new Error(`line ${line}: bad value ${m[4]}`);
    const fam = familyOf(m[1]!, families);
    if (!fam) throw new Error(`line ${line}: sample ${m[1]} before its HELP/TYPE`);
    fam.samples.push({ name: m[1]!, labels: m[3] ? parseLabels(m[3], line) : {}, value });
  });
  return families;
}
