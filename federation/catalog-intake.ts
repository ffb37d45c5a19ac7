import type { Msg } from '@nats-io/transport-node';
import type { FederationEvent, MessageSource } from './events.ts';
import type { ProofMaker } from './proof.ts';
import type { RejectionRecorder } from './rejections.ts';
import { clusterOfSubject } from './subjects.ts';
import type { Accepted, MessageVerifier, Rejected } from './verifier.ts';

export interface CatalogIntakeOptions {
  /** our own cluster: what we publish comes back to us and is skipped */
  cluster: string;
  verifier: MessageVerifier;
  rejections: RejectionRecorder;
  /** keeps the signed text of what is accepted, when the view is persisted */
  proofs: ProofMaker | undefined;
  /** whether an answer on our inbox belongs to a request of ours (checked before spending a verification) */
  isOurRequest: (req: string) => boolean;
  emit: (event: FederationEvent) => void;
}

/**
 * Turns what arrives on each NATS subscription into a typed event: verified, of the type that subject carries,
 * labelled with its source. Everything else is a rejection recorded here, with that same source.
 */
export class CatalogIntake {
  readonly #o: CatalogIntakeOptions;

  constructor(o: CatalogIntakeOptions) {
    this.#o = o;
  }

  /** `<p>.catalog.<cluster>`: single entries and tombstones */
  catalog(m: Msg): void {
    const v = this.#verified(m, 'nats', false);
    if (!v) return;
    if (v.msg.type !== 'entry' && v.msg.type !== 'tombstone') {
      this.#wrongType(v, m, 'catalog', 'nats');
      return;
    }
    this.#o.emit({
      type: 'EntryReceived',
      ...this.#meta(v, m, 'nats'),
      msg: v.msg,
      proof: this.#o.proofs?.make(m.data),
    });
  }

  /** `<p>.announce.<cluster>`: heartbeats */
  announce(m: Msg): void {
    const v = this.#verified(m, 'nats', false);
    if (!v) return;
    if (v.msg.type !== 'announce') {
      this.#wrongType(v, m, 'announce', 'nats');
      return;
    }
    this.#o.emit({
      type: 'AnnouncementReceived',
      ...this.#meta(v, m, 'nats'),
      msg: v.msg,
      proof: this.#o.proofs?.make(m.data),
    });
  }

  /** `<p>.withdraw.<cluster>`: a gateway of that cluster withdrawing itself by name */
  withdraw(m: Msg): void {
    const v = this.#verified(m, 'nats', false);
    if (!v) return;
    if (v.msg.type !== 'withdraw') {
      this.#wrongType(v, m, 'withdraw', 'nats');
      return;
    }
    this.#o.emit({ type: 'GatewayWithdrawn', ...this.#meta(v, m, 'nats'), source: 'nats', msg: v.msg });
  }

  /** `<p>.links.<cluster>`: a gateway's report of its outbound calls per destination cluster */
  links(m: Msg): void {
    const v = this.#verified(m, 'nats', false);
    if (!v) return;
    if (v.msg.type !== 'links') {
      this.#wrongType(v, m, 'links', 'nats');
      return;
    }
    this.#o.emit({ type: 'LinkReportReceived', ...this.#meta(v, m, 'nats'), source: 'nats', msg: v.msg });
  }

  /** `<p>.bulk.<cluster>`: snapshot parts a cluster pushes */
  bulk(m: Msg): void {
    const v = this.#verified(m, 'nats', true);
    if (!v) return;
    if (v.msg.type !== 'snapshot') {
      this.#wrongType(v, m, 'bulk', 'nats');
      return;
    }
    this.#o.emit({ type: 'SnapshotPartReceived', ...this.#meta(v, m, 'nats'), msg: v.msg, raw: m.data });
  }

  /** `<inbox>.<req>`: answers to our requests (announcements for sync-all, snapshot parts for sync) */
  reply(m: Msg): void {
    const req = clusterOfSubject(m.subject);
    if (!this.#o.isOurRequest(req)) return;
    const v = this.#o.verifier.verify(m.data, { snapshot: true });
    if (!v.ok) {
      this.#reject(v, m, 'reply');
      return;
    }
    const msg = v.msg;
    if (msg.type === 'announce') {
      if (msg.cluster === this.#o.cluster) return;
      this.#o.emit({
        type: 'AnnouncementReceived',
        ...this.#meta(v, m, 'reply'),
        msg,
        proof: this.#o.proofs?.make(m.data),
      });
      return;
    }
    if (msg.type !== 'snapshot' || msg.req !== req) {
      this.#reject(
        {
          ok: false,
          reason: 'bad_payload',
          signer: v.signer,
          detail: 'not a snapshot part for this request',
        },
        m,
        'reply',
      );
      return;
    }
    if (msg.cluster === this.#o.cluster) return;
    this.#o.emit({ type: 'SnapshotPartReceived', ...this.#meta(v, m, 'reply'), msg, raw: m.data });
  }

  /** `<p>.sync.<us>` and `<p>.sync-all`: requests we may answer (the responder verifies them) */
  syncRequest(m: Msg): void {
    this.#o.emit({ type: 'SyncRequested', source: 'nats', subject: m.subject, reply: m.reply, data: m.data });
  }

  /** Verifies a message on a cluster's own subject; our own messages come back to us and are skipped. */
  #verified(m: Msg, source: MessageSource, snapshot: boolean): Accepted | undefined {
    const subjectCluster = clusterOfSubject(m.subject);
    if (subjectCluster === this.#o.cluster) return undefined;
    const v = this.#o.verifier.verify(m.data, { snapshot, subjectCluster });
    if (v.ok) return v;
    this.#reject(v, m, source);
    return undefined;
  }

  #meta(v: Accepted, m: Msg, source: 'nats' | 'reply') {
    return { source, signer: v.signer, subject: m.subject };
  }

  #wrongType(v: Accepted, m: Msg, subject: string, source: MessageSource): void {
    this.#reject(
      {
        ok: false,
        reason: 'bad_payload',
        signer: v.signer,
        detail: `a ${v.msg.type} on the ${subject} subject`,
      },
      m,
      source,
    );
  }

  #reject(r: Rejected, m: Msg, source: MessageSource): void {
    this.#o.rejections.record(r, { subject: m.subject, source });
  }
}
