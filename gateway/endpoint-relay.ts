import net, { type Socket } from 'node:net';
import type { Counter, Logger } from '../core/index.ts';
import type { BalancerConfig, Balancers, PickResult } from './balancer/index.ts';
import type { GoldenMetrics } from './golden-metrics.ts';
import type { H2Pool } from './h2-pool.ts';
import type { Identities } from './identity.ts';
import type { CircuitBreakers, ResilienceMetrics, RetryBudget } from './resilience/index.ts';
import { sharedReads } from './socket-reads.ts';
import type { TcpSourcePolicy } from './tcp-source-policy.ts';

// What the byte relays share (tcp-relay.ts: SNI passthrough and the CONNECT terminal; tcp-port.ts: the
// per-service TCP ports): their options, the dial to a local endpoint that relays its bytes to the client, and
// how a relayed connection is recorded.

/** The byte relays' options (TcpRelay's and TcpPorts'). */
export interface TcpRelayOptions {
  balancers: Balancers;
  breakers: CircuitBreakers;
  pool: H2Pool;
  identities: Identities;
  config: BalancerConfig;
  refused: Counter;
  log: Logger;
  /** this gateway's cluster: the source of its TCP ports' calls, the destination of passthrough */
  cluster: string;
  golden: GoldenMetrics;
  /** the retry budget of a service, shared with its HTTP requests */
  budgetFor: (service: { namespace: string; name: string }) => RetryBudget;
  metrics: ResilienceMetrics;
  /** TrafficSplit and FaultInjection on the TCP ports; undefined: no policy */
  policy: TcpSourcePolicy | undefined;
}

/**
 * Records a relayed connection in the golden metrics once it closes: 200 when it reached a backend (503
 * when not), the seconds it took to get there, and every byte each way.
 */
export function recordConnection(
  golden: GoldenMetrics,
  client: Socket,
  t0: number,
  call: {
    direction: 'outbound' | 'inbound';
    protocol: 'tcp' | 'tls';
    source: string;
    destination: () => string;
    service: string;
  },
): { connected(): void } {
  let connectedAfter = -1;
  client.once('close', () => {
    const ok = connectedAfter >= 0;
    golden
      .series(call.direction, call.protocol, call.source, undefined, call.destination(), call.service)
      .record(
        ok ? 200 : 503,
        '',
        ok ? connectedAfter : (performance.now() - t0) / 1000,
        client.bytesRead,
        client.bytesWritten,
      );
  });
  return {
    connected: () => {
      if (connectedAfter < 0) connectedAfter = (performance.now() - t0) / 1000;
    },
  };
}

function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

/**
 * Closes a relay's client once the other side (a local endpoint, or a CONNECT stream) closed. A clean end was
 * passed on to the client (`end()`), after the bytes still queued for it: the client is left to take
 * them and close, within `graceMs` (timeouts.idle), then cut. Destroying it at once cut those bytes: a slow
 * client of a passthrough or a TCP port lost the tail of what the endpoint sent before it closed (up to its
 * socket's queue, 32 KiB in the test that found it). A close that was not clean (an error, a reset, no end) cuts
 * the client at once, so that it does not take a cut stream for a whole one.
 */
export function closeRelayedClient(client: Socket, clean: boolean, graceMs: number): void {
  if (client.destroyed) return;
  if (!clean) {
    client.destroy();
    return;
  }
  const cut = setTimeout(() => client.destroy(), graceMs);
  cut.unref();
  client.once('close', () => clearTimeout(cut));
}

/** Where a relay writes a local endpoint's bytes: the client's socket, or a CONNECT stream's response. */
export interface ByteSink {
  write(d: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
}

/**
 * A TCP connection to the picked local endpoint, given up after `connectMs` (timeouts.connect), whose bytes go
 * to `client`. It settles the pick once: ok when connected, a 'connect' failure when it cannot connect, and
 * without blame when it is destroyed first (the client left meanwhile).
 *
 * The endpoint's bytes reach the client from the shared read buffer (socket-reads.ts), not through a stream
 * pipe, so no 64 KiB allocation per read (mapped and unmapped by malloc each time: a TCP port relayed 64 KiB
 * responses at a third of the rate through a pipe, docs/performance.md, "Twelfth round") and no stream
 * machinery on their way; the socket emits no 'data'. A client that cannot take them pauses the endpoint until
 * it drains. `counted` hears each piece's size. The endpoint's end is the caller's to pass on.
 */
export function dialEndpoint(
  pick: PickResult,
  connectMs: number,
  client: ByteSink,
  counted?: (bytes: number) => void,
): Socket {
  const { host, port } = splitHostPort(pick.target.address);
  const t0 = performance.now();
  const resume = () => up.resume();
  const onread = sharedReads((d) => {
    counted?.(d.length);
    if (client.write(d)) return true;
    client.once('drain', resume);
    return false;
  });
  const up = net.connect({ host, port, noDelay: true, onread });
  const timer = setTimeout(() => up.destroy(new Error(`no connection within ${connectMs} ms`)), connectMs);
  up.once('connect', () => {
    clearTimeout(timer);
    pick.release({ ok: true, latencyMs: performance.now() - t0 });
  });
  // after a release these are no-ops
  up.once('error', () => pick.release({ ok: false, latencyMs: performance.now() - t0, failure: 'connect' }));
  up.once('close', () => {
    clearTimeout(timer);
    pick.release({ ok: true, latencyMs: 0, failure: 'cancelled' });
  });
  return up;
}
