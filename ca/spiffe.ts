import { MeshfedError } from '../core/index.ts';
import type { IdentityKind, SpiffeIdentity } from './types.ts';

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const SUBDOMAIN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function invalid(what: string, value: string, rule: string): MeshfedError {
  return new MeshfedError('MESHFED_CA_INVALID_NAME', `${what} "${value}" is not valid: ${rule}`, {
    details: { [what]: value },
  });
}

/** A trust domain is a DNS name: lower-case labels of letters, digits and '-', joined by '.'. */
export function assertTrustDomain(td: string): void {
  if (td.length > 253 || !SUBDOMAIN.test(td)) {
    throw invalid('trust domain', td, "use lower-case letters, digits, '-' and '.', like mesh.example");
  }
}

/** A cluster name is one DNS label (RFC 1123), so it can appear in host names and SPIFFE paths. */
export function assertClusterName(cluster: string): void {
  if (!LABEL.test(cluster)) {
    throw invalid(
      'cluster name',
      cluster,
      "a DNS label: 1-63 lower-case letters, digits or '-', like us-east-1",
    );
  }
}

/** Gateway, admin, namespace and service-account names: DNS subdomains (what Kubernetes allows). */
export function assertIdentityName(what: string, name: string): void {
  if (name.length > 253 || !SUBDOMAIN.test(name)) {
    throw invalid(what, name, "use lower-case letters, digits, '-' and '.'");
  }
}

export interface SpiffeIdParts {
  cluster?: string;
  name?: string;
  namespace?: string;
  serviceAccount?: string;
}

function need(kind: string, field: keyof SpiffeIdParts, o: SpiffeIdParts): string {
  const v = o[field];
  if (v === undefined || v === '') {
    throw new MeshfedError('MESHFED_USAGE', `a ${kind} identity needs a ${field}`);
  }
  return v;
}

/** The SPIFFE ID of an identity of meshfed (DESIGN.md "Identity and trust"); validates every part. */
export function spiffeIdFor(td: string, kind: IdentityKind | 'cluster', o: SpiffeIdParts = {}): string {
  assertTrustDomain(td);
  if (kind === 'admin') {
    const name = need(kind, 'name', o);
    assertIdentityName('admin name', name);
    return `spiffe://${td}/admin/${name}`;
  }
  const cluster = need(kind, 'cluster', o);
  assertClusterName(cluster);
  const base = `spiffe://${td}/cluster/${cluster}`;
  switch (kind) {
    case 'cluster':
      return base;
    case 'federation':
      return `${base}/federation`;
    case 'gateway': {
      const name = need(kind, 'name', o);
      assertIdentityName('gateway name', name);
      return `${base}/gateway/${name}`;
    }
    case 'workload': {
      const ns = need(kind, 'namespace', o);
      const sa = need(kind, 'serviceAccount', o);
      assertIdentityName('namespace', ns);
      assertIdentityName('service account', sa);
      return `${base}/ns/${ns}/sa/${sa}`;
    }
  }
}

/**
 * The SPIFFE ID of the admin intermediate, the only CA that may issue admin identities. It is a CA's ID, never a
 * leaf's: parseSpiffeId() does not accept it.
 */
export function adminCaSpiffeId(td: string): string {
  return `spiffe://${td}/admin`;
}

function bad(uri: string, why: string): MeshfedError {
  return new MeshfedError(
    'MESHFED_CA_BAD_SPIFFE_ID',
    `SPIFFE ID "${uri.slice(0, 200)}" is malformed: ${why}`,
  );
}

/** Parses one of meshfed's SPIFFE IDs. Throws MESHFED_CA_BAD_SPIFFE_ID for anything else. */
export function parseSpiffeId(uri: string): SpiffeIdentity {
  if (typeof uri !== 'string' || !uri.startsWith('spiffe://'))
    throw bad(String(uri), 'must start with spiffe://');
  if (uri.length > 2048) throw bad(uri, 'longer than 2048 characters');
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash === -1 ? rest : rest.slice(0, slash);
  if (td.length > 253 || !SUBDOMAIN.test(td)) throw bad(uri, 'the trust domain is not a lower-case DNS name');
  if (slash === -1) throw bad(uri, 'no path: a trust domain alone names no identity');
  const segs = rest.slice(slash + 1).split('/');
  if (segs.some((s) => !SUBDOMAIN.test(s))) {
    throw bad(
      uri,
      "a path segment is empty or has characters other than lower-case letters, digits, '-' and '.'",
    );
  }
  const id = { spiffeId: uri, trustDomain: td };
  if (segs[0] === 'admin' && segs.length === 2) return { ...id, kind: 'admin', name: segs[1]! };
  if (segs[0] !== 'cluster' || segs.length < 2)
    throw bad(uri, 'the path must start with /cluster/<name> or /admin/<name>');
  const cluster = segs[1]!;
  if (!LABEL.test(cluster)) throw bad(uri, 'the cluster is not a DNS label');
  if (segs.length === 2) return { ...id, kind: 'cluster', cluster };
  if (segs.length === 3 && segs[2] === 'federation') return { ...id, kind: 'federation', cluster };
  if (segs.length === 4 && segs[2] === 'gateway') return { ...id, kind: 'gateway', cluster, name: segs[3]! };
  if (segs.length === 6 && segs[2] === 'ns' && segs[4] === 'sa') {
    return { ...id, kind: 'workload', cluster, namespace: segs[3]!, serviceAccount: segs[5]! };
  }
  throw bad(uri, 'not a gateway, federation, workload, admin or cluster identity');
}
