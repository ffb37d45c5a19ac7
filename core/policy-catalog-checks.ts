// Apply-time checks of policy documents against the federated catalog (`meshfed policy apply`): what the
// documents alone cannot tell.
import type { CatalogView } from './catalog.ts';
import { type PolicyDocument, policyDocumentId } from './policy.ts';
import type { PolicyProblem } from './policy-schema.ts';

/**
 * Apply-time check against the federated catalog: every service a TrafficSplit sends traffic to
 * must be exported by some cluster (by the pinned cluster, when a backend names one). Returns the
 * problems (reason 'unknown-service'); the caller decides whether to refuse.
 */
export function checkPolicyAgainstCatalog(
  documents: readonly PolicyDocument[],
  catalog: Pick<CatalogView, 'instances'>,
  source: string,
): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  for (const doc of documents) {
    if (doc.kind !== 'TrafficSplit') continue;
    doc.spec.routes.forEach((route, r) => {
      route.backends.forEach((b, i) => {
        const [namespace = '', name = ''] = b.service.split('/');
        const clusters = catalog.instances(namespace, name).map((x) => x.cluster);
        const path = `spec.routes[${r}].backends[${i}].service`;
        const document = `${source} (${policyDocumentId(doc)})`;
        if (clusters.length === 0) {
          problems.push({
            document,
            path,
            message: `no cluster exports ${b.service}; export it first (meshfed export) or fix the name`,
            reason: 'unknown-service',
          });
        } else if (b.cluster !== undefined && !clusters.includes(b.cluster)) {
          problems.push({
            document,
            path: `spec.routes[${r}].backends[${i}].cluster`,
            message: `cluster ${b.cluster} does not export ${b.service} (exported by ${clusters.join(', ')})`,
            reason: 'unknown-service',
          });
        }
      });
    });
  }
  return problems;
}

/**
 * What a TrafficSplit or FaultInjection does not do to a service that exports a TCP port: its routes and
 * fault rules with an HTTP match never apply to TCP connections (a connection has no headers, path or
 * method), so those connections take the first route (rule) without one, or none. Not an error — the same
 * document may serve the service's HTTP port — but worth saying where it is written. One note per document.
 */
export function tcpPolicyNotes(
  documents: readonly PolicyDocument[],
  catalog: Pick<CatalogView, 'instances'>,
  source: string,
): string[] {
  const notes: string[] = [];
  for (const doc of documents) {
    if (doc.kind !== 'TrafficSplit' && doc.kind !== 'FaultInjection') continue;
    const [namespace = '', name = ''] = doc.spec.service.split('/');
    const tcpPorts = new Set(
      catalog
        .instances(namespace, name)
        .flatMap((x) => (x.ports ?? []).filter((p) => p.protocol === 'tcp').map((p) => p.name)),
    );
    if (tcpPorts.size === 0) continue;
    const rules: readonly { name: string; match?: unknown }[] =
      doc.kind === 'TrafficSplit' ? doc.spec.routes : doc.spec.rules;
    const http = rules.filter((r) => r.match !== undefined).map((r) => r.name);
    if (http.length === 0) continue;
    const rest = rules.find((r) => r.match === undefined);
    const what = doc.kind === 'TrafficSplit' ? 'route' : 'fault rule';
    notes.push(
      `${source} (${policyDocumentId(doc)}): ${doc.spec.service} exports TCP port ${[...tcpPorts].join(', ')}; ` +
        `${what}${http.length > 1 ? 's' : ''} ${http.join(', ')} ${http.length > 1 ? 'have' : 'has'} an HTTP match and never ${http.length > 1 ? 'apply' : 'applies'} to its TCP connections, which ` +
        (rest
          ? `take ${what} ${rest.name}`
          : `take none (${doc.kind === 'TrafficSplit' ? 'the service as addressed' : 'no fault'}); add a last ${what} without a match to cover them`),
    );
  }
  return notes;
}
