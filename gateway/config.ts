import { cidr, duration, hostPort, z } from '../core/index.ts';

export const TUNNEL_ALPN = 'meshfed-tunnel/1';
/**
 * The HTTP/1.1 fast path between gateways (gateway/h1). A client offers it before the tunnel ALPN, so a
 * gateway without the fast path answers with the tunnel (h2) and the two still interoperate.
 */
export const FAST_ALPN = 'meshfed-h1/1';

/** What a gateway offers a remote one: the fast path first, the tunnel's ALPN and h2 for a gateway without it. */
export const GATEWAY_ALPN_OFFER: readonly string[] = [FAST_ALPN, TUNNEL_ALPN, 'h2'];

const tcpPortSchema = z.strictObject({
  listen: hostPort('127.0.0.1').describe('local address apps connect to for this service'),
  service: z.string().regex(/^[a-z0-9-]+\.[a-z0-9-]+$/, 'expected name.namespace, e.g. "db.shop"'),
  port: z.string().min(1).optional().describe('service port name (default: the first port)'),
});

export const gatewayConfigSchema = z
  .strictObject({
    listeners: z
      .strictObject({
        eastWest: hostPort().prefault('0.0.0.0:15443').describe('mTLS listener other gateways dial'),
        egress: hostPort('127.0.0.1')
          .prefault('127.0.0.1:15001')
          .describe('plain HTTP/1.1 and h2c listener for local apps'),
        admin: hostPort('127.0.0.1')
          .prefault('127.0.0.1:15000')
          .describe('/healthz, /readyz, /metrics, /debug/*'),
      })
      .prefault({}),
    tcpPorts: z
      .array(tcpPortSchema)
      .default([])
      .describe('per-service local TCP ports, carried over CONNECT tunnels'),
    egress: z
      .strictObject({
        trustedNetworks: z
          .array(cidr())
          .prefault(['127.0.0.0/8', '::1/128'])
          .describe('CIDRs allowed to use the egress listener (checked before anything else)'),
        clientAuth: z
          .enum(['none', 'optional', 'required'])
          .default('none')
          .describe(
            'workload mTLS on the egress listener: none (plain HTTP/h2c only); optional (TLS callers that present a workload certificate are identified, plain callers are not); required (every request needs a verified workload certificate of this cluster, else 403)',
          ),
      })
      .prefault({}),
    limits: z
      .strictObject({
        maxConnections: z
          .number()
          .int()
          .min(1)
          .default(10_000)
          .describe(
            'client connections per listener (egress, east-west, each TCP port); past it a new connection is closed at accept and counted as refused{reason="listener-connection-limit"}',
          ),
        listenBacklog: z
          .number()
          .int()
          .min(1)
          .default(1024)
          .describe(
            'pending connections the kernel queues per listening socket before the gateway accepts them (node alone would queue 511). The kernel caps it at net.core.somaxconn',
          ),
        acceptSockets: z
          .number()
          .int()
          .min(1)
          .max(64)
          .default(process.platform === 'linux' ? 8 : 1)
          .describe(
            'listening sockets of the egress and east-west listeners, bound together with SO_REUSEPORT. The event loop accepts one connection per listening socket per turn, so a busy gateway (a turn of 20 ms is 50 a second) accepts new connections no faster than this many a turn; past that they wait in the kernel until its backlog overflows and SYNs are dropped (clients then wait 1 s, 3 s for a retransmit). Default 8 on Linux, 1 where the platform has no SO_REUSEPORT. TCP ports have their own: tcpPortAcceptSockets',
          ),
        tcpPortAcceptSockets: z
          .number()
          .int()
          .min(1)
          .max(256)
          .default(process.platform === 'linux' ? 64 : 1)
          .describe(
            "listening sockets of each TCP port (gateway.tcpPorts), bound together with SO_REUSEPORT. Every call to a TCP port is a new connection, and the event loop accepts one connection per listening socket per turn: a port that gets more connections a turn than it has sockets falls behind for as long as the load lasts, and its callers wait unseen in the kernel's queue, connected but unanswered, until they give up. A port needs more sockets than the connections it gets in the longest turns of a loaded gateway (100 a second and turns of 200 ms: 20 a turn; the kernel spreads them by address, so allow three times that). Default 64 on Linux, 1 where the platform has no SO_REUSEPORT",
          ),
        maxTotalConnections: z
          .number()
          .int()
          .min(1)
          .default(20_000)
          .describe(
            'client connections of all listeners together, per gateway process; past it a new connection is closed and counted as refused{reason="global-connection-limit"}',
          ),
        maxHeaderBytes: z
          .number()
          .int()
          .min(1024)
          .default(32 * 1024)
          .describe(
            "the largest request or response head, in bytes, on every listener and from every local endpoint; a peer gateway's heads may be 8 KiB and 16 fields larger, for the identity and trace headers it adds",
          ),
        headersTimeout: duration()
          .prefault('10s')
          .describe('slowloris guard: the whole header block within this'),
        maxConcurrentStreams: z.number().int().min(1).default(256).describe('HTTP/2 streams per connection'),
        maxResetsPerSecond: z
          .number()
          .int()
          .min(1)
          .default(200)
          .describe(
            'HTTP/2 rapid-reset guard per session: more premature resets (RST_STREAM from the client within 500 ms of the stream opening) than this in one second, on a session whose streams were at least half reset that way (any tunnel session), and the session gets GOAWAY (ENHANCE_YOUR_CALM) and is closed, counted as refused{reason="rapid-reset"}. A client whose streams were mostly answered keeps its session: after the gateway stalled, its cancels arrive with their streams and look premature',
          ),
        maxPrematureResets: z
          .number()
          .int()
          .min(1)
          .default(100)
          .describe(
            'HTTP/2 rapid-reset guard per session (CVE-2023-44487): once this many of its streams were reset prematurely, and they are at least half of the streams it opened, the session gets GOAWAY (ENHANCE_YOUR_CALM) and is closed, counted as refused{reason="rapid-reset"}. Tunnel sessions of the east-west listener, which relay their callers\' cancels for hours, get maxResetsPerSecond only, and a graceful GOAWAY (their open streams finish). A stream reset before the gateway sent it upstream is never forwarded',
          ),
        helloTimeout: duration()
          .prefault('5s')
          .describe(
            'east-west: the TLS ClientHello within this, and the TLS handshake after it within as long',
          ),
        maxHandshakes: z
          .number()
          .int()
          .min(1)
          .default(100)
          .describe(
            'TLS handshakes in progress per terminating listener (east-west, egress mTLS); a connection past it is closed after its ClientHello, before any handshake work, and counted as refused{reason="handshake-limit"}',
          ),
        handshakesPerSecond: z
          .number()
          .int()
          .min(1)
          .default(200)
          .describe(
            'TLS handshakes begun per second per terminating listener (a token bucket with a burst of as many): a client that holds connections idle until they are closed and dials again costs the gateway at most this many handshakes a second. Past it a connection is closed after its ClientHello and counted as refused{reason="handshake-rate"}; a refused peer gateway dials again. A handshake that resumes a session (a peer presenting a ticket of this gateway: nothing signed or verified) costs a twentieth',
          ),
        maxHandshakesPerSource: z
          .number()
          .int()
          .min(1)
          .default(32)
          .describe(
            'TLS handshakes in progress per source address (an IPv6 one by its /64) on each terminating listener: one client cannot hold every slot of maxHandshakes. Past it a connection is closed after its ClientHello and counted as refused{reason="handshake-source-limit"}',
          ),
        handshakesPerSecondPerSource: z
          .number()
          .int()
          .min(1)
          .default(50)
          .describe(
            'TLS handshakes begun per second per source address (an IPv6 one by its /64) on each terminating listener, a token bucket with a burst of as many: one client that dials as fast as it can does not use up the handshakesPerSecond every other peer needs. Past it refused{reason="handshake-source-rate"}. A handshake that resumes a session does not count here. Peers behind one NAT address share it; raise it for them',
          ),
        maxConnectionsPerPeer: z
          .number()
          .int()
          .min(1)
          .default(4096)
          .describe(
            'east-west connections one authenticated peer (the SPIFFE ID of its verified client certificate) may hold open, over both terminating protocols: a stolen or misbehaving peer certificate cannot take every slot of maxConnections from the other peers. Past it a connection is closed right after its handshake, before any request on it is read, and counted as refused{reason="peer-connection-limit"}. A peer gateway pools at most circuitBreaker.maxConnections connections per target per process: keep this above that times the peer\'s workers. Counted per gateway process (each of --workers has its own count). Passthrough connections carry no verified identity and are not counted',
          ),
        sessionIdleTimeout: duration()
          .prefault('5m')
          .describe(
            "HTTP/2 sessions (tunnel, h2c, egress TLS) with no stream open for this long are closed gracefully (GOAWAY); a PING counts as use only on a peer gateway's tunnel session (its health checks). 0: never. A session must open its first stream within headersTimeout",
          ),
      })
      .prefault({}),
    headersWithUnderscores: z
      .enum(['allow', 'drop-header', 'reject-request'])
      .default('allow')
      .describe(
        "request headers whose names contain '_': allow, drop-header, or reject-request (400). A name that a backend would read as an internal x-meshfed-* header (x_meshfed_caller) is dropped whatever this says",
      ),
    adminAllowedHosts: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'host names (besides localhost and IP addresses) the admin listener answers in Host; any other name gets 421, so a web page cannot read the admin API through DNS rebinding',
      ),
    fastPath: z
      .boolean()
      .default(true)
      .describe(
        `HTTP/1.1 requests take meshfed's own codec (gateway/h1): egress parses each head once and forwards bytes over pooled mTLS connections with ALPN ${FAST_ALPN} to gateways that offer it (the HTTP/2 tunnel to those that do not), and the east-west listener accepts that ALPN. false: node's HTTP server and the HTTP/2 tunnel only`,
      ),
    tunnelConnectionsPerGateway: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(2)
      .describe('pooled HTTP/2 sessions per remote gateway'),
    peerRevalidationInterval: duration()
      .default(30_000)
      .describe(
        'how often the peer certificate of every established mTLS connection (east-west, egress mTLS, the tunnel sessions and fast-path connections this gateway dialled) is verified again; a connection whose peer certificate expired or no longer chains to the trust bundle is closed gracefully (GOAWAY) and counted as refused{reason="peer-cert-expired"|"peer-cert-untrusted"}. A trust-bundle change re-verifies at once, and a connection is also re-verified when its peer leaf reaches its notAfter. 0: only on trust-bundle changes and at expiry',
      ),
    tunnelKeepalive: z
      .strictObject({
        interval: duration()
          .prefault('10s')
          .describe('how often each tunnel session to a remote gateway is sent an HTTP/2 PING; 0: never'),
        timeout: duration()
          .prefault('5s')
          .describe(
            'a tunnel session whose PING is not answered within this is closed, and every stream on it fails at once (a response under way, a relayed TCP connection) instead of waiting on a peer that a network partition cut off',
          ),
      })
      .prefault({}),
    tunnelMaxRequestsPerConnection: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe(
        'a tunnel session serves at most this many requests, then closes once they finish and the next request dials anew. 1: a new TCP+TLS connection per request, TLS sessions resumed. 0: no limit',
      ),
  })
  .prefault({});

export type GatewayConfig = z.output<typeof gatewayConfigSchema>;
