import type { RefusalReason } from '../answers.ts';

/** Why a head was refused; each is answered by the entry with `status` and the connection closed. */
export type HeadError =
  | 'bare-cr-or-lf'
  | 'head-too-large'
  | 'too-many-headers'
  | 'invalid-request-line'
  | 'unsupported-method'
  | 'invalid-request-target'
  | 'unsupported-version'
  | 'invalid-header-name'
  | 'invalid-header-value'
  | 'obs-fold'
  | 'missing-host'
  | 'duplicate-header'
  | 'invalid-content-length'
  | 'content-length-with-transfer-encoding'
  | 'unsupported-transfer-encoding'
  | 'expectation-failed'
  | 'invalid-status-line'
  | 'invalid-chunk'
  | 'invalid-chunk-extension'
  | 'invalid-trailer';

/** The refusal (gateway/answers.ts) each head error is answered with; the connection is then closed. */
export const HEAD_ERROR_REFUSAL: Record<HeadError, RefusalReason> = {
  'bare-cr-or-lf': 'malformed-request',
  'head-too-large': 'head-too-large',
  'too-many-headers': 'head-too-large',
  'invalid-request-line': 'malformed-request',
  'unsupported-method': 'unsupported-method',
  'invalid-request-target': 'invalid-request-target',
  'unsupported-version': 'unsupported-version',
  'invalid-header-name': 'malformed-request',
  'invalid-header-value': 'malformed-request',
  'obs-fold': 'malformed-request',
  'missing-host': 'malformed-request',
  'duplicate-header': 'malformed-request',
  'invalid-content-length': 'malformed-request',
  'content-length-with-transfer-encoding': 'malformed-request',
  'unsupported-transfer-encoding': 'unsupported-transfer-encoding',
  'expectation-failed': 'expectation-failed',
  'invalid-status-line': 'malformed-request',
  'invalid-chunk': 'malformed-request',
  'invalid-chunk-extension': 'malformed-request',
  'invalid-trailer': 'malformed-request',
};

export class HeadParseError extends Error {
  readonly reason: HeadError;
  constructor(reason: HeadError, detail: string) {
    super(`${reason}: ${detail}`);
    this.reason = reason;
  }
}
