import { KubeConfig } from '@kubernetes/client-node';
import type { KubeDouble } from './kube-double.ts';

/** A KubeConfig pointing at the double, as `kubectl config` would write it. */
export function kubeConfigFor(double: KubeDouble, token = 'test-token'): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'double', server: double.url, skipTLSVerify: true }],
    users: [{ name: 'meshfed', token }],
    contexts: [{ name: 'double', cluster: 'double', user: 'meshfed' }],
    currentContext: 'double',
  });
  return kc;
}

export function kubeconfigYaml(double: KubeDouble, token = 'test-token'): string {
  return `apiVersion: v1
kind: Config
clusters:
  - name: other
    cluster: { server: "http://127.0.0.1:1" }
  - name: double
    # the double speaks plain HTTP, which the client allows only with this flag
    cluster: { server: "${double.url}", insecure-skip-tls-verify: true }
users:
  - name: meshfed
    user: { token: "${token}" }
contexts:
  - name: other
    context: { cluster: other, user: meshfed }
  - name: double
    context: { cluster: double, user: meshfed }
current-context: other
`;
}

export function service(
  namespace: string,
  name: string,
  options: { annotations?: Record<string, string>; labels?: Record<string, string>; ports?: unknown[] } = {},
) {
  return {
    metadata: {
      namespace,
      name,
      ...(options.annotations ? { annotations: options.annotations } : {}),
      ...(options.labels ? { labels: options.labels } : {}),
    },
    spec: {
      ports: options.ports ?? [
        { name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http', targetPort: 8080 },
      ],
    },
  };
}

export function slice(
  namespace: string,
  svc: string,
  endpoints: { ip: string; ready?: boolean; zone?: string }[],
  options: { name?: string; portName?: string; port?: number } = {},
) {
  return {
    metadata: {
      namespace,
      name: options.name ?? `${svc}-abc12`,
      labels: {
        'kubernetes.io/service-name': svc,
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
      },
    },
    addressType: 'IPv4',
    ports: [{ name: options.portName ?? 'http', port: options.port ?? 8080, protocol: 'TCP' }],
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: e.ready === undefined ? {} : { ready: e.ready },
      ...(e.zone ? { zone: e.zone } : {}),
    })),
  };
}
