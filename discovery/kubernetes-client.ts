import { KubeConfig } from '@kubernetes/client-node';
import { MeshfedError } from '../core/index.ts';

export interface KubernetesAccess {
  kubeconfig?: string | undefined;
  context?: string | undefined;
  inCluster: boolean;
}

/**
 * Loads API access the way kubectl and controllers do: in-cluster (service account token and CA
 * mounted into the pod), an explicit kubeconfig file, or the default chain ($KUBECONFIG,
 * ~/.kube/config, then in-cluster). `context` picks a kubeconfig context by name.
 */
export function loadKubeConfig(access: KubernetesAccess): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (access.inCluster) {
      if (!process.env.KUBERNETES_SERVICE_HOST) {
        throw new MeshfedError(
          'MESHFED_CONFIG_INVALID',
          'kubernetes.inCluster is true but KUBERNETES_SERVICE_HOST is not set: run inside a pod, or set kubeconfig instead',
        );
      }
      kc.loadFromCluster();
    } else if (access.kubeconfig) {
      kc.loadFromFile(access.kubeconfig);
    } else {
      kc.loadFromDefault();
    }
  } catch (err) {
    if (err instanceof MeshfedError) throw err;
    throw new MeshfedError(
      'MESHFED_CONFIG_UNREADABLE',
      `cannot load Kubernetes access from ${access.kubeconfig ?? (access.inCluster ? 'the pod service account' : 'the default kubeconfig')}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (access.context) {
    if (!kc.getContextObject(access.context)) {
      throw new MeshfedError(
        'MESHFED_CONFIG_INVALID',
        `kubeconfig has no context named ${access.context} (known: ${
          kc
            .getContexts()
            .map((c) => c.name)
            .join(', ') || 'none'
        })`,
      );
    }
    kc.setCurrentContext(access.context);
  }
  if (!kc.getCurrentCluster()) {
    throw new MeshfedError(
      'MESHFED_CONFIG_INVALID',
      'the kubeconfig selects no cluster (check current-context)',
    );
  }
  return kc;
}

/** Maps client errors (ApiException with .code, fetch errors) to meshfed codes. */
export function kubeError(err: unknown, what: string, server: string): MeshfedError {
  if (err instanceof MeshfedError) return err;
  const e = err as { code?: unknown; statusCode?: unknown; message?: string; body?: unknown };
  const status =
    typeof e.code === 'number' ? e.code : typeof e.statusCode === 'number' ? e.statusCode : undefined;
  const details = { server, operation: what, status, reason: reasonOf(e.body) };
  if (status === 401 || status === 403) {
    return new MeshfedError(
      'MESHFED_DISCOVERY_FORBIDDEN',
      `the Kubernetes API at ${server} refused ${what} (${status}): check the service account and the RBAC rules in deploy/kubernetes/rbac.yaml`,
      { cause: err, details },
    );
  }
  if (status !== undefined && status < 500 && status !== 429) {
    return new MeshfedError(
      'MESHFED_DISCOVERY_INVALID',
      `the Kubernetes API at ${server} rejected ${what} with ${status}`,
      {
        cause: err,
        details,
      },
    );
  }
  return new MeshfedError(
    'MESHFED_DISCOVERY_UNAVAILABLE',
    `the Kubernetes API at ${server} is unreachable for ${what}: ${status ?? e.message ?? String(err)}`,
    { cause: err, details, retryable: true },
  );
}

function reasonOf(body: unknown): string | undefined {
  if (typeof body === 'string') {
    try {
      return (JSON.parse(body) as { reason?: string }).reason;
    } catch {
      return undefined;
    }
  }
  if (body !== null && typeof body === 'object') return (body as { reason?: string }).reason;
  return undefined;
}

export function statusOf(err: unknown): number | undefined {
  const d = (err as MeshfedError).details;
  return typeof d?.status === 'number' ? d.status : undefined;
}

/**
 * The generated client has no request timeout: a hung API server would stall a list or a write
 * forever. The request is abandoned (its socket closes with the server); the caller retries.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string, server: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new MeshfedError(
            'MESHFED_DISCOVERY_UNAVAILABLE',
            `the Kubernetes API at ${server} did not answer ${what} within ${ms} ms`,
            {
              retryable: true,
              details: { server, operation: what },
            },
          ),
        ),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
