import { stringify } from 'yaml';
import {
  checkPolicyAgainstCatalog,
  isMeshfedError,
  MeshfedError,
  type PolicyDocument,
  policyDocumentId,
  tcpPolicyNotes,
  validatePolicyDocuments,
} from '../../core/index.ts';
import {
  type GatewayPolicyState,
  nextPolicyRevision,
  type PolicyClient,
  signPolicyBundle,
} from '../../federation/index.ts';
import type { Command, CommandContext } from '../command.ts';
import { parseFlags, renderTable, requireFlag, writeJson } from '../command.ts';
import {
  catalogFromAdmin,
  loadSigner,
  openPolicyClient,
  POLICY_FLAGS,
  POLICY_FLAGS_HELP,
  type PolicyEnvironment,
  type PolicyFlagValues,
  type PolicySigner,
  policyEnvironment,
  readPolicyFiles,
  say,
} from './policy-connection.ts';
import {
  type DocumentChange,
  documentRows,
  fetchAllScopes,
  mergeDocuments,
  planChanges,
  renderPlan,
  scopeSummary,
} from './policy-plan.ts';

function gatewayName(g: GatewayPolicyState): string {
  return `${g.cluster}/${g.gateway}`;
}

/** Refuses a split to a service no cluster exports, when a gateway's admin API can tell (else says so). */
async function checkCatalog(
  ctx: CommandContext,
  pe: PolicyEnvironment,
  docs: readonly PolicyDocument[],
  source: string,
) {
  let catalog: Awaited<ReturnType<typeof catalogFromAdmin>>;
  try {
    catalog = await catalogFromAdmin(pe);
  } catch (err) {
    if (!isMeshfedError(err, 'MESHFED_ADMIN_UNREACHABLE')) throw err;
    catalog = undefined;
  }
  if (!catalog) {
    // with --json the result says catalogChecked: false instead
    if (!ctx.json)
      ctx.stderr.write(
        'meshfed: note: split backends not checked against the catalog (give --config or --admin)\n',
      );
    return false;
  }
  // with --json too: notes go to stderr, never into the result
  for (const note of tcpPolicyNotes(docs, catalog, source)) ctx.stderr.write(`meshfed: note: ${note}\n`);
  const problems = checkPolicyAgainstCatalog(docs, catalog, source);
  if (problems.length > 0) {
    throw new MeshfedError(
      'MESHFED_POLICY_UNKNOWN_SERVICE',
      problems.map((p) => `${p.document}: ${p.path}: ${p.message}`).join('\n'),
      { details: { source, problems } },
    );
  }
  return true;
}

/**
 * Signs the new whole set of the signer's scope, checks it as every gateway will (so nothing is published that
 * they would refuse), publishes it, and waits until every live gateway reports it.
 */
async function publishScope(
  ctx: CommandContext,
  o: {
    client: PolicyClient;
    verifier: Awaited<ReturnType<typeof openPolicyClient>>['verifier'];
    signer: PolicySigner;
    previous: number | undefined;
    documents: readonly PolicyDocument[];
    gateways: readonly GatewayPolicyState[];
    pe: PolicyEnvironment;
    changes: readonly DocumentChange[];
    catalogChecked?: boolean;
  },
): Promise<number> {
  const revision = nextPolicyRevision(o.previous, Date.now());
  const raw = signPolicyBundle(o.signer.jws, {
    scope: o.signer.scope,
    revision,
    issuedAt: Date.now(),
    documents: o.documents,
  });
  const check = o.verifier.bundle(raw);
  if (!check.ok) {
    throw new MeshfedError(
      'MESHFED_POLICY_REJECTED',
      `gateways would refuse this policy (${check.reason}): ${check.detail}; nothing was published`,
      { details: { reason: check.reason } },
    );
  }
  const wait = await o.client.waitForRevision({
    scope: o.signer.scope,
    revision,
    publish: raw,
    gateways: o.gateways,
    timeoutMs: o.pe.timeoutMs,
  });
  const result = {
    scope: o.signer.scope,
    revision,
    signer: o.signer.spiffeId,
    documents: o.documents.length,
    changes: o.changes,
    ...(o.catalogChecked === undefined ? {} : { catalogChecked: o.catalogChecked }),
    gateways: { reached: wait.reached.map(gatewayName), missing: wait.missing.map(gatewayName) },
    ms: wait.ms,
  };
  if (wait.missing.length > 0) {
    throw new MeshfedError(
      'MESHFED_POLICY_NOT_CONVERGED',
      `${o.signer.scope} revision ${revision} was published, but ${wait.missing.length} of ${o.gateways.length} live gateways did not report it within ${o.pe.timeoutMs} ms: ${result.gateways.missing.join(', ')}; check their NATS link and logs (meshfed_policy_rejected_total)`,
      { details: result, retryable: true },
    );
  }
  if (ctx.json) writeJson(ctx, result);
  else {
    ctx.stdout.write(renderPlan(o.changes));
    say(
      ctx,
      `${o.signer.scope} revision ${revision} in force at ${wait.reached.length} of ${o.gateways.length} live gateways (${wait.ms} ms)${o.gateways.length === 0 ? '; no gateway answered the ping' : ''}`,
    );
  }
  return 0;
}

/**
 * Discovers gateways and the bundle in force of `scope`. With no gateway answering there is nothing to build
 * on: a revision made from the files alone would replace every other document of the scope, and nothing would
 * enforce or keep it.
 */
async function inForce(client: PolicyClient, pe: PolicyEnvironment, scope: string) {
  const gateways = await client.discover(pe.discoverMs, pe.timeoutMs);
  if (gateways.length === 0) {
    throw new MeshfedError(
      'MESHFED_POLICY_NO_GATEWAYS',
      `no gateway answered a policy ping on ${pe.servers.join(',')} within ${pe.timeoutMs} ms, so the policy in force cannot be read and nothing was published; check that gateways run and use this NATS and subject prefix (${pe.subjectPrefix}), or give them longer with --timeout`,
      { retryable: true },
    );
  }
  const current = await client.current(scope, gateways, pe.timeoutMs);
  return { gateways, current };
}

function validateWhole(documents: readonly PolicyDocument[], scope: string): void {
  // the whole new set, not only the files: a TrafficSplit under a new name may clash with one in force
  validatePolicyDocuments(
    documents.map((d) => JSON.parse(JSON.stringify(d))),
    `${scope} after this change`,
  );
}

export const policyApplyCommand: Command = {
  path: ['policy', 'apply'],
  summary: 'validate, sign and publish policy documents; wait until every live gateway enforces them',
  usage: `meshfed policy apply -f FILE|DIR [--dry-run] [--resign] [flags]

Adds the documents of FILE (or of every *.yaml in DIR) to the policy of the signer's scope, replacing documents
of the same kind and name, signs the whole new revision and publishes it. Every problem of every document is
reported at once, and nothing is published. --dry-run validates and shows what would change. --resign
publishes a new revision even when nothing changed (-f optional): the policy in force, signed by the given
certificate, e.g. before the certificate that signed it expires.

${POLICY_FLAGS_HELP}`,
  async run(ctx) {
    const { values } = parseFlags(
      ctx,
      {
        ...POLICY_FLAGS,
        file: { type: 'string', short: 'f' },
        'dry-run': { type: 'boolean' },
        resign: { type: 'boolean' },
      },
      'policy apply',
    );
    const v = values as PolicyFlagValues & { 'dry-run'?: boolean; resign?: boolean };
    const resign = v.resign === true;
    const { documents, files } =
      resign && values.file === undefined
        ? { documents: [], files: [] }
        : readPolicyFiles(requireFlag(values, 'file', 'policy apply'));
    const dryRun = v['dry-run'] === true;
    const haveNats = Boolean(v.nats ?? v.config ?? process.env.MESHFED_NATS_URL);
    if (dryRun && !haveNats) {
      // offline: what the files say is all there is to check
      validateWhole(documents, 'admin');
      const changes = planChanges([], documents);
      if (ctx.json) writeJson(ctx, { dryRun: true, files, documents: documents.length, changes });
      else
        ctx.stdout.write(
          `${renderPlan(changes)}valid: ${documents.length} document(s) in ${files.length} file(s) (not compared with the policy in force: no NATS given)\n`,
        );
      return 0;
    }
    const pe = policyEnvironment(v, 'policy apply');
    const signer =
      dryRun && !(v.cert ?? process.env.MESHFED_ADMIN_CERT) ? undefined : loadSigner(v, pe, 'policy apply');
    const scope = signer?.scope ?? 'admin';
    const catalogChecked = await checkCatalog(ctx, pe, documents, files.join(', '));
    const { client, verifier, close } = await openPolicyClient(pe);
    try {
      const { gateways, current } = await inForce(client, pe, scope);
      const merged = mergeDocuments(current?.documents ?? [], documents);
      validateWhole(merged, scope);
      const changes = planChanges(current?.documents ?? [], merged);
      if (dryRun || (!resign && changes.every((c) => c.change === 'unchanged'))) {
        const result = {
          dryRun,
          scope,
          revisionInForce: current?.revision ?? null,
          catalogChecked,
          gateways: gateways.map(gatewayName),
          changes,
        };
        if (ctx.json) writeJson(ctx, result);
        else {
          ctx.stdout.write(renderPlan(changes));
          say(
            ctx,
            dryRun
              ? `dry run: nothing published (${gateways.length} live gateways)`
              : 'unchanged: nothing published',
          );
        }
        return 0;
      }
      return await publishScope(ctx, {
        client,
        verifier,
        signer: signer!,
        previous: current?.revision,
        documents: merged,
        gateways,
        pe,
        changes,
        catalogChecked,
      });
    } finally {
      await close();
    }
  },
};

export const policyDeleteCommand: Command = {
  path: ['policy', 'delete'],
  summary: 'remove policy documents (KIND/NAME) and publish the new revision',
  usage: `meshfed policy delete KIND/NAME [KIND/NAME…] [flags]

${POLICY_FLAGS_HELP}`,
  async run(ctx) {
    const { values, positionals } = parseFlags(ctx, POLICY_FLAGS, 'policy delete', true);
    const ids = positionals as string[];
    if (ids.length === 0) {
      throw new MeshfedError(
        'MESHFED_USAGE',
        'policy delete: name what to delete, e.g. TrafficSplit/greeter-canary',
      );
    }
    const pe = policyEnvironment(values, 'policy delete');
    const signer = loadSigner(values, pe, 'policy delete');
    const { client, verifier, close } = await openPolicyClient(pe);
    try {
      const { gateways, current } = await inForce(client, pe, signer.scope);
      const docs = current?.documents ?? [];
      const missing = ids.filter((id) => !docs.some((d) => policyDocumentId(d) === id));
      if (missing.length > 0) {
        throw new MeshfedError(
          'MESHFED_USAGE',
          `policy delete: ${missing.join(', ')} not in ${signer.scope} revision ${current?.revision ?? '(none)'}; in force: ${docs.map(policyDocumentId).join(', ') || 'nothing'}`,
        );
      }
      const remaining = docs.filter((d) => !ids.includes(policyDocumentId(d)));
      return await publishScope(ctx, {
        client,
        verifier,
        signer,
        previous: current?.revision,
        documents: remaining,
        gateways,
        pe,
        changes: planChanges(docs, remaining),
      });
    } finally {
      await close();
    }
  },
};

export const policyListCommand: Command = {
  path: ['policy', 'list'],
  summary: 'every policy document in force, by scope, and which gateways enforce which revision',
  usage: `meshfed policy list [flags]\n\n${POLICY_FLAGS_HELP}`,
  async run(ctx) {
    const { values } = parseFlags(ctx, POLICY_FLAGS, 'policy list');
    const pe = policyEnvironment(values, 'policy list');
    const { client, close } = await openPolicyClient(pe);
    try {
      const gateways = await client.discover(pe.discoverMs, pe.timeoutMs);
      const bundles = await fetchAllScopes(client, gateways, pe.timeoutMs);
      if (ctx.json) {
        writeJson(ctx, {
          scopes: bundles.map((b) => ({ ...scopeSummary(b), documents: b.documents })),
          gateways,
        });
        return 0;
      }
      ctx.stdout.write(
        renderTable(
          ['SCOPE', 'REVISION', 'KIND', 'NAME', 'SERVICE'],
          documentRows(bundles).map((r) => [r.scope, r.revision, r.kind, r.name, r.service]),
        ),
      );
      const lagging = gateways.filter((g) => bundles.some((b) => (g.scopes[b.scope] ?? 0) < b.revision));
      say(
        ctx,
        `${gateways.length} live gateways${lagging.length > 0 ? `; behind: ${lagging.map(gatewayName).join(', ')}` : ', all on the newest revisions'}`,
      );
      return 0;
    } finally {
      await close();
    }
  },
};

export const policyGetCommand: Command = {
  path: ['policy', 'get'],
  summary: 'one policy document in force (KIND/NAME), as YAML',
  usage: `meshfed policy get KIND/NAME [flags]\n\n${POLICY_FLAGS_HELP}`,
  async run(ctx) {
    const { values, positionals } = parseFlags(ctx, POLICY_FLAGS, 'policy get', true);
    const id = positionals[0];
    if (!id)
      throw new MeshfedError(
        'MESHFED_USAGE',
        'policy get: name the document, e.g. TrafficSplit/greeter-canary',
      );
    const pe = policyEnvironment(values, 'policy get');
    const { client, close } = await openPolicyClient(pe);
    try {
      const bundles = await fetchAllScopes(
        client,
        await client.discover(pe.discoverMs, pe.timeoutMs),
        pe.timeoutMs,
      );
      const found = bundles.flatMap((b) =>
        b.documents
          .filter((d) => policyDocumentId(d) === id)
          .map((d) => ({ ...scopeSummary(b), document: d })),
      );
      if (found.length === 0) {
        throw new MeshfedError('MESHFED_USAGE', `policy get: ${id} is not in force; see meshfed policy list`);
      }
      if (ctx.json) writeJson(ctx, found);
      else
        for (const f of found)
          ctx.stdout.write(`# ${f.scope} revision ${f.revision}\n---\n${stringify(f.document)}`);
      return 0;
    } finally {
      await close();
    }
  },
};

export const policyDiffCommand: Command = {
  path: ['policy', 'diff'],
  summary: 'what applying FILE would change, field by field',
  usage: `meshfed policy diff -f FILE|DIR [flags]\n\nExit 0 when nothing would change, 3 when something would.\n\n${POLICY_FLAGS_HELP}`,
  async run(ctx) {
    const { values } = parseFlags(
      ctx,
      { ...POLICY_FLAGS, file: { type: 'string', short: 'f' } },
      'policy diff',
    );
    const { documents } = readPolicyFiles(requireFlag(values, 'file', 'policy diff'));
    const pe = policyEnvironment(values, 'policy diff');
    const hasSigner = Boolean(values.cert ?? process.env.MESHFED_ADMIN_CERT);
    const scope = hasSigner ? loadSigner(values, pe, 'policy diff').scope : 'admin';
    const { client, close } = await openPolicyClient(pe);
    try {
      const { current } = await inForce(client, pe, scope);
      const changes = planChanges(
        current?.documents ?? [],
        mergeDocuments(current?.documents ?? [], documents),
      );
      const changed = changes.some((c) => c.change !== 'unchanged');
      if (ctx.json) writeJson(ctx, { scope, revisionInForce: current?.revision ?? null, changes });
      else ctx.stdout.write(renderPlan(changes));
      // like diff(1): 0 when equal; 3 rather than 1 so a failure is never mistaken for "differs"
      return changed ? 3 : 0;
    } finally {
      await close();
    }
  },
};
