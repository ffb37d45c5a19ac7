import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import type { LocalService } from '../core/index.ts';
import { refuse } from './answers.ts';
import type { PickResult } from './balancer/index.ts';
import {
  closeRelayedClient,
  dialEndpoint,
  recordConnection,
  type TcpRelayOptions,
} from './endpoint-relay.ts';
import { type Handler, routeOf } from './pipeline.ts';

/**
 * Byte relays that end at this gateway's local endpoints: SNI passthrough to a local TLS endpoint, and the
 * terminal of the east-west CONNECT pipeline. The per-service TCP ports are tcp-port.ts's.
 */
export class TcpRelay {
  readonly #options: TcpRelayOptions;
  constructor(options: TcpRelayOptions) {
    this.#options = options;
  }

  /**
   * A TCP connection (or CONNECT stream) to the picked target holds one circuitBreaker.maxConnections
   * slot until `holder` closes; when the target has none left it is refused (the pick released without
   * blaming the target).
   */
  #slot(pick: PickResult, holder: { once(e: 'close', f: () => void): unknown }): boolean {
    const release = this.#options.breakers.acquireConnection(pick.target);
    if (!release) {
      pick.release({ ok: false, latencyMs: 0, failure: 'overflow' });
      return false;
    }
    holder.once('close', release);
    return true;
  }

  /** SNI passthrough: the ClientHello and everything after it, unterminated, to a local TLS endpoint. */
  passthrough(
    client: Socket,
    hello: Buffer,
    svc: LocalService,
    portName: string,
    attempt = 0,
    exclude = new Set<string>(),
    call = recordConnection(this.#options.golden, client, performance.now(), {
      direction: 'inbound',
      protocol: 'tls',
      // the TLS is not terminated here: nothing says which cluster or workload is calling
      source: '',
      destination: () => this.#options.cluster,
      service: `${svc.name}.${svc.namespace}`,
    }),
  ): void {
    const pick = this.#options.balancers.pick(svc.namespace, svc.name, { scope: 'local', portName, exclude });
    if (!pick) {
      this.#options.refused.inc({ listener: 'eastWest', reason: 'no-healthy-upstream' });
      client.destroy();
      return;
    }
    const upstream = dialEndpoint(pick, this.#options.config.timeouts.connect, client);
    // node clears `connecting` before it reports a failed connect: this flag is what says it failed
    let connected = false;
    upstream.once('error', (err) => {
      if (!connected) {
        exclude.add(pick.target.id);
        if (attempt < this.#options.config.retry.attempts && !client.destroyed) {
          this.passthrough(client, hello, svc, portName, attempt + 1, exclude, call);
          return;
        }
      }
      this.#options.log.debug({ err }, 'passthrough upstream error');
      client.destroy();
    });
    upstream.once('connect', () => {
      connected = true;
      call.connected();
      upstream.write(hello);
      client.pipe(upstream);
      upstream.once('end', () => client.end());
      client.resume();
      client.once('close', () => upstream.destroy());
      // the endpoint's end reached the client after what it had sent: the client takes that before it closes
      upstream.once('close', (hadError: boolean) =>
        closeRelayedClient(client, !hadError && upstream.readableEnded, this.#options.config.timeouts.idle),
      );
    });
  }

  /**
   * The terminal of the east-west CONNECT pipeline (identity, caller rule, route to a declared tcp port
   * and authorization are behind it): a raw TCP stream to a local endpoint of that port.
   */
  readonly connect: Handler = async (r) => {
    const route = routeOf(r);
    const res = r.io.res as Http2ServerResponse;
    const pick = this.#options.balancers.pick(route.namespace, route.name, {
      scope: 'local',
      ...(route.portName ? { portName: route.portName } : {}),
    });
    const service = `${route.name}.${route.namespace}`;
    if (!pick) refuse('no-healthy-upstream', `${service} has no healthy local endpoint`);
    if (!this.#slot(pick, res))
      refuse('circuit-breaker', `${service}: every endpoint is at circuitBreaker.maxConnections`);
    r.destination = pick.target.cluster;
    const up = dialEndpoint(pick, this.#options.config.timeouts.connect, res, (n) => {
      r.bytesOut += n;
    });
    // settles once the stream is relayed or refused, so the layers around it see how it began
    await new Promise<void>((settle) => {
      up.once('connect', () => {
        r.status = 200;
        res.writeHead(200);
        r.io.req.on('data', (d: Buffer) => {
          r.bytesIn += d.length;
        });
        r.io.req.pipe(up);
        up.once('end', () => res.end());
        this.#options.log.debug({ peer: r.peer?.spiffeId, caller: r.caller, service }, 'tcp tunnel opened');
        settle();
      });
      up.once('error', () => {
        if (!res.headersSent) {
          r.status = 503;
          (res as unknown as ServerResponse).writeHead(503, { 'x-meshfed-error': 'connect-failed' });
          res.end();
        } else res.destroy();
        settle();
      });
      res.once('close', () => {
        up.destroy();
        settle();
      });
    });
  };
}
