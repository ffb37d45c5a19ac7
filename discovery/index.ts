/**
 * discovery/: where this cluster's services come from and where imported services go.
 *
 * The Consul and Kubernetes sources and sinks are reached through createSources/createSinks, which load
 * them (and the Consul and Kubernetes client libraries, ~80 MB of memory together) only when the config
 * names them; importing this index therefore stays cheap. Their modules are not re-exported here.
 */
export { abortableDelay, Backoff, FailureLog } from './backoff.ts';
export { CombinedSource, mergeServices } from './combined-source.ts';
export {
  type ConsulSinkConfig,
  type ConsulSourceConfig,
  type DiscoveryConfig,
  discoveryConfigSchema,
  type KubernetesSinkConfig,
  type KubernetesSourceConfig,
  type StaticFile,
  type StaticSourceConfig,
  staticFileSchema,
} from './config.ts';
export {
  computeImports,
  type ImportEvent,
  ImportReconciler,
  type ImportReconcilerOptions,
} from './import-reconciler.ts';
export { canonicalServices, digestServices } from './service-set.ts';
export {
  StaticFileSource,
  type StaticFileSourceOptions,
  servicesFromStaticFile,
  setExportedInFile,
} from './static-file-source.ts';
export {
  consulSinkSchema,
  consulSourceSchema,
  kubernetesSinkSchema,
  kubernetesSourceSchema,
  staticSourceSchema,
} from './config.ts';
export { createSinks, createSources, type SinkDeps, type SourceDeps } from './factory.ts';
export { type ImportMetrics, importMetrics, registerSourceMetrics } from './metrics.ts';
