import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Span } from '@opentelemetry/api';
import type { VerifiedIdentity } from '../../ca/index.ts';
import { type Answer, writeAnswer } from '../answers.ts';
import type { GatewayRequest, NodeIo, PolicyNote, RouteTarget } from '../pipeline.ts';
import type { Exchange } from './exchange.ts';
import type { RequestHead } from './head.ts';

/**
 * The GatewayRequest of a request of the HTTP/1.1 codec: a class, so a request is one object with its
 * methods on the prototype (a literal with three closures and a getter was four allocations more).
 */
export class FastRequest implements GatewayRequest {
  readonly listener: 'egress' | 'eastWest';
  readonly method: string;
  readonly target: string;
  readonly authority: string;
  readonly headers: IncomingHttpHeaders;
  readonly socket: TLSSocket;
  readonly connection: Socket;
  readonly hasBody: boolean;
  readonly fast: Exchange;
  sourceCluster: string;
  peer: VerifiedIdentity | undefined = undefined;
  caller: string | undefined = undefined;
  route: RouteTarget | undefined = undefined;
  addressed: RouteTarget | undefined = undefined;
  policy: PolicyNote | undefined = undefined;
  span: Span | undefined = undefined;
  injectTrace: ((headers: Record<string, unknown>) => void) | undefined = undefined;
  destination = '';
  status = 0;
  grpcStatus = '';
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    listener: 'egress' | 'eastWest',
    head: RequestHead,
    socket: Socket,
    ex: Exchange,
    cluster: string,
  ) {
    this.listener = listener;
    this.method = head.method;
    this.target = head.target;
    this.authority = typeof head.headers.host === 'string' ? head.headers.host : '';
    this.headers = head.headers as IncomingHttpHeaders;
    this.socket = socket as TLSSocket;
    this.connection = socket;
    this.hasBody = head.framing.kind !== 'none';
    this.fast = ex;
    this.sourceCluster = cluster;
  }

  answer(a: Answer): void {
    writeAnswer(this, this.fast, a);
  }

  closeConnection(): void {
    this.fast.closeAfter = true;
  }

  whenDone(fn: () => void): void {
    if (this.responseOver()) fn();
    else this.fast.once('close', fn);
  }

  responseOver(): boolean {
    return this.fast.finished || this.fast.gone;
  }

  get io(): NodeIo {
    return this.fast.nodeIo();
  }
}
