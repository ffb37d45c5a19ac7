/**
 * Checks across fields and documents that a schema cannot express: duplicates, two documents
 * claiming the same single-valued slot of a service, weights that sum to 0, and rules that can
 * never decide anything because an earlier (or a DENY) rule already matches everything they match.
 *
 * "Covers" below means "matches every request the other matches". It is conservative: a rule is
 * reported only when it is certainly shadowed, never on a guess.
 */

import type {
  AuthorizationPolicy,
  CallerMatch,
  HeaderMatch,
  HttpMatch,
  PathMatch,
  PolicyDocument,
  RequestMatch,
} from './policy.ts';
import { policyDocumentId, policyService } from './policy.ts';
import type { PolicyProblem } from './policy-schema.ts';

/** True when pattern `a` matches every value pattern `b` matches (undefined = any value). */
export function patternCovers(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || a === '*') return true;
  if (b === undefined || b === '*') return false;
  if (a === b) return true;
  if (a.endsWith('*')) {
    const p = a.slice(0, -1);
    return b.startsWith('*') ? false : b.startsWith(p);
  }
  if (a.startsWith('*')) {
    const s = a.slice(1);
    return b.endsWith('*') ? false : b.endsWith(s);
  }
  return false;
}

/** `as` covers `bs` when every entry of bs is covered by some entry of as (undefined = anything). */
function listCovers<T>(
  as: readonly T[] | undefined,
  bs: readonly T[] | undefined,
  covers: (a: T, b: T) => boolean,
): boolean {
  if (as === undefined) return true;
  if (bs === undefined) return false;
  return bs.every((b) => as.some((a) => covers(a, b)));
}

function subset<T>(as: readonly T[] | undefined, bs: readonly T[] | undefined): boolean {
  if (as === undefined) return true;
  if (bs === undefined) return false;
  return bs.every((b) => as.includes(b));
}

function pathCovers(a: PathMatch | undefined, b: PathMatch | undefined): boolean {
  if (a === undefined) return true;
  if (b === undefined) return false;
  if (a.exact !== undefined) return b.exact === a.exact;
  return (b.exact ?? b.prefix ?? '').startsWith(a.prefix ?? '');
}

function callerCovers(a: CallerMatch, b: CallerMatch): boolean {
  return (
    patternCovers(a.spiffeId, b.spiffeId) &&
    patternCovers(a.cluster, b.cluster) &&
    patternCovers(a.namespace, b.namespace) &&
    patternCovers(a.serviceAccount, b.serviceAccount)
  );
}

function requestCovers(a: RequestMatch, b: RequestMatch): boolean {
  if (!subset(a.methods, b.methods) || !subset(a.ports, b.ports)) return false;
  if (!listCovers(a.paths, b.paths, pathCovers)) return false;
  if (a.grpc === undefined) return true;
  if (b.grpc === undefined) return false;
  return (
    (a.grpc.service === undefined || a.grpc.service === b.grpc.service) &&
    (a.grpc.method === undefined || a.grpc.method === b.grpc.method)
  );
}

/** True when header condition `b` (on the request) implies condition `a`. */
function headerImplies(b: HeaderMatch, a: HeaderMatch): boolean {
  if (a.name !== b.name) return false;
  if (a.present === true) return b.present === true || b.exact !== undefined || b.prefix !== undefined;
  if (a.present === false) return b.present === false;
  if (a.exact !== undefined) return b.exact === a.exact;
  const v = b.exact ?? b.prefix;
  return v !== undefined && a.prefix !== undefined && v.startsWith(a.prefix);
}

/** True when every request matching `b` also matches `a` (undefined = every request). */
export function httpMatchCovers(a: HttpMatch | undefined, b: HttpMatch | undefined): boolean {
  if (a === undefined) return true;
  const bm = b ?? {};
  if (!subset(a.methods, bm.methods)) return false;
  if (a.path !== undefined && !pathCovers(a.path, bm.path)) return false;
  return (a.headers ?? []).every((ah) => (bm.headers ?? []).some((bh) => headerImplies(bh, ah)));
}

function authRuleCovers(a: AuthorizationPolicy['spec']['rules'][number], b: typeof a): boolean {
  return listCovers(a.from, b.from, callerCovers) && listCovers(a.to, b.to, requestCovers);
}

function duplicateNames(names: readonly string[]): Set<number> {
  const seen = new Set<string>();
  const dups = new Set<number>();
  names.forEach((n, i) => {
    if (seen.has(n)) dups.add(i);
    seen.add(n);
  });
  return dups;
}

function orderedRuleProblems(
  label: string,
  field: string,
  rules: readonly { name: string; match?: HttpMatch }[],
): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  for (const i of duplicateNames(rules.map((r) => r.name))) {
    problems.push({
      document: label,
      path: `spec.${field}[${i}].name`,
      message: `name "${rules[i]!.name}" is used twice; each must be unique`,
      reason: 'duplicate',
    });
  }
  rules.forEach((rule, j) => {
    for (let i = 0; i < j; i++) {
      if (httpMatchCovers(rules[i]!.match, rule.match)) {
        problems.push({
          document: label,
          path: `spec.${field}[${j}]`,
          message: `unreachable: "${rules[i]!.name}" (${field}[${i}]) comes first and matches every request "${rule.name}" matches; move it earlier or narrow the earlier match`,
          reason: 'unreachable',
        });
        break;
      }
    }
  });
  return problems;
}

function authorizationProblems(doc: AuthorizationPolicy, label: string): PolicyProblem[] {
  const rules = doc.spec.rules;
  const problems: PolicyProblem[] = [];
  for (const i of duplicateNames(rules.map((r) => r.name))) {
    problems.push({
      document: label,
      path: `spec.rules[${i}].name`,
      message: `rule name "${rules[i]!.name}" is used twice; each must be unique`,
      reason: 'duplicate',
    });
  }
  rules.forEach((b, j) => {
    for (let i = 0; i < rules.length; i++) {
      const a = rules[i]!;
      if (i === j || !authRuleCovers(a, b)) continue;
      if (a.action === 'DENY' && b.action === 'ALLOW') {
        problems.push({
          document: label,
          path: `spec.rules[${j}]`,
          message: `unreachable: every request ALLOW rule "${b.name}" matches is denied by DENY rule "${a.name}" (rules[${i}]); remove it or narrow the DENY`,
          reason: 'unreachable',
        });
        return;
      }
      // same action: report only the later of two identical rules, and the narrower of two nested ones
      if (a.action === b.action && (i < j || !authRuleCovers(b, a))) {
        problems.push({
          document: label,
          path: `spec.rules[${j}]`,
          message: `overlapping: ${b.action} rule "${b.name}" matches nothing that ${a.action} rule "${a.name}" (rules[${i}]) does not already match; remove one`,
          reason: 'overlap',
        });
        return;
      }
    }
  });
  return problems;
}

/** The checks of one batch of documents (`labels[i]` names docs[i] in messages). */
export function semanticProblems(
  docs: readonly PolicyDocument[],
  labels: readonly string[],
): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const ids = new Map<string, number>();
  const slots = new Map<string, number>();
  docs.forEach((doc, d) => {
    const label = labels[d]!;
    const id = policyDocumentId(doc);
    const first = ids.get(id);
    if (first !== undefined) {
      problems.push({
        document: label,
        path: 'metadata.name',
        message: `${id} is defined twice (also ${labels[first]}); give each document its own name`,
        reason: 'duplicate',
      });
    } else ids.set(id, d);
    if (doc.kind === 'TrafficSplit' || doc.kind === 'FaultInjection' || doc.kind === 'ResilienceOverride') {
      const slot = `${doc.kind} ${policyService(doc)}`;
      const other = slots.get(slot);
      if (other !== undefined) {
        problems.push({
          document: label,
          path: 'spec.service',
          message: `${policyService(doc)} already has a ${doc.kind} (${labels[other]}); a service has at most one, merge them`,
          reason: 'conflict',
        });
      } else slots.set(slot, d);
    }
    switch (doc.kind) {
      case 'AuthorizationPolicy':
        problems.push(...authorizationProblems(doc, label));
        break;
      case 'TrafficSplit':
        problems.push(...orderedRuleProblems(label, 'routes', doc.spec.routes));
        doc.spec.routes.forEach((route, r) => {
          if (route.backends.reduce((sum, b) => sum + b.weight, 0) === 0) {
            problems.push({
              document: label,
              path: `spec.routes[${r}].backends`,
              message:
                'the weights sum to 0, so no backend could ever be chosen; give at least one backend a weight > 0',
              reason: 'weight',
            });
          }
          const seen = new Set<string>();
          route.backends.forEach((b, i) => {
            const key = `${b.service}@${b.cluster ?? '*'}`;
            if (seen.has(key)) {
              problems.push({
                document: label,
                path: `spec.routes[${r}].backends[${i}]`,
                message: `backend ${b.service}${b.cluster ? ` in ${b.cluster}` : ''} is listed twice; add the weights into one entry`,
                reason: 'duplicate',
              });
            }
            seen.add(key);
          });
        });
        break;
      case 'FaultInjection':
        problems.push(...orderedRuleProblems(label, 'rules', doc.spec.rules));
        break;
      case 'RateLimit':
      case 'ResilienceOverride':
        break;
    }
  });
  return problems;
}
