import { type EndpointSource, type LocalService, type Logger, serviceKey } from '../core/index.ts';
import { ServiceSetHolder } from './service-set.ts';

/**
 * Several sources seen as one (e.g. Consul + a static file for hosts outside Consul). When two
 * sources report the same namespace/name their endpoints are merged, ports are united by name
 * (the first source listed wins a conflict), and the service is exported if any source exports it.
 */
export class CombinedSource implements EndpointSource {
  readonly name: string;
  readonly sources: readonly EndpointSource[];
  private readonly holder: ServiceSetHolder;
  private readonly unsubscribes: (() => void)[] = [];
  private readonly log: Logger;

  constructor(sources: readonly EndpointSource[], log: Logger) {
    this.sources = sources;
    this.name = sources.map((s) => s.name).join('+') || 'none';
    this.log = log;
    this.holder = new ServiceSetHolder((err) => this.log.error({ err }, 'a discovery listener threw'));
  }

  async start(): Promise<void> {
    for (const s of this.sources) this.unsubscribes.push(s.onChange(() => this.recompute()));
    const started: EndpointSource[] = [];
    try {
      for (const s of this.sources) {
        await s.start();
        started.push(s);
      }
    } catch (err) {
      await Promise.allSettled(started.map((s) => s.stop()));
      throw err;
    }
    this.recompute();
  }

  async stop(): Promise<void> {
    for (const u of this.unsubscribes.splice(0)) u();
    await Promise.allSettled(this.sources.map((s) => s.stop()));
  }

  current(): readonly LocalService[] {
    return this.holder.current();
  }

  onChange(listener: (services: readonly LocalService[]) => void): () => void {
    return this.holder.onChange(listener);
  }

  private recompute(): void {
    this.holder.set(mergeServices(this.sources.map((s) => s.current())));
  }
}

export function mergeServices(sets: readonly (readonly LocalService[])[]): LocalService[] {
  const byKey = new Map<string, LocalService>();
  for (const set of sets) {
    for (const s of set) {
      const key = serviceKey(s);
      const prev = byKey.get(key);
      if (!prev) {
        byKey.set(key, { ...s, ports: [...s.ports], endpoints: [...s.endpoints] });
        continue;
      }
      for (const p of s.ports) if (!prev.ports.some((q) => q.name === p.name)) prev.ports.push(p);
      prev.endpoints.push(...s.endpoints);
      prev.exported = prev.exported || s.exported;
      if (!prev.source.split('+').includes(s.source)) prev.source = `${prev.source}+${s.source}`;
    }
  }
  return [...byKey.values()];
}
