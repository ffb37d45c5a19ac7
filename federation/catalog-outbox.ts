import { nuid } from '@nats-io/transport-node';
import type { Logger } from '../core/index.ts';
import type { NatsLink } from './nats-link.ts';
import type { CatalogPublisher } from './publisher.ts';
import type { Subjects } from './subjects.ts';
import type { SyncAnswer } from './sync-responder.ts';

/**
 * Snapshot parts are cut at 64 KiB of payload: a part then stays out of V8's large-object space on both sides,
 * and 100,000 entries cost ~600 signature checks (~0.25 s). Receivers accept parts up to 1 MiB.
 */
const SNAPSHOT_PART_BYTES = 64 * 1024;

export interface CatalogOutboxOptions {
  link: NatsLink;
  subjects: Subjects;
  cluster: string;
  /** this cluster's own catalog; without it (a node that only watches) nothing of the catalog is sent */
  publisher: CatalogPublisher | undefined;
  /** false: nothing of this cluster goes out until `advertising` is set (FederationNodeOptions.advertise) */
  advertise: boolean;
  log: Logger;
  now: () => number;
}

/**
 * Everything a federation node sends on NATS: this cluster's entries, bulk snapshots, announcements and
 * answers to sync requests, and (for the other parts) single messages, sent only while connected. Each send
 * goes out on the connection of the moment: between reconnects a message is dropped, and the next heartbeat,
 * refresh or anti-entropy round makes up for it.
 */
export class CatalogOutbox {
  readonly #o: CatalogOutboxOptions;
  /** this cluster's own catalog goes out (entries, snapshots, announcements, sync answers) */
  advertising: boolean;

  constructor(o: CatalogOutboxOptions) {
    this.#o = o;
    this.advertising = o.advertise;
  }

  /** one message, only while connected; false when it could not go */
  send(subject: string, data: string | Uint8Array, reply?: string): boolean {
    const nc = this.#o.link.connection;
    if (!nc || !this.#o.link.connected) return false;
    nc.publish(subject, data, reply === undefined ? undefined : { reply });
    return true;
  }

  /** signed entries and tombstones of this cluster, on its catalog subject */
  publish(messages: string[]): void {
    const nc = this.#o.link.connection;
    if (!nc || !this.advertising) return;
    const subject = this.#o.subjects.catalog(this.#o.cluster);
    for (const m of messages) nc.publish(subject, m);
  }

  /** this cluster's whole set as a pushed snapshot, on its bulk subject */
  publishBulk(): void {
    const nc = this.#o.link.connection;
    const publisher = this.#o.publisher;
    if (!publisher || !nc || !this.advertising) return;
    const subject = this.#o.subjects.bulk(this.#o.cluster);
    for (const part of publisher.snapshot(`push-${nuid.next()}`, SNAPSHOT_PART_BYTES)) {
      nc.publish(subject, part);
    }
  }

  announce(): void {
    const nc = this.#o.link.connection;
    const publisher = this.#o.publisher;
    if (!publisher || !nc || !this.advertising) return;
    nc.publish(this.#o.subjects.announce(this.#o.cluster), publisher.announce());
  }

  /**
   * This gateway leaves the catalog by name (it drains or stops): its withdrawal goes out on the cluster's
   * withdraw subject, and from then on it publishes nothing of the cluster (no entries, announcements or sync
   * answers), which would list it again. The cluster's other gateways go on publishing.
   */
  withdraw(): boolean {
    const nc = this.#o.link.connection;
    const publisher = this.#o.publisher;
    if (!publisher || !this.advertising) return false;
    this.advertising = false;
    if (!nc || !this.#o.link.connected) return false;
    const subject = this.#o.subjects.withdraw(this.#o.cluster);
    for (const m of publisher.withdrawGateways()) nc.publish(subject, m);
    return true;
  }

  /** what the sync responder decided to answer: an announcement, or our snapshot in parts */
  answer(answer: SyncAnswer): void {
    const nc = this.#o.link.connection;
    const publisher = this.#o.publisher;
    if (!publisher || !nc || !this.advertising) return;
    if (answer.kind === 'announce') {
      // everyone asks everyone at once here: answer small, and let the asker pull snapshots at its own pace
      nc.publish(answer.reply, publisher.announce());
      return;
    }
    const started = this.#o.now();
    const parts = publisher.snapshot(answer.req, SNAPSHOT_PART_BYTES);
    for (const part of parts) nc.publish(answer.reply, part);
    this.#o.log.debug(
      { req: answer.req, peer: answer.requester, parts: parts.length, ms: this.#o.now() - started },
      'snapshot sent',
    );
  }
}
