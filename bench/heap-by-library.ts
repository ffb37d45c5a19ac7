// What a running Node process's V8 heap holds, by library: for a gateway, which package's code, closures and
// module sources make up its idle memory (docs/performance.md, "Idle memory, sixth round"). It opens the
// process's inspector with SIGUSR1 (127.0.0.1:9229, Node's default; it must be free), checks over the protocol
// that it reached that process, collects garbage, takes a heap snapshot, closes the inspector again, and prints:
// the heap by V8's node types, then per package (meshfed's folders on their own) the bytes of code (bytecode,
// function infos, feedback), closures and module source, and the objects by constructor.
//   node bench/heap-by-library.ts <pid> [--save FILE.heapsnapshot] [--top N]
// Linux and the process's own user (or root) only; for a benchmark host, not a production gateway: the
// inspector is open while the snapshot is taken (a few seconds).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { save: { type: 'string' }, top: { type: 'string', default: '25' } },
});
const pid = Number(positionals[0]);
if (!Number.isInteger(pid) || pid <= 0)
  throw new Error('usage: node bench/heap-by-library.ts <pid> [--save FILE] [--top N]');
const top = Number(values.top);
const INSPECTOR = 'http://127.0.0.1:9229';

async function debuggerUrl(): Promise<string> {
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      const list = (await (await fetch(`${INSPECTOR}/json/list`)).json()) as {
        webSocketDebuggerUrl: string;
      }[];
      if (list[0]) return list[0].webSocketDebuggerUrl;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline)
      throw new Error(`process ${pid} did not open its inspector on ${INSPECTOR} within 5 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Reply {
  id?: number;
  method?: string;
  params?: { chunk?: string };
  result?: { result?: { value?: unknown } };
  error?: { message: string };
}

async function snapshot(): Promise<string> {
  process.kill(pid, 'SIGUSR1');
  const ws = new WebSocket(await debuggerUrl());
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot connect to the inspector of process ${pid}`));
  });
  const chunks: string[] = [];
  const waiting = new Map<number, (r: Reply) => void>();
  let next = 0;
  ws.onmessage = (m) => {
    const r = JSON.parse(String(m.data)) as Reply;
    if (r.method === 'HeapProfiler.addHeapSnapshotChunk') chunks.push(r.params!.chunk!);
    else if (r.id !== undefined) waiting.get(r.id)?.(r);
  };
  const send = (method: string, params: object = {}) =>
    new Promise<Reply>((resolve, reject) => {
      const id = ++next;
      waiting.set(id, (r) => (r.error ? reject(new Error(`${method}: ${r.error.message}`)) : resolve(r)));
      ws.send(JSON.stringify({ id, method, params }));
    });
  try {
    const seen = await send('Runtime.evaluate', { expression: 'process.pid', returnByValue: true });
    if (seen.result?.result?.value !== pid)
      throw new Error(
        `the inspector on ${INSPECTOR} belongs to process ${String(seen.result?.result?.value)}, not ${pid}`,
      );
    await send('HeapProfiler.enable');
    await send('HeapProfiler.collectGarbage');
    await send('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
  } finally {
    // the inspector closes with the connection still open: the evaluation's answer may never arrive
    ws.send(
      JSON.stringify({
        id: ++next,
        method: 'Runtime.evaluate',
        params: { expression: "process.getBuiltinModule('node:inspector').close()" },
      }),
    );
    setTimeout(() => ws.close(), 200);
  }
  return chunks.join('');
}

interface Snapshot {
  snapshot: {
    meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}

/** the edges from a function's shared info to what it owns (V8's names vary by version) */
const PARTS = /function_data|scope_info|feedback_metadata|bytecode/;

/** the package a script belongs to: `yaml`, `@nats-io/nats-core`, `meshfed:gateway`, `node` for Node's own */
function owner(url: string): string {
  if (url === '' || url.startsWith('node:') || !url.includes('/')) return 'node';
  const dep = /node_modules\/(?:\.cache\/meshfed\/node_modules\/)?((?:@[^/]+\/)?[^/.][^/]*)\//.exec(url);
  if (dep && !/node_modules\/\.cache\/meshfed\/(?!node_modules)/.test(url)) return dep[1]!;
  const own = /(?:\.cache\/meshfed\/|\/)(ca|cli|core|discovery|federation|gateway|bench|bin|scripts)\//.exec(
    url,
  );
  return own ? `meshfed:${own[1]}` : url.slice(0, 60);
}

function summarise(s: Snapshot): string {
  const m = s.snapshot.meta;
  const NF = m.node_fields.length;
  const EF = m.edge_fields.length;
  const [types] = m.node_types;
  const [edgeTypes] = m.edge_types;
  const iType = m.node_fields.indexOf('type');
  const iName = m.node_fields.indexOf('name');
  const iSize = m.node_fields.indexOf('self_size');
  const iEdges = m.node_fields.indexOf('edge_count');
  const eType = m.edge_fields.indexOf('type');
  const eName = m.edge_fields.indexOf('name_or_index');
  const eTo = m.edge_fields.indexOf('to_node');
  const count = s.nodes.length / NF;
  const first = new Uint32Array(count + 1);
  for (let i = 0, e = 0; i < count; i++) {
    first[i] = e;
    e += s.nodes[i * NF + iEdges]! * EF;
  }
  first[count] = s.edges.length;
  const numbered = new Set(['element', 'hidden'].map((t) => edgeTypes.indexOf(t)));
  const edgeTo = (i: number, name: string): number => {
    for (let e = first[i]!; e < first[i + 1]!; e += EF) {
      if (numbered.has(s.edges[e + eType]!)) continue;
      if (s.strings[s.edges[e + eName]!] === name) return s.edges[e + eTo]! / NF;
    }
    return -1;
  };
  // V8 names the edge `script` or, in newer versions, `script_or_debug_info`
  const scriptOf = (i: number) => {
    const script = edgeTo(i, 'script_or_debug_info');
    return script >= 0 ? script : edgeTo(i, 'script');
  };
  const type = (i: number) => types[s.nodes[i * NF + iType]!]!;
  const name = (i: number) => s.strings[s.nodes[i * NF + iName]!]!;
  const size = (i: number) => s.nodes[i * NF + iSize]!;
  const scriptOwner = new Map<number, string>();
  const ownerOf = (script: number) => {
    let o = scriptOwner.get(script);
    if (o === undefined) {
      const n = edgeTo(script, 'name');
      o = owner(n >= 0 ? name(n) : '');
      scriptOwner.set(script, o);
    }
    return o;
  };
  const byType = new Map<string, number>();
  const byOwner = new Map<string, { code: number; closures: number; source: number }>();
  const add = (o: string, k: 'code' | 'closures' | 'source', n: number) => {
    const row = byOwner.get(o) ?? { code: 0, closures: 0, source: 0 };
    row[k] += n;
    byOwner.set(o, row);
  };
  const byConstructor = new Map<string, [number, number]>();
  const counted = new Set<number>();
  let total = 0;
  for (let i = 0; i < count; i++) {
    const t = type(i);
    total += size(i);
    byType.set(t, (byType.get(t) ?? 0) + size(i));
    if (t === 'closure') {
      const shared = edgeTo(i, 'shared');
      const script = shared >= 0 ? scriptOf(shared) : -1;
      if (script >= 0) add(ownerOf(script), 'closures', size(i));
    } else if (t === 'code') {
      // a function's shared info: its script, and the parts it owns
      const script = scriptOf(i);
      if (script < 0) continue;
      // and what it owns: bytecode, scope info, feedback metadata (each counted once)
      let bytes = counted.has(i) ? 0 : size(i);
      counted.add(i);
      for (let e = first[i]!; e < first[i + 1]!; e += EF) {
        if (numbered.has(s.edges[e + eType]!) || !PARTS.test(s.strings[s.edges[e + eName]!]!)) continue;
        const part = s.edges[e + eTo]! / NF;
        if (counted.has(part)) continue;
        counted.add(part);
        bytes += size(part);
      }
      add(ownerOf(script), 'code', bytes);
    } else if (t === 'object') {
      const row = byConstructor.get(name(i)) ?? [0, 0];
      row[0]++;
      row[1] += size(i);
      byConstructor.set(name(i), row);
    }
  }
  for (const [script, o] of scriptOwner) {
    const source = edgeTo(script, 'source');
    if (source >= 0) add(o, 'source', size(source));
  }
  const kb = (n: number) => `${(n / 1024).toFixed(0)} KB`;
  const lines = [
    `heap ${(total / 1048576).toFixed(2)} MB (self sizes, after a full collection)`,
    '',
    'by node type:',
  ];
  for (const [t, n] of [...byType].sort((a, b) => b[1] - a[1]).slice(0, 12))
    lines.push(`  ${t.padEnd(22)} ${kb(n)}`);
  lines.push('', 'by package: code (function infos, bytecode, feedback) + closures + module source');
  const rows = [...byOwner].map(([o, r]) => [o, r, r.code + r.closures + r.source] as const);
  for (const [o, r, sum] of rows.sort((a, b) => b[2] - a[2]).slice(0, top))
    lines.push(
      `  ${o.padEnd(32)} ${kb(sum).padStart(8)}   code ${kb(r.code)}, closures ${kb(r.closures)}, source ${kb(r.source)}`,
    );
  lines.push('', 'objects by constructor:');
  for (const [c, [n, bytes]] of [...byConstructor].sort((a, b) => b[1][1] - a[1][1]).slice(0, top))
    lines.push(`  ${c.slice(0, 40).padEnd(40)} ${String(n).padStart(6)}  ${kb(bytes)}`);
  return lines.join('\n');
}

const text = await snapshot();
if (values.save) writeFileSync(values.save, text);
console.log(summarise(JSON.parse(text) as Snapshot));
