import * as ca from '../../ca/index.ts';
import type { CaMaterial, IssuedLeaf } from '../../ca/index.ts';
import {
  ADMIN_POLICY_SCOPE,
  type PolicyDocument,
  type Registry,
  validatePolicyDocuments,
} from '../../core/index.ts';
import { JwsSigner, nextPolicyRevision, signPolicyBundle } from '../../federation/index.ts';
import type { Pki } from './helpers.ts';

/**
 * An admin leaf as the federation issues it: from the dedicated admin intermediate where ca/ has one
 * (`issueAdminIntermediate`), else from a cluster intermediate (the rule before admin intermediates existed).
 */
export async function issueAdmin(
  pki: Pki,
  name = 'alice',
  o: { ttlMs?: number; notBefore?: Date } = {},
): Promise<IssuedLeaf> {
  const admin = (ca as unknown as { issueAdminIntermediate?: (root: CaMaterial) => Promise<CaMaterial> })
    .issueAdminIntermediate;
  const issuer = admin ? await admin(pki.root) : pki.intermediates.values().next().value!;
  return ca.issueLeaf(issuer, { kind: 'admin', name, ...o });
}

export function jwsOf(leaf: IssuedLeaf): JwsSigner {
  return new JwsSigner({ chainPem: leaf.chainPem, keyPem: leaf.keyPem });
}

/** Signs documents (plain objects, validated here so a test cannot sign what it did not mean) as one bundle. */
export function bundle(
  signer: JwsSigner,
  docs: readonly unknown[],
  o: { scope?: string; revision?: number; issuedAt?: number; raw?: boolean } = {},
): { raw: string; revision: number } {
  const revision = o.revision ?? nextPolicyRevision(undefined, Date.now());
  const documents = o.raw ? (docs as PolicyDocument[]) : validatePolicyDocuments(docs, 'test');
  return {
    revision,
    raw: signPolicyBundle(signer, {
      scope: o.scope ?? ADMIN_POLICY_SCOPE,
      revision,
      issuedAt: o.issuedAt ?? Date.now(),
      documents,
    }),
  };
}

const API = 'meshfed.io/v1alpha1';

export function split(name: string, service: string, backends: [string, number][]): unknown {
  return {
    apiVersion: API,
    kind: 'TrafficSplit',
    metadata: { name },
    spec: {
      service,
      routes: [{ name: 'all', backends: backends.map(([s, weight]) => ({ service: s, weight })) }],
    },
  };
}

export function allowFrom(
  name: string,
  service: string,
  callerCluster: string,
  targetCluster?: string,
): unknown {
  return {
    apiVersion: API,
    kind: 'AuthorizationPolicy',
    metadata: { name },
    spec: {
      target: { service, ...(targetCluster ? { cluster: targetCluster } : {}) },
      rules: [{ name: 'allow', action: 'ALLOW', from: [{ cluster: callerCluster }] }],
    },
  };
}

/** meshfed_policy_rejected_total{reason} */
export async function policyRejected(registry: Registry, reason: string): Promise<number> {
  const m = await registry.getSingleMetric('meshfed_policy_rejected_total')?.get();
  return m?.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}
