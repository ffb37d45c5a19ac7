import { hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import {
  type EndpointSource,
  type ImportSink,
  type Logger,
  type Registry,
  silentLogger,
} from '../core/index.ts';
import { CombinedSource } from './combined-source.ts';
import type { DiscoveryConfig } from './config.ts';
import { registerSourceMetrics } from './metrics.ts';
import { StaticFileSource } from './static-file-source.ts';

// The Consul and Kubernetes clients are loaded only when the config uses them: @kubernetes/client-node
// alone adds about 70 MB to a process's resident memory, and most gateways use one kind of source.

export interface DiscoveryDeps {
  logger?: Logger;
  registry?: Registry;
  /** relative file names in the config (static file, kubeconfig, token files) are resolved here */
  basePath?: string;
  /** written as the owner of every registration a sink makes; must be stable across restarts */
  gatewayId?: string;
  /** the egress listener, where sinks point imported services */
  egress?: { host: string; port: number };
}

function pathFrom(deps: DiscoveryDeps, file: string): string;
function pathFrom(deps: DiscoveryDeps, file: string | undefined): string | undefined;
function pathFrom(deps: DiscoveryDeps, file: string | undefined): string | undefined {
  if (file === undefined || isAbsolute(file) || deps.basePath === undefined) return file;
  return resolve(deps.basePath, file);
}

/** Builds every configured source and returns them as one (a CombinedSource, even for one). */
export async function createSources(
  config: DiscoveryConfig,
  deps: DiscoveryDeps = {},
): Promise<CombinedSource> {
  const log = deps.logger ?? silentLogger();
  const sources: EndpointSource[] = [];
  for (const s of config.sources) {
    if (s.type === 'static')
      sources.push(new StaticFileSource({ file: pathFrom(deps, s.file), debounceMs: s.debounce, log }));
    else if (s.type === 'consul') {
      const { ConsulSource } = await import('./consul-source.ts');
      sources.push(new ConsulSource({ config: { ...s, tokenFile: pathFrom(deps, s.tokenFile) }, log }));
    } else {
      const { KubernetesSource } = await import('./kubernetes-source.ts');
      sources.push(new KubernetesSource({ config: { ...s, kubeconfig: pathFrom(deps, s.kubeconfig) }, log }));
    }
  }
  if (deps.registry) registerSourceMetrics(deps.registry, sources);
  return new CombinedSource(sources, log);
}

/** Builds every configured sink; the ImportReconciler drives them. */
export async function createSinks(config: DiscoveryConfig, deps: DiscoveryDeps = {}): Promise<ImportSink[]> {
  const log = deps.logger ?? silentLogger();
  const gatewayId = deps.gatewayId ?? hostname();
  const egress = deps.egress ?? { host: '127.0.0.1', port: 15001 };
  const sinks: ImportSink[] = [];
  for (const s of config.sinks) {
    if (s.type === 'consul') {
      const { ConsulSink } = await import('./consul-sink.ts');
      sinks.push(
        new ConsulSink({ config: { ...s, tokenFile: pathFrom(deps, s.tokenFile) }, gatewayId, egress, log }),
      );
      continue;
    }
    // in a pod the egress is reachable at the pod IP (Downward API POD_IP), not at loopback
    const podIp = process.env.POD_IP;
    const kubeEgress = podIp ? { host: podIp, port: egress.port } : egress;
    const { KubernetesSink } = await import('./kubernetes-sink.ts');
    sinks.push(
      new KubernetesSink({
        config: { ...s, kubeconfig: pathFrom(deps, s.kubeconfig) },
        gatewayId,
        egress: kubeEgress,
        log,
      }),
    );
  }
  return sinks;
}
