import type { CatalogChange, ClusterState } from '../core/index.ts';

/**
 * The view's change feed: changes are coalesced per key and delivered once per event-loop turn, so listeners get
 * the smallest diff (an entry changed twice in one turn is reported once). A cluster's state is resolved when the
 * turn's changes are delivered, so a listener sees its final state of that turn.
 */
export class CatalogChanges {
  readonly #listeners = new Set<(changes: readonly CatalogChange[]) => void>();
  readonly #clusterState: (cluster: string) => ClusterState | undefined;
  #pending = new Map<string, CatalogChange>();
  #flushScheduled = false;

  constructor(clusterState: (cluster: string) => ClusterState | undefined) {
    this.#clusterState = clusterState;
  }

  listen(listener: (changes: readonly CatalogChange[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  queueCluster(cluster: string): void {
    this.queue(`c:${cluster}`, {
      type: 'cluster',
      state: { cluster, gateways: [], stale: false, services: 0 },
    });
  }

  queue(id: string, change: CatalogChange): void {
    if (this.#listeners.size === 0) return;
    this.#pending.delete(id);
    this.#pending.set(id, change);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    const pending = this.#pending;
    this.#pending = new Map();
    const changes: CatalogChange[] = [];
    for (const [id, change] of pending) {
      if (change.type === 'cluster') {
        const state = this.#clusterState(id.slice(2));
        if (state) changes.push({ type: 'cluster', state });
      } else changes.push(change);
    }
    if (changes.length === 0) return;
    for (const l of this.#listeners) {
      try {
        l(changes);
      } catch {
        // a listener's bug must not stop delivery to the others
      }
    }
  }
}
