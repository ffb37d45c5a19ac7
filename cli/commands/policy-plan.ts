import {
  type PolicyDocument,
  type PolicyScopeRevision,
  policyDocumentId,
  policyService,
} from '../../core/index.ts';
import type { GatewayPolicyState, PolicyClient, VerifiedBundle } from '../../federation/index.ts';

/** One field that differs between two versions of a document. */
export interface FieldChange {
  path: string;
  before: unknown;
  after: unknown;
}

export interface DocumentChange {
  id: string;
  change: 'added' | 'changed' | 'unchanged' | 'removed';
  fields: FieldChange[];
}

/** Field-level differences, arrays compared index by index; `undefined` means absent. */
export function diffValues(before: unknown, after: unknown, path = ''): FieldChange[] {
  if (Object.is(before, after)) return [];
  const bothObjects =
    before !== null && after !== null && typeof before === 'object' && typeof after === 'object';
  if (!bothObjects || Array.isArray(before) !== Array.isArray(after))
    return [{ path: path || '(document)', before, after }];
  const b = before as Record<string, unknown>;
  const a = after as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])];
  return keys.flatMap((k) =>
    diffValues(b[k], a[k], Array.isArray(before) ? `${path}[${k}]` : path ? `${path}.${k}` : k),
  );
}

/** What replacing `before` by `after` changes, document by document (matched by kind/name). */
export function planChanges(
  before: readonly PolicyDocument[],
  after: readonly PolicyDocument[],
): DocumentChange[] {
  const old = new Map(before.map((d) => [policyDocumentId(d), d]));
  const out: DocumentChange[] = [];
  for (const d of after) {
    const id = policyDocumentId(d);
    const prev = old.get(id);
    old.delete(id);
    if (!prev) out.push({ id, change: 'added', fields: [] });
    else {
      const fields = diffValues(prev, d);
      out.push({ id, change: fields.length === 0 ? 'unchanged' : 'changed', fields });
    }
  }
  for (const id of old.keys()) out.push({ id, change: 'removed', fields: [] });
  return out;
}

/** `current` with every document of `incoming` added or replacing the one of the same kind/name. */
export function mergeDocuments(
  current: readonly PolicyDocument[],
  incoming: readonly PolicyDocument[],
): PolicyDocument[] {
  const byId = new Map(current.map((d) => [policyDocumentId(d), d]));
  for (const d of incoming) byId.set(policyDocumentId(d), d);
  return [...byId.values()];
}

export function renderPlan(changes: readonly DocumentChange[]): string {
  const mark = { added: '+', changed: '~', unchanged: '=', removed: '-' } as const;
  const lines: string[] = [];
  for (const c of changes) {
    lines.push(`${mark[c.change]} ${c.id}${c.change === 'unchanged' ? ' (unchanged)' : ''}`);
    for (const f of c.fields) {
      lines.push(
        `    ${f.path}: ${JSON.stringify(f.before) ?? '(absent)'} → ${JSON.stringify(f.after) ?? '(absent)'}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The newest signed bundle of every scope any live gateway enforces, verified. */
export async function fetchAllScopes(
  client: PolicyClient,
  gateways: readonly GatewayPolicyState[],
  timeoutMs: number,
): Promise<VerifiedBundle[]> {
  const scopes = [...new Set(gateways.flatMap((g) => Object.keys(g.scopes)))].sort();
  const out: VerifiedBundle[] = [];
  for (const scope of scopes) {
    const b = await client.current(scope, gateways, timeoutMs);
    if (b) out.push(b);
  }
  return out;
}

/** One row per document: scope, revision, kind, name, the service it is about. */
export function documentRows(bundles: readonly VerifiedBundle[]) {
  return bundles.flatMap((b) =>
    b.documents.map((d) => ({
      scope: b.scope,
      revision: b.revision,
      kind: d.kind,
      name: d.metadata.name,
      service: policyService(d),
      signer: b.signer,
    })),
  );
}

export function scopeSummary(b: VerifiedBundle): PolicyScopeRevision & { documents: number } {
  return {
    scope: b.scope,
    revision: b.revision,
    signer: b.signer,
    issuedAt: b.issuedAt,
    documents: b.documents.length,
  };
}
