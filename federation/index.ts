// The public surface of federation/: the signed, federated service catalog over NATS.
export { CATALOG_FILE, readCatalogFile, writeCatalogFile } from './catalog-file.ts';
export { CatalogStore } from './catalog-store.ts';
export {
  type FederationConfig,
  type FederationConfigInput,
  federationConfigSchema,
  natsConnectionSchema,
} from './config.ts';
export { SetDigest } from './digest.ts';
export { FederationNode, type FederationNodeOptions, type NatsStatus } from './federation-node.ts';
export { JwsSigner, type JwsAlg } from './jws.ts';
export { LinkReporter, toReported } from './link-reporter.ts';
export { LinkReports } from './link-reports.ts';
export * from './messages.ts';
export { CatalogPublisher, RevisionClock } from './publisher.ts';
export { type Subjects, subjects } from './subjects.ts';
export { MessageVerifier, REJECT_REASONS, type RejectReason, type Verdict } from './verifier.ts';
export { RejectionRecorder } from './rejections.ts';
export { type IngestOutcome, ingestCatalogMessage } from './ingest.ts';
export { PolicyAgent } from './policy-agent.ts';
export { POLICY_FILE, readPolicyFile } from './policy-file.ts';
export * from './policy-messages.ts';
export { PolicyStore } from './policy-store.ts';
export {
  type PolicyRejectReason,
  type PolicyRejected,
  PolicyVerifier,
  type VerifiedBundle,
} from './policy-verifier.ts';
export {
  type GatewayPolicyState,
  nextPolicyRevision,
  PolicyClient,
  signPolicyBundle,
} from './policy-client.ts';
