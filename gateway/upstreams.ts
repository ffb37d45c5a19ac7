import type { Agent } from 'undici';
import type { GatewayOptions } from './gateway-options.ts';
import { H1Pool, MAX_DIALS_PER_GATEWAY } from './h1/pool.ts';
import { MAX_HEADERS } from './h1/servers.ts';
import { FastUpstream } from './h1/upstream.ts';
import { H2Pool } from './h2-pool.ts';
import type { Identities } from './identity.ts';
import { UpstreamConnections } from './upstream-connections.ts';
import type { PeerRevalidation } from './peer-revalidation.ts';
import type { CircuitBreakers } from './resilience/index.ts';
import { byTarget, type UpstreamCodec } from './upstream/attempt.ts';
import { H1Upstream } from './upstream/h1.ts';
import { H2Upstream } from './upstream/h2.ts';

/** A gateway's connections onward, and the codec that sends each request over one of them. */
export interface Upstreams {
  /** pooled HTTP/2 sessions: tunnels to remote gateways, h2c to local endpoints */
  pool: H2Pool;
  /** the HTTP/1.1 fast path's pooled connections (ALPN meshfed-h1/1 to remote gateways, plain to local ones) */
  fastPool: H1Pool;
  /** by target and request: the fast path, the tunnel, or node's HTTP/1.1 agent to a local endpoint */
  codec: UpstreamCodec;
  /** both pools' dials and open connections, on the gateway's registry */
  connections: UpstreamConnections;
}

/**
 * The pools a gateway dials remote gateways and local endpoints with, both with our current leaf and the bundle,
 * their connections re-verified while they live (`revalidation`); a remote gateway that says it drains gets no
 * new request from us until a probe finds it serving.
 */
export function createUpstreams(o: {
  options: GatewayOptions;
  revalidation: PeerRevalidation;
  breakers: CircuitBreakers;
  identities: Identities;
  /** node's HTTP/1.1 agent to local endpoints, made on first use */
  agent: () => Agent;
}): Upstreams {
  const { options, revalidation, breakers, identities } = o;
  const c = options.config;
  const bc = options.balancerConfig;
  // what both pools dial with: our current leaf, the bundle, and the trust domain peers must be of
  const creds = {
    leaf: () => options.identity.current(),
    bundle: options.bundle,
    trustDomain: options.trustDomain,
  };
  const onPeerDraining = (address: string) => options.balancers.peerDraining(address);
  const connections = new UpstreamConnections(options.registry, options.cluster);
  const pool = new H2Pool({
    connections,
    onPeerDraining,
    size: c.tunnelConnectionsPerGateway,
    maxRequestsPerConnection: c.tunnelMaxRequestsPerConnection,
    connectTimeoutMs: bc.timeouts.connect,
    keepalive: { intervalMs: c.tunnelKeepalive.interval, timeoutMs: c.tunnelKeepalive.timeout },
    revalidation,
    creds,
  });
  const tunnel = new H2Upstream({ pool, breakers, identities, idleTimeoutMs: bc.timeouts.idle });
  const fastPool = new H1Pool({
    connections,
    connectTimeoutMs: bc.timeouts.connect,
    // under node's default keep-alive timeout (5 s), so a backend never closes a connection we reuse
    idleTimeoutMs: Math.min(4_000, bc.timeouts.idle),
    gatewayIdleTimeoutMs: Math.min(60_000, bc.timeouts.idle),
    exchangeIdleMs: bc.timeouts.idle,
    maxIdlePerKey: bc.circuitBreaker.maxConnections,
    // enough to grow a pool at a few connections per handshake time; few enough that a burst's requests
    // mostly wait for connections freeing up rather than for handshakes of their own. Connections that
    // carry one request each free up for nobody: then every request dials, as before
    maxDialsPerKey: c.tunnelMaxRequestsPerConnection === 1 ? Number.POSITIVE_INFINITY : MAX_DIALS_PER_GATEWAY,
    maxRequestsPerConnection: c.tunnelMaxRequestsPerConnection,
    creds,
    revalidation,
    onPeerDraining,
  });
  connections.watchPool(() => fastPool.usage());
  const codec = byTarget(
    tunnel,
    new H1Upstream({ agent: o.agent, breakers, identities }),
    c.fastPath
      ? new FastUpstream({
          pool: fastPool,
          breakers,
          identities,
          tunnel,
          maxHeadBytes: c.limits.maxHeaderBytes,
          maxHeaders: MAX_HEADERS,
          onPeerDraining,
        })
      : undefined,
  );
  return { pool, fastPool, codec, connections };
}
