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
import { ConsulSink } from './consul-sink.ts';
import { ConsulSource } from './consul-source.ts';
import { KubernetesSink } from './kubernetes-sink.ts';
import { registerSourceMetrics } from './metrics.ts';
import { KubernetesSource } from './kubernetes-source.ts';
import { StaticFileSource } from './static-file-source.ts';

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
export function createSources(config: DiscoveryConfig, deps: DiscoveryDeps = {}): CombinedSource {
  const log = deps.logger ?? silentLogger();
  const sources: EndpointSource[] = config.sources.map((s) => {
    if (s.type === 'static')
      return new StaticFileSource({ file: pathFrom(deps, s.file), debounceMs: s.debounce, log });
    if (s.type === 'consul')
      return new ConsulSource({ config: { ...s, tokenFile: pathFrom(deps, s.tokenFile) }, log });
    return new KubernetesSource({ config: { ...s, kubeconfig: pathFrom(deps, s.kubeconfig) }, log });
  });
  if (deps.registry) registerSourceMetrics(deps.registry, sources);
  return new CombinedSource(sources, log);
}

/** Builds every configured sink; the ImportReconciler drives them. */
export function createSinks(config: DiscoveryConfig, deps: DiscoveryDeps = {}): ImportSink[] {
  const log = deps.logger ?? silentLogger();
  const gatewayId = deps.gatewayId ?? hostname();
  const egress = deps.egress ?? { host: '127.0.0.1', port: 15001 };
  return config.sinks.map((s) => {
    if (s.type === 'consul')
      return new ConsulSink({
        config: { ...s, tokenFile: pathFrom(deps, s.tokenFile) },
        gatewayId,
        egress,
        log,
      });
    // in a pod the egress is reachable at the pod IP (Downward API POD_IP), not at loopback
    const podIp = process.env.POD_IP;
    const kubeEgress = podIp ? { host: podIp, port: egress.port } : egress;
    return new KubernetesSink({
      config: { ...s, kubeconfig: pathFrom(deps, s.kubeconfig) },
      gatewayId,
      egress: kubeEgress,
      log,
    });
  });
}
