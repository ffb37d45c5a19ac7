import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import { type Logger, MeshfedError } from '../core/index.ts';
import type { FederationConfig } from './config.ts';

export interface NatsStatus {
  connected: boolean;
  server?: string;
  lastError?: string;
}

export type LinkState = 'connected' | 'reconnected' | 'disconnected' | 'closed' | 'unavailable';

export interface NatsLinkOptions {
  nats: FederationConfig['nats'];
  /** names the client (`meshfed-federation-<cluster>`) unless nats.name does */
  cluster: string;
  /** the ping interval follows it: a dead server is noticed well within the stale bound */
  staleAfter: number;
  log: Logger;
  /** sets up a new connection's subscriptions, before it is reported connected */
  subscribe: (nc: NatsConnection) => void;
  /** every change of the connection's state, in order */
  onState: (state: LinkState, detail: { server?: string; error?: string }) => void;
}

/**
 * The NATS connection loop: connects, and connects again whenever the connection closes, until stopped;
 * never fails because NATS is down (the caller keeps its last verified catalog meanwhile). Within one
 * connection the client reconnects on its own; both kinds of return are reported as state changes.
 */
export class NatsLink {
  readonly #o: NatsLinkOptions;
  #nc: NatsConnection | undefined;
  #connected = false;
  #lastError: string | undefined;
  #stopped = true;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(o: NatsLinkOptions) {
    this.#o = o;
  }

  /** the open connection, if any (possibly between reconnects) */
  get connection(): NatsConnection | undefined {
    return this.#nc && !this.#nc.isClosed() ? this.#nc : undefined;
  }

  get connected(): boolean {
    return this.#connected;
  }

  status(): NatsStatus {
    const s: NatsStatus = { connected: this.#connected };
    if (this.#connected && this.#nc) s.server = this.#nc.getServer();
    if (this.#lastError !== undefined) s.lastError = this.#lastError;
    return s;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#loop = this.#connectUntilStopped();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#wake?.();
    const nc = this.#nc;
    this.#nc = undefined;
    this.#connected = false;
    if (nc) await nc.close().catch(() => undefined);
    await this.#loop;
  }

  #options(): NodeConnectionOptions {
    const n = this.#o.nats;
    const opts: NodeConnectionOptions = {
      servers: [...n.servers],
      name: n.name ?? `meshfed-federation-${this.#o.cluster}`,
      inboxPrefix: n.inboxPrefix,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: n.reconnectWait,
      reconnectJitter: Math.floor(n.reconnectWait / 4),
      timeout: Math.max(1000, n.reconnectWait * 2),
      pingInterval: Math.max(1000, Math.floor(this.#o.staleAfter / 4)),
      maxPingOut: 2,
    };
    if (n.user !== undefined) opts.user = n.user;
    if (n.pass !== undefined) opts.pass = n.pass;
    if (n.token !== undefined) opts.token = n.token;
    if (n.credsFile !== undefined) {
      const file = n.credsFile;
      opts.authenticator = credsAuthenticator(() => readFileSync(file));
    }
    if (n.tls) {
      const tls: NonNullable<NodeConnectionOptions['tls']> = {};
      if (n.tls.caFile) tls.caFile = n.tls.caFile;
      if (n.tls.certFile) tls.certFile = n.tls.certFile;
      if (n.tls.keyFile) tls.keyFile = n.tls.keyFile;
      opts.tls = tls;
    }
    return opts;
  }

  async #connectUntilStopped(): Promise<void> {
    const n = this.#o.nats;
    while (!this.#stopped) {
      try {
        const nc = await connect(this.#options());
        if (this.#stopped) {
          await nc.close();
          return;
        }
        this.#nc = nc;
        this.#lastError = undefined;
        this.#o.subscribe(nc);
        void this.#watchStatus(nc);
        this.#connected = true;
        this.#o.onState('connected', { server: nc.getServer() });
        await nc.closed();
        if (this.#stopped) return;
        this.#connected = false;
        this.#o.log.warn('NATS connection closed; connecting again');
        this.#o.onState('closed', {});
      } catch (err) {
        const e = new MeshfedError(
          'MESHFED_NATS_UNAVAILABLE',
          `cannot reach NATS at ${n.servers.join(', ')}: ${(err as Error).message}; the last verified catalog stays in use`,
          { cause: err, retryable: true },
        );
        if (this.#lastError !== e.message) {
          this.#o.log.warn({ err: e }, 'NATS unavailable; retrying');
          this.#o.onState('unavailable', { error: e.message });
        }
        this.#lastError = e.message;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, n.reconnectWait);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  async #watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (this.#stopped || nc !== this.#nc) return;
      if (s.type === 'disconnect') {
        this.#connected = false;
        this.#lastError = `disconnected from ${s.server}`;
        this.#o.log.warn({ server: s.server }, 'NATS disconnected; keeping the last verified catalog');
        this.#o.onState('disconnected', { server: s.server });
      } else if (s.type === 'reconnect') {
        this.#lastError = undefined;
        this.#connected = true;
        this.#o.log.info({ server: s.server }, 'NATS reconnected; resynchronising');
        this.#o.onState('reconnected', { server: s.server });
      } else if (s.type === 'error') {
        this.#lastError = s.error.message;
      }
    }
  }
}
