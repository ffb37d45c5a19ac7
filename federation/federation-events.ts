import type { ApplyResult } from './catalog-store.ts';
import type { FederationEvent } from './events.ts';
import type { FederationParts } from './federation-parts.ts';
import { signerFor } from './federation-parts.ts';
import { applyEntryOrTombstone, staleRevision } from './ingest.ts';

type ReceivedEntry = Extract<
  FederationEvent,
  { type: 'EntryReceived' | 'AnnouncementReceived' | 'GatewayWithdrawn' }
>;

/**
 * What a federation node does with each of its events (events.ts): applies verified catalog messages to the
 * view, assembles snapshots, answers and asks for anti-entropy, publishes this cluster's own catalog on
 * timers and changes, and hands policy events to the PolicyAgent. One event at a time, called by the node's
 * single dispatcher; an event it raises itself (`enqueue`) is handled after this one.
 */
export class FederationEventHandler {
  readonly #p: FederationParts;
  readonly #enqueue: (e: FederationEvent) => void;

  constructor(parts: FederationParts, enqueue: (e: FederationEvent) => void) {
    this.#p = parts;
    this.#enqueue = enqueue;
  }

  handle(e: FederationEvent): void {
    const p = this.#p;
    const now = p.now();
    const seen = p.steady();
    switch (e.type) {
      case 'EntryReceived':
        this.#afterApply(applyEntryOrTombstone(p.store, e.msg, e.proof, seen), e);
        return;
      case 'AnnouncementReceived': {
        const { result, digestMatches } = p.store.applyAnnounce(e.msg, e.proof, seen);
        this.#afterApply(result, e);
        if (e.stale !== undefined) p.store.restoreStale(e.msg.cluster, e.stale);
        if (!digestMatches && p.canAsk()) p.requester.ask(e.msg.cluster);
        return;
      }
      case 'GatewayWithdrawn':
        this.#afterApply(p.store.applyWithdraw(e.msg), e);
        return;
      case 'SnapshotPartReceived': {
        const { msg } = e;
        // only the answer to the request in flight to that cluster: a late or unasked reply holds nothing
        if (e.source === 'reply' && !p.requester.isInFlight(msg.cluster, msg.req)) return;
        const via = e.source === 'reply' ? 'reply' : 'push';
        const out = p.assembly.add(msg, e.raw, via, e.signer, now, seen);
        p.accepted.inc({ type: 'snapshot' });
        if (out.applied > 0) p.persistence?.schedule();
        if (out.complete && via === 'reply') p.requester.done(msg.cluster, msg.req);
        return;
      }
      case 'SyncRequested': {
        if (!p.publisher || !p.outbox.advertising) return;
        const answer = p.responder.handle(e.subject, e.reply, e.data, now);
        if (answer) p.outbox.answer(answer);
        return;
      }
      case 'LocalServicesChanged':
        p.outbox.publish(p.publisher!.update(e.services));
        return;
      case 'SignerRotated':
        p.jws = signerFor(e.leaf);
        if (p.publisher) {
          // entries signed by the old leaf would die with it: re-sign them all now
          p.publisher.refreshAll();
          p.outbox.publishBulk();
          p.outbox.announce();
        }
        return;
      case 'HeartbeatDue':
        p.outbox.announce();
        return;
      case 'LinkReportReceived':
        if (p.linkReports.apply(e.msg)) p.accepted.inc({ type: 'links' });
        return;
      case 'LinkReportDue':
        void p.linkReporter?.report();
        return;
      case 'RefreshDue':
        p.publisher!.refreshAll();
        p.outbox.publishBulk();
        return;
      case 'MaintenanceDue':
        p.store.tick(now, p.link.connected, seen);
        p.linkReports.expire(now);
        p.assembly.expire(seen);
        p.requester.expire();
        p.persistence?.schedule();
        return;
      case 'PersistDue':
        p.persistence?.schedule();
        return;
      case 'PolicyBundleReceived':
      case 'PolicyStateReceived':
      case 'PolicyRequested':
      case 'PolicyReportDue':
        p.policy.handle(e);
        return;
      case 'ConnectionStateChanged':
        if (e.state === 'connected' || e.state === 'reconnected') this.#onConnected(seen);
        return;
    }
  }

  #afterApply(result: ApplyResult, e: ReceivedEntry): void {
    if (result === 'applied') {
      // what the file held was accepted when it first arrived; it is not counted again
      if (e.source !== 'file') {
        this.#p.accepted.inc({ type: e.msg.type });
        this.#enqueue({ type: 'PersistDue', source: 'change' });
      }
    } else if (result === 'stale_revision') {
      this.#p.rejections.record(staleRevision(e.signer, e.msg.type), {
        subject: e.subject,
        source: e.source,
      });
    }
  }

  #onConnected(seen: number): void {
    const p = this.#p;
    // requests sent before will not be answered on this connection
    p.requester.reset(p.inbox);
    p.store.resume(seen);
    p.outbox.publishBulk();
    p.outbox.announce();
    // anti-entropy: ask every cluster for its whole set, not only for what was missed
    if (p.canAsk()) p.requester.askAll();
    // peers report what they enforce every heartbeat; a newer revision there is pulled (policy-get)
    if (p.watching) {
      p.policy.report();
      p.policy.ping();
    }
  }
}
