// ../gateway.test.ts with the HTTP/1.1 fast path off: node's HTTP server at egress, the HTTP/2 tunnel between
// gateways. Every data-plane suite runs on both paths (the fast path is the default).
process.env.MESHFED_FAST_PATH = '0';
const { FAST_PATH } = await import('../harness.ts');
test('this copy of the suite runs on the tunnel path', () => expect(FAST_PATH).toBe(false));
await import('../gateway.test.ts');
