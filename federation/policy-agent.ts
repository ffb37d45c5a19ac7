import type { Msg, Subscription } from '@nats-io/transport-node';
import {
  type Counter,
  Gauge,
  type Logger,
  type PolicySet,
  type PolicyView,
  type Registry,
  sharedCounter,
  toMeshfedError,
} from '../core/index.ts';
import type { FederationEvent } from './events.ts';
import type { JwsSigner } from './jws.ts';
import { readPolicyFile, writePolicyFile } from './policy-file.ts';
import { POLICY_SCHEMA_VERSION, type PolicyStateMessage } from './policy-messages.ts';
import { PolicyStore } from './policy-store.ts';
import type { PolicyVerifier, VerifiedBundle } from './policy-verifier.ts';
import { RejectionRecorder } from './rejections.ts';
import { RequestLimiter } from './request-limiter.ts';
import { clusterOfSubject, type Subjects } from './subjects.ts';

export type PolicyEvent = Extract<
  FederationEvent,
  { type: 'PolicyBundleReceived' | 'PolicyStateReceived' | 'PolicyRequested' | 'PolicyReportDue' }
>;

export interface PolicyAgentOptions {
  cluster: string;
  /** this gateway's name in its cluster (state reports name it) */
  gateway: string;
  /** random per process */
  instance: string;
  subjects: Subjects;
  verifier: PolicyVerifier;
  /** the persisted policy lives here (beside the catalog); none when absent */
  stateDir: string | undefined;
  /** state reports go out this often; a scope is re-broadcast at most this often */
  heartbeatInterval: number;
  /** this cluster's federation identity signs state reports */
  signer: () => JwsSigner;
  /** publishes on the connection if there is one (with a reply subject for requests); false otherwise */
  send: (subject: string, data: string | Uint8Array, reply?: string) => boolean;
  emit: (event: FederationEvent) => void;
  log: Logger;
  registry: Registry;
  now: () => number;
}

/**
 * A gateway's part of federated policy, beside the catalog on the same connection and the same event queue:
 * it verifies bundles (policy-verifier.ts), holds the newest per scope (PolicyStore, the PolicyView the gateway
 * consumes), persists them, reports what it enforces, and catches up by itself: when a peer's report shows a
 * newer revision of a scope (or a scope we lack), we ask `<p>.policy-get` for exactly that revision, at most
 * once per heartbeat interval per scope, and every gateway holding it answers to our inbox. Pulling, not
 * re-broadcasting, keeps a gateway's NATS permissions to its own report subject and inboxes. A refused bundle
 * changes nothing; it is counted and logged once.
 */
export class PolicyAgent implements PolicyView {
  readonly #o: PolicyAgentOptions;
  readonly #store: PolicyStore;
  readonly #rejections: RejectionRecorder;
  readonly #applied: Counter<'scope'>;
  readonly #resyncs: Counter<'scope'>;
  readonly #revision: Gauge<'scope'>;
  readonly #limiter: RequestLimiter;
  /** scope → when we last asked for it (anti-entropy pacing) */
  readonly #lastAsked = new Map<string, number>();
  /** where answers to our policy-get requests arrive (set at every connect) */
  #inbox: string | undefined;
  /** scope → the policy-get subscription for the revision we hold */
  readonly #serving = new Map<string, Subscription>();
  /** subscribes in a queue group on the current connection (given at every new connection) */
  #subscribe: ((subject: string, queue: string, onMessage: (m: Msg) => void) => Subscription) | undefined;
  #dirty = false;
  #writing: Promise<void> | undefined;

  constructor(o: PolicyAgentOptions) {
    this.#o = o;
    this.#store = new PolicyStore({ log: o.log });
    this.#rejections = new RejectionRecorder(o.registry, o.log, {
      metric: 'meshfed_policy_rejected_total',
      help: 'policy bundles and reports refused (signer not allowed, other cluster, older revision, invalid, expired, oversized)',
      message:
        'policy message rejected; the policy in force is unchanged (logged once per signer and reason; see meshfed_policy_rejected_total)',
    });
    this.#applied = sharedCounter(
      o.registry,
      'meshfed_policy_applied_total',
      'policy revisions put in force, by signer scope (admin, cluster:<name>)',
      ['scope'],
    );
    this.#resyncs = sharedCounter(
      o.registry,
      'meshfed_policy_resync_requests_total',
      'policy-get requests sent because a peer reported a newer revision than the one in force here (anti-entropy)',
      ['scope'],
    );
    this.#revision =
      (o.registry.getSingleMetric('meshfed_policy_revision') as Gauge<'scope'> | undefined) ??
      new Gauge({
        name: 'meshfed_policy_revision',
        help: 'the signed policy revision in force, by signer scope',
        labelNames: ['scope'],
        registers: [o.registry],
      });
    this.#limiter = new RequestLimiter(
      { perRequester: 5, perRequesterBurst: 20, total: 20, totalBurst: 50 },
      o.now(),
    );
  }

  // ---- PolicyView ----
  current(): PolicySet {
    return this.#store.current();
  }
  onChange(listener: (set: PolicySet) => void): () => void {
    return this.#store.onChange(listener);
  }

  /** `{ scope, revision }` of every scope in force. */
  revisions(): { scope: string; revision: number }[] {
    return this.#store.revisions();
  }

  /** The persisted bundles as events, each re-verified (its chain as of its signing time). */
  load(): FederationEvent[] {
    if (!this.#o.stateDir) return [];
    let raws: string[] | undefined;
    try {
      raws = readPolicyFile(this.#o.stateDir);
    } catch (err) {
      this.#o.log.error(
        { err: toMeshfedError(err) },
        'the persisted policy is unusable; starting without policy',
      );
      return [];
    }
    const events: FederationEvent[] = [];
    for (const raw of raws ?? []) {
      const v = this.#o.verifier.bundle(raw, { chainAt: 'issuedAt' });
      if (v.ok) events.push({ type: 'PolicyBundleReceived', source: 'file', subject: 'stateDir', bundle: v });
      else this.#rejections.record(v, { subject: 'stateDir', source: 'file' });
    }
    return events;
  }

  // ---- intake: NATS callbacks become verified events ----

  /** The inbox this connection listens on (`<inbox>.*`): answers to our policy-get and ping requests. */
  setInbox(inbox: string): void {
    this.#inbox = inbox;
  }

  /**
   * Answers policy-get for every revision held, on this connection (called at every new connection): one
   * queue-group subscription per scope, on the subject of exactly the revision in force.
   */
  serveAll(subscribe: (subject: string, queue: string, onMessage: (m: Msg) => void) => Subscription): void {
    this.#subscribe = subscribe;
    // the subscriptions of a previous connection died with it
    this.#serving.clear();
    for (const b of this.#store.bundles()) this.#serve(b);
  }

  #serve(b: VerifiedBundle): void {
    this.#serving.get(b.scope)?.unsubscribe();
    this.#serving.delete(b.scope);
    if (!this.#subscribe) return;
    const sub = this.#subscribe(
      this.#o.subjects.policyGet(b.scope, b.revision),
      this.#o.subjects.policyResponders,
      (m) => this.requestMessage(m, 'get'),
    );
    this.#serving.set(b.scope, sub);
  }

  /** `<inbox>.bundle` (answers to policy-get) and `<inbox>.state` (answers to our ping) */
  inboxMessage(m: Msg): void {
    // a NATS status message (no responders) has no body: nothing to verify or count
    if (m.data.byteLength === 0) return;
    if (m.subject.endsWith('.state')) this.stateMessage(m, { fromInbox: true });
    else this.bundleMessage(m);
  }

  /** Asks every gateway for its state report at once (at connect: catch up without waiting a heartbeat). */
  ping(): void {
    if (this.#inbox) this.#o.send(this.#o.subjects.policyPing, new Uint8Array(0), `${this.#inbox}.state`);
  }

  /** `<p>.policy.<scope…>`, and answers on our inbox */
  bundleMessage(m: Msg): void {
    // the bundle in force, again (several gateways answer one policy-get): skip the verification
    if (this.#holds(m.data)) return;
    const scope = scopeOfSubject(m.subject, this.#o.subjects);
    const v = this.#o.verifier.bundle(m.data, scope === undefined ? {} : { subjectScope: scope });
    if (!v.ok) {
      this.#rejections.record(v, { subject: m.subject, source: 'nats' });
      return;
    }
    this.#o.emit({ type: 'PolicyBundleReceived', source: 'nats', subject: m.subject, bundle: v });
  }

  /** `<p>.policy-state.<cluster>` */
  stateMessage(m: Msg, o: { fromInbox?: boolean } = {}): void {
    const v = this.#o.verifier.state(
      m.data,
      o.fromInbox ? {} : { subjectCluster: clusterOfSubject(m.subject) },
    );
    if (!v.ok) {
      this.#rejections.record(v, { subject: m.subject, source: 'nats' });
      return;
    }
    if (v.msg.instance === this.#o.instance) return; // our own report, back from NATS
    this.#o.emit({
      type: 'PolicyStateReceived',
      source: 'nats',
      subject: m.subject,
      msg: v.msg,
      signer: v.signer,
    });
  }

  /** `<p>.policy-ping` and `<p>.policy-get` (requests with a reply subject) */
  requestMessage(m: Msg, kind: 'ping' | 'get'): void {
    if (!m.reply) return;
    this.#o.emit({
      type: 'PolicyRequested',
      source: 'nats',
      subject: m.subject,
      kind,
      reply: m.reply,
      data: m.data,
    });
  }

  // ---- handlers, called in order by the node's dispatcher ----

  handle(e: PolicyEvent): void {
    switch (e.type) {
      case 'PolicyBundleReceived':
        this.#offer(e.bundle, e.source, e.subject);
        return;
      case 'PolicyStateReceived':
        this.#catchUp(e.msg);
        return;
      case 'PolicyRequested':
        this.#answer(e.kind, e.reply, e.subject);
        return;
      case 'PolicyReportDue':
        this.report();
        return;
    }
  }

  /** Publishes this gateway's signed state report. */
  report(): void {
    const now = this.#o.now();
    this.#o.send(
      this.#o.subjects.policyState(this.#o.cluster),
      this.#o.signer().sign(this.#stateMessage(now)),
    );
  }

  /** Writes what is pending and stops. */
  async close(): Promise<void> {
    await this.#writing;
    if (this.#dirty) await this.#write();
  }

  #offer(b: VerifiedBundle, source: 'nats' | 'file', subject: string): void {
    const result = this.#store.offer(b);
    // several gateways answer one policy-get: the first applies, the others are the same bytes
    if (result === 'duplicate') return;
    if (result === 'stale_revision' || result === 'conflicting_revision') {
      const held = this.#store.held(b.scope)!;
      this.#rejections.record(
        {
          reason: result,
          signer: b.signer,
          detail: `${b.scope} revision ${b.revision} ${result === 'stale_revision' ? 'is older than' : 'differs from the bundle of'} revision ${held.revision} in force (a replay or a rollback)`,
        },
        { subject, source },
      );
      return;
    }
    this.#revision.set({ scope: b.scope }, b.revision);
    this.#serve(b);
    this.#o.log.info(
      { scope: b.scope, revision: b.revision, signer: b.signer, documents: b.documents.length, source },
      'policy revision in force',
    );
    if (source === 'file') return;
    this.#applied.inc({ scope: b.scope });
    this.report();
    this.#persist();
  }

  /** A peer reported what it enforces: ask for every scope it holds a newer revision of. */
  #catchUp(peer: PolicyStateMessage): void {
    if (!this.#inbox) return;
    const now = this.#o.now();
    for (const { scope, revision } of peer.scopes) {
      if (revision <= (this.#store.held(scope)?.revision ?? 0)) continue;
      if (now - (this.#lastAsked.get(scope) ?? Number.NEGATIVE_INFINITY) < this.#o.heartbeatInterval)
        continue;
      if (
        this.#o.send(this.#o.subjects.policyGet(scope, revision), new Uint8Array(0), `${this.#inbox}.bundle`)
      ) {
        this.#lastAsked.set(scope, now);
        this.#resyncs.inc({ scope });
      }
    }
  }

  #answer(kind: 'ping' | 'get', reply: string, subject: string): void {
    if (this.#limiter.take(kind, this.#o.now()) !== undefined) return;
    if (kind === 'ping') {
      this.#o.send(reply, this.#o.signer().sign(this.#stateMessage(this.#o.now())));
      return;
    }
    // we listen on the subject of the revision we hold; a request that raced a newer apply finds another
    for (const b of this.#store.bundles()) {
      if (subject === this.#o.subjects.policyGet(b.scope, b.revision)) {
        this.#o.send(reply, b.raw);
        return;
      }
    }
  }

  #holds(data: Uint8Array): boolean {
    for (const b of this.#store.bundles()) {
      if (b.raw.length === data.byteLength && Buffer.from(data).toString('utf8') === b.raw) return true;
    }
    return false;
  }

  #stateMessage(now: number): PolicyStateMessage {
    return {
      v: POLICY_SCHEMA_VERSION,
      type: 'policy-state',
      cluster: this.#o.cluster,
      gateway: this.#o.gateway,
      instance: this.#o.instance,
      scopes: this.#store.revisions(),
      issuedAt: now,
    };
  }

  #persist(): void {
    if (!this.#o.stateDir) return;
    this.#dirty = true;
    if (this.#writing) return;
    this.#writing = this.#write().finally(() => {
      this.#writing = undefined;
      if (this.#dirty) this.#persist();
    });
  }

  async #write(): Promise<void> {
    this.#dirty = false;
    const raws = this.#store.bundles().map((b) => b.raw);
    try {
      await writePolicyFile(this.#o.stateDir!, this.#o.cluster, raws, this.#o.now());
    } catch (err) {
      this.#o.log.error(
        { err: toMeshfedError(err) },
        'cannot persist the policy; the policy in force is unaffected',
      );
    }
  }
}

/** `<p>.policy.admin` → `admin`, `<p>.policy.cluster.<c>` → `cluster:<c>`; undefined for anything else. */
export function scopeOfSubject(subject: string, s: Subjects): string | undefined {
  const base = s.policyAll.slice(0, -1); // `<p>.policy.`
  if (!subject.startsWith(base)) return undefined;
  const rest = subject.slice(base.length).split('.');
  if (rest.length === 1 && rest[0] === 'admin') return 'admin';
  if (rest.length === 2 && rest[0] === 'cluster') return `cluster:${rest[1]}`;
  return `unknown:${rest.join('.')}`;
}
