import type http from 'node:http';
import tls from 'node:tls';
import type { Counter, Logger } from '../../core/index.ts';
import { FAST_ALPN, type GatewayConfig } from '../config.ts';
import type { Handler } from '../pipeline.ts';
import { type tlsContextOptions, tlsReason } from '../tls-servers.ts';
import { H1Entry } from './entry.ts';
import { peerHeadLimits, type HeadLimits } from './head.ts';

/** header fields per request head on the HTTP/1.1 codec: a head with more is refused (431) */
export const MAX_HEADERS = 100;

export interface FastPathServers {
  /** plain HTTP/1.1 on the egress listener (after the h1/h2c sniff) */
  egress: H1Entry;
  /** HTTP/1.1 on mTLS connections that chose the fast-path ALPN */
  eastWest: H1Entry;
  /** the east-west TLS server for that ALPN: the tunnel's rules (TLS 1.3, a client certificate) */
  tls: tls.Server;
}

/**
 * The HTTP/1.1 codec's entries, each running the pipeline the gateway composed for its listener.
 * Upgrades, CONNECT and HTTP/1.0 at egress go to node's server (`egressH1`); on the east-west listener
 * they are refused.
 */
export function fastPathServers(o: {
  config: GatewayConfig;
  cluster: string;
  egress: Handler;
  eastWest: Handler;
  egressH1: http.Server;
  context: ReturnType<typeof tlsContextOptions>;
  refused: Counter;
  log: Logger;
}): FastPathServers {
  const limits: HeadLimits = { maxHeadBytes: o.config.limits.maxHeaderBytes, maxHeaders: MAX_HEADERS };
  const entry = (listener: 'egress' | 'eastWest', pipeline: Handler) => ({
    listener,
    pipeline,
    cluster: o.cluster,
    // a peer gateway's heads carry what it added to its caller's (peerHeadLimits)
    ...(listener === 'eastWest' ? peerHeadLimits(limits) : limits),
    headersTimeoutMs: o.config.limits.headersTimeout,
    keepAliveTimeoutMs: 65_000,
    refused: o.refused,
    log: o.log,
  });
  const egress = new H1Entry({
    ...entry('egress', o.egress),
    handover: (socket) => {
      o.egressH1.emit('connection', socket);
      socket.resume();
    },
  });
  const eastWest = new H1Entry(entry('eastWest', o.eastWest));
  const server = tls.createServer({
    ...o.context,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    ALPNProtocols: [FAST_ALPN],
  });
  server.on('secureConnection', (s) => eastWest.accept(s));
  server.on('tlsClientError', (err) => o.refused.inc({ listener: 'eastWest', reason: tlsReason(err) }));
  return { egress, eastWest, tls: server };
}
