import type { Logger } from '../core/index.ts';
import { monotonicNow, toMeshfedError } from '../core/index.ts';
import { type LoadedCatalog, readCatalogFile, writeCatalogFile } from './catalog-file.ts';
import type { CatalogStore } from './catalog-store.ts';
import type { FederationEvent } from './events.ts';
import { type EntryMessage, entryKey } from './messages.ts';
import type { Proof } from './proof.ts';
import type { RejectionRecorder } from './rejections.ts';
import type { Accepted, MessageVerifier, Verdict } from './verifier.ts';

/** persistence waits this long after a change, so a burst of changes is written once */
const PERSIST_DELAY_MS = 500;
/** after a write that took W ms, the next one waits at least W × this (at most PERSIST_MAX_PAUSE_MS) */
const PERSIST_PAUSE_FACTOR = 20;
const PERSIST_MAX_PAUSE_MS = 30_000;
/** after a failed write (disk full, read-only), the next try waits this long */
const PERSIST_RETRY_PAUSE_MS = 2000;

export interface CatalogPersistenceOptions {
  dir: string;
  cluster: string;
  store: CatalogStore;
  verifier: MessageVerifier;
  rejections: RejectionRecorder;
  log: Logger;
  now: () => number;
}

/**
 * The view on disk (`<stateDir>/catalog.json`, format in catalog-file.ts). Loading re-verifies every stored proof
 * and turns what it vouches for into the same events NATS would give (source `file`), so the persisted view is
 * applied by the same rules. Writing is debounced, never overlaps, and pauses in proportion to the last write's
 * duration, so a 100,000-entry view under a steady change stream is not rewritten twice a second.
 */
export class CatalogPersistence {
  readonly #o: CatalogPersistenceOptions;
  #active = false;
  #timer: NodeJS.Timeout | undefined;
  #writtenVersion = -1;
  /** earliest time of the next write */
  #notBefore = 0;
  /** the write in progress, if any */
  #writing: Promise<void> | undefined;
  /** the last write failed: its error was logged, later failures of the same streak are not */
  #failing = false;
  /** the file just read, until its events are applied */
  #loaded: LoadedCatalog | undefined;

  constructor(o: CatalogPersistenceOptions) {
    this.#o = o;
  }

  /** The persisted view as events to apply, in order (announcements, tombstones, entries); none without a file. */
  load(): FederationEvent[] {
    this.#active = true;
    let file: LoadedCatalog | undefined;
    try {
      file = readCatalogFile(this.#o.dir);
    } catch (err) {
      this.#o.log.error({ err: toMeshfedError(err) }, 'the persisted catalog is unusable; starting empty');
      return [];
    }
    if (!file) return [];
    this.#loaded = file;
    return this.#decode(file);
  }

  /** After the loaded events were applied: an unchanged view is not written back (unless the format is old). */
  loaded(): void {
    const file = this.#loaded;
    if (!file) return;
    this.#loaded = undefined;
    // a file of the previous format is written again (in this one) at the next chance
    this.#writtenVersion = file.current ? this.#o.store.version : -1;
    this.#o.log.info(
      {
        entries: this.#o.store.size,
        listed: file.entries.length,
        savedAt: new Date(file.savedAt).toISOString(),
      },
      'loaded the persisted catalog',
    );
  }

  /** Arms a write if the view changed since the last one; a no-op while a write is pending or running. */
  schedule(): void {
    // once closed, close() writes the last state itself: a timer armed now could overlap that write
    if (!this.#active || this.#timer || this.#writing || this.#o.store.version === this.#writtenVersion)
      return;
    // the pause is measured on the monotonic clock: a wall clock stepped back would hold writes for as long
    const delay = Math.max(PERSIST_DELAY_MS, this.#notBefore - monotonicNow());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#writing = this.#write().finally(() => {
        this.#writing = undefined;
        this.schedule();
      });
    }, delay);
    this.#timer.unref();
  }

  /** Stops scheduling, waits for a write in progress, then writes the last state if it changed. */
  async close(): Promise<void> {
    this.#active = false;
    // forgotten, not just cleared: a leftover handle would keep schedule() from ever arming it again
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#writing;
    await this.#write();
  }

  async #write(): Promise<void> {
    const store = this.#o.store;
    if (store.version === this.#writtenVersion) return;
    const version = store.version;
    const started = monotonicNow();
    try {
      await writeCatalogFile(this.#o.dir, this.#o.cluster, store.exportState(), this.#o.now());
      this.#writtenVersion = version;
      const took = monotonicNow() - started;
      this.#notBefore = monotonicNow() + Math.min(PERSIST_MAX_PAUSE_MS, took * PERSIST_PAUSE_FACTOR);
      if (this.#failing) this.#o.log.info({ dir: this.#o.dir }, 'the catalog is persisted again');
      this.#failing = false;
    } catch (err) {
      this.#notBefore = monotonicNow() + PERSIST_RETRY_PAUSE_MS;
      if (!this.#failing) {
        this.#o.log.error(
          { err: toMeshfedError(err) },
          'cannot persist the catalog; the view in memory is unaffected (logged once until a write succeeds)',
        );
      }
      this.#failing = true;
    }
  }

  /** Verifies every proof once and keeps the rows whose (key, revision) their proof really holds. */
  #decode(file: LoadedCatalog): FederationEvent[] {
    const verified: (Accepted | undefined)[] = [];
    for (let i = 0; i < file.proofCount; i++) {
      const text = file.proofText(i);
      const v: Verdict = text
        ? this.#o.verifier.verify(text, { snapshot: true, checkExpiry: false })
        : { ok: false, reason: 'not_jws', signer: 'unknown', detail: 'a damaged proof in the catalog file' };
      verified.push(v.ok ? v : undefined);
      if (!v.ok) this.#o.rejections.record(v, { subject: 'stateDir', source: 'file' });
    }
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
      if (msg.type !== 'entry' && msg.type !== 'tombstone') return undefined;
      return entryKey(msg.cluster, msg.namespace, msg.name) === key && msg.revision === revision
        ? msg
        : undefined;
    };
    // the loaded proofs are kept as they were stored, so the next write still holds them
    const proofAt = (idx: number): Proof => file.proof(idx);
    const from = (idx: number) => ({
      source: 'file' as const,
      subject: 'stateDir',
      signer: verified[idx]!.signer,
    });
    const events: FederationEvent[] = [];
    for (const [cluster, revision, idx, stale] of file.announces) {
      const msg = lookup(idx, cluster, revision);
      if (msg?.type === 'announce') {
        events.push({ type: 'AnnouncementReceived', msg, proof: proofAt(idx), stale, ...from(idx) });
      }
    }
    for (const [key, revision, idx] of file.tombstones) {
      const msg = lookup(idx, key, revision);
      if (msg?.type === 'tombstone')
        events.push({ type: 'EntryReceived', msg, proof: proofAt(idx), ...from(idx) });
    }
    for (const [key, revision, idx] of file.entries) {
      const msg = lookup(idx, key, revision);
      if (msg?.type === 'entry')
        events.push({ type: 'EntryReceived', msg, proof: proofAt(idx), ...from(idx) });
    }
    return events;
  }
}
