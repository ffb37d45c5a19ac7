import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpDouble, sendJson } from './http-double.ts';

/**
 * A Kubernetes API server double for exactly the resources meshfed uses, following the
 * Kubernetes 1.31 API conventions (kubernetes.io/docs/reference/using-api/api-concepts):
 *
 * - core/v1 services, discovery.k8s.io/v1 endpointslices, multicluster.x-k8s.io/v1alpha1
 *   serviceexports and serviceimports: list (cluster-wide and namespaced, `labelSelector` with
 *   equality terms), get, create (201; 409 AlreadyExists), replace (PUT; 409 Conflict when
 *   metadata.resourceVersion is stale, 422 when it is missing), delete (404 when absent).
 * - `?watch=true&resourceVersion=N`: a chunked stream of JSON lines `{type, object}` with every
 *   change after N; `allowWatchBookmarks` adds BOOKMARK events; `timeoutSeconds` ends the stream.
 *   A resourceVersion older than the retained history gets `ERROR` with a 410 Gone Status in
 *   the stream (what a real API server sends), or an HTTP 410 when `gone410AsHttp` is set.
 * - Bearer token auth when `token` is set (401 otherwise); creating in a missing namespace is 404.
 */
export type KubeObject = {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    creationTimestamp?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
};

interface ResourceType {
  group: string; // '' for core
  version: string;
  plural: string;
  kind: string;
}

const TYPES: ResourceType[] = [
  { group: '', version: 'v1', plural: 'services', kind: 'Service' },
  { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice' },
  { group: 'multicluster.x-k8s.io', version: 'v1alpha1', plural: 'serviceexports', kind: 'ServiceExport' },
  { group: 'multicluster.x-k8s.io', version: 'v1alpha1', plural: 'serviceimports', kind: 'ServiceImport' },
];

interface WatchEvent {
  rv: number;
  plural: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
}

interface Watcher {
  plural: string;
  namespace: string | undefined;
  selector: [string, string][];
  res: ServerResponse;
  bookmarks: boolean;
  timers: NodeJS.Timeout[];
}

export class KubeDouble extends HttpDouble {
  /** bearer token required when set */
  token: string | undefined;
  /** send 410 as an HTTP status instead of an in-stream ERROR event */
  gone410AsHttp = false;
  /** how often watches that asked for bookmarks get one */
  bookmarkIntervalMs = 1000;
  /** called before a PUT is handled (tests use it to play a concurrent writer) */
  beforeReplace: ((plural: string, namespace: string, name: string) => void) | undefined;
  /** CRDs installed: without them the MCS resources answer 404 like a cluster without the CRDs */
  mcsInstalled = true;
  readonly namespaces = new Set<string>(['default', 'kube-system']);
  private rv = 1000;
  /** events older than this resourceVersion were compacted away */
  private oldestRv = 1000;
  private readonly objects = new Map<string, KubeObject>(); // plural/ns/name
  private history: WatchEvent[] = [];
  private watchers = new Set<Watcher>();
  private nextIp = 10;

  constructor(options: { token?: string } = {}) {
    super();
    this.token = options.token;
  }

  // ---- test-side API ----

  get resourceVersion(): number {
    return this.rv;
  }

  /** Creates or replaces an object directly (as kubectl or a controller would). */
  put(plural: string, obj: { metadata: KubeObject['metadata']; [k: string]: unknown }): KubeObject {
    const t = typeOf(plural);
    const key = objKey(plural, obj.metadata.namespace, obj.metadata.name);
    const prev = this.objects.get(key);
    const next = this.stamp(t, { ...obj, apiVersion: apiVersion(t), kind: t.kind } as KubeObject, prev);
    this.namespaces.add(obj.metadata.namespace);
    this.objects.set(key, next);
    this.record(plural, prev ? 'MODIFIED' : 'ADDED', next);
    return next;
  }

  remove(plural: string, namespace: string, name: string): boolean {
    const key = objKey(plural, namespace, name);
    const prev = this.objects.get(key);
    if (!prev) return false;
    this.objects.delete(key);
    this.rv++;
    this.record(
      plural,
      'DELETED',
      { ...prev, metadata: { ...prev.metadata, resourceVersion: String(this.rv) } },
      false,
    );
    return true;
  }

  get(plural: string, namespace: string, name: string): KubeObject | undefined {
    return this.objects.get(objKey(plural, namespace, name));
  }

  list(plural: string): KubeObject[] {
    return [...this.objects.entries()].filter(([k]) => k.startsWith(`${plural}/`)).map(([, v]) => v);
  }

  /** Forgets the event history: any watch resuming from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.history = [];
    this.oldestRv = this.rv;
  }

  /** Cuts every open watch stream mid-flight (a dropped connection, an apiserver rollout). */
  dropWatches(): void {
    for (const w of this.watchers) this.endWatch(w, true);
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  // ---- internals ----

  private stamp(t: ResourceType, obj: KubeObject, prev: KubeObject | undefined): KubeObject {
    this.rv++;
    const meta = {
      ...obj.metadata,
      resourceVersion: String(this.rv),
      uid: prev?.metadata.uid ?? obj.metadata.uid ?? randomUUID(),
      creationTimestamp: prev?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    const out: KubeObject = { ...obj, metadata: meta };
    if (t.plural === 'services') {
      const spec = { ...((out.spec as Record<string, unknown> | undefined) ?? {}) };
      const prevIp = (prev?.spec as Record<string, unknown> | undefined)?.clusterIP;
      if (spec.clusterIP === undefined || spec.clusterIP === '') {
        // the API server allocates a ClusterIP and keeps it across updates
        spec.clusterIP = prevIp ?? `10.96.0.${this.nextIp++}`;
      }
      spec.type ??= 'ClusterIP';
      out.spec = spec;
    }
    return out;
  }

  private record(plural: string, type: WatchEvent['type'], object: KubeObject, _bumped = true): void {
    const ev: WatchEvent = { rv: Number(object.metadata.resourceVersion), plural, type, object };
    this.history.push(ev);
    for (const w of this.watchers) if (matches(w, ev.plural, object)) this.send(w, { type, object });
  }

  protected override onStop(): void {
    for (const w of this.watchers) for (const t of w.timers) clearTimeout(t);
    this.watchers.clear();
  }

  private send(w: Watcher, ev: unknown): void {
    if (w.res.destroyed) return;
    w.res.write(`${JSON.stringify(ev)}\n`);
  }

  private endWatch(w: Watcher, abrupt: boolean): void {
    for (const t of w.timers) clearTimeout(t);
    this.watchers.delete(w);
    if (abrupt) w.res.socket?.destroy();
    else w.res.end();
  }

  protected handle(req: IncomingMessage, res: ServerResponse, url: URL, body: string): unknown {
    if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) {
      return status(res, 401, 'Unauthorized', 'Unauthorized');
    }
    const route = parsePath(url.pathname);
    if (!route)
      return status(
        res,
        404,
        'NotFound',
        `the server could not find the requested resource (${url.pathname})`,
      );
    const { type: t, namespace, name } = route;
    if (t.group === 'multicluster.x-k8s.io' && !this.mcsInstalled) {
      return status(res, 404, 'NotFound', 'the server could not find the requested resource');
    }
    const method = req.method ?? 'GET';
    if (method === 'GET' && name === undefined) {
      const selector = parseSelector(url.searchParams.get('labelSelector'));
      if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1') {
        return this.watch(res, t, namespace, selector, url);
      }
      const items = this.list(t.plural).filter((o) =>
        matches({ plural: t.plural, namespace, selector }, t.plural, o),
      );
      return sendJson(res, 200, {
        apiVersion: apiVersion(t),
        kind: `${t.kind}List`,
        metadata: { resourceVersion: String(this.rv) },
        items,
      });
    }
    if (namespace === undefined) return status(res, 405, 'MethodNotAllowed', 'namespace required');
    if (method === 'GET') {
      const obj = this.get(t.plural, namespace, name!);
      if (!obj) return notFound(res, t, name!);
      return sendJson(res, 200, obj);
    }
    if (method === 'POST') {
      let obj: KubeObject;
      try {
        obj = JSON.parse(body) as KubeObject;
      } catch {
        return status(res, 400, 'BadRequest', 'the body is not valid JSON');
      }
      if (!this.namespaces.has(namespace)) {
        return status(res, 404, 'NotFound', `namespaces "${namespace}" not found`, {
          kind: 'namespaces',
          name: namespace,
        });
      }
      obj.metadata = { ...obj.metadata, namespace };
      if (this.get(t.plural, namespace, obj.metadata.name)) {
        return status(res, 409, 'AlreadyExists', `${t.plural} "${obj.metadata.name}" already exists`, {
          name: obj.metadata.name,
          kind: t.plural,
        });
      }
      delete obj.metadata.resourceVersion;
      return sendJson(res, 201, this.put(t.plural, obj));
    }
    if (method === 'PUT') {
      this.beforeReplace?.(t.plural, namespace, name!);
      let obj: KubeObject;
      try {
        obj = JSON.parse(body) as KubeObject;
      } catch {
        return status(res, 400, 'BadRequest', 'the body is not valid JSON');
      }
      const cur = this.get(t.plural, namespace, name!);
      if (!cur) return notFound(res, t, name!);
      const rv = obj.metadata?.resourceVersion;
      if (rv === undefined || rv === '') {
        return status(
          res,
          422,
          'Invalid',
          `${t.kind} "${name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update`,
        );
      }
      if (rv !== cur.metadata.resourceVersion) {
        return status(
          res,
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${t.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
          { name, kind: t.plural },
        );
      }
      obj.metadata = { ...obj.metadata, namespace, name: name! };
      return sendJson(res, 200, this.put(t.plural, obj));
    }
    if (method === 'DELETE') {
      const cur = this.get(t.plural, namespace, name!);
      if (!cur) return notFound(res, t, name!);
      this.remove(t.plural, namespace, name!);
      return sendJson(res, 200, {
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Success',
        details: { name, kind: t.plural },
      });
    }
    return status(res, 405, 'MethodNotAllowed', `${method} is not supported here`);
  }

  private watch(
    res: ServerResponse,
    t: ResourceType,
    namespace: string | undefined,
    selector: [string, string][],
    url: URL,
  ): void {
    const rvText = url.searchParams.get('resourceVersion') ?? '';
    const from = rvText === '' || rvText === '0' ? undefined : Number(rvText);
    if (from !== undefined && (!Number.isFinite(from) || from < this.oldestRv)) {
      const message = `too old resource version: ${rvText} (${this.oldestRv})`;
      if (this.gone410AsHttp) return void status(res, 410, 'Expired', message);
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.write(
        `${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'Expired', code: 410 } })}\n`,
      );
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = {
      plural: t.plural,
      namespace,
      selector,
      res,
      bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true',
      timers: [],
    };
    if (from === undefined) {
      // no resourceVersion: synthetic ADDED for the current state, then changes
      for (const o of this.list(t.plural))
        if (matches(w, t.plural, o)) this.send(w, { type: 'ADDED', object: o });
    } else {
      for (const ev of this.history) {
        if (ev.rv > from && matches(w, ev.plural, ev.object))
          this.send(w, { type: ev.type, object: ev.object });
      }
    }
    this.watchers.add(w);
    res.on('close', () => this.endWatch(w, false));
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? '0');
    if (timeout > 0) w.timers.push(setTimeout(() => this.endWatch(w, false), timeout * 1000));
    if (w.bookmarks) {
      const tick = () => {
        this.send(w, {
          type: 'BOOKMARK',
          object: { kind: t.kind, apiVersion: apiVersion(t), metadata: { resourceVersion: String(this.rv) } },
        });
        w.timers.push(setTimeout(tick, this.bookmarkIntervalMs));
      };
      w.timers.push(setTimeout(tick, this.bookmarkIntervalMs));
    }
    if (this.faultFor(url.pathname).kind === 'drop-streams') {
      // the stream opens, then dies before anything else is said
      setImmediate(() => this.endWatch(w, true));
    }
  }
}

function typeOf(plural: string): ResourceType {
  const t = TYPES.find((x) => x.plural === plural);
  if (!t) throw new Error(`unknown resource ${plural}`);
  return t;
}

function apiVersion(t: ResourceType): string {
  return t.group === '' ? t.version : `${t.group}/${t.version}`;
}

function objKey(plural: string, namespace: string, name: string): string {
  return `${plural}/${namespace}/${name}`;
}

function matches(
  w: { plural: string; namespace: string | undefined; selector: [string, string][] },
  plural: string,
  o: KubeObject,
): boolean {
  if (w.plural !== plural) return false;
  if (w.namespace !== undefined && o.metadata.namespace !== w.namespace) return false;
  return w.selector.every(([k, v]) => o.metadata.labels?.[k] === v);
}

function parseSelector(text: string | null): [string, string][] {
  if (!text) return [];
  return text.split(',').map((term) => {
    const [k, v] = term.split(/==?/) as [string, string | undefined];
    return [k.trim(), (v ?? '').trim()];
  });
}

function parsePath(path: string): { type: ResourceType; namespace?: string; name?: string } | undefined {
  const m = /^\/(?:api\/v1|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?$/.exec(
    path,
  );
  if (!m) return undefined;
  const [, group = '', version = 'v1', namespace, plural, name] = m;
  const t = TYPES.find((x) => x.plural === plural && x.group === group && x.version === version);
  if (!t) return undefined;
  const out: { type: ResourceType; namespace?: string; name?: string } = { type: t };
  if (namespace !== undefined) out.namespace = decodeURIComponent(namespace);
  if (name !== undefined) out.name = decodeURIComponent(name);
  return out;
}

function status(
  res: ServerResponse,
  code: number,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): void {
  sendJson(res, code, {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    code,
    ...(details ? { details } : {}),
  });
}

function notFound(res: ServerResponse, t: ResourceType, name: string): void {
  status(res, 404, 'NotFound', `${t.plural} "${name}" not found`, { name, kind: t.plural });
}
