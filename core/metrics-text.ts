import type { MetricFamily } from './metrics.ts';

/** The Prometheus text exposition format, version 0.0.4: what /metrics answers in. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const LABEL_SPECIALS = /[\\"\n]/;
const HELP_SPECIALS = /[\\\n]/;

/** A label value inside its quotes: backslash, double quote and line feed are the characters escaped. */
export function escapeLabelValue(v: string): string {
  if (!LABEL_SPECIALS.test(v)) return v;
  return v.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
}

/** HELP text: backslash and line feed are escaped (a double quote is not, there). */
export function escapeHelp(v: string): string {
  if (!HELP_SPECIALS.test(v)) return v;
  return v.replaceAll('\\', '\\\\').replaceAll('\n', '\\n');
}

/** A sample's value as the format spells it: `NaN`, `+Inf`, `-Inf`, or the number. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function labelsText(labels: Record<string, string>): string {
  let out = '';
  for (const k in labels) out += `${out === '' ? '{' : ','}${k}="${escapeLabelValue(labels[k]!)}"`;
  return out === '' ? '' : `${out}}`;
}

/**
 * The exposition of `families`: per family its HELP and TYPE lines then its samples, families apart by an
 * empty line (which the format ignores), labels in the order each sample holds them.
 */
export function exposition(families: readonly MetricFamily[]): string {
  const blocks: string[] = [];
  for (const f of families) {
    let block = `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}`;
    for (const s of f.values) {
      block += `\n${s.metricName ?? f.name}${labelsText(s.labels)} ${formatValue(s.value)}`;
    }
    blocks.push(block);
  }
  return `${blocks.join('\n\n')}\n`;
}
