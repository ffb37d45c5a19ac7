import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpDouble, sendJson } from './http-double.ts';

/**
 * A Consul HTTP API double for exactly the endpoints meshfed uses, following the Consul 1.20
 * API documents (developer.hashicorp.com/consul/api-docs):
 *
 * - GET  /v1/catalog/services             blocking; map service name → tags
 * - GET  /v1/health/service/:name         blocking; `passing` filters to instances whose checks all pass
 * - GET  /v1/health/state/:state          blocking; every check in that state (`any` = all)
 * - GET  /v1/agent/services               the agent's own registrations, ID → service
 * - PUT  /v1/agent/service/register       ID, Name, Tags, Meta, Address, Port
 * - PUT  /v1/agent/service/deregister/:id 404 for an unknown ID
 *
 * Blocking queries (features/blocking): with `?index=N` the request is held until the index of the
 * data it reads moves past N or `wait` (default 5m, max 10m, plus up to wait/16 jitter) passes;
 * every answer carries `X-Consul-Index`. ACLs (when `aclTokens` is set): an unknown token is
 * `403 ACL not found`; the anonymous token reads filtered (empty) results with
 * `X-Consul-Results-Filtered-By-ACLs: true` and writes get `403 Permission denied`.
 */
export interface ConsulInstance {
  id: string;
  service: string;
  tags: string[];
  meta: Record<string, string>;
  address: string;
  port: number;
  node: string;
  nodeAddress: string;
  nodeMeta: Record<string, string>;
  /** aggregate check status */
  status: 'passing' | 'warning' | 'critical';
  /** false: registered without any check (then it appears in no /v1/health/state answer) */
  checks: boolean;
  /** the index at which this instance last changed */
  modifyIndex: number;
}

interface Waiter {
  key: string;
  index: number;
  fire: () => void;
  cancel: () => void;
}

export class ConsulDouble extends HttpDouble {
  readonly datacenter: string;
  readonly agentNode = 'agent-1';
  /** valid ACL tokens; when undefined ACLs are off */
  aclTokens: Set<string> | undefined;
  private readonly instances = new Map<string, ConsulInstance>();
  /** raft index: moves on every write */
  private raftIndex = 10;
  private servicesIndex = 10;
  /** moves whenever any check is added, removed or changes status */
  private checksIndex = 10;
  private readonly serviceIndex = new Map<string, number>();
  private waiters: Waiter[] = [];

  constructor(options: { datacenter?: string; aclTokens?: string[] } = {}) {
    super();
    this.datacenter = options.datacenter ?? 'dc1';
    this.aclTokens = options.aclTokens ? new Set(options.aclTokens) : undefined;
  }

  // ---- test-side API: what a workload or operator would do to Consul ----

  /** Registers (or replaces) an instance on some node, as another agent would. */
  register(inst: Partial<ConsulInstance> & { id: string; service: string; port: number }): ConsulInstance {
    const prev = this.instances.get(inst.id);
    const next: ConsulInstance = {
      tags: [],
      meta: {},
      address: '127.0.0.1',
      node: 'node-1',
      nodeAddress: '127.0.0.1',
      nodeMeta: {},
      status: 'passing',
      checks: true,
      ...prev,
      ...inst,
      modifyIndex: 0,
    };
    this.write(
      next.service,
      () => this.instances.set(next.id, next),
      prev?.service,
      next.checks || prev?.checks === true,
    );
    return this.instances.get(next.id)!;
  }

  deregister(id: string): boolean {
    const prev = this.instances.get(id);
    if (!prev) return false;
    this.write(prev.service, () => this.instances.delete(id), undefined, prev.checks);
    return true;
  }

  setStatus(id: string, status: ConsulInstance['status']): void {
    const inst = this.instances.get(id);
    if (!inst) throw new Error(`no instance ${id}`);
    // a health change moves the service's index but not the catalog/services index
    this.raftIndex++;
    inst.status = status;
    inst.modifyIndex = this.raftIndex;
    this.serviceIndex.set(inst.service, this.raftIndex);
    this.checksIndex = this.raftIndex;
    this.wake();
  }

  /** Many registrations as one write (one index bump), for benchmarks. */
  registerMany(list: (Partial<ConsulInstance> & { id: string; service: string; port: number })[]): void {
    for (const inst of list) this.register(inst);
  }

  get(id: string): ConsulInstance | undefined {
    return this.instances.get(id);
  }

  all(): ConsulInstance[] {
    return [...this.instances.values()];
  }

  /**
   * Simulates a restored snapshot or a rebuilt cluster: every index drops below what clients
   * hold, which Consul's docs tell clients to detect and answer by resetting their index.
   */
  resetIndexes(to = 2): void {
    this.raftIndex = to;
    this.servicesIndex = to;
    this.checksIndex = to;
    for (const k of this.serviceIndex.keys()) this.serviceIndex.set(k, to);
    for (const inst of this.instances.values()) inst.modifyIndex = to;
  }

  // ---- internals ----

  private write(service: string, apply: () => void, oldService?: string, touchesChecks = true): void {
    this.raftIndex++;
    apply();
    const inst = [...this.instances.values()].filter((i) => i.service === service);
    for (const i of inst) if (i.modifyIndex === 0) i.modifyIndex = this.raftIndex;
    this.serviceIndex.set(service, this.raftIndex);
    if (oldService && oldService !== service) this.serviceIndex.set(oldService, this.raftIndex);
    this.servicesIndex = this.raftIndex;
    // the checks table only moves when a check is written or removed
    if (touchesChecks) this.checksIndex = this.raftIndex;
    this.wake();
  }

  private indexFor(key: string): number {
    if (key === 'services') return this.servicesIndex;
    if (key === 'checks') return this.checksIndex;
    // a service that never existed reports the services table index, like Consul
    return this.serviceIndex.get(key.slice('service:'.length)) ?? this.servicesIndex;
  }

  private wake(): void {
    const keep: Waiter[] = [];
    for (const w of this.waiters) {
      if (this.indexFor(w.key) > w.index) w.fire();
      else keep.push(w);
    }
    this.waiters = keep;
  }

  protected override onStop(): void {
    for (const w of this.waiters) w.cancel();
    this.waiters = [];
  }

  private token(req: IncomingMessage, url: URL): string | undefined {
    const h = req.headers['x-consul-token'];
    if (typeof h === 'string' && h !== '') return h;
    const auth = req.headers.authorization;
    if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7);
    return url.searchParams.get('token') ?? undefined;
  }

  protected handle(req: IncomingMessage, res: ServerResponse, url: URL, body: string): unknown {
    const path = url.pathname;
    // ACL: anonymous reads are filtered, unknown tokens are refused outright
    let anonymous = false;
    if (this.aclTokens) {
      const token = this.token(req, url);
      if (token === undefined) anonymous = true;
      else if (!this.aclTokens.has(token)) {
        res.writeHead(403, { 'content-type': 'text/plain' });
        res.end('ACL not found');
        return;
      }
    }
    if (req.method === 'GET' && path === '/v1/catalog/services') {
      return this.blocking(req, res, url, 'services', anonymous, () => {
        const out: Record<string, string[]> = { consul: [] };
        for (const i of this.instances.values()) {
          const tags = out[i.service] ?? [];
          for (const t of i.tags) if (!tags.includes(t)) tags.push(t);
          out[i.service] = tags;
        }
        return anonymous ? {} : out;
      });
    }
    const health = /^\/v1\/health\/service\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && health) {
      const name = decodeURIComponent(health[1]!);
      const passing = url.searchParams.has('passing') && url.searchParams.get('passing') !== 'false';
      return this.blocking(req, res, url, `service:${name}`, anonymous, () =>
        anonymous
          ? []
          : [...this.instances.values()]
              .filter((i) => i.service === name && (!passing || i.status === 'passing'))
              .map((i) => this.healthEntry(i)),
      );
    }
    const state = /^\/v1\/health\/state\/(any|passing|warning|critical)$/.exec(path);
    if (req.method === 'GET' && state) {
      return this.blocking(req, res, url, 'checks', anonymous, () =>
        anonymous
          ? []
          : [...this.instances.values()]
              .filter((i) => i.checks && (state[1] === 'any' || i.status === state[1]))
              .map((i) => ({
                Node: i.node,
                CheckID: `service:${i.id}`,
                Name: `Service '${i.service}' check`,
                Status: i.status,
                ServiceID: i.id,
                ServiceName: i.service,
                ServiceTags: i.tags,
                CreateIndex: i.modifyIndex,
                ModifyIndex: i.modifyIndex,
              })),
      );
    }
    if (req.method === 'GET' && path === '/v1/agent/services') {
      const out: Record<string, unknown> = {};
      if (!anonymous) {
        for (const i of this.instances.values()) {
          if (i.node !== this.agentNode) continue;
          out[i.id] = this.agentService(i);
        }
      }
      return sendJson(res, 200, out);
    }
    if (req.method === 'PUT' && path === '/v1/agent/service/register') {
      if (anonymous) return this.denied(res);
      let def: Record<string, unknown>;
      try {
        def = JSON.parse(body) as Record<string, unknown>;
      } catch {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end('Request decode failed');
        return;
      }
      const name = def.Name;
      if (typeof name !== 'string' || name === '') {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end('Missing service name');
        return;
      }
      this.register({
        id: typeof def.ID === 'string' && def.ID !== '' ? def.ID : name,
        service: name,
        tags: (def.Tags as string[] | undefined) ?? [],
        meta: (def.Meta as Record<string, string> | undefined) ?? {},
        address: (def.Address as string | undefined) ?? '',
        port: (def.Port as number | undefined) ?? 0,
        node: this.agentNode,
        status: 'passing',
      });
      res.writeHead(200);
      res.end();
      return;
    }
    const dereg = /^\/v1\/agent\/service\/deregister\/([^/]+)$/.exec(path);
    if (req.method === 'PUT' && dereg) {
      if (anonymous) return this.denied(res);
      const id = decodeURIComponent(dereg[1]!);
      const inst = this.instances.get(id);
      if (!inst || inst.node !== this.agentNode) {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end(`Unknown service ID "${id}". Ensure that the service ID is passed, not the service name.`);
        return;
      }
      this.deregister(id);
      res.writeHead(200);
      res.end();
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('404 page not found');
  }

  private denied(res: ServerResponse): void {
    res.writeHead(403, { 'content-type': 'text/plain' });
    res.end('Permission denied');
  }

  private blocking(
    _req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    key: string,
    anonymous: boolean,
    read: () => unknown,
  ): void {
    const answer = () => {
      const headers: Record<string, string> = {
        'X-Consul-Index': String(this.indexFor(key)),
        'X-Consul-KnownLeader': 'true',
        'X-Consul-LastContact': '0',
      };
      if (anonymous) headers['X-Consul-Results-Filtered-By-ACLs'] = 'true';
      if (!res.destroyed) sendJson(res, 200, read(), headers);
    };
    const index = Number(url.searchParams.get('index') ?? '0');
    // Consul blocks while the data's index is not greater than the one asked for: an index
    // that went backwards therefore holds until `wait` passes, then returns the lower index
    if (!Number.isFinite(index) || index <= 0 || this.indexFor(key) > index) {
      answer();
      return;
    }
    const waitMs = Math.min(parseWait(url.searchParams.get('wait')), 600_000);
    const jitter = Math.floor(Math.random() * (waitMs / 16));
    let timer: NodeJS.Timeout | undefined;
    const waiter: Waiter = {
      key,
      index,
      fire: () => {
        if (timer) clearTimeout(timer);
        answer();
      },
      cancel: () => {
        if (timer) clearTimeout(timer);
      },
    };
    timer = setTimeout(() => {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      answer();
    }, waitMs + jitter);
    res.on('close', () => {
      clearTimeout(timer);
      this.waiters = this.waiters.filter((w) => w !== waiter);
    });
    this.waiters.push(waiter);
  }

  private healthEntry(i: ConsulInstance): unknown {
    return {
      Node: {
        ID: `${i.node}-id`,
        Node: i.node,
        Address: i.nodeAddress,
        Datacenter: this.datacenter,
        Meta: i.nodeMeta,
        CreateIndex: i.modifyIndex,
        ModifyIndex: i.modifyIndex,
      },
      Service: {
        ID: i.id,
        Service: i.service,
        Tags: i.tags,
        Address: i.address,
        Meta: i.meta,
        Port: i.port,
        Weights: { Passing: 1, Warning: 1 },
        EnableTagOverride: false,
        CreateIndex: i.modifyIndex,
        ModifyIndex: i.modifyIndex,
      },
      Checks: !i.checks
        ? []
        : [
            {
              Node: i.node,
              CheckID: `service:${i.id}`,
              Name: `Service '${i.service}' check`,
              Status: i.status,
              ServiceID: i.id,
              ServiceName: i.service,
            },
          ],
    };
  }

  private agentService(i: ConsulInstance): unknown {
    return {
      ID: i.id,
      Service: i.service,
      Tags: i.tags,
      Meta: i.meta,
      Port: i.port,
      Address: i.address,
      Weights: { Passing: 1, Warning: 1 },
      EnableTagOverride: false,
      Datacenter: this.datacenter,
    };
  }
}

/** Consul wait syntax: "10s", "5m", "100ms"; default 5m. */
function parseWait(text: string | null): number {
  if (!text) return 300_000;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  if (!m) return 300_000;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Number(m[1]) * unit;
}
