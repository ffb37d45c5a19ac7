import { type KubeConfig, Watch } from '@kubernetes/client-node';
import { MeshfedError } from '../core/index.ts';
import { abortableDelay, Backoff, type FailureLog } from './backoff.ts';
import { kubeError, withTimeout } from './kubernetes-client.ts';

export interface KubeMeta {
  name?: string;
  namespace?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface KubeItem {
  metadata?: KubeMeta;
  [k: string]: unknown;
}

export interface KubeList {
  items: KubeItem[];
  metadata?: { resourceVersion?: string };
}

export interface ListWatchOptions {
  kc: KubeConfig;
  /** the collection path, e.g. /api/v1/services or /apis/discovery.k8s.io/v1/namespaces/x/endpointslices */
  path: string;
  /** a full list through the typed client (resolves to items + list resourceVersion) */
  list: () => Promise<KubeList>;
  what: string;
  watchTimeoutMs: number;
  idleTimeoutMs: number;
  backoff: { min: number; max: number };
  failures: FailureLog;
  /** a 404 on list means "resource not installed" (an optional CRD): empty, retried slowly */
  optional?: boolean;
  onChange: () => void;
}

/**
 * One list+watch loop (the informer pattern): list, then watch from the list's resourceVersion
 * with bookmarks; a stream that ends or drops resumes from the last resourceVersion seen (so no
 * change is missed, and a replayed one lands on the same key and changes nothing); 410 Gone means
 * the history is compacted, so it re-lists. A watch silent past idleTimeout is treated as dead.
 */
export class ListWatch {
  readonly store = new Map<string, KubeItem>();
  private readonly o: ListWatchOptions;
  private rv = '';
  private readonly server: string;
  /** counters for tests and the admin dump */
  readonly stats = { lists: 0, watches: 0, gone: 0, events: 0 };
  synced = false;

  constructor(options: ListWatchOptions) {
    this.o = options;
    this.server = options.kc.getCurrentCluster()?.server ?? '(no server)';
  }

  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff({ minMs: this.o.backoff.min, maxMs: this.o.backoff.max });
    while (!signal.aborted) {
      try {
        if (this.rv === '') await this.relist();
        if (signal.aborted) break;
        const outcome = await this.watchOnce(signal);
        if (outcome === 'gone') {
          this.stats.gone++;
          this.rv = '';
          continue;
        }
        if (outcome === 'productive') {
          backoff.reset();
          this.o.failures.success(this.o.what);
          continue;
        }
        // an empty stream that ended at once: back off so a flapping server is not hammered
        await abortableDelay(backoff.next(), signal);
      } catch (err) {
        if (signal.aborted) break;
        const e = kubeError(err, this.o.what, this.server);
        if (this.o.optional && e.details?.status === 404) {
          // the CRD is not installed: nothing to watch, look again later
          if (this.store.size > 0) {
            this.store.clear();
            this.o.onChange();
          }
          this.synced = true;
          this.rv = '';
          await abortableDelay(this.o.backoff.max, signal);
          continue;
        }
        const delay = backoff.next();
        this.o.failures.failure(e, delay, this.o.what);
        await abortableDelay(delay, signal);
      }
    }
  }

  private async relist(): Promise<void> {
    this.stats.lists++;
    const list = await withTimeout(this.o.list(), this.o.idleTimeoutMs, this.o.what, this.server);
    if (!list || !Array.isArray(list.items)) {
      throw new MeshfedError('MESHFED_DISCOVERY_INVALID', `${this.o.what}: the list answer has no items`, {
        retryable: true,
      });
    }
    const next = new Map<string, KubeItem>();
    for (const item of list.items) {
      const k = keyOf(item);
      if (k) next.set(k, item);
    }
    this.store.clear();
    for (const [k, v] of next) this.store.set(k, v);
    this.rv = list.metadata?.resourceVersion ?? '';
    this.synced = true;
    this.o.failures.success(this.o.what);
    this.o.onChange();
  }

  /** Runs one watch stream to its end: 'productive' (saw something), 'empty', or 'gone' (410). */
  private watchOnce(signal: AbortSignal): Promise<'productive' | 'empty' | 'gone'> {
    this.stats.watches++;
    return new Promise((resolve, reject) => {
      let settled = false;
      let productive = false;
      let gone = false;
      let controller: AbortController | undefined;
      let idle: NodeJS.Timeout | undefined;
      const finish = (err: unknown) => {
        if (settled) return;
        settled = true;
        if (idle) clearTimeout(idle);
        signal.removeEventListener('abort', onAbort);
        controller?.abort();
        if (gone) resolve('gone');
        else if (err && !signal.aborted) reject(err);
        else resolve(productive ? 'productive' : 'empty');
      };
      const armIdle = () => {
        if (idle) clearTimeout(idle);
        idle = setTimeout(
          () =>
            finish(
              new MeshfedError(
                'MESHFED_DISCOVERY_UNAVAILABLE',
                `${this.o.what}: the watch was silent for ${this.o.idleTimeoutMs} ms`,
                {
                  retryable: true,
                },
              ),
            ),
          this.o.idleTimeoutMs,
        );
      };
      const onAbort = () => finish(undefined);
      signal.addEventListener('abort', onAbort, { once: true });
      armIdle();
      const onEvent = (type: string, obj: unknown) => {
        if (settled) return;
        armIdle();
        this.stats.events++;
        if (!productive) this.o.failures.success(this.o.what);
        const item = (obj ?? {}) as KubeItem & { code?: number };
        if (type === 'ERROR') {
          if (item.code === 410) gone = true;
          finish(
            gone
              ? undefined
              : new MeshfedError(
                  'MESHFED_DISCOVERY_UNAVAILABLE',
                  `${this.o.what}: watch error ${JSON.stringify(obj)}`,
                  { retryable: true },
                ),
          );
          return;
        }
        const rv = item.metadata?.resourceVersion;
        if (type === 'BOOKMARK') {
          if (rv) this.rv = rv;
          productive = true;
          return;
        }
        const k = keyOf(item);
        if (!k) return;
        if (type === 'ADDED' || type === 'MODIFIED') this.store.set(k, item);
        else if (type === 'DELETED') this.store.delete(k);
        else return;
        if (rv) this.rv = rv;
        productive = true;
        this.o.onChange();
      };
      const onDone = (err: unknown) => {
        const status = (err as { statusCode?: number } | null)?.statusCode;
        if (status === 410) gone = true;
        finish(gone ? undefined : err);
      };
      new Watch(this.o.kc)
        .watch(
          this.o.path,
          {
            resourceVersion: this.rv,
            allowWatchBookmarks: true,
            timeoutSeconds: Math.max(1, Math.round(this.o.watchTimeoutMs / 1000)),
          },
          onEvent,
          onDone,
        )
        .then(
          (c) => {
            controller = c;
            if (settled) c.abort();
          },
          (err) => finish(err),
        );
    });
  }
}

export function keyOf(item: KubeItem): string | undefined {
  const m = item.metadata;
  if (!m?.name) return undefined;
  return `${m.namespace ?? ''}/${m.name}`;
}
