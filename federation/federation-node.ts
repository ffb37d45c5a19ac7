import type { IssuedLeaf } from '../ca/index.ts';
import type {
  CatalogChange,
  CatalogView,
  ClusterState,
  LinkReport,
  LinkReportView,
  RemoteServiceInstance,
  ServiceRef,
} from '../core/index.ts';
import { type FederationConfig, republishIntervalOf } from './config.ts';
import { FederationEventQueue } from './event-queue.ts';
import type { FederationEvent } from './events.ts';
import { FederationEventHandler } from './federation-events.ts';
import { FederationParts, type FederationNodeOptions, signerFor } from './federation-parts.ts';
import type { LinkState, NatsStatus } from './nats-link.ts';
import type { PolicyAgent } from './policy-agent.ts';

/** how long a withdrawal waits for the NATS server to have it before the drain goes on */
const WITHDRAW_FLUSH_MS = 1000;

/**
 * A cluster's member of the federated catalog: it publishes this cluster's exported services as signed entries
 * and announcements on NATS, answers snapshot requests for its own cluster, and keeps the verified view of every
 * other cluster (CatalogView). It survives NATS outages (the view stays, persisted to stateDir) and converges by
 * anti-entropy when NATS returns: heartbeats carry a digest of each cluster's set, and a mismatch pulls a
 * snapshot that also removes entries whose tombstones were missed.
 *
 * NATS callbacks, timers, the discovery source and the persisted file only turn what happened into typed events
 * (events.ts); one queue (event-queue.ts) hands them, one at a time and in order, to the handler
 * (federation-events.ts). The parts it drives each have one job and are composed in federation-parts.ts:
 * NatsLink (the connection loop), CatalogIntake (subject → verified event), SnapshotAssembly, SyncRequester and
 * SyncResponder (anti-entropy, both sides), CatalogPersistence (the file), CatalogPublisher (our own messages),
 * CatalogOutbox (what goes out on NATS). This class holds the lifecycle: start, the timers, stop.
 */
export class FederationNode implements CatalogView, LinkReportView {
  readonly config: FederationConfig;
  readonly cluster: string;
  /** the federated policy this gateway enforces (a PolicyView); fed by the same connection and event queue */
  readonly policy: PolicyAgent;
  readonly #o: FederationNodeOptions;
  readonly #p: FederationParts;
  readonly #events: FederationEventQueue;
  #stopped = true;
  #timers: NodeJS.Timeout[] = [];
  #unsubscribeSource: (() => void) | undefined;
  #onRotated = (leaf: IssuedLeaf): void => this.#enqueue({ type: 'SignerRotated', source: 'ca', leaf });

  constructor(o: FederationNodeOptions) {
    this.#o = o;
    this.#p = new FederationParts(o, {
      enqueue: (e) => this.#enqueue(e),
      stopped: () => this.#stopped,
    });
    this.config = this.#p.config;
    this.cluster = o.cluster;
    this.policy = this.#p.policy;
    const handler = new FederationEventHandler(this.#p, (e) => this.#enqueue(e));
    this.#events = new FederationEventQueue({ handle: (e) => handler.handle(e), log: this.#p.log });
  }

  // ---- CatalogView ----
  services(): readonly ServiceRef[] {
    return this.#p.store.services();
  }
  instances(namespace: string, name: string): readonly RemoteServiceInstance[] {
    return this.#p.store.instances(namespace, name);
  }
  clusters(): readonly ClusterState[] {
    return this.#p.store.clusters();
  }
  onChange(listener: (changes: readonly CatalogChange[]) => void): () => void {
    return this.#p.store.onChange(listener);
  }

  // ---- LinkReportView ----
  linkReports(): readonly LinkReport[] {
    return this.#p.linkReports.reports(this.#p.now());
  }

  /** how many remote entries the view holds */
  entryCount(): number {
    return this.#p.store.size;
  }

  natsStatus(): NatsStatus {
    return this.#p.link.status();
  }

  /** Loads the persisted catalog, then connects in the background; never fails because NATS is down. */
  async start(): Promise<void> {
    if (!this.#stopped) return;
    this.#stopped = false;
    const p = this.#p;
    if (p.persistence) {
      for (const e of p.persistence.load()) this.#enqueue(e);
      p.persistence.loaded();
    }
    if (p.watching) for (const e of this.policy.load()) this.#enqueue(e);
    // requests for snapshots are signed too, so every node needs its federation identity
    p.jws = signerFor(this.#o.signer.current());
    this.#o.signer.on('rotated', this.#onRotated);
    if (p.publisher) {
      // the whole initial set goes out as a bulk snapshot (on connect), not as one signed message per entry
      p.publisher.update(this.#o.source!.current(), { sign: false });
      this.#unsubscribeSource = this.#o.source!.onChange((services) =>
        this.#enqueue({ type: 'LocalServicesChanged', source: 'discovery', services }),
      );
      this.#every(this.config.heartbeatInterval, { type: 'HeartbeatDue', source: 'timer' });
      this.#every(republishIntervalOf(this.config), { type: 'RefreshDue', source: 'timer' });
    }
    if (p.watching) this.#every(this.config.heartbeatInterval, { type: 'PolicyReportDue', source: 'timer' });
    if (p.linkReporter)
      this.#every(this.config.heartbeatInterval, { type: 'LinkReportDue', source: 'timer' });
    const tick = Math.max(20, Math.min(1000, Math.floor(this.config.staleAfter / 10)));
    this.#every(tick, { type: 'MaintenanceDue', source: 'timer' });
    p.link.start();
  }

  /** Starts publishing this cluster's entries and announcements (see FederationNodeOptions.advertise). */
  advertise(): void {
    const p = this.#p;
    if (p.outbox.advertising) return;
    p.outbox.advertising = true;
    if (this.#stopped || !p.link.connected) return;
    p.outbox.publishBulk();
    p.outbox.announce();
  }

  /**
   * This gateway leaves the catalog by name (it drains or stops): other clusters drop it from this cluster's
   * offers at once, and this cluster's other gateways keep serving them. It publishes nothing of the cluster
   * afterwards; advertise() starts again. Resolves once the withdrawal reached the NATS server (or at once
   * without a connection: peers then let it go stale, then expire).
   */
  async withdrawGateway(): Promise<void> {
    const p = this.#p;
    if (this.#stopped || !p.outbox.withdraw()) return;
    p.log.info({ gateways: this.#o.gateways.map((g) => g.name) }, 'withdrew this gateway from the catalog');
    // a drain waits for this: a connection that went bad meanwhile must not hold it up
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      p.link.connection?.flush().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, WITHDRAW_FLUSH_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  /**
   * Stops publishing and listening, withdrawing this gateway by name first; with `withdraw` (or config
   * withdrawOnStop) it also tombstones every export, which withdraws the services from the whole cluster.
   */
  async stop(o: { withdraw?: boolean } = {}): Promise<void> {
    if (this.#stopped) return;
    const p = this.#p;
    const withdraw = o.withdraw ?? this.config.withdrawOnStop;
    const nc = p.link.connection;
    if (withdraw && p.publisher && nc && p.link.connected && p.outbox.advertising) {
      p.outbox.publish(p.publisher.withdrawAll());
      p.outbox.announce();
    }
    await this.withdrawGateway();
    if (withdraw) await nc?.flush().catch(() => undefined);
    this.#stopped = true;
    this.#events.clear();
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#unsubscribeSource?.();
    this.#o.signer.off('rotated', this.#onRotated);
    await p.link.stop();
    await p.persistence?.close();
    await this.policy.close();
  }

  #enqueue(event: FederationEvent): void {
    if (this.#stopped) return;
    this.#events.push(event);
  }

  #every(ms: number, event: FederationEvent): void {
    const t = setInterval(() => this.#enqueue(event), ms);
    t.unref();
    this.#timers.push(t);
  }
}

export type { FederationNodeOptions, LinkState, NatsStatus };
