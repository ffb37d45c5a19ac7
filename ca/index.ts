// The public surface of ca/: the federated trust root, cluster intermediates, leaves, bundles and verification.
export { CertificateSource, type CertificateSourceOptions, readLeafFiles } from './certificate-source.ts';
export { spiffeIdOf } from './cert-facts.ts';
export { isKeyType } from './keys.ts';
export {
  BACKDATE_MS,
  createRoot,
  DEFAULT_INTERMEDIATE_TTL_MS,
  DEFAULT_LEAF_TTL_MS,
  DEFAULT_ROOT_TTL_MS,
  type IssueLeafOptions,
  issueAdminIntermediate,
  issueIntermediate,
  issueLeaf,
  loadCa,
} from './issuer.ts';
export { normaliseFingerprint, parseCertificates, pemBlocks } from './pem.ts';
export {
  adminCaSpiffeId,
  assertClusterName,
  assertTrustDomain,
  parseSpiffeId,
  type SpiffeIdParts,
  spiffeIdFor,
} from './spiffe.ts';
export { TrustBundle } from './trust-bundle.ts';
export * from './types.ts';
export { derChainOf, peerCertificateChain, verify } from './verify.ts';
export {
  CLUSTER_FILES,
  caMetaJson,
  LEAF_FILES,
  type LoadedCaDir,
  loadCaDir,
  ROOT_FILES,
} from './ca-directory.ts';
export { type OutputFile, readInputFile, readKeyFile, writeFilesAtomically } from './files.ts';
export { type CertificateDescription, describeCertificate } from './inspect.ts';
