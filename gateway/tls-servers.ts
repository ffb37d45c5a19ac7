import http2, { constants as h2c, type Http2SecureServer } from 'node:http2';
import type { IssuedLeaf, TrustBundle } from '../ca/index.ts';
import { type Counter, monotonicNow } from '../core/index.ts';
import type { GatewayConfig } from './config.ts';
import { SESSION_WINDOW_BYTES } from './h2-pool.ts';

/** a stream reset by the client sooner than this after it opened counts toward the rapid-reset limit */
const PREMATURE_RESET_MS = 500;

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
  srv.on('session', (s) => guardSession(s, options.listener, options.limits, options.refused));
  // a failed or timed-out handshake ends its connection, whatever other listeners node's layers add
  srv.on('tlsClientError', (err, socket) => {
    options.refused.inc({ listener: options.listener, reason: tlsReason(err) });
    socket.destroy();
  });
  return srv;
}

/**
 * HTTP/2 session guards: a client that resets streams faster than the limit loses the session (rapid
 * reset); a session that opens no stream within headersTimeout is closed (it holds a TLS connection and
 * memory for nothing); one idle for sessionIdleTimeout is closed gracefully.
 */
export function guardSession(
  session: http2.ServerHttp2Session,
  listener: string,
  limits: GatewayConfig['limits'],
  refused: Counter,
): void {
  // uploads through the tunnel: the whole-connection window must not serialise concurrent streams
  session.setLocalWindowSize(SESSION_WINDOW_BYTES);
  const silent = setTimeout(() => {
    refused.inc({ listener, reason: 'no-request' });
    session.goaway(h2c.NGHTTP2_NO_ERROR);
    session.destroy();
  }, limits.headersTimeout);
  session.once('stream', () => clearTimeout(silent));
  session.once('close', () => clearTimeout(silent));
  if (limits.sessionIdleTimeout > 0) session.setTimeout(limits.sessionIdleTimeout, () => session.close());
  let resets = 0;
  let windowStart = monotonicNow();
  session.on('stream', (stream) => {
    const opened = monotonicNow();
    stream.on('aborted', () => {
      const now = monotonicNow();
      // only premature resets count (Envoy's rule): a peer gateway cancelling a stream when its own
      // per-try timeout fires is not an attack, and killing its session would fail every stream it carries
      if (now - opened >= PREMATURE_RESET_MS) return;
      if (now - windowStart > 1000) {
        windowStart = now;
        resets = 0;
      }
      if (++resets > limits.maxResetsPerSecond) {
        refused.inc({ listener, reason: 'rapid-reset' });
        session.goaway(h2c.NGHTTP2_ENHANCE_YOUR_CALM);
        session.destroy();
      }
    });
  });
  session.on('error', () => undefined);
}
