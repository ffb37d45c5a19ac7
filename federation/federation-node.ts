import { readFileSync } from 'node:fs';
import {
  connect,
  createInbox,
  credsAuthenticator,
  type Msg,
  type NatsConnection,
  type NodeConnectionOptions,
  nuid,
} from '@nats-io/transport-node';
import type { CertificateSource, IssuedLeaf, TrustBundle } from '../ca/index.ts';
import {
  type CatalogChange,
  type CatalogView,
  type ClusterState,
  type Counter,
  componentLogger,
  type EndpointSource,
  type GatewayEndpoint,
  type Locality,
  type Logger,
  MeshfedError,
  parseConfig,
  type Registry,
  type RemoteServiceInstance,
  type ServiceRef,
  sharedCounter,
  toMeshfedError,
} from '../core/index.ts';
import { GatewayAddressPolicy } from './address-policy.ts';
import { readCatalogFile, writeCatalogFile } from './catalog-file.ts';
import { CatalogStore } from './catalog-store.ts';
import {
  type FederationConfig,
  type FederationConfigInput,
  federationConfigSchema,
  republishIntervalOf,
} from './config.ts';
import { JwsSigner } from './jws.ts';
import {
  type AnnounceMessage,
  type EntryMessage,
  entryKey,
  MAX_SNAPSHOT_BYTES,
  SCHEMA_VERSION,
  type SnapshotMessage,
  type SyncRequestMessage,
} from './messages.ts';
import { type Proof, ProofMaker } from './proof.ts';
import { CatalogPublisher } from './publisher.ts';
import { ingestCatalogMessage } from './ingest.ts';
import { RejectionRecorder } from './rejections.ts';
import { SnapshotAssembly, type SnapshotVia } from './snapshot-assembly.ts';
import { SyncResponder } from './sync-responder.ts';
import { clusterOfSubject, type Subjects, subjects } from './subjects.ts';
import { type Accepted, MessageVerifier, type Verdict } from './verifier.ts';

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
  /** false: publish and answer snapshots only, hold no view of other clusters (default true) */
  watch?: boolean;
  logger: Logger;
  registry: Registry;
  /** test hook: the clock */
  now?: () => number;
}

export interface NatsStatus {
  connected: boolean;
  server?: string;
  lastError?: string;
}

/**
 * Snapshot parts are cut at 64 KiB of payload: a part then stays out of V8's large-object space on both sides,
 * and 100,000 entries cost ~600 signature checks (~0.25 s). Receivers accept parts up to 1 MiB.
 */
const SNAPSHOT_PART_BYTES = 64 * 1024;
/** persistence waits this long after a change, so a burst of changes is written once */
const PERSIST_DELAY_MS = 500;
/** after a write that took W ms, the next one waits at least W × this (at most PERSIST_MAX_PAUSE_MS) */
const PERSIST_PAUSE_FACTOR = 20;
const PERSIST_MAX_PAUSE_MS = 30_000;
/**
 * Snapshots requested at once. Each is one cluster's whole set (about 1.3 MB for 2,000 services): pulling a
 * bounded number at a time keeps a new view of 50 clusters from being sent ~65 MB at once, which NATS answers by
 * cutting the view off as a slow consumer (64 MiB pending); eight keep the pipe full on loopback.
 */
const SYNC_CONCURRENCY = 8;

/**
 * A cluster's member of the federated catalog: it publishes this cluster's exported services as signed entries
 * and announcements on NATS, answers snapshot requests for its own cluster, and keeps the verified view of every
 * other cluster (CatalogView). It survives NATS outages (the view stays, persisted to stateDir) and converges by
 * anti-entropy when NATS returns: heartbeats carry a digest of each cluster's set, and a mismatch pulls a
 * snapshot that also removes entries whose tombstones were missed.
 */
export class FederationNode implements CatalogView {
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
  #jws: JwsSigner | undefined;
  #nc: NatsConnection | undefined;
  #connected = false;
  #lastError: string | undefined;
  #stopped = true;
  #timers: NodeJS.Timeout[] = [];
  #persistTimer: NodeJS.Timeout | undefined;
  #persistedVersion = -1;
  /** earliest time of the next write: a write of a large catalog is followed by a proportionally longer pause */
  #persistNotBefore = 0;
  /** the write in progress, if any: writes never overlap */
  #persisting: Promise<void> | undefined;
  /** signed proofs are kept (compactly) only when there is a stateDir to persist them to */
  readonly #proofs: ProofMaker | undefined;
  #unsubscribeSource: (() => void) | undefined;
  #inbox = '';
  #requests = new Map<string, number>();
  readonly #assembly: SnapshotAssembly;
  #lastSyncAsk = new Map<string, number>();
  /** cluster → request id of its snapshot in flight */
  #syncInFlight = new Map<string, { req: string; at: number }>();
  #syncQueue = new Set<string>();
  #connectLoop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #onRotated = (leaf: IssuedLeaf): void => this.#adoptSigner(leaf, true);

  constructor(o: FederationNodeOptions) {
    this.#o = o;
    this.config = parseConfig(federationConfigSchema, o.config, { source: 'federation' });
    this.cluster = o.cluster;
    this.#now = o.now ?? Date.now;
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
    this.#assembly = new SnapshotAssembly({
      store: this.#store,
      proofs: this.#proofs,
      log: this.#log,
      syncTimeout: this.config.syncTimeout,
    });
    this.#accepted = sharedCounter(
      o.registry,
      'meshfed_catalog_accepted_total',
      'verified catalog messages accepted, by type (entry, tombstone, announce, snapshot)',
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

  /** how many remote entries the view holds */
  entryCount(): number {
    return this.#store.size;
  }

  natsStatus(): NatsStatus {
    const s: NatsStatus = { connected: this.#connected };
    if (this.#connected && this.#nc) s.server = this.#nc.getServer();
    if (this.#lastError !== undefined) s.lastError = this.#lastError;
    return s;
  }

  /** Loads the persisted catalog, then connects in the background; never fails because NATS is down. */
  async start(): Promise<void> {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#loadState();
    // requests for snapshots are signed too, so every node needs its federation identity
    this.#adoptSigner(this.#o.signer.current(), false);
    this.#o.signer.on('rotated', this.#onRotated);
    if (this.#publisher) {
      // the whole initial set goes out as a bulk snapshot (on connect), not as one signed message per entry
      this.#publisher.update(this.#o.source!.current(), { sign: false });
      this.#unsubscribeSource = this.#o.source!.onChange((services) => {
        this.#publish(this.#publisher!.update(services));
      });
      this.#every(this.config.heartbeatInterval, () => this.#announce());
      this.#every(republishIntervalOf(this.config), () => {
        this.#publisher!.refreshAll();
        this.#publishBulk();
      });
    }
    const tick = Math.max(20, Math.min(1000, Math.floor(this.config.staleAfter / 10)));
    this.#every(tick, () => {
      this.#store.tick(this.#now(), this.#connected);
      this.#expireCollections();
      this.#schedulePersist();
    });
    this.#connectLoop = this.#connectUntilStopped();
  }

  /** Stops publishing and listening; with `withdraw` (or config withdrawOnStop) tombstones every export first. */
  async stop(o: { withdraw?: boolean } = {}): Promise<void> {
    if (this.#stopped) return;
    const withdraw = o.withdraw ?? this.config.withdrawOnStop;
    if (withdraw && this.#publisher && this.#nc && this.#connected) {
      this.#publish(this.#publisher.withdrawAll());
      this.#announce();
      await this.#nc.flush().catch(() => undefined);
    }
    this.#stopped = true;
    this.#wake?.();
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    // forgotten, not just cleared: a leftover handle would keep #schedulePersist from ever arming it again
    clearTimeout(this.#persistTimer);
    this.#persistTimer = undefined;
    this.#unsubscribeSource?.();
    this.#o.signer.off('rotated', this.#onRotated);
    const nc = this.#nc;
    this.#nc = undefined;
    this.#connected = false;
    if (nc) await nc.close().catch(() => undefined);
    await this.#connectLoop;
    await this.#persisting;
    await this.#persistNow();
  }

  // ---- connection ----

  #natsOptions(): NodeConnectionOptions {
    const n = this.config.nats;
    const opts: NodeConnectionOptions = {
      servers: [...n.servers],
      name: n.name ?? `meshfed-federation-${this.cluster}`,
      inboxPrefix: n.inboxPrefix,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: n.reconnectWait,
      reconnectJitter: Math.floor(n.reconnectWait / 4),
      timeout: Math.max(1000, n.reconnectWait * 2),
      pingInterval: Math.max(1000, Math.floor(this.config.staleAfter / 4)),
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
    const n = this.config.nats;
    while (!this.#stopped) {
      try {
        const nc = await connect(this.#natsOptions());
        if (this.#stopped) {
          await nc.close();
          return;
        }
        this.#nc = nc;
        this.#lastError = undefined;
        this.#subscribe(nc);
        void this.#watchStatus(nc);
        this.#onConnected();
        await nc.closed();
        if (this.#stopped) return;
        this.#connected = false;
        this.#log.warn('NATS connection closed; connecting again');
      } catch (err) {
        const e = new MeshfedError(
          'MESHFED_NATS_UNAVAILABLE',
          `cannot reach NATS at ${n.servers.join(', ')}: ${(err as Error).message}; the last verified catalog stays in use`,
          { cause: err, retryable: true },
        );
        if (this.#lastError !== e.message) this.#log.warn({ err: e }, 'NATS unavailable; retrying');
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
        this.#log.warn({ server: s.server }, 'NATS disconnected; keeping the last verified catalog');
      } else if (s.type === 'reconnect') {
        this.#lastError = undefined;
        this.#log.info({ server: s.server }, 'NATS reconnected; resynchronising');
        this.#onConnected();
      } else if (s.type === 'error') {
        this.#lastError = s.error.message;
      }
    }
  }

  #onConnected(): void {
    this.#connected = true;
    // requests sent on the old connection will not be answered
    this.#syncInFlight.clear();
    this.#store.resume(this.#now());
    this.#publishBulk();
    this.#announce();
    // anti-entropy: ask every cluster for its whole set, not only for what was missed
    this.#requestSync(undefined);
  }

  #subscribe(nc: NatsConnection): void {
    const s = this.#subjects;
    const safe =
      (fn: (m: Msg) => void) =>
      (err: Error | null, m: Msg): void => {
        if (err) return;
        try {
          fn(m);
        } catch (e) {
          // nothing a peer sends may crash the process; this is a bug of ours, logged with what came in
          this.#log.error({ err: toMeshfedError(e), subject: m.subject }, 'catalog message handling failed');
        }
      };
    if (this.#o.watch !== false) {
      nc.subscribe(s.catalog('*'), { callback: safe((m) => this.#onCatalog(m)) });
      nc.subscribe(s.announce('*'), { callback: safe((m) => this.#onAnnounce(m)) });
      nc.subscribe(s.bulk('*'), { callback: safe((m) => this.#onBulk(m)) });
      this.#inbox = createInbox(this.config.nats.inboxPrefix);
      nc.subscribe(`${this.#inbox}.*`, { callback: safe((m) => this.#onSnapshotPart(m)) });
    }
    if (this.#publisher) {
      // one answer per cluster even when several of its nodes listen
      const queue = `${this.config.subjectPrefix}.responders.${this.cluster}`;
      nc.subscribe(s.sync(this.cluster), { queue, callback: safe((m) => this.#onSyncRequest(m)) });
      nc.subscribe(s.syncAll, { queue, callback: safe((m) => this.#onSyncRequest(m)) });
    }
  }

  // ---- receiving ----

  #reject(
    v: Exclude<ReturnType<MessageVerifier['verify']>, Accepted>,
    subject: string,
    source: 'nats' | 'snapshot' | 'disk',
  ): void {
    this.#rejections.record(v, { subject, source });
  }

  #onCatalog(m: Msg): void {
    const subjectCluster = clusterOfSubject(m.subject);
    if (subjectCluster === this.cluster) return;
    const out = ingestCatalogMessage(this.#verifier, this.#store, m.data, {
      subjectCluster,
      now: this.#now(),
      proofs: this.#proofs,
    });
    if (!out.verdict.ok) {
      this.#reject(out.verdict, m.subject, 'nats');
      return;
    }
    this.#afterApply(out.result!, out.verdict, m.subject);
  }

  #onAnnounce(m: Msg): void {
    const subjectCluster = clusterOfSubject(m.subject);
    if (subjectCluster === this.cluster) return;
    const v = this.#verifier.verify(m.data, { subjectCluster });
    if (!v.ok) {
      this.#reject(v, m.subject, 'nats');
      return;
    }
    if (v.msg.type !== 'announce') {
      this.#reject(
        {
          ok: false,
          reason: 'bad_payload',
          signer: v.signer,
          detail: `a ${v.msg.type} on the announce subject`,
        },
        m.subject,
        'nats',
      );
      return;
    }
    this.#applyAnnounce(v.msg, this.#proofs?.make(m.data), v, m.subject);
  }

  #applyAnnounce(msg: AnnounceMessage, proof: Proof | undefined, v: Accepted, subject: string): void {
    const { result, digestMatches } = this.#store.applyAnnounce(msg, proof, this.#now());
    this.#afterApply(result, v, subject);
    if (!digestMatches) this.#requestSync(msg.cluster);
  }

  #afterApply(result: string, v: Accepted, subject: string): void {
    if (result === 'applied') {
      this.#accepted.inc({ type: v.msg.type });
      this.#schedulePersist();
    } else if (result === 'stale_revision') {
      this.#reject(
        {
          ok: false,
          reason: 'stale_revision',
          signer: v.signer,
          detail: `a replayed or older ${v.msg.type}`,
        },
        subject,
        'nats',
      );
    }
  }

  /**
   * `undefined` asks every publisher to announce itself to us now (answers arrive as announcements, whose
   * digests then queue the snapshots we lack); a cluster name queues a snapshot of that cluster.
   */
  #requestSync(cluster: string | undefined): void {
    const nc = this.#nc;
    if (!nc || !this.#connected || this.#o.watch === false) return;
    const now = this.#now();
    if (cluster === undefined) {
      const req = nuid.next();
      this.#requests.set(req, now);
      const reply = `${this.#inbox}.${req}`;
      nc.publish(this.#subjects.syncAll, this.#syncRequest(req, reply, now), { reply });
      this.#log.debug({ peer: 'all', req }, 'announcements requested');
      return;
    }
    // a digest mismatch is asked about at most once per heartbeat interval per cluster
    if (this.#syncInFlight.has(cluster) || this.#syncQueue.has(cluster)) return;
    const last = this.#lastSyncAsk.get(cluster) ?? 0;
    if (now - last < this.config.heartbeatInterval) return;
    this.#syncQueue.add(cluster);
    this.#pumpSync();
  }

  #pumpSync(): void {
    const nc = this.#nc;
    if (!nc || !this.#connected) return;
    for (const cluster of this.#syncQueue) {
      if (this.#syncInFlight.size >= SYNC_CONCURRENCY) return;
      this.#syncQueue.delete(cluster);
      const now = this.#now();
      const req = nuid.next();
      this.#lastSyncAsk.set(cluster, now);
      this.#requests.set(req, now);
      this.#syncInFlight.set(cluster, { req, at: now });
      const reply = `${this.#inbox}.${req}`;
      nc.publish(this.#subjects.sync(cluster), this.#syncRequest(req, reply, now), { reply });
      this.#log.debug({ peer: cluster, req }, 'snapshot requested');
    }
  }

  #syncDone(cluster: string, req: string): void {
    if (this.#syncInFlight.get(cluster)?.req !== req) return;
    this.#syncInFlight.delete(cluster);
    this.#pumpSync();
  }

  /** A request signed by our federation identity: responders rate it by our cluster and answer only `reply`. */
  #syncRequest(req: string, reply: string, now: number): string {
    const msg: SyncRequestMessage = {
      v: SCHEMA_VERSION,
      type: 'sync',
      cluster: this.cluster,
      req,
      reply,
      issuedAt: now,
      expiresAt: now + this.config.syncTimeout,
    };
    return this.#jws!.sign(msg);
  }

  #onSyncRequest(m: Msg): void {
    if (!this.#publisher) return;
    const answer = this.#responder.handle(m.subject, m.reply, m.data, this.#now());
    if (!answer) return;
    if (answer.kind === 'announce') {
      // everyone asks everyone at once here: answer small, and let the asker pull snapshots at its own pace
      this.#nc?.publish(answer.reply, this.#publisher.announce());
      return;
    }
    const started = this.#now();
    const parts = this.#publisher.snapshot(answer.req, SNAPSHOT_PART_BYTES);
    for (const part of parts) this.#nc?.publish(answer.reply, part);
    this.#log.debug(
      { req: answer.req, peer: answer.requester, parts: parts.length, ms: this.#now() - started },
      'snapshot sent',
    );
  }

  #onBulk(m: Msg): void {
    const subjectCluster = clusterOfSubject(m.subject);
    if (subjectCluster === this.cluster) return;
    const v = this.#verifier.verify(m.data, { snapshot: true, subjectCluster });
    if (!v.ok) {
      this.#reject(v, m.subject, 'nats');
      return;
    }
    if (v.msg.type !== 'snapshot') {
      this.#reject(
        { ok: false, reason: 'bad_payload', signer: v.signer, detail: `a ${v.msg.type} on the bulk subject` },
        m.subject,
        'nats',
      );
      return;
    }
    this.#applySnapshotPart(v.msg, m.data, v, 'push');
  }

  #onSnapshotPart(m: Msg): void {
    const req = clusterOfSubject(m.subject);
    if (!this.#requests.has(req)) return;
    const v = this.#verifier.verify(m.data, { snapshot: true });
    if (!v.ok) {
      this.#reject(v, m.subject, 'snapshot');
      return;
    }
    if (v.msg.type === 'announce') {
      if (v.msg.cluster !== this.cluster) {
        this.#applyAnnounce(v.msg, this.#proofs?.make(m.data), v, m.subject);
      }
      return;
    }
    const snap = v.msg;
    if (snap.type !== 'snapshot' || snap.req !== req) {
      this.#reject(
        {
          ok: false,
          reason: 'bad_payload',
          signer: v.signer,
          detail: 'not a snapshot part for this request',
        },
        m.subject,
        'snapshot',
      );
      return;
    }
    if (snap.cluster === this.cluster) return;
    // only the answer to the request in flight to that cluster: a late or unasked reply holds nothing
    if (this.#syncInFlight.get(snap.cluster)?.req !== req) return;
    this.#applySnapshotPart(snap, m.data, v, 'reply');
  }

  #applySnapshotPart(snap: SnapshotMessage, raw: Uint8Array, v: Accepted, via: SnapshotVia): void {
    const out = this.#assembly.add(snap, raw, via, v.signer, this.#now());
    this.#accepted.inc({ type: 'snapshot' });
    if (out.applied > 0) this.#schedulePersist();
    if (out.complete && via === 'reply') this.#syncDone(snap.cluster, snap.req);
  }

  #expireCollections(): void {
    const now = this.#now();
    this.#assembly.expire(now);
    for (const [req, at] of this.#requests) {
      if (now - at > this.config.syncTimeout) this.#requests.delete(req);
    }
    for (const [cluster, f] of this.#syncInFlight) {
      // an unanswered request (responder gone, parts lost) frees its slot; the next mismatch asks again
      if (now - f.at > this.config.syncTimeout) this.#syncDone(cluster, f.req);
    }
  }

  // ---- publishing ----

  #adoptSigner(leaf: IssuedLeaf, republish: boolean): void {
    this.#jws = new JwsSigner({ chainPem: leaf.chainPem, keyPem: leaf.keyPem });
    if (republish && this.#publisher) {
      // entries signed by the old leaf would die with it: re-sign them all now
      this.#publisher.refreshAll();
      this.#publishBulk();
      this.#announce();
    }
  }

  #publishBulk(): void {
    const nc = this.#nc;
    if (!this.#publisher || !nc || nc.isClosed()) return;
    const subject = this.#subjects.bulk(this.cluster);
    for (const part of this.#publisher.snapshot(`push-${nuid.next()}`, SNAPSHOT_PART_BYTES))
      nc.publish(subject, part);
  }

  #publish(messages: string[]): void {
    const nc = this.#nc;
    if (!nc || nc.isClosed()) return;
    const subject = this.#subjects.catalog(this.cluster);
    for (const m of messages) nc.publish(subject, m);
  }

  #announce(): void {
    if (!this.#publisher || !this.#nc || this.#nc.isClosed()) return;
    this.#nc.publish(this.#subjects.announce(this.cluster), this.#publisher.announce());
  }

  #every(ms: number, fn: () => void): void {
    const t = setInterval(() => {
      try {
        fn();
      } catch (err) {
        this.#log.error({ err: toMeshfedError(err) }, 'federation timer task failed');
      }
    }, ms);
    t.unref();
    this.#timers.push(t);
  }

  // ---- persistence ----

  #schedulePersist(): void {
    // once stopped, stop() writes the last state itself: a timer armed now could overlap that write
    if (
      this.#stopped ||
      !this.config.stateDir ||
      this.#persistTimer ||
      this.#persisting ||
      this.#store.version === this.#persistedVersion
    )
      return;
    const delay = Math.max(PERSIST_DELAY_MS, this.#persistNotBefore - this.#now());
    this.#persistTimer = setTimeout(() => {
      this.#persistTimer = undefined;
      this.#persisting = this.#persistNow().finally(() => {
        this.#persisting = undefined;
        this.#schedulePersist();
      });
    }, delay);
    this.#persistTimer.unref();
  }

  async #persistNow(): Promise<void> {
    const dir = this.config.stateDir;
    if (!dir || this.#store.version === this.#persistedVersion) return;
    const version = this.#store.version;
    const started = performance.now();
    try {
      await writeCatalogFile(dir, this.cluster, this.#store.exportState(), this.#now());
      this.#persistedVersion = version;
      // under a steady change stream a 100,000-entry file would otherwise be rewritten twice a second
      const took = performance.now() - started;
      this.#persistNotBefore = this.#now() + Math.min(PERSIST_MAX_PAUSE_MS, took * PERSIST_PAUSE_FACTOR);
    } catch (err) {
      this.#log.error(
        { err: toMeshfedError(err) },
        'cannot persist the catalog; the view in memory is unaffected',
      );
    }
  }

  #loadState(): void {
    const dir = this.config.stateDir;
    if (!dir) return;
    let file: ReturnType<typeof readCatalogFile>;
    try {
      file = readCatalogFile(dir);
    } catch (err) {
      this.#log.error({ err: toMeshfedError(err) }, 'the persisted catalog is unusable; starting empty');
      return;
    }
    if (!file) return;
    const now = this.#now();
    const verified: (Accepted | undefined)[] = [];
    for (let i = 0; i < file.proofCount; i++) {
      const text = file.proofText(i);
      const v: Verdict = text
        ? this.#verifier.verify(text, { snapshot: true, checkExpiry: false })
        : { ok: false, reason: 'not_jws', signer: 'unknown', detail: 'a damaged proof in the catalog file' };
      if (v.ok) verified.push(v);
      else {
        verified.push(undefined);
        this.#reject(v, 'stateDir', 'disk');
      }
    }
    // the loaded proofs are kept as they were stored, so the next write still holds them
    const proofAt = (idx: number): Proof | undefined => (this.#proofs ? file.proof(idx) : undefined);
    // a snapshot part vouches for hundreds of entries: index each once instead of searching it per entry
    const partIndex = new Map<number, Map<string, EntryMessage>>();
    const lookup = (idx: number, key: string, revision: number): Accepted['msg'] | undefined => {
      const msg = verified[idx]?.msg;
      if (!msg) return undefined;
      if (msg.type === 'snapshot') {
        let byKey = partIndex.get(idx);
        if (!byKey) {
          byKey = new Map(
            msg.entries.map((e) => [entryKey(e.cluster, e.namespace, e.name), e as EntryMessage]),
          );
          partIndex.set(idx, byKey);
        }
        const e = byKey.get(key);
        return e?.revision === revision ? e : undefined;
      }
      if (msg.type === 'announce') return msg.cluster === key && msg.revision === revision ? msg : undefined;
      return entryKey(msg.cluster, (msg as EntryMessage).namespace, (msg as EntryMessage).name) === key &&
        (msg as EntryMessage).revision === revision
        ? msg
        : undefined;
    };
    let entries = 0;
    for (const [cluster, revision, idx, stale] of file.announces) {
      const msg = lookup(idx, cluster, revision);
      if (msg?.type !== 'announce') continue;
      this.#store.applyAnnounce(msg, proofAt(idx), now);
      this.#store.restoreStale(cluster, stale);
    }
    for (const [key, revision, idx] of file.tombstones) {
      const msg = lookup(idx, key, revision);
      if (msg?.type === 'tombstone') this.#store.applyTombstone(msg, proofAt(idx), now);
    }
    for (const [key, revision, idx] of file.entries) {
      const msg = lookup(idx, key, revision);
      if (msg?.type === 'entry' && this.#store.applyEntry(msg, proofAt(idx), now) === 'applied') entries++;
    }
    // a file of the previous format is written again (in this one) at the next chance
    this.#persistedVersion = file.current ? this.#store.version : -1;
    this.#log.info(
      { entries, listed: file.entries.length, savedAt: new Date(file.savedAt).toISOString() },
      'loaded the persisted catalog',
    );
  }
}
