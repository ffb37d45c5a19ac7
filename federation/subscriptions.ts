import { createInbox, type Msg, type NatsConnection } from '@nats-io/transport-node';
import type { CatalogIntake } from './catalog-intake.ts';
import type { IntakeQueue } from './intake-queue.ts';
import type { PolicyAgent } from './policy-agent.ts';
import { clusterOfSubject, type Subjects } from './subjects.ts';

export interface SubscriptionsOptions {
  subjects: Subjects;
  /** every message waits here, per sending cluster, and is handled off the NATS client's read loop */
  received: IntakeQueue;
  intake: CatalogIntake;
  policy: PolicyAgent;
  /** a node that holds a view of the other clusters (not a publisher only) */
  watching: boolean;
  inboxPrefix: string;
  /** the queue group answering other clusters' sync requests, when this node publishes */
  responders: string | undefined;
  cluster: string;
}

/**
 * What a federation node listens to on a (re)connected NATS connection: other clusters' entries,
 * announcements and snapshots, replies to our requests, the policy subjects, and (publishing nodes) the
 * sync requests addressed to this cluster. Returns the inbox our sync requests are answered on.
 */
export function subscribeAll(nc: NatsConnection, o: SubscriptionsOptions): string | undefined {
  const s = o.subjects;
  // queued per sending cluster (the subject names it), unless a key is given
  const queued =
    (fn: (m: Msg) => void, key?: string) =>
    (err: Error | null, m: Msg): void => {
      if (err) return;
      o.received.push(key ?? clusterOfSubject(m.subject), () => fn(m));
    };
  const intake = o.intake;
  let inbox: string | undefined;
  if (o.watching) {
    nc.subscribe(s.catalog('*'), { callback: queued((m) => intake.catalog(m)) });
    nc.subscribe(s.announce('*'), { callback: queued((m) => intake.announce(m)) });
    nc.subscribe(s.bulk('*'), { callback: queued((m) => intake.bulk(m)) });
    nc.subscribe(s.links('*'), { callback: queued((m) => intake.links(m)) });
    nc.subscribe(s.withdraw('*'), { callback: queued((m) => intake.withdraw(m)) });
    inbox = createInbox(o.inboxPrefix);
    nc.subscribe(`${inbox}.*`, { callback: queued((m) => intake.reply(m), 'replies') });
    const policy = o.policy;
    const policyInbox = createInbox(o.inboxPrefix);
    policy.setInbox(policyInbox);
    nc.subscribe(`${policyInbox}.*`, { callback: queued((m) => policy.inboxMessage(m), 'policy-replies') });
    nc.subscribe(s.policyAll, { callback: queued((m) => policy.bundleMessage(m)) });
    nc.subscribe(s.policyState('*'), { callback: queued((m) => policy.stateMessage(m)) });
    nc.subscribe(s.policyPing, { callback: queued((m) => policy.requestMessage(m, 'ping')) });
    policy.serveAll((subject, queue, onMessage) =>
      nc.subscribe(subject, { queue, callback: queued(onMessage) }),
    );
  }
  if (o.responders) {
    const queue = o.responders;
    nc.subscribe(s.sync(o.cluster), { queue, callback: queued((m) => intake.syncRequest(m), 'sync') });
    nc.subscribe(s.syncAll, { queue, callback: queued((m) => intake.syncRequest(m), 'sync') });
  }
  return inbox;
}
