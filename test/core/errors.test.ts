import { readFileSync } from 'node:fs';
import { ERROR_CODES, isMeshfedError, MeshfedError, toMeshfedError } from '../../core/index.ts';

describe('MeshfedError', () => {
  test('every code is documented in docs/errors.md', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const missing = Object.keys(ERROR_CODES).filter((code) => !doc.includes(`\`${code}\``));
    expect(missing).toEqual([]);
  });

  test('docs/errors.md lists no code that does not exist', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const documented = [...doc.matchAll(/`(MESHFED_[A-Z_]+)`/g)].map((m) => m[1]);
    expect(documented.filter((c) => !(c! in ERROR_CODES))).toEqual([]);
  });

  test('codes follow the MESHFED_ naming and are unique', () => {
    const codes = Object.keys(ERROR_CODES);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of codes) expect(c).toMatch(/^MESHFED_[A-Z][A-Z_]+$/);
  });

  test('carries code, cause and retryable', () => {
    const cause = new Error('ECONNREFUSED');
    const err = new MeshfedError('MESHFED_NATS_UNAVAILABLE', 'nats://127.0.0.1:4222 refused', {
      cause,
      retryable: true,
    });
    expect(err.code).toBe('MESHFED_NATS_UNAVAILABLE');
    expect(err.retryable).toBe(true);
    expect(err.cause).toBe(cause);
    expect(isMeshfedError(err, 'MESHFED_NATS_UNAVAILABLE')).toBe(true);
    expect(isMeshfedError(err, 'MESHFED_INTERNAL')).toBe(false);
    expect(JSON.parse(JSON.stringify(err))).toMatchObject({
      code: 'MESHFED_NATS_UNAVAILABLE',
      retryable: true,
    });
  });

  test('toMeshfedError wraps foreign errors and keeps ours', () => {
    const ours = new MeshfedError('MESHFED_USAGE', 'x');
    expect(toMeshfedError(ours)).toBe(ours);
    const wrapped = toMeshfedError(new TypeError('boom'));
    expect(wrapped.code).toBe('MESHFED_INTERNAL');
    expect(wrapped.message).toBe('boom');
    expect(wrapped.retryable).toBe(false);
  });
});
