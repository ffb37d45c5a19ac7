import { type NatsConnection, nuid } from '@nats-io/transport-node';
import type { CertificateSource, IssuedLeaf, TrustBundle } from '../ca/index.ts';
import {
  type Counter,
  componentLogger,
  type EndpointSource,
  type GatewayEndpoint,
  type LinkFigures,
  type Locality,
  type Logger,
  monotonicNow,
  parseConfig,
  type Registry,
  sharedCounter,
  toMeshfedError,
} from '../core/index.ts';
import { GatewayAddressPolicy } from './address-policy.ts';
import { CatalogIntake } from './catalog-intake.ts';
import { CatalogOutbox } from './catalog-outbox.ts';
import { CatalogPersistence } from './catalog-persistence.ts';
import { CatalogStore } from './catalog-store.ts';
import { type FederationConfig, type FederationConfigInput, federationConfigSchema } from './config.ts';
import type { FederationEvent } from './events.ts';
import { IntakeQueue } from './intake-queue.ts';
import { JwsSigner } from './jws.ts';
import { LinkReporter } from './link-reporter.ts';
import { LinkReports } from './link-reports.ts';
import { MAX_SNAPSHOT_BYTES } from './messages.ts';
import { NatsLink } from './nats-link.ts';
import { PolicyAgent } from './policy-agent.ts';
import { PolicyVerifier } from './policy-verifier.ts';
import { ProofMaker } from './proof.ts';
import { CatalogPublisher } from './publisher.ts';
import { RejectionRecorder } from './rejections.ts';
import { SnapshotAssembly } from './snapshot-assembly.ts';
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
  /** the wall clock: expiries, clock-skew bounds and revisions read it */
  now: () => number;
  /**
   * the clock silence and waits are measured on (a cluster's staleness, a snapshot's sync timeout): default the
   * monotonic clock, so that a step of the wall clock (NTP, an operator) neither makes every cluster stale at
   * once nor keeps a silent one listed; a test that drives `now` by hand passes the same function here
   */
  steady?: () => number;
}

/** What the parts may ask of the node that holds them. */
export interface FederationPartsHooks {
  /** raises an event for the node's one dispatcher */
  enqueue: (e: FederationEvent) => void;
  /** whether the node is stopped (a link report due then is not sent) */
  stopped: () => boolean;
}

export function signerFor(leaf: IssuedLeaf): JwsSigner {
  return new JwsSigner({ chainPem: leaf.chainPem, keyPem: leaf.keyPem });
}

/**
 * The composition of one federation node: every part it is made of, each with one job, built from the node's
 * options and wired to each other (NATS callbacks and the intake raise events through `hooks.enqueue`). The
 * order of construction is the order the metrics are registered in.
 */
export class FederationParts {
  readonly config: FederationConfig;
  readonly cluster: string;
  readonly log: Logger;
  readonly now: () => number;
  readonly steady: () => number;
  readonly watching: boolean;
  readonly subjects: Subjects;
  readonly store: CatalogStore;
  readonly verifier: MessageVerifier;
  readonly rejections: RejectionRecorder;
  readonly publisher: CatalogPublisher | undefined;
  readonly accepted: Counter<'type'>;
  readonly responder: SyncResponder;
  readonly requester: SyncRequester;
  readonly assembly: SnapshotAssembly;
  readonly intake: CatalogIntake;
  /** what the subscriptions receive, waiting per cluster to be verified and handled */
  readonly received: IntakeQueue;
  readonly link: NatsLink;
  /** everything the node sends on NATS */
  readonly outbox: CatalogOutbox;
  /** only with a stateDir; then signed proofs are kept (compactly) for it */
  readonly persistence: CatalogPersistence | undefined;
  readonly proofs: ProofMaker | undefined;
  /** the other clusters' gateways' latest link reports */
  readonly linkReports: LinkReports;
  /** this gateway's own link reports, when it measures any */
  readonly linkReporter: LinkReporter | undefined;
  /** the federated policy this gateway enforces (a PolicyView); fed by the same connection and event queue */
  readonly policy: PolicyAgent;
  /** signs our messages with the federation identity's current leaf; set on start and on every rotation */
  jws: JwsSigner | undefined;
  /** the inbox our sync requests are answered on, on the connection of the moment */
  inbox = '';

  constructor(o: FederationNodeOptions, hooks: FederationPartsHooks) {
    this.config = parseConfig(federationConfigSchema, o.config, { source: 'federation' });
    this.cluster = o.cluster;
    this.now = o.now;
    this.steady = o.steady ?? monotonicNow;
    this.watching = o.watch !== false;
    this.log = componentLogger(o.logger, 'federation', o.cluster);
    this.subjects = subjects(this.config.subjectPrefix);
    this.store = new CatalogStore({
      self: o.cluster,
      staleAfter: this.config.staleAfter,
      maxClockSkew: this.config.maxClockSkew,
    });
    this.linkReports = new LinkReports(this.config.maxClockSkew);
    this.verifier = new MessageVerifier({
      trustDomain: o.trustDomain,
      bundle: o.bundle,
      maxMessageBytes: this.config.maxMessageBytes,
      maxSnapshotBytes: MAX_SNAPSHOT_BYTES,
      maxEntryTtl: this.config.maxEntryTtl,
      maxClockSkew: this.config.maxClockSkew,
      gatewayAddresses: new GatewayAddressPolicy(this.config.gatewayAddresses),
      now: this.now,
    });
    this.rejections = new RejectionRecorder(o.registry, this.log);
    this.proofs = this.config.stateDir ? new ProofMaker() : undefined;
    if (this.config.stateDir) {
      this.persistence = new CatalogPersistence({
        dir: this.config.stateDir,
        cluster: o.cluster,
        store: this.store,
        verifier: this.verifier,
        rejections: this.rejections,
        log: this.log,
        now: this.now,
      });
    }
    this.assembly = new SnapshotAssembly({
      store: this.store,
      proofs: this.proofs,
      log: this.log,
      syncTimeout: this.config.syncTimeout,
    });
    this.accepted = sharedCounter(
      o.registry,
      'meshfed_catalog_accepted_total',
      'verified catalog messages accepted, by type (entry, tombstone, announce, snapshot, links, withdraw)',
      ['type'],
    );
    if (o.source) {
      this.publisher = new CatalogPublisher({
        cluster: o.cluster,
        locality: o.locality,
        gateways: o.gateways,
        entryTtl: this.config.entryTtl,
        signer: () => this.jws!,
        now: this.now,
      });
    }
    this.link = new NatsLink({
      nats: this.config.nats,
      cluster: o.cluster,
      staleAfter: this.config.staleAfter,
      log: this.log,
      subscribe: (nc) => this.#subscribe(nc),
      onState: (state, detail) =>
        hooks.enqueue({ type: 'ConnectionStateChanged', source: 'nats', state, ...detail }),
    });
    this.outbox = new CatalogOutbox({
      link: this.link,
      subjects: this.subjects,
      cluster: o.cluster,
      publisher: this.publisher,
      advertise: o.advertise !== false,
      log: this.log,
      now: this.now,
    });
    this.responder = new SyncResponder({
      verifier: this.verifier,
      limits: this.config.responderLimits,
      inboxPrefix: this.config.nats.inboxPrefix,
      syncAllSubject: this.subjects.syncAll,
      log: this.log,
      registry: o.registry,
      now: this.now(),
    });
    this.requester = new SyncRequester({
      cluster: o.cluster,
      subjects: this.subjects,
      syncTimeout: this.config.syncTimeout,
      heartbeatInterval: this.config.heartbeatInterval,
      signer: () => this.jws!,
      send: (subject, data, reply) => this.outbox.send(subject, data, reply),
      log: this.log,
      now: this.now,
      steady: this.steady,
    });
    const dropped = sharedCounter(
      o.registry,
      'meshfed_catalog_intake_dropped_total',
      'catalog messages dropped unread because their cluster had too many waiting (a flood)',
      ['cluster'],
    );
    this.received = new IntakeQueue({
      maxPerKey: INTAKE_BACKLOG_PER_CLUSTER,
      sliceMs: INTAKE_SLICE_MS,
      onDrop: (cluster) => dropped.inc({ cluster }),
      // nothing a peer sends may crash the process: a throw here is a bug of ours
      onError: (err, key) =>
        this.log.error({ err: toMeshfedError(err), from: key }, 'catalog message handling failed'),
    });
    this.intake = new CatalogIntake({
      cluster: o.cluster,
      verifier: this.verifier,
      rejections: this.rejections,
      proofs: this.proofs,
      isOurRequest: (req) => this.requester.isOpen(req),
      emit: hooks.enqueue,
    });
    this.policy = new PolicyAgent({
      cluster: o.cluster,
      gateway: o.gateways[0]?.name ?? 'watcher',
      instance: nuid.next(),
      subjects: this.subjects,
      verifier: new PolicyVerifier({
        trustDomain: o.trustDomain,
        bundle: o.bundle,
        maxClockSkew: this.config.maxClockSkew,
        now: this.now,
      }),
      stateDir: this.config.stateDir,
      heartbeatInterval: this.config.heartbeatInterval,
      signer: () => this.jws!,
      send: (subject, data, reply) => this.outbox.send(subject, data, reply),
      emit: hooks.enqueue,
      log: this.log,
      registry: o.registry,
      now: this.now,
    });
    if (o.links) {
      this.linkReporter = new LinkReporter({
        cluster: o.cluster,
        gateway: o.gateways[0]?.name ?? 'gateway',
        heartbeatInterval: this.config.heartbeatInterval,
        subject: this.subjects.links(o.cluster),
        measure: o.links,
        signer: () => this.jws,
        send: (subject, data) => !hooks.stopped() && this.outbox.send(subject, data),
        log: this.log,
        now: this.now,
      });
    }
  }

  /** whether anti-entropy may ask other clusters now: only a watching node, only while connected */
  canAsk(): boolean {
    return this.watching && this.link.connected;
  }

  /** a new connection's subscriptions (NatsLink calls it before the connection is reported) */
  #subscribe(nc: NatsConnection): void {
    const inbox = subscribeAll(nc, {
      subjects: this.subjects,
      received: this.received,
      intake: this.intake,
      policy: this.policy,
      watching: this.watching,
      inboxPrefix: this.config.nats.inboxPrefix,
      // one answer per cluster even when several of its nodes listen
      responders: this.publisher ? `${this.config.subjectPrefix}.responders.${this.cluster}` : undefined,
      cluster: this.cluster,
    });
    if (inbox) this.inbox = inbox;
  }
}
