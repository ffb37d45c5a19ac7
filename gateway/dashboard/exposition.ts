/** One sample of the Prometheus text exposition: its labels and value. */
export interface ExposedSample {
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/**
 * The samples of the named families in an exposition text (what /metrics serves, one process's or every
 * worker's summed), read the same way in either mode. Other families are skipped unparsed.
 */
export function samplesOf(text: string, names: ReadonlySet<string>): Map<string, ExposedSample[]> {
  const out = new Map<string, ExposedSample[]>();
  for (const name of names) out.set(name, []);
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m || !names.has(m[1]!)) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL))
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    const value = Number(m[3]);
    if (!Number.isNaN(value)) out.get(m[1]!)!.push({ labels, value });
  }
  return out;
}
