import { isAbsolute, resolve } from 'node:path';
import type { EndpointSource, ImportSink, Logger, Registry } from '../core/index.ts';
import { CombinedSource } from './combined-source.ts';
import type { DiscoveryConfig } from './config.ts';
import { registerSourceMetrics } from './metrics.ts';
import { StaticFileSource } from './static-file-source.ts';

// The Consul and Kubernetes clients are loaded only when the config uses them: @kubernetes/client-node
// alone adds about 70 MB to a process's resident memory, and most gateways use one kind of source.

/** What every source needs from the composition root. */
export interface SourceDeps {
  logger: Logger;
  registry: Registry;
  /** relative file names in the config (static file, kubeconfig, token files) are resolved here */
  basePath: string;
}

/**
 * What every sink needs from the composition root. Nothing here has a default: the daemon once
 * registered imports at a default address while its egress listened elsewhere.
 */
export interface SinkDeps {
  logger: Logger;
  /** relative file names in the config (kubeconfig, token files) are resolved here */
  basePath: string;
  /** written as the owner of every registration a sink makes; must be stable across restarts */
  gatewayId: string;
  /** where apps on this host reach the egress listener (Consul registrations point here) */
  egress: { host: string; port: number };
  /** where pods reach the egress listener (Kubernetes EndpointSlices point here) */
  podEgress: { host: string; port: number };
}

function pathFrom(basePath: string, file: string): string;
function pathFrom(basePath: string, file: string | undefined): string | undefined;
function pathFrom(basePath: string, file: string | undefined): string | undefined {
  if (file === undefined || isAbsolute(file)) return file;
  return resolve(basePath, file);
}

/** Builds every configured source and returns them as one (a CombinedSource, even for one). */
export async function createSources(config: DiscoveryConfig, deps: SourceDeps): Promise<CombinedSource> {
  const log = deps.logger;
  const sources: EndpointSource[] = [];
  for (const s of config.sources) {
    if (s.type === 'static')
      sources.push(
        new StaticFileSource({ file: pathFrom(deps.basePath, s.file), debounceMs: s.debounce, log }),
      );
    else if (s.type === 'consul') {
      const { ConsulSource } = await import('./consul-source.ts');
      sources.push(
        new ConsulSource({ config: { ...s, tokenFile: pathFrom(deps.basePath, s.tokenFile) }, log }),
      );
    } else {
      const { KubernetesSource } = await import('./kubernetes-source.ts');
      sources.push(
        new KubernetesSource({ config: { ...s, kubeconfig: pathFrom(deps.basePath, s.kubeconfig) }, log }),
      );
    }
  }
  registerSourceMetrics(deps.registry, sources);
  return new CombinedSource(sources, log);
}

/** Builds every configured sink; the ImportReconciler drives them. */
export async function createSinks(config: DiscoveryConfig, deps: SinkDeps): Promise<ImportSink[]> {
  const { logger: log, gatewayId } = deps;
  const sinks: ImportSink[] = [];
  for (const s of config.sinks) {
    if (s.type === 'consul') {
      const { ConsulSink } = await import('./consul-sink.ts');
      sinks.push(
        new ConsulSink({
          config: { ...s, tokenFile: pathFrom(deps.basePath, s.tokenFile) },
          gatewayId,
          egress: deps.egress,
          log,
        }),
      );
      continue;
    }
    const { KubernetesSink } = await import('./kubernetes-sink.ts');
    sinks.push(
      new KubernetesSink({
        config: { ...s, kubeconfig: pathFrom(deps.basePath, s.kubeconfig) },
        gatewayId,
        egress: deps.podEgress,
        log,
      }),
    );
  }
  return sinks;
}
