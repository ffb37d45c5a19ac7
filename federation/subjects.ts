/** Every NATS subject meshfed's catalog uses (docs/protocol.md lists them with the permissions they need). */
export interface Subjects {
  /** entries and tombstones of one cluster; subscribe with `catalog(*)` */
  catalog(cluster: string): string;
  /** bulk snapshots one cluster pushes (at start and on every TTL refresh): one signature per part */
  bulk(cluster: string): string;
  /** gateway announcements (heartbeats) of one cluster */
  announce(cluster: string): string;
  /** a gateway of one cluster withdrawing itself by name (it drains or stops); subscribe with `withdraw(*)` */
  withdraw(cluster: string): string;
  /** each gateway's outbound golden figures per destination cluster (every heartbeat); subscribe with `links(*)` */
  links(cluster: string): string;
  /** snapshot request for one cluster (answered by that cluster's publisher) */
  sync(cluster: string): string;
  /** snapshot request for every cluster (each publisher answers for its own) */
  syncAll: string;
  /** signed policy bundles of one signer scope (`admin` or `cluster:<c>`); subscribe with `policyAll` */
  policy(scope: string): string;
  /** every policy scope: `<prefix>.policy.>` */
  policyAll: string;
  /** each gateway's signed report of the policy revisions it enforces (heartbeat and after every change) */
  policyState(cluster: string): string;
  /** request: every gateway answers with its policy state report (the CLI's view of who is live) */
  policyPing: string;
  /**
   * request for the signed bundle of one scope at one revision: every gateway holding exactly it listens in one
   * queue group, so one of them answers (not all)
   */
  policyGet(scope: string, revision: number): string;
  /** every policy-get subject: `<prefix>.policy-get.>` */
  policyGetAll: string;
  /** the queue group of the policy-get responders */
  policyResponders: string;
}

export function subjects(prefix: string): Subjects {
  return {
    catalog: (c) => `${prefix}.catalog.${c}`,
    bulk: (c) => `${prefix}.bulk.${c}`,
    announce: (c) => `${prefix}.announce.${c}`,
    links: (c) => `${prefix}.links.${c}`,
    withdraw: (c) => `${prefix}.withdraw.${c}`,
    sync: (c) => `${prefix}.sync.${c}`,
    syncAll: `${prefix}.sync-all`,
    policy: (scope) => `${prefix}.policy.${scope.replace(':', '.')}`,
    policyAll: `${prefix}.policy.>`,
    policyState: (c) => `${prefix}.policy-state.${c}`,
    policyPing: `${prefix}.policy-ping`,
    policyGet: (scope, revision) => `${prefix}.policy-get.${scope.replace(':', '.')}.${revision}`,
    policyGetAll: `${prefix}.policy-get.>`,
    policyResponders: `${prefix}.policy-responders`,
  };
}

/** The last token of a subject: the cluster it belongs to. */
export function clusterOfSubject(subject: string): string {
  return subject.slice(subject.lastIndexOf('.') + 1);
}
