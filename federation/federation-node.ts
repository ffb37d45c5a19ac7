import { type NatsConnection, nuid } from '@nats-io/transport-node';
import type { CertificateSource, IssuedLeaf, TrustBundle } from '../ca/index.ts';
import {
  type CatalogChange,
  type CatalogView,
  type ClusterState,
  type Counter,
  componentLogger,
  type EndpointSource,
  type GatewayEndpoint,
  type LinkFigures,
  type LinkReport,
  type LinkReportView,
  type Locality,
  type Logger,
  parseConfig,
  type Registry,
  type RemoteServiceInstance,
  type ServiceRef,
  sharedCounter,
  toMeshfedError,
} from '../core/index.ts';
import { GatewayAddressPolicy } from './address-policy.ts';
import { CatalogIntake } from './catalog-intake.ts';
import { CatalogPersistence } from './catalog-persistence.ts';
import { type ApplyResult, CatalogStore } from './catalog-store.ts';
import {
  type FederationConfig,
  type FederationConfigInput,
  federationConfigSchema,
  republishIntervalOf,
} from './config.ts';
import type { FederationEvent } from './events.ts';
import { applyEntryOrTombstone, staleRevision } from './ingest.ts';
import { JwsSigner } from './jws.ts';
import { LinkReporter } from './link-reporter.ts';
import { LinkReports } from './link-reports.ts';
import { PolicyAgent } from './policy-agent.ts';
import { PolicyVerifier } from './policy-verifier.ts';
import { MAX_SNAPSHOT_BYTES } from './messages.ts';
import { type LinkState, NatsLink, type NatsStatus } from './nats-link.ts';
import { ProofMaker } from './proof.ts';
import { CatalogPublisher } from './publisher.ts';
import { RejectionRecorder } from './rejections.ts';
import { SnapshotAssembly } from './snapshot-assembly.ts';
import { IntakeQueue } from './intake-queue.ts';
import { type Subjects, subjects } from './subjects.ts';
import { subscribeAll } from './subscriptions.ts';
import { SyncRequester } from './sync-requester.ts';
import { SyncResponder } from './sync-responder.ts';
import { MessageVerifier } from './verifier.ts';

/** messages of one cluster that may wait unread; a flood past it loses its oldest, never another cluster's */
const INTAKE_BACKLOG_PER_CLUSTER = 20_000;
/** how long one turn of the event loop may spend verifying queued messages */
const INTAKE_SLICE_MS = 20;

export interface FederationNodeOptions {
  config: FederationConfig | FederationConfigInput;
  cluster: string;
  trustDomain: string;
  locality: Locality;
  gateways: GatewayEndpoint[];
  /** this cluster's federation identity; must be started */
  signer: CertificateSource;
  bundle: () => TrustBundle;
  /** the local services to export (exported: true only); without it the node only watches */
  source?: EndpointSource;
  /**
   * what this gateway measured: its outbound calls per destination cluster over the last `windowMs`,
   * reported on `links.<cluster>` every heartbeat; without it the node reports no links
   */
  links?: (windowMs: number) => Promise<readonly LinkFigures[]>;
  /** false: publish and answer snapshots only, hold no view of other clusters (default true) */
  watch?: boolean;
  /**
   * false: publish nothing of this cluster (entries, announcements, snapshot answers) until advertise() is
   * called. A gateway advertises itself once its data plane listens: a restarted gateway that announced
   * itself first was sent requests its listeners refused (default true)
   */
  advertise?: boolean;
  logger: Logger;
  registry: Registry;
  /** the clock: expiry, staleness, clock-skew bounds and revisions all read it */
  now: () => number;
}

/**
 * Snapshot parts are cut at 64 KiB of payload: a part then stays out of V8's large-object space on both sides,
 * and 100,000 entries cost ~600 signature checks (~0.25 s). Receivers accept parts up to 1 MiB.
 */
const SNAPSHOT_PART_BYTES = 64 * 1024;

/**
 * A cluster's member of the federated catalog: it publishes this cluster's exported services as signed entries
 * and announcements on NATS, answers snapshot requests for its own cluster, and keeps the verified view of every
 * other cluster (CatalogView). It survives NATS outages (the view stays, persisted to stateDir) and converges by
 * anti-entropy when NATS returns: heartbeats carry a digest of each cluster's set, and a mismatch pulls a
 * snapshot that also removes entries whose tombstones were missed.
 *
 * NATS callbacks, timers, the discovery source and the persisted file only turn what happened into typed events
 * (events.ts); `#processNextEvent` handles them one at a time, in order. The parts it drives each have one job:
 * NatsLink (the connection loop), CatalogIntake (subject → verified event), SnapshotAssembly, SyncRequester and
 * SyncResponder (anti-entropy, both sides), CatalogPersistence (the file), CatalogPublisher (our own messages).
 */
export class FederationNode implements CatalogView, LinkReportView {
  readonly config: FederationConfig;
  readonly cluster: string;
  readonly #o: FederationNodeOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #subjects: Subjects;
  readonly #store: CatalogStore;
  readonly #verifier: MessageVerifier;
  readonly #rejections: RejectionRecorder;
  readonly #publisher: CatalogPublisher | undefined;
  readonly #accepted: Counter<'type'>;
  readonly #responder: SyncResponder;
  readonly #requester: SyncRequester;
  readonly #assembly: SnapshotAssembly;
  readonly #intake: CatalogIntake;
  /** what the subscriptions receive, waiting per cluster to be verified and handled */
  readonly #received: IntakeQueue;
  readonly #link: NatsLink;
  /** only with a stateDir; then signed proofs are kept (compactly) for it */
  readonly #persistence: CatalogPersistence | undefined;
  readonly #proofs: ProofMaker | undefined;
  readonly #watching: boolean;
  /** the other clusters' gateways' latest link reports */
  readonly #linkReports = new LinkReports();
  /** this gateway's own link reports, when it measures any */
  readonly #linkReporter: LinkReporter | undefined;
  /** the federated policy this gateway enforces (a PolicyView); fed by the same connection and event queue */
  readonly policy: PolicyAgent;
  #jws: JwsSigner | undefined;
  #stopped = true;
  #timers: NodeJS.Timeout[] = [];
  #unsubscribeSource: (() => void) | undefined;
  #inbox = '';
  readonly #queue: FederationEvent[] = [];
  #draining = false;
  #advertising: boolean;
  #onRotated = (leaf: IssuedLeaf): void => this.#enqueue({ type: 'SignerRotated', source: 'ca', leaf });

  constructor(o: FederationNodeOptions) {
    this.#o = o;
    this.config = parseConfig(federationConfigSchema, o.config, { source: 'federation' });
    this.cluster = o.cluster;
    this.#now = o.now;
    this.#watching = o.watch !== false;
    this.#advertising = o.advertise !== false;
    this.#log = componentLogger(o.logger, 'federation', o.cluster);
    this.#subjects = subjects(this.config.subjectPrefix);
    this.#store = new CatalogStore({ self: o.cluster, staleAfter: this.config.staleAfter });
    this.#verifier = new MessageVerifier({
      trustDomain: o.trustDomain,
      bundle: o.bundle,
      maxMessageBytes: this.config.maxMessageBytes,
      maxSnapshotBytes: MAX_SNAPSHOT_BYTES,
      maxEntryTtl: this.config.maxEntryTtl,
      maxClockSkew: this.config.maxClockSkew,
      gatewayAddresses: new GatewayAddressPolicy(this.config.gatewayAddresses),
      now: this.#now,
    });
    this.#rejections = new RejectionRecorder(o.registry, this.#log);
    this.#proofs = this.config.stateDir ? new ProofMaker() : undefined;
    if (this.config.stateDir) {
      this.#persistence = new CatalogPersistence({
        dir: this.config.stateDir,
        cluster: o.cluster,
        store: this.#store,
        verifier: this.#verifier,
        rejections: this.#rejections,
        log: this.#log,
        now: this.#now,
      });
    }
    this.#assembly = new SnapshotAssembly({
      store: this.#store,
      proofs: this.#proofs,
      log: this.#log,
      syncTimeout: this.config.syncTimeout,
    });
    this.#accepted = sharedCounter(
      o.registry,
      'meshfed_catalog_accepted_total',
      'verified catalog messages accepted, by type (entry, tombstone, announce, snapshot, links)',
      ['type'],
    );
    this.#responder = new SyncResponder({
      verifier: this.#verifier,
      limits: this.config.responderLimits,
      inboxPrefix: this.config.nats.inboxPrefix,
      syncAllSubject: this.#subjects.syncAll,
      log: this.#log,
      registry: o.registry,
      now: this.#now(),
    });
    this.#requester = new SyncRequester({
      cluster: o.cluster,
      subjects: this.#subjects,
      syncTimeout: this.config.syncTimeout,
      heartbeatInterval: this.config.heartbeatInterval,
      signer: () => this.#jws!,
      send: (subject, data, reply) => {
        const nc = this.#link.connection;
        if (!nc || !this.#link.connected) return false;
        nc.publish(subject, data, { reply });
        return true;
      },
      log: this.#log,
      now: this.#now,
    });
    const dropped = sharedCounter(
      o.registry,
      'meshfed_catalog_intake_dropped_total',
      'catalog messages dropped unread because their cluster had too many waiting (a flood)',
      ['cluster'],
    );
    this.#received = new IntakeQueue({
      maxPerKey: INTAKE_BACKLOG_PER_CLUSTER,
      sliceMs: INTAKE_SLICE_MS,
      onDrop: (cluster) => dropped.inc({ cluster }),
      // nothing a peer sends may crash the process: a throw here is a bug of ours
      onError: (err, key) =>
        this.#log.error({ err: toMeshfedError(err), from: key }, 'catalog message handling failed'),
    });
    this.#intake = new CatalogIntake({
      cluster: o.cluster,
      verifier: this.#verifier,
      rejections: this.#rejections,
      proofs: this.#proofs,
      isOurRequest: (req) => this.#requester.isOpen(req),
      emit: (e) => this.#enqueue(e),
    });
    this.#link = new NatsLink({
      nats: this.config.nats,
      cluster: o.cluster,
      staleAfter: this.config.staleAfter,
      log: this.#log,
      subscribe: (nc) => this.#subscribe(nc),
      onState: (state, detail) =>
        this.#enqueue({ type: 'ConnectionStateChanged', source: 'nats', state, ...detail }),
    });
    this.policy = new PolicyAgent({
      cluster: o.cluster,
      gateway: o.gateways[0]?.name ?? 'watcher',
      instance: nuid.next(),
      subjects: this.#subjects,
      verifier: new PolicyVerifier({
        trustDomain: o.trustDomain,
        bundle: o.bundle,
        maxClockSkew: this.config.maxClockSkew,
        now: this.#now,
      }),
      stateDir: this.config.stateDir,
      heartbeatInterval: this.config.heartbeatInterval,
      signer: () => this.#jws!,
      send: (subject, data, reply) => {
        const nc = this.#link.connection;
        if (!nc || !this.#link.connected) return false;
        nc.publish(subject, data, reply === undefined ? undefined : { reply });
        return true;
      },
      emit: (e) => this.#enqueue(e),
      log: this.#log,
      registry: o.registry,
      now: this.#now,
    });
    if (o.links) {
      this.#linkReporter = new LinkReporter({
        cluster: o.cluster,
        gateway: o.gateways[0]?.name ?? 'gateway',
        heartbeatInterval: this.config.heartbeatInterval,
        subject: this.#subjects.links(o.cluster),
        measure: o.links,
        signer: () => this.#jws,
        send: (subject, data) => {
          const nc = this.#link.connection;
          if (this.#stopped || !nc || !this.#link.connected) return false;
          nc.publish(subject, data);
          return true;
        },
        log: this.#log,
        now: this.#now,
      });
    }
    if (o.source) {
      this.#publisher = new CatalogPublisher({
        cluster: o.cluster,
        locality: o.locality,
        gateways: o.gateways,
        entryTtl: this.config.entryTtl,
        signer: () => this.#jws!,
        now: this.#now,
      });
    }
  }

  // ---- CatalogView ----
  services(): readonly ServiceRef[] {
    return this.#store.services();
  }
  instances(namespace: string, name: string): readonly RemoteServiceInstance[] {
    return this.#store.instances(namespace, name);
  }
  clusters(): readonly ClusterState[] {
    return this.#store.clusters();
  }
  onChange(listener: (changes: readonly CatalogChange[]) => void): () => void {
    return this.#store.onChange(listener);
  }

  // ---- LinkReportView ----
  linkReports(): readonly LinkReport[] {
    return this.#linkReports.reports(this.#now());
  }

  /** how many remote entries the view holds */
  entryCount(): number {
    return this.#store.size;
  }

  natsStatus(): NatsStatus {
    return this.#link.status();
  }

  /** Loads the persisted catalog, then connects in the background; never fails because NATS is down. */
  async start(): Promise<void> {
    if (!this.#stopped) return;
    this.#stopped = false;
    if (this.#persistence) {
      for (const e of this.#persistence.load()) this.#enqueue(e);
      this.#persistence.loaded();
    }
    if (this.#watching) for (const e of this.policy.load()) this.#enqueue(e);
    // requests for snapshots are signed too, so every node needs its federation identity
    this.#jws = signerFor(this.#o.signer.current());
    this.#o.signer.on('rotated', this.#onRotated);
    if (this.#publisher) {
      // the whole initial set goes out as a bulk snapshot (on connect), not as one signed message per entry
      this.#publisher.update(this.#o.source!.current(), { sign: false });
      this.#unsubscribeSource = this.#o.source!.onChange((services) =>
        this.#enqueue({ type: 'LocalServicesChanged', source: 'discovery', services }),
      );
      this.#every(this.config.heartbeatInterval, { type: 'HeartbeatDue', source: 'timer' });
      this.#every(republishIntervalOf(this.config), { type: 'RefreshDue', source: 'timer' });
    }
    if (this.#watching)
      this.#every(this.config.heartbeatInterval, { type: 'PolicyReportDue', source: 'timer' });
    if (this.#linkReporter)
      this.#every(this.config.heartbeatInterval, { type: 'LinkReportDue', source: 'timer' });
    const tick = Math.max(20, Math.min(1000, Math.floor(this.config.staleAfter / 10)));
    this.#every(tick, { type: 'MaintenanceDue', source: 'timer' });
    this.#link.start();
  }

  /** Starts publishing this cluster's entries and announcements (see FederationNodeOptions.advertise). */
  advertise(): void {
    if (this.#advertising) return;
    this.#advertising = true;
    if (this.#stopped || !this.#link.connected) return;
    this.#publishBulk();
    this.#announce();
  }

  /** Stops publishing and listening; with `withdraw` (or config withdrawOnStop) tombstones every export first. */
  async stop(o: { withdraw?: boolean } = {}): Promise<void> {
    if (this.#stopped) return;
    const withdraw = o.withdraw ?? this.config.withdrawOnStop;
    const nc = this.#link.connection;
    if (withdraw && this.#publisher && nc && this.#link.connected) {
      this.#publish(this.#publisher.withdrawAll());
      this.#announce();
      await nc.flush().catch(() => undefined);
    }
    this.#stopped = true;
    this.#queue.length = 0;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#unsubscribeSource?.();
    this.#o.signer.off('rotated', this.#onRotated);
    await this.#link.stop();
    await this.#persistence?.close();
    await this.policy.close();
  }

  // ---- the event queue ----

  #enqueue(event: FederationEvent): void {
    if (this.#stopped) return;
    this.#queue.push(event);
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.#processNextEvent()) {
        // handled in order; a handler's own events join the end of the queue
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Handles the oldest queued event; false when the queue is empty. */
  #processNextEvent(): boolean {
    const event = this.#queue.shift();
    if (!event) return false;
    try {
      this.#handle(event);
    } catch (err) {
      // nothing a peer sends may crash the process; this is a bug of ours, logged with what it was handling
      const at = 'subject' in event ? event.subject : undefined;
      this.#log.error(
        { err: toMeshfedError(err), event: event.type, source: event.source, subject: at },
        'federation event handling failed',
      );
    }
    return true;
  }

  #handle(e: FederationEvent): void {
    const now = this.#now();
    switch (e.type) {
      case 'EntryReceived':
        this.#afterApply(applyEntryOrTombstone(this.#store, e.msg, e.proof, now), e);
        return;
      case 'AnnouncementReceived': {
        const { result, digestMatches } = this.#store.applyAnnounce(e.msg, e.proof, now);
        this.#afterApply(result, e);
        if (e.stale !== undefined) this.#store.restoreStale(e.msg.cluster, e.stale);
        if (!digestMatches && this.#canAsk()) this.#requester.ask(e.msg.cluster);
        return;
      }
      case 'SnapshotPartReceived': {
        const { msg } = e;
        // only the answer to the request in flight to that cluster: a late or unasked reply holds nothing
        if (e.source === 'reply' && !this.#requester.isInFlight(msg.cluster, msg.req)) return;
        const via = e.source === 'reply' ? 'reply' : 'push';
        const out = this.#assembly.add(msg, e.raw, via, e.signer, now);
        this.#accepted.inc({ type: 'snapshot' });
        if (out.applied > 0) this.#persistence?.schedule();
        if (out.complete && via === 'reply') this.#requester.done(msg.cluster, msg.req);
        return;
      }
      case 'SyncRequested':
        this.#answer(e.subject, e.reply, e.data, now);
        return;
      case 'LocalServicesChanged':
        this.#publish(this.#publisher!.update(e.services));
        return;
      case 'SignerRotated':
        this.#jws = signerFor(e.leaf);
        if (this.#publisher) {
          // entries signed by the old leaf would die with it: re-sign them all now
          this.#publisher.refreshAll();
          this.#publishBulk();
          this.#announce();
        }
        return;
      case 'HeartbeatDue':
        this.#announce();
        return;
      case 'LinkReportReceived':
        if (this.#linkReports.apply(e.msg)) this.#accepted.inc({ type: 'links' });
        return;
      case 'LinkReportDue':
        void this.#linkReporter?.report();
        return;
      case 'RefreshDue':
        this.#publisher!.refreshAll();
        this.#publishBulk();
        return;
      case 'MaintenanceDue':
        this.#store.tick(now, this.#link.connected);
        this.#linkReports.expire(now);
        this.#assembly.expire(now);
        this.#requester.expire();
        this.#persistence?.schedule();
        return;
      case 'PersistDue':
        this.#persistence?.schedule();
        return;
      case 'PolicyBundleReceived':
      case 'PolicyStateReceived':
      case 'PolicyRequested':
      case 'PolicyReportDue':
        this.policy.handle(e);
        return;
      case 'ConnectionStateChanged':
        if (e.state === 'connected' || e.state === 'reconnected') this.#onConnected(now);
        return;
    }
  }

  #afterApply(
    result: ApplyResult,
    e: Extract<FederationEvent, { type: 'EntryReceived' | 'AnnouncementReceived' }>,
  ): void {
    if (result === 'applied') {
      // what the file held was accepted when it first arrived; it is not counted again
      if (e.source !== 'file') {
        this.#accepted.inc({ type: e.msg.type });
        this.#enqueue({ type: 'PersistDue', source: 'change' });
      }
    } else if (result === 'stale_revision') {
      this.#rejections.record(staleRevision(e.signer, e.msg.type), { subject: e.subject, source: e.source });
    }
  }

  #onConnected(now: number): void {
    // requests sent before will not be answered on this connection
    this.#requester.reset(this.#inbox);
    this.#store.resume(now);
    this.#publishBulk();
    this.#announce();
    // anti-entropy: ask every cluster for its whole set, not only for what was missed
    if (this.#canAsk()) this.#requester.askAll();
    // peers report what they enforce every heartbeat; a newer revision there is pulled (policy-get)
    if (this.#watching) {
      this.policy.report();
      this.policy.ping();
    }
  }

  #canAsk(): boolean {
    return this.#watching && this.#link.connected;
  }

  // ---- NATS ----

  #subscribe(nc: NatsConnection): void {
    const inbox = subscribeAll(nc, {
      subjects: this.#subjects,
      received: this.#received,
      intake: this.#intake,
      policy: this.policy,
      watching: this.#watching,
      inboxPrefix: this.config.nats.inboxPrefix,
      // one answer per cluster even when several of its nodes listen
      responders: this.#publisher ? `${this.config.subjectPrefix}.responders.${this.cluster}` : undefined,
      cluster: this.cluster,
    });
    if (inbox) this.#inbox = inbox;
  }

  #answer(subject: string, reply: string | undefined, data: Uint8Array, now: number): void {
    if (!this.#publisher || !this.#advertising) return;
    const answer = this.#responder.handle(subject, reply, data, now);
    const nc = this.#link.connection;
    if (!answer || !nc) return;
    if (answer.kind === 'announce') {
      // everyone asks everyone at once here: answer small, and let the asker pull snapshots at its own pace
      nc.publish(answer.reply, this.#publisher.announce());
      return;
    }
    const started = this.#now();
    const parts = this.#publisher.snapshot(answer.req, SNAPSHOT_PART_BYTES);
    for (const part of parts) nc.publish(answer.reply, part);
    this.#log.debug(
      { req: answer.req, peer: answer.requester, parts: parts.length, ms: this.#now() - started },
      'snapshot sent',
    );
  }

  #publishBulk(): void {
    const nc = this.#link.connection;
    if (!this.#publisher || !nc || !this.#advertising) return;
    const subject = this.#subjects.bulk(this.cluster);
    for (const part of this.#publisher.snapshot(`push-${nuid.next()}`, SNAPSHOT_PART_BYTES)) {
      nc.publish(subject, part);
    }
  }

  #publish(messages: string[]): void {
    const nc = this.#link.connection;
    if (!nc || !this.#advertising) return;
    const subject = this.#subjects.catalog(this.cluster);
    for (const m of messages) nc.publish(subject, m);
  }

  #announce(): void {
    const nc = this.#link.connection;
    if (!this.#publisher || !nc || !this.#advertising) return;
    nc.publish(this.#subjects.announce(this.cluster), this.#publisher.announce());
  }

  #every(ms: number, event: FederationEvent): void {
    const t = setInterval(() => this.#enqueue(event), ms);
    t.unref();
    this.#timers.push(t);
  }
}

function signerFor(leaf: IssuedLeaf): JwsSigner {
  return new JwsSigner({ chainPem: leaf.chainPem, keyPem: leaf.keyPem });
}

export type { LinkState, NatsStatus };
