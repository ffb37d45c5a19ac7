import { dataPlane } from '../../cli/commands/check.ts';

// `meshfed check` offers each remote gateway both data-plane protocols, as a gateway's own dial does, and says
// which one HTTP/1.1 calls to it travel over: in a federation of mixed versions both are healthy.

test.each([
  ['meshfed-h1/1', true, 'data plane: HTTP/1.1 fast path (meshfed-h1/1)'],
  [
    'meshfed-h1/1',
    false,
    "data plane: HTTP/2 tunnel (it offers the fast path, which this gateway's fastPath: false turns off)",
  ],
  [
    'h2',
    true,
    'data plane: HTTP/2 tunnel (h2; it has no fast path: an older version, or fastPath: false there)',
  ],
  [
    '',
    true,
    'data plane: HTTP/2 tunnel (no ALPN; it has no fast path: an older version, or fastPath: false there)',
  ],
])('a gateway that chose %j, fast path here %s: %s', (alpn, here, said) => {
  expect(dataPlane(alpn, here)).toBe(said);
});
