/** discovery/: where this cluster's services come from and where imported services go. */
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
export { type BlockingResult, ConsulApi, type ConsulAccess, nextBlockingIndex } from './consul-client.ts';
export { ConsulSink, type ConsulSinkOptions } from './consul-sink.ts';
export { CONSUL_META, ConsulSource, type ConsulSourceOptions } from './consul-source.ts';
export {
  consulSinkSchema,
  consulSourceSchema,
  kubernetesSinkSchema,
  kubernetesSourceSchema,
  staticSourceSchema,
} from './config.ts';
export { createSinks, createSources, type DiscoveryDeps } from './factory.ts';
export { type KubeItem, type KubeList, ListWatch, type ListWatchOptions } from './kube-list-watch.ts';
export { kubeError, type KubernetesAccess, loadKubeConfig } from './kubernetes-client.ts';
export {
  EXPORT_ANNOTATION,
  KubernetesSource,
  type KubernetesSourceOptions,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  protocolOf,
} from './kubernetes-source.ts';
export {
  CLUSTERS_ANNOTATION,
  derivedServiceName,
  IMPORTED_ANNOTATION,
  KubernetesSink,
  type KubernetesSinkOptions,
  OWNER_ANNOTATION,
  SPEC_HASH_ANNOTATION,
} from './kubernetes-sink.ts';
export { type ImportMetrics, importMetrics, registerSourceMetrics } from './metrics.ts';
