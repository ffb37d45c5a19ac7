/** Every NATS subject meshfed's catalog uses (docs/protocol.md lists them with the permissions they need). */
export interface Subjects {
  /** entries and tombstones of one cluster; subscribe with `catalog(*)` */
  catalog(cluster: string): string;
  /** bulk snapshots one cluster pushes (at start and on every TTL refresh): one signature per part */
  bulk(cluster: string): string;
  /** gateway announcements (heartbeats) of one cluster */
  announce(cluster: string): string;
  /** snapshot request for one cluster (answered by that cluster's publisher) */
  sync(cluster: string): string;
  /** snapshot request for every cluster (each publisher answers for its own) */
  syncAll: string;
}

export function subjects(prefix: string): Subjects {
  return {
    catalog: (c) => `${prefix}.catalog.${c}`,
    bulk: (c) => `${prefix}.bulk.${c}`,
    announce: (c) => `${prefix}.announce.${c}`,
    sync: (c) => `${prefix}.sync.${c}`,
    syncAll: `${prefix}.sync-all`,
  };
}

/** The last token of a subject: the cluster it belongs to. */
export function clusterOfSubject(subject: string): string {
  return subject.slice(subject.lastIndexOf('.') + 1);
}
