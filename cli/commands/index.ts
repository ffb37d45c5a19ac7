import { type Command, lazyCommand } from '../command.ts';

/**
 * Every command of the meshfed CLI. Each lives in its own file under cli/commands/ and is loaded
 * only when it runs, so a quick verb does not pay for the heavy libraries of another.
 */
export const COMMANDS: Command[] = [
  lazyCommand(
    ['gateway'],
    'run the gateway daemon from a config file',
    async () => (await import('./gateway.ts')).gatewayCommand,
  ),
  lazyCommand(
    ['status'],
    'this gateway: identity, certificate expiry, NATS link, clusters seen',
    async () => (await import('./admin-verbs.ts')).statusCommand,
  ),
  lazyCommand(
    ['clusters'],
    'every cluster: locality, gateways, last heartbeat, stale or not, services',
    async () => (await import('./admin-verbs.ts')).clustersCommand,
  ),
  lazyCommand(
    ['services'],
    'the federated catalog: which clusters serve what, with weights',
    async () => (await import('./admin-verbs.ts')).servicesCommand,
  ),
  lazyCommand(
    ['routes'],
    'the priority-ordered targets the load balancer would use, and why',
    async () => (await import('./admin-verbs.ts')).routesCommand,
  ),
  lazyCommand(
    ['stat'],
    'per service: success rate, req/s, p50/p95/p99 by cluster over a window',
    async () => (await import('./traffic-verbs.ts')).statCommand,
  ),
  lazyCommand(
    ['top'],
    'live view of the busiest service × cluster pairs, refreshing',
    async () => (await import('./traffic-verbs.ts')).topCommand,
  ),
  lazyCommand(
    ['check'],
    'diagnose certificates, trust bundle, NATS, clock skew, mTLS to every gateway',
    async () => (await import('./check.ts')).checkCommand,
  ),
  lazyCommand(
    ['export'],
    'export a service of the static source to the federation',
    async () => (await import('./export.ts')).exportCommand,
  ),
  lazyCommand(
    ['unexport'],
    'stop exporting a service of the static source',
    async () => (await import('./export.ts')).unexportCommand,
  ),
  lazyCommand(
    ['demo'],
    'a three-cluster federation on loopback: locality, failover, recovery, canary, authorization',
    async () => (await import('./demo.ts')).demoCommand,
  ),
  lazyCommand(
    ['ca', 'init'],
    'create a root CA (or bring your own root or intermediate)',
    async () => (await import('./ca-init.ts')).caInitCommand,
  ),
  lazyCommand(
    ['ca', 'cluster'],
    'issue a cluster intermediate and write the trust bundle',
    async () => (await import('./ca-cluster.ts')).caClusterCommand,
  ),
  lazyCommand(
    ['ca', 'admin'],
    'issue the admin intermediate (the only issuer of admin identities)',
    async () => (await import('./ca-cluster.ts')).caAdminCommand,
  ),
  lazyCommand(
    ['ca', 'issue'],
    'issue a leaf: gateway, federation, workload or admin',
    async () => (await import('./ca-issue.ts')).caIssueCommand,
  ),
  lazyCommand(
    ['ca', 'inspect'],
    'print a certificate or chain as a table',
    async () => (await import('./ca-inspect.ts')).caInspectCommand,
  ),
  lazyCommand(
    ['ca', 'bundle', 'show'],
    'list the roots of a trust bundle',
    async () => (await import('./ca-bundle.ts')).caBundleShowCommand,
  ),
  lazyCommand(
    ['ca', 'bundle', 'add'],
    'add a root to a trust bundle',
    async () => (await import('./ca-bundle.ts')).caBundleAddCommand,
  ),
  lazyCommand(
    ['ca', 'bundle', 'remove'],
    'remove a root from a trust bundle',
    async () => (await import('./ca-bundle.ts')).caBundleRemoveCommand,
  ),
  lazyCommand(
    ['ca', 'rotate'],
    'walk the root rotation procedure',
    async () => (await import('./ca-rotate.ts')).caRotateCommand,
  ),
  lazyCommand(
    ['policy', 'apply'],
    'validate, sign and publish policy documents; wait until every live gateway enforces them',
    async () => (await import('./policy.ts')).policyApplyCommand,
  ),
  lazyCommand(
    ['policy', 'list'],
    'every policy document in force, by scope, and which gateways enforce which revision',
    async () => (await import('./policy.ts')).policyListCommand,
  ),
  lazyCommand(
    ['policy', 'get'],
    'one policy document in force (KIND/NAME), as YAML',
    async () => (await import('./policy.ts')).policyGetCommand,
  ),
  lazyCommand(
    ['policy', 'delete'],
    'remove policy documents (KIND/NAME) and publish the new revision',
    async () => (await import('./policy.ts')).policyDeleteCommand,
  ),
  lazyCommand(
    ['policy', 'diff'],
    'what applying a file would change, field by field',
    async () => (await import('./policy.ts')).policyDiffCommand,
  ),
  lazyCommand(
    ['policy', 'explain'],
    'which rules match a call, which decides, what split, faults and limits apply, and why',
    async () => (await import('./policy-explain.ts')).policyExplainCommand,
  ),
  lazyCommand(
    ['demo-service'],
    'run one demo service (hello: HTTP, greeter: gRPC)',
    async () => (await import('./demo-service.ts')).demoServiceCommand,
  ),
];
