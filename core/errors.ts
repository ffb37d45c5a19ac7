/**
 * One error type for all of meshfed. Every code is stable: once published it is never reused for a
 * different meaning, and every code is documented in docs/errors.md (a test enforces both).
 */

/** Every error code meshfed can raise, with the one-line meaning documented for operators. */
export const ERROR_CODES = {
  MESHFED_INTERNAL: 'an unexpected internal error; the message and cause say where',
  MESHFED_USAGE: 'a command was called with missing or wrong arguments',
  MESHFED_CONFIG_INVALID: 'a configuration file has fields that are missing, unknown or of the wrong type',
  MESHFED_CONFIG_UNREADABLE: 'a configuration file cannot be read or is not valid YAML',
  MESHFED_NATS_UNAVAILABLE: 'a NATS server cannot be reached (retryable)',
  MESHFED_NATS_SERVER_MISSING: 'the nats-server binary is not installed',
  MESHFED_NATS_START_FAILED: 'a nats-server process did not become ready in time',
  MESHFED_CA_MALFORMED: 'a certificate or key is not valid PEM/DER or cannot be parsed',
  MESHFED_CA_KEY_MISMATCH: 'a private key does not belong to the certificate it was given with',
  MESHFED_CA_BAD_PASSPHRASE: 'an encrypted private key could not be decrypted with the passphrase given',
  MESHFED_CA_NOT_A_CA: 'a certificate used as an issuer is not a CA certificate',
  MESHFED_CA_EXPIRED: 'a certificate is past its validity window',
  MESHFED_CA_NOT_YET_VALID: 'a certificate is not yet valid (check clock skew)',
  MESHFED_CA_UNKNOWN_ROOT: 'a chain does not lead to any root in the trust bundle',
  MESHFED_CA_BAD_SIGNATURE: 'a signature in a chain or message does not verify',
  MESHFED_CA_WRONG_TRUST_DOMAIN: 'a SPIFFE ID belongs to another trust domain',
  MESHFED_CA_WRONG_CLUSTER: 'a SPIFFE ID belongs to another cluster than the one claimed',
  MESHFED_CA_WRONG_KIND: 'a SPIFFE ID is of the wrong kind (e.g. a workload where a gateway is required)',
  MESHFED_CA_WRONG_ISSUER:
    'a certificate was issued by a CA that may not issue its kind (an admin identity from anything but the admin intermediate, or any other identity from it)',
  MESHFED_CA_BAD_KEY_USAGE: 'a certificate lacks the key usage or extended key usage required',
  MESHFED_CA_BAD_SPIFFE_ID: 'a SPIFFE ID is missing or malformed',
  MESHFED_CA_INVALID_NAME: 'a cluster, trust domain or identity name is not a valid DNS label',
  MESHFED_FILE_EXISTS: 'an output file exists and --force was not given',
  MESHFED_FILE_UNWRITABLE: 'an output file or directory cannot be written',
  MESHFED_FILE_INSECURE: 'a key file is readable by other users',
  MESHFED_CATALOG_REJECTED:
    'a catalog message was rejected (not signed, forged, stale, expired or malformed)',
  MESHFED_CATALOG_STORE: 'the persisted catalog could not be read or written',
  MESHFED_DISCOVERY_UNAVAILABLE: 'a discovery backend (Consul, Kubernetes) is unreachable (retryable)',
  MESHFED_DISCOVERY_INVALID: 'a discovery backend returned data that cannot be used',
  MESHFED_DISCOVERY_UNKNOWN_SERVICE: 'export/unexport named a service the static services file does not list',
  MESHFED_DISCOVERY_FORBIDDEN:
    'a discovery backend refused the credentials (Consul ACL token, Kubernetes RBAC)',
  MESHFED_GATEWAY_LISTEN: 'a listener could not bind its address',
  MESHFED_GATEWAY_NO_ROUTE: 'no exported service matches the requested name',
  MESHFED_GATEWAY_NO_HEALTHY_UPSTREAM: 'a service has no healthy target left',
  MESHFED_GATEWAY_UPSTREAM: 'an upstream connection failed (retryable)',
  MESHFED_GATEWAY_TIMEOUT: 'an upstream did not answer within its timeout',
  MESHFED_GATEWAY_OVERLOADED: 'a circuit breaker or connection limit refused the request',
  MESHFED_GATEWAY_DRAINING: 'a gateway is draining and takes no new requests (retryable elsewhere)',
  MESHFED_GATEWAY_IDENTITY_REFUSED: 'a peer or asserted caller identity is not allowed',
  MESHFED_GATEWAY_BAD_REQUEST:
    'a request is malformed or not allowed on this listener (absolute-form target, underscore header, HTTP/1.1 CONNECT)',
  MESHFED_POLICY_INVALID:
    'policy documents are invalid (unknown kind or field, weights summing to 0, overlapping or unreachable rules); every problem names the document and field',
  MESHFED_POLICY_TOO_LARGE: 'a policy file or document is over the size limit',
  MESHFED_POLICY_UNKNOWN_SERVICE: 'a policy sends traffic to a service no cluster exports',
  MESHFED_POLICY_REJECTED:
    'a received policy was refused (signer not allowed, other cluster, older revision, replayed, expired or malformed)',
  MESHFED_POLICY_NOT_CONVERGED: 'some live gateways did not report the applied policy revision in time',
  MESHFED_POLICY_NO_GATEWAYS:
    'no gateway answered a policy ping, so the policy in force cannot be read; nothing was published',
  MESHFED_ADMIN_UNREACHABLE: 'the admin API of a gateway cannot be reached',
  MESHFED_INSECURE_ENVIRONMENT: 'the process environment turns TLS verification off',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface MeshfedErrorOptions {
  cause?: unknown;
  /** true when the same operation may succeed if tried again later (network, backends). */
  retryable?: boolean;
  /** structured facts for logs and --json output; never key material. */
  details?: Record<string, unknown>;
}

export class MeshfedError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: MeshfedErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshfedError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, retryable: this.retryable, details: this.details };
  }
}

export function isMeshfedError(err: unknown, code?: ErrorCode): err is MeshfedError {
  return err instanceof MeshfedError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a MeshfedError, keeping the original as `cause`. */
export function toMeshfedError(err: unknown, code: ErrorCode = 'MESHFED_INTERNAL'): MeshfedError {
  if (err instanceof MeshfedError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new MeshfedError(code, message, { cause: err });
}
