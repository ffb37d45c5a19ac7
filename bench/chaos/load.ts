// A fixed-rate load client that does not slow down when the server does: request i is due at
// start + i / rate whatever happened to the ones before it, and its latency counts from that due
// time, not from when it was sent (coordinated omission corrected). Bounded in count (rate ×
// duration) and in time (every request has a deadline; the run ends at duration + deadline).
import { connect } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import { buildConnector, Pool } from 'undici';
import { greeterClient } from '../../cli/demo/traffic.ts';
import { percentile, round } from '../figures.ts';
import { GREETER, HELLO } from './federation.ts';
import { GreeterWire } from './grpc-wire.ts';

export type Kind = 'http-get' | 'http-post' | 'grpc-unary' | 'grpc-stream' | 'tcp';

export interface Outcome {
  kind: Kind;
  /** ms since the load started at which this request was due */
  due: number;
  /** ms from due to its outcome */
  latency: number;
  ok: boolean;
  /** 'timeout' when the deadline passed; the status or error code otherwise */
  error?: string;
  cluster?: string;
}

export interface LoadOptions {
  egress: string;
  tcpEcho?: string;
  rate: number;
  durationMs: number;
  deadlineMs?: number;
  /** share of each kind; defaults to every kind */
  mix?: Partial<Record<Kind, number>>;
  host?: string;
}

const DEFAULT_MIX: Record<Kind, number> = {
  'http-get': 0.5,
  'http-post': 0.1,
  'grpc-unary': 0.2,
  'grpc-stream': 0.1,
  tcp: 0.1,
};

/** picks kinds in a fixed interleaving so every second of load carries the same mix */
function kindSchedule(mix: Partial<Record<Kind, number>>): (i: number) => Kind {
  const kinds = (Object.entries(mix) as [Kind, number][]).filter(([, w]) => w > 0);
  const total = kinds.reduce((a, [, w]) => a + w, 0);
  const credit = new Map<Kind, number>(kinds.map(([k]) => [k, 0]));
  return () => {
    let best: Kind = kinds[0]![0];
    for (const [k, w] of kinds) {
      credit.set(k, credit.get(k)! + w / total);
      if (credit.get(k)! > credit.get(best)!) best = k;
    }
    credit.set(best, credit.get(best)! - 1);
    return best;
  };
}

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => {
    t = setTimeout(() => r('timeout'), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

interface Attempt {
  ok: boolean;
  error?: string;
  cluster?: string;
}

export class LoadClient {
  private readonly o: Required<Omit<LoadOptions, 'tcpEcho' | 'mix'>> & Pick<LoadOptions, 'tcpEcho'>;
  private readonly mix: Partial<Record<Kind, number>>;
  private readonly pool: Pool;
  /** grpc-js, only with MESHFED_CHAOS_CLIENT=legacy (the client before grpc-wire.ts, to compare costs) */
  private readonly grpc: ReturnType<typeof greeterClient> | undefined;
  private readonly wire: GreeterWire | undefined;
  readonly outcomes: Outcome[] = [];
  private started = 0;
  private stopped = false;
  /** requests sent so far; once run() resolves, each has exactly one outcome */
  scheduled = 0;
  /**
   * How late each request was sent after its due time (ms): the client's own event loop, not the gateway.
   * Latency counts from the due time either way; this says whether the client kept its rate.
   */
  readonly sendLag: number[] = [];
  /**
   * How long each new connection took to connect (ms), HTTP's (the pool's) and TCP's (one per request):
   * a second or more is a SYN retransmitted after a listener's queue dropped it, which no event loop shows.
   */
  readonly connectMs: { http: number[]; tcp: number[] } = { http: [], tcp: [] };
  /**
   * Per second of load, the most HTTP requests waiting in this client for one of its connections (all busy):
   * that wait counts in their latency, and past the deadline they time out without the gateway seeing them.
   */
  readonly queuedPerSecond: number[] = [];

  constructor(o: LoadOptions) {
    this.o = { deadlineMs: 5000, host: HELLO, ...o };
    this.mix = o.mix ?? (o.tcpEcho ? DEFAULT_MIX : { ...DEFAULT_MIX, tcp: 0 });
    this.pool = new Pool(`http://${o.egress}`, {
      // bounded: a request that finds every connection busy waits in the client's queue, and that wait
      // counts (latency is from the due time). A pool sized for every outstanding request (tried: rate ×
      // deadline) opened connections in bursts whenever the gateway stalled, overflowed the egress
      // listener's accept queue (1,024) and had SYNs dropped: connects of 1-11 s (issue 16)
      connections: 512,
      // a connection opened in one burst serves the next: idle ones stay a minute (the egress keeps them
      // 65 s), not undici's 4 s, after which every stall had the pool open its connections again
      keepAliveTimeout: 60_000,
      connect: timedConnector((ms) => this.connectMs.http.push(ms)),
      headersTimeout: this.o.deadlineMs,
      bodyTimeout: this.o.deadlineMs,
    });
    if (LEGACY) this.grpc = greeterClient(o.egress, GREETER);
    else this.wire = new GreeterWire(o.egress, GREETER);
  }

  /** ms since the load started */
  now(): number {
    return performance.now() - this.started;
  }

  /** runs the whole load; resolves once every request has an outcome */
  async run(): Promise<Outcome[]> {
    const { rate, durationMs } = this.o;
    const total = Math.floor((rate * durationMs) / 1000);
    const next = kindSchedule(this.mix);
    this.started = performance.now();
    const pending: Promise<void>[] = [];
    let i = 0;
    const sampler = setInterval(() => {
      const sec = Math.floor(this.now() / 1000);
      this.queuedPerSecond[sec] = Math.max(this.queuedPerSecond[sec] ?? 0, this.pool.stats.queued);
    }, 100);
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = this.now();
        while (i < total && !this.stopped && (i * 1000) / rate <= now) {
          this.sendLag.push(now - (i * 1000) / rate);
          pending.push(this.one(next(i), (i * 1000) / rate));
          i++;
          this.scheduled = i;
        }
        if (i >= total || this.stopped) resolve();
        else setTimeout(tick, 2);
      };
      tick();
    });
    await Promise.all(pending);
    clearInterval(sampler);
    return this.outcomes;
  }

  stop(): void {
    this.stopped = true;
  }

  private async one(kind: Kind, due: number): Promise<void> {
    const r = await withDeadline(
      this.attempt(kind).catch((err: unknown) => ({ ok: false, error: errorName(err) })),
      Math.max(1, this.o.deadlineMs - (this.now() - due)),
    );
    const latency = this.now() - due;
    const o: Outcome =
      r === 'timeout' ? { kind, due, latency, ok: false, error: 'timeout' } : { kind, due, latency, ...r };
    this.outcomes.push(o);
  }

  private async attempt(kind: Kind): Promise<Attempt> {
    switch (kind) {
      case 'http-get':
      case 'http-post': {
        const res = await this.pool.request({
          method: kind === 'http-get' ? 'GET' : 'POST',
          path: '/chaos',
          headers: { host: this.o.host, 'content-type': 'text/plain' },
          ...(kind === 'http-post' ? { body: POST_BODY } : {}),
          // the pool's headers and body timeouts bound it; a signal per request cost a timer and, at
          // the deadline, a DOMException with a stack trace (legacy keeps it, to compare costs)
          ...(LEGACY ? { signal: AbortSignal.timeout(this.o.deadlineMs) } : {}),
        });
        const text = await res.body.text();
        if (res.statusCode !== 200) {
          // the gateway's own answers say why in x-meshfed-error (a reason of gateway/answers.ts)
          const why = res.headers['x-meshfed-error'];
          return { ok: false, error: `http ${res.statusCode}${typeof why === 'string' ? ` ${why}` : ''}` };
        }
        return { ok: true, cluster: (JSON.parse(text) as { cluster: string }).cluster };
      }
      case 'grpc-unary':
      case 'grpc-stream':
        if (this.wire) return this.wireCall(kind);
        return this.grpcJsCall(kind);
      case 'tcp':
        return tcpEcho(this.o.tcpEcho!, this.o.deadlineMs, (ms) => this.connectMs.tcp.push(ms));
    }
  }

  /** a Greeter call on the wire client: a reply from a cluster, or every message of the stream in order */
  private async wireCall(kind: 'grpc-unary' | 'grpc-stream'): Promise<Attempt> {
    const stream = kind === 'grpc-stream';
    const r = await this.wire!.call(
      stream ? 'SayHelloStream' : 'SayHello',
      'chaos',
      stream ? 5 : 0,
      this.o.deadlineMs,
    );
    if (!r.ok) return { ok: false, error: `grpc ${r.code}` };
    const cluster = r.replies.at(-1)?.cluster;
    if (stream && r.replies.map((m) => m.seq).join() !== '0,1,2,3,4')
      return { ok: false, error: `stream got ${r.replies.length}/5` };
    if (!stream && r.replies.length !== 1)
      return { ok: false, error: `unary got ${r.replies.length} replies` };
    return { ok: true, ...(cluster ? { cluster } : {}) };
  }

  private grpcJsCall(kind: 'grpc-unary' | 'grpc-stream'): Promise<Attempt> {
    const client = this.grpc!;
    switch (kind) {
      case 'grpc-unary':
        return new Promise((resolve) =>
          client.SayHello(
            { name: 'chaos' },
            { deadline: Date.now() + this.o.deadlineMs },
            (err: grpc.ServiceError | null, res: { cluster: string }) =>
              resolve(err ? { ok: false, error: `grpc ${err.code}` } : { ok: true, cluster: res.cluster }),
          ),
        );
      case 'grpc-stream':
        return new Promise((resolve) => {
          const seen: number[] = [];
          let cluster: string | undefined;
          const s = client.SayHelloStream(
            { name: 'chaos', count: 5 },
            { deadline: Date.now() + this.o.deadlineMs },
          );
          s.on('data', (m: { seq: number; cluster: string }) => {
            seen.push(m.seq);
            cluster = m.cluster;
          });
          s.on('error', (err: grpc.ServiceError) => resolve({ ok: false, error: `grpc ${err.code}` }));
          s.on('end', () =>
            resolve(
              seen.join() === '0,1,2,3,4'
                ? { ok: true, ...(cluster ? { cluster } : {}) }
                : { ok: false, error: `stream got ${seen.length}/5` },
            ),
          );
        });
    }
  }

  async close(): Promise<void> {
    this.grpc?.close();
    this.wire?.close();
    await this.pool.destroy();
  }
}

const LEGACY = process.env.MESHFED_CHAOS_CLIENT === 'legacy';
const POST_BODY = 'x'.repeat(64);

function errorName(err: unknown): string {
  const e = err as { code?: string | number; name?: string };
  // an AbortSignal.timeout() abort is a DOMException whose numeric code (23) says nothing
  if (e.name === 'TimeoutError') return 'timeout';
  return String(e.code ?? e.name ?? 'error');
}

/** undici's own connector, reporting how long each connection took to connect */
function timedConnector(connected: (ms: number) => void): buildConnector.connector {
  const connect = buildConnector({});
  return (opts, cb) => {
    const t0 = performance.now();
    connect(opts, (err, socket) => {
      if (!err) connected(performance.now() - t0);
      // undici's callback takes (null, socket) or (error, null)
      (cb as (e: Error | null, s: unknown) => void)(err, socket);
    });
  };
}

/** one TCP connection: a line out, the same line back, close */
function tcpEcho(address: string, deadlineMs: number, connected: (ms: number) => void): Promise<Attempt> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ];
  return new Promise((resolve) => {
    const line = `chaos ${Math.random()}\n`;
    let got = '';
    const t0 = performance.now();
    const s = connect({ host, port });
    s.setTimeout(deadlineMs, () => s.destroy(new Error('tcp timeout')));
    s.on('connect', () => {
      connected(performance.now() - t0);
      s.write(line);
    });
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.length >= line.length) {
        s.end();
        resolve(got === line ? { ok: true } : { ok: false, error: 'tcp garbled' });
      }
    });
    s.on('error', (err) => resolve({ ok: false, error: errorName(err) }));
    s.on('close', () => resolve({ ok: false, error: 'tcp closed early' }));
  });
}

export interface LoadSummary {
  sent: number;
  ok: number;
  failed: number;
  timeouts: number;
  successPct: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  byKind: Record<string, { sent: number; failed: number; p99Ms: number }>;
  errors: Record<string, number>;
  servedBy: Record<string, number>;
}

export function summarize(outcomes: readonly Outcome[]): LoadSummary {
  const lat = outcomes.map((o) => o.latency).sort((a, b) => a - b);
  const byKind: LoadSummary['byKind'] = {};
  const errors: Record<string, number> = {};
  const servedBy: Record<string, number> = {};
  for (const o of outcomes) {
    byKind[o.kind] ??= { sent: 0, failed: 0, p99Ms: 0 };
    const k = byKind[o.kind]!;
    k.sent++;
    if (!o.ok) {
      k.failed++;
      const key = `${o.kind}: ${o.error}`;
      errors[key] = (errors[key] ?? 0) + 1;
    }
    if (o.cluster) servedBy[o.cluster] = (servedBy[o.cluster] ?? 0) + 1;
  }
  for (const [kind, k] of Object.entries(byKind)) {
    const l = outcomes
      .filter((o) => o.kind === kind)
      .map((o) => o.latency)
      .sort((a, b) => a - b);
    k.p99Ms = round(percentile(l, 99));
  }
  const ok = outcomes.filter((o) => o.ok).length;
  return {
    sent: outcomes.length,
    ok,
    failed: outcomes.length - ok,
    timeouts: outcomes.filter((o) => o.error === 'timeout').length,
    successPct: outcomes.length ? round((100 * ok) / outcomes.length) : 0,
    p50Ms: round(percentile(lat, 50)),
    p99Ms: round(percentile(lat, 99)),
    maxMs: round(lat[lat.length - 1] ?? 0),
    byKind,
    errors,
    servedBy,
  };
}

/**
 * How long after `at` (ms since the load started) the load took to settle: the due time of the last
 * request after `at` that failed or was slower than every request due before `at` (and than
 * `floorMs`), minus `at`; 0 when none was. The requests before the fault are the control: on a loaded
 * host requests of over a second happen with no fault at all, and a fixed threshold would measure them.
 */
export function settleMs(
  outcomes: readonly Outcome[],
  at: number,
  floorMs = 1000,
  /** only requests due before this count (e.g. the heal that ends a partition) */
  until = Number.POSITIVE_INFINITY,
): { settleMs: number; slowMs: number } {
  let slowMs = floorMs;
  for (const o of outcomes) if (o.due < at && o.ok) slowMs = Math.max(slowMs, o.latency);
  let last = at;
  for (const o of outcomes)
    if (o.due >= at && o.due < until && (!o.ok || o.latency > slowMs)) last = Math.max(last, o.due);
  return { settleMs: round(last - at), slowMs: round(slowMs) };
}
