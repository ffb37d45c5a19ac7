import { Counter, Histogram, LATENCY_BUCKETS, type Registry, steadyWallNow } from '../core/index.ts';
import { type TrafficKey, type TrafficSnapshot, TupleWindow } from './traffic-window.ts';

/**
 * The golden metrics: every call through a gateway (an HTTP or gRPC request, a CONNECT stream, a TCP
 * connection, a passthrough TLS connection), on the side that sends it (`outbound`: egress listener and
 * TCP ports) and on the side that receives it (`inbound`: the east-west listener), with one label set.
 * docs/observability.md lists every series and its bound.
 */
export const GOLDEN_LABELS = [
  'direction',
  'protocol',
  'source_cluster',
  'source_workload',
  'destination_cluster',
  'destination_service',
] as const;

export type Direction = TrafficKey['direction'];
export type CallProtocol = 'http' | 'grpc' | 'tcp' | 'tls';

/** The value of a label whose real value is not known (a passthrough caller, a call no cluster answered). */
export const UNKNOWN = 'unknown';
/** The value that stands for every value past a cap. */
export const OTHER = 'other';

/**
 * Caps that bound the series of a gateway. Each label takes at most this many distinct values (then
 * `other`), and at most `tuples` label tuples get series of their own; a call of a new tuple past that
 * is counted under (direction, protocol, other, other, other, other).
 */
export interface GoldenLimits {
  clusters: number;
  services: number;
  workloads: number;
  tuples: number;
}

export const DEFAULT_GOLDEN_LIMITS: GoldenLimits = {
  clusters: 64,
  services: 256,
  workloads: 64,
  tuples: 512,
};

/** response series per tuple: status classes 1xx..5xx and `none` (the call ended without a response) */
const STATUS_CLASSES = ['none', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;
/** grpc-status 0..16, and `unknown` for anything else a backend sends */
const GRPC_CODES = 17;

/**
 * The most series one label tuple can have: requests (1), responses by status class (6), gRPC
 * responses (18, gRPC tuples only), the latency histogram (buckets + +Inf + sum + count) and bytes (2).
 */
export const SERIES_PER_TUPLE =
  1 + STATUS_CLASSES.length + (GRPC_CODES + 1) + (LATENCY_BUCKETS.length + 3) + 2;

/** The bound on golden series per gateway process: tuples, plus the overflow tuple of each direction × protocol. */
export function goldenSeriesBound(limits: GoldenLimits = DEFAULT_GOLDEN_LIMITS): number {
  return (limits.tuples + 2 * 4) * SERIES_PER_TUPLE;
}

/** cached raw label tuples → series; cleared when full (the caps, not this cache, bound the series) */
const RAW_CACHE = 4096;
const WORKLOAD = /\/ns\/([^/]+)\/sa\/([^/]+)$/;

/** `ns/sa` of a workload's SPIFFE ID, or `unknown` (an anonymous caller, a gateway, no identity). */
export function workloadOf(caller: string | undefined): string {
  if (!caller) return UNKNOWN;
  const m = WORKLOAD.exec(caller);
  return m ? `${m[1]}/${m[2]}` : UNKNOWN;
}

type Labels = Record<(typeof GOLDEN_LABELS)[number], string>;

/** grpc-status values that are labels of their own; anything else a backend sends is `unknown` */
const GRPC_LABELS = new Map(Array.from({ length: GRPC_CODES }, (_, i) => [String(i), String(i)]));

/**
 * The series of one label tuple. A call adds to plain numbers here, which the registry reads when it is
 * scraped: no label objects, no hashing of labels per call.
 */
export class GoldenSeries {
  readonly labels: Labels;
  requests = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** calls by status class, indexed as STATUS_CLASSES */
  readonly responses = new Float64Array(STATUS_CLASSES.length);
  /** gRPC calls by grpc_status label */
  readonly grpc = new Map<string, number>();
  /** calls by LATENCY_BUCKETS bound (not cumulative; slower than the last bound: only in latencyCount) */
  readonly latencyBuckets = new Float64Array(LATENCY_BUCKETS.length);
  latencySum = 0;
  latencyCount = 0;
  readonly #window: TupleWindow;

  constructor(labels: Labels) {
    this.labels = labels;
    this.#window = new TupleWindow(labels as TrafficKey);
  }

  get window(): TupleWindow {
    return this.#window;
  }

  /**
   * One call that ended: its HTTP status (0: no response; a relayed TCP or TLS connection reports 200
   * when it reached a backend, 503 when it did not), its grpc-status ('' for other protocols), the
   * seconds to the response headers (or to the connection), and the bytes received from and sent to the
   * caller.
   */
  record(status: number, grpcStatus: string, seconds: number, bytesIn: number, bytesOut: number): void {
    this.requests++;
    this.responses[status >= 100 && status < 600 ? Math.floor(status / 100) : 0]!++;
    if (grpcStatus !== '') {
      const label = GRPC_LABELS.get(grpcStatus) ?? UNKNOWN;
      this.grpc.set(label, (this.grpc.get(label) ?? 0) + 1);
    }
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      if (seconds <= LATENCY_BUCKETS[i]!) {
        this.latencyBuckets[i]!++;
        break;
      }
    }
    this.latencySum += seconds;
    this.latencyCount++;
    this.bytesIn += bytesIn;
    this.bytesOut += bytesOut;
    const failed = status === 0 || status >= 500 || (grpcStatus !== '' && grpcStatus !== '0');
    this.#window.record(steadyWallNow(), failed, seconds, bytesIn, bytesOut);
  }
}

interface Families {
  requests: Counter<(typeof GOLDEN_LABELS)[number]>;
  responses: Counter<(typeof GOLDEN_LABELS)[number] | 'status_class'>;
  grpc: Counter<(typeof GOLDEN_LABELS)[number] | 'grpc_status'>;
  latency: Histogram<(typeof GOLDEN_LABELS)[number]>;
  bytesIn: Counter<(typeof GOLDEN_LABELS)[number]>;
  bytesOut: Counter<(typeof GOLDEN_LABELS)[number]>;
}

/** A bounded set of distinct values: the first `cap` seen keep their name, later ones are `other`. */
class CappedValues {
  readonly #seen = new Set<string>();
  readonly #cap: number;
  constructor(cap: number) {
    this.#cap = cap;
  }
  of(v: string): string {
    if (this.#seen.has(v)) return v;
    if (this.#seen.size >= this.#cap) return OTHER;
    this.#seen.add(v);
    return v;
  }
}

/** a level of RawCache: a map of the next label's values (the last level's values are the series) */
type Level = Map<string, Level | GoldenSeries>;

/**
 * Series by their raw label values, as maps nested in the order of series()'s arguments: no key string is
 * built and hashed per call (that cost more than the call's recording). Cleared when it holds RAW_CACHE
 * series: the caps, not this cache, bound the series.
 */
class RawCache {
  readonly #top: Level = new Map();
  #size = 0;

  get(values: readonly string[]): GoldenSeries | undefined {
    let m: Level | GoldenSeries | undefined = this.#top;
    for (let i = 0; i < values.length && m !== undefined; i++) m = (m as Level).get(values[i]!);
    return m as GoldenSeries | undefined;
  }

  set(values: readonly string[], s: GoldenSeries): void {
    if (this.#size >= RAW_CACHE) {
      this.#top.clear();
      this.#size = 0;
    }
    let m = this.#top;
    for (let i = 0; i < values.length - 1; i++) {
      let next = m.get(values[i]!) as Level | undefined;
      if (!next) {
        next = new Map();
        m.set(values[i]!, next);
      }
      m = next;
    }
    m.set(values[values.length - 1]!, s);
    this.#size++;
  }
}

/**
 * The golden metrics of one gateway process, and the recording API every codec and relay uses:
 * `series(...)` once per call (or once per connection, cached by the caller), then `record(...)`.
 */
export class GoldenMetrics {
  readonly families: Families;
  readonly limits: GoldenLimits;
  readonly #byRaw = new RawCache();
  readonly #byTuple = new Map<string, GoldenSeries>();
  /** the overflow tuple of each direction × protocol, outside the `tuples` cap */
  readonly #overflow = new Map<string, GoldenSeries>();
  readonly #clusters: CappedValues;
  readonly #services: CappedValues;
  readonly #workloads: CappedValues;

  constructor(o: { registry: Registry; limits?: GoldenLimits }) {
    this.limits = o.limits ?? DEFAULT_GOLDEN_LIMITS;
    this.#clusters = new CappedValues(this.limits.clusters);
    this.#services = new CappedValues(this.limits.services);
    this.#workloads = new CappedValues(this.limits.workloads);
    const registers = [o.registry];
    const labelNames = GOLDEN_LABELS;
    const all = () => [...this.#byTuple.values(), ...this.#overflow.values()];
    /** a counter family whose values are the series' own numbers, read at each scrape */
    const counter = <L extends string>(
      name: string,
      help: string,
      extra: readonly L[],
      values: (s: GoldenSeries, add: (labels: Partial<Record<L, string>>, v: number) => void) => void,
    ) =>
      new Counter<(typeof GOLDEN_LABELS)[number] | L>({
        name,
        help,
        labelNames: [...labelNames, ...extra],
        registers,
        collect() {
          this.reset();
          for (const s of all()) {
            values(s, (labels, v) => {
              if (v > 0)
                this.inc({ ...s.labels, ...labels } as Record<(typeof GOLDEN_LABELS)[number] | L, string>, v);
            });
          }
        },
      });
    this.families = {
      requests: counter(
        'meshfed_requests_total',
        'calls that ended (HTTP and gRPC requests, CONNECT streams, TCP and passthrough connections), on the sending (outbound) and receiving (inbound) gateway',
        [],
        (s, add) => add({}, s.requests),
      ),
      responses: counter(
        'meshfed_responses_total',
        'calls by the class of the HTTP status sent to the caller (none: ended without a response; TCP and TLS: 2xx connected, 5xx not)',
        ['status_class'],
        (s, add) => {
          for (let i = 0; i < STATUS_CLASSES.length; i++)
            add({ status_class: STATUS_CLASSES[i]! }, s.responses[i]!);
        },
      ),
      grpc: counter(
        'meshfed_grpc_responses_total',
        'gRPC calls by grpc-status',
        ['grpc_status'],
        (s, add) => {
          for (const [grpc_status, n] of s.grpc) add({ grpc_status }, n);
        },
      ),
      // read from the series at each scrape: a call only adds to its series' bucket counts, with no label lookup
      latency: new Histogram({
        name: 'meshfed_request_duration_seconds',
        help: 'from the first byte of a call to its response headers (TCP and TLS: to the connection to the backend)',
        labelNames,
        buckets: LATENCY_BUCKETS,
        registers,
        *series() {
          for (const s of all()) {
            if (s.latencyCount > 0)
              yield { labels: s.labels, buckets: s.latencyBuckets, sum: s.latencySum, count: s.latencyCount };
          }
        },
      }),
      bytesIn: counter(
        'meshfed_request_bytes_total',
        'body bytes received from callers (TCP and TLS: every byte)',
        [],
        (s, add) => add({}, s.bytesIn),
      ),
      bytesOut: counter(
        'meshfed_response_bytes_total',
        'body bytes sent back to callers (TCP and TLS: every byte)',
        [],
        (s, add) => add({}, s.bytesOut),
      ),
    };
  }

  /**
   * The series of a call: `caller` is the caller's SPIFFE ID when known (its ns/sa becomes
   * source_workload), `destinationCluster` '' when no cluster answered. Values past the caps are `other`.
   */
  series(
    direction: Direction,
    protocol: CallProtocol,
    sourceCluster: string,
    caller: string | undefined,
    destinationCluster: string,
    service: string,
  ): GoldenSeries {
    const raw = [direction, protocol, sourceCluster, caller ?? '', destinationCluster, service];
    let s = this.#byRaw.get(raw);
    if (s) return s;
    const workload = workloadOf(caller);
    s = this.#tuple({
      direction,
      protocol,
      source_cluster: sourceCluster ? this.#clusters.of(sourceCluster) : UNKNOWN,
      source_workload: workload === UNKNOWN ? UNKNOWN : this.#workloads.of(workload),
      destination_cluster: destinationCluster ? this.#clusters.of(destinationCluster) : UNKNOWN,
      destination_service: service ? this.#services.of(service) : UNKNOWN,
    });
    this.#byRaw.set(raw, s);
    return s;
  }

  #tuple(labels: Labels): GoldenSeries {
    const id = GOLDEN_LABELS.map((k) => labels[k]).join('|');
    let s = this.#byTuple.get(id);
    if (s) return s;
    if (this.#byTuple.size >= this.limits.tuples) {
      const key = `${labels.direction}|${labels.protocol}`;
      let overflow = this.#overflow.get(key);
      if (!overflow) {
        const other = {
          direction: labels.direction,
          protocol: labels.protocol,
          source_cluster: OTHER,
          source_workload: OTHER,
          destination_cluster: OTHER,
          destination_service: OTHER,
        };
        overflow = new GoldenSeries(other);
        this.#overflow.set(key, overflow);
      }
      return overflow;
    }
    s = new GoldenSeries(labels);
    this.#byTuple.set(id, s);
    return s;
  }

  /** Every tuple's calls over the last `windowMs` (at most WINDOW_SECONDS). */
  traffic(windowMs: number, nowMs = steadyWallNow()): TrafficSnapshot {
    const rows = [];
    for (const s of [...this.#byTuple.values(), ...this.#overflow.values()]) {
      const row = s.window.sum(nowMs, windowMs);
      if (row) rows.push(row);
    }
    return { windowMs, atMs: nowMs, buckets: [...LATENCY_BUCKETS], rows };
  }
}
