import http2, { type Http2SecureServer } from 'node:http2';
import type { IssuedLeaf, TrustBundle } from '../ca/index.ts';
import type { Counter } from '../core/index.ts';
import type { GatewayConfig } from './config.ts';
import { guardSession } from './h2-session-guard.ts';

/**
 * The ALPN protocols a terminating listener offers: h2 (the tunnel, whose clients offer the tunnel ALPN
 * and h2, and gRPC/h2 callers) and http/1.1 (third-party mTLS clients). A client that offers only others
 * is refused in the handshake (no_application_protocol); one that offers none gets HTTP/1.1.
 */
export const TERMINATE_ALPN = ['h2', 'http/1.1'];

/** TLS errors of a client handshake, by node's error code (never by message text), as refusal reasons. */
const TLS_REASONS: Record<string, string> = {
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'no-client-cert',
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: 'no-client-cert',
  ERR_SSL_CERTIFICATE_VERIFY_FAILED: 'client-cert-untrusted',
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: 'client-cert-untrusted',
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: 'client-cert-untrusted',
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: 'client-cert-expired',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'tls-version',
  ERR_SSL_WRONG_VERSION_NUMBER: 'tls-version',
  ERR_SSL_NO_APPLICATION_PROTOCOL: 'alpn-mismatch',
  ERR_TLS_HANDSHAKE_TIMEOUT: 'handshake-timeout',
};

export function tlsReason(err: Error & { code?: string }): string {
  return TLS_REASONS[err.code ?? ''] ?? 'tls-error';
}

export function tlsContextOptions(leaf: IssuedLeaf, bundle: TrustBundle) {
  return { cert: leaf.chainPem, key: leaf.keyPem, ca: bundle.toPem() };
}

/** A TLS server asking for client certificates, serving HTTP/1.1 and h2 with the gateway's limits. */
export function secureServer(options: {
  listener: string;
  limits: GatewayConfig['limits'];
  context: ReturnType<typeof tlsContextOptions>;
  rejectUnauthorized: boolean;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  refused: Counter;
}): Http2SecureServer {
  const srv = http2.createSecureServer({
    ...options.context,
    rejectUnauthorized: options.rejectUnauthorized,
    // the rest of the handshake after the ClientHello gets the same bound (node's default is 120 s)
    handshakeTimeout: options.limits.helloTimeout,
    minVersion: options.minVersion,
    allowHTTP1: true,
    requestCert: true,
    ALPNProtocols: TERMINATE_ALPN,
    settings: {
      maxConcurrentStreams: options.limits.maxConcurrentStreams,
      maxHeaderListSize: options.limits.maxHeaderBytes,
    },
    maxSessionInvalidFrames: 100,
    maxSessionRejectedStreams: 100,
    ...{ maxHeaderSize: options.limits.maxHeaderBytes },
  });
  // east-west sessions are tunnels of authenticated peers, carrying other callers' streams (guardSession)
  const graceful = options.listener === 'eastWest';
  srv.on('session', (s) =>
    guardSession(s, {
      listener: options.listener,
      limits: options.limits,
      refused: options.refused,
      graceful,
    }),
  );
  // a failed or timed-out handshake ends its connection, whatever other listeners node's layers add
  srv.on('tlsClientError', (err, socket) => {
    options.refused.inc({ listener: options.listener, reason: tlsReason(err) });
    socket.destroy();
  });
  return srv;
}
