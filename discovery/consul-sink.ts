import { type ImportedService, type ImportSink, type Logger, MeshfedError } from '../core/index.ts';
import type { ConsulSinkConfig } from './config.ts';
import { ConsulApi } from './consul-client.ts';
import { CONSUL_META } from './consul-source.ts';

export interface ConsulSinkOptions {
  config: ConsulSinkConfig;
  /** this gateway's id: written as meshfed-owner, the only registrations this sink ever changes */
  gatewayId: string;
  /** where local apps reach imported services: the egress listener (config.egressAddress wins) */
  egress: { host: string; port: number };
  log: Logger;
  /** parallel agent calls per apply */
  concurrency?: number;
}

interface AgentService {
  ID: string;
  Service: string;
  Tags?: string[] | null;
  Meta?: Record<string, string> | null;
  Address?: string;
  Port?: number;
}

interface Registration {
  id: string;
  name: string;
  tags: string[];
  meta: Record<string, string>;
  address: string;
  port: number;
}

/**
 * Registers imported services in the local Consul agent, pointing at the gateway's egress listener.
 * Ownership lives in meta (`meshfed-managed=true`, `meshfed-owner=<gateway id>`): apply() lists
 * the agent's services every time, so registrations lost or edited by hand are repaired, stale ones
 * left by a crashed run are removed, and anything without our ownership meta is never touched.
 */
export class ConsulSink implements ImportSink {
  readonly name = 'consul';
  private readonly config: ConsulSinkConfig;
  private readonly gatewayId: string;
  private readonly egress: { host: string; port: number };
  private readonly log: Logger;
  private readonly concurrency: number;
  private api: ConsulApi | undefined;

  constructor(options: ConsulSinkOptions) {
    this.config = options.config;
    this.gatewayId = options.gatewayId;
    this.egress = options.config.egressAddress ?? options.egress;
    this.log = options.log.child({ sink: 'consul' });
    this.concurrency = options.concurrency ?? 16;
  }

  async start(): Promise<void> {
    this.api = new ConsulApi(this.config);
  }

  async stop(): Promise<void> {
    this.api?.destroy();
    this.api = undefined;
  }

  /** The service ID this gateway uses for an import (stable across restarts: crash cleanup finds it). */
  serviceId(ref: { namespace: string; name: string }): string {
    return `meshfed-${this.gatewayId}-${ref.namespace}-${ref.name}`;
  }

  async apply(services: readonly ImportedService[]): Promise<void> {
    const api = this.api;
    if (!api) throw new MeshfedError('MESHFED_INTERNAL', 'ConsulSink.apply called before start()');
    const existing = await api.call<Record<string, AgentService>>(
      (c, o) => c.agent.service.list(o),
      'GET /v1/agent/services',
    );
    if (existing === null || typeof existing !== 'object') {
      throw new MeshfedError(
        'MESHFED_DISCOVERY_INVALID',
        'Consul answered GET /v1/agent/services with no object',
        {
          retryable: true,
        },
      );
    }
    const desired = new Map<string, Registration>();
    for (const s of services) desired.set(this.serviceId(s), this.registration(s));
    const ops: (() => Promise<void>)[] = [];
    for (const [id, reg] of desired) {
      const have = existing[id];
      if (have && !this.owns(have)) {
        // someone else's service holds our ID: never overwrite it
        this.log.error(
          { serviceId: id },
          `Consul service ${id} exists without meshfed ownership meta; not registering ${reg.meta[CONSUL_META.namespace]}/${reg.meta[CONSUL_META.service]} over it`,
        );
        continue;
      }
      if (have && sameRegistration(have, reg)) continue;
      ops.push(() =>
        api.call(
          (c, o) =>
            c.agent.service.register({
              ...o,
              id: reg.id,
              name: reg.name,
              tags: reg.tags,
              meta: reg.meta,
              address: reg.address,
              port: reg.port,
            }),
          `PUT /v1/agent/service/register (${id})`,
        ),
      );
    }
    for (const [id, have] of Object.entries(existing)) {
      if (desired.has(id) || !this.owns(have)) continue;
      ops.push(async () => {
        try {
          await api.call(
            (c, o) => c.agent.service.deregister({ ...o, id }),
            `PUT /v1/agent/service/deregister/${id}`,
          );
        } catch (err) {
          // already gone is what we wanted
          if ((err as MeshfedError).details?.status !== 404) throw err;
        }
      });
    }
    await runAll(ops, this.concurrency);
    if (ops.length > 0)
      this.log.info({ changes: ops.length, imports: desired.size }, 'Consul registrations reconciled');
  }

  private owns(s: AgentService): boolean {
    return s.Meta?.[CONSUL_META.managed] === 'true' && s.Meta?.[CONSUL_META.owner] === this.gatewayId;
  }

  private registration(s: ImportedService): Registration {
    const name = this.config.nameTemplate.replaceAll('{name}', s.name).replaceAll('{namespace}', s.namespace);
    const first = s.ports[0];
    const meta: Record<string, string> = {
      [CONSUL_META.managed]: 'true',
      [CONSUL_META.owner]: this.gatewayId,
      [CONSUL_META.clusters]: s.clusters.join(','),
      [CONSUL_META.namespace]: s.namespace,
      [CONSUL_META.service]: s.name,
    };
    if (first) {
      meta[CONSUL_META.protocol] = first.protocol;
      meta[CONSUL_META.portName] = first.name;
      meta[CONSUL_META.port] = String(first.port);
    }
    return {
      id: this.serviceId(s),
      name,
      tags: [...this.config.tags],
      meta,
      address: this.egress.host,
      port: this.egress.port,
    };
  }
}

function sameRegistration(have: AgentService, want: Registration): boolean {
  return (
    have.Service === want.name &&
    (have.Address ?? '') === want.address &&
    (have.Port ?? 0) === want.port &&
    JSON.stringify([...(have.Tags ?? [])].sort()) === JSON.stringify([...want.tags].sort()) &&
    JSON.stringify(sortKeys(have.Meta ?? {})) === JSON.stringify(sortKeys(want.meta))
  );
}

function sortKeys(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Runs every op with bounded parallelism; finishes all, then throws the first error (retryable first). */
export async function runAll(ops: (() => Promise<unknown>)[], concurrency: number): Promise<void> {
  const errors: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < ops.length) {
      const op = ops[next++]!;
      try {
        await op();
      } catch (err) {
        errors.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, ops.length) }, worker));
  if (errors.length > 0) {
    throw errors.find((e) => (e as { retryable?: boolean }).retryable === true) ?? errors[0];
  }
}
