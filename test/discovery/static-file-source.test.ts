import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMeshfedError, type LocalService, waitFor, silentLogger } from '../../core/index.ts';
import { CombinedSource, StaticFileSource, setExportedInFile } from '../../discovery/index.ts';
import { captureLogger } from '../doubles/log-capture.ts';

const GOOD = `# services of cluster east
services:
  # the shop's order service
  - namespace: shop
    name: orders
    exported: false # flipped by meshfed export
    ports:
      - { name: http, port: 8080, protocol: http }
    endpoints:
      - { host: 127.0.0.1, ports: { http: 18080 }, zone: east-1a }
      - { host: 127.0.0.2, healthy: false }
  - name: billing
    exported: true
    ports:
      - { name: grpc, port: 9090, protocol: grpc }
`;

function tempFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-static-'));
  const file = join(dir, 'services.yaml');
  writeFileSync(file, text);
  return file;
}

describe('StaticFileSource', () => {
  test('reads services with defaults: namespace, healthy, endpoint ports from the service port', async () => {
    const src = new StaticFileSource({ log: silentLogger(), file: tempFile(GOOD), debounceMs: 20 });
    await src.start();
    try {
      const byName = Object.fromEntries(src.current().map((s) => [s.name, s]));
      expect(byName.billing).toMatchObject({ namespace: 'default', exported: true, source: 'static' });
      expect(byName.orders!.endpoints).toEqual([
        { host: '127.0.0.1', ports: { http: 18080 }, healthy: true, zone: 'east-1a' },
        { host: '127.0.0.2', ports: { http: 8080 }, healthy: false },
      ]);
    } finally {
      await src.stop();
    }
  });

  test('a bad file at start is an error naming the file and the field', async () => {
    const file = tempFile('services:\n  - name: orders\n    ports: []\n');
    const src = new StaticFileSource({ file, log: silentLogger(), debounceMs: 100 });
    const err = await src.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isMeshfedError(err, 'MESHFED_CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toContain(`${file}: services[0].ports`);
  });

  test('reloads on change; a bad edit keeps the last good set and logs one error; a fix applies', async () => {
    const file = tempFile(GOOD);
    const { log, lines } = captureLogger();
    const src = new StaticFileSource({ file, debounceMs: 20, log });
    const seen: (readonly LocalService[])[] = [];
    src.onChange((s) => seen.push(s));
    await src.start();
    try {
      writeFileSync(file, GOOD.replace('port: 9090', 'port: 9191'));
      await waitFor(() => src.current().find((s) => s.name === 'billing')?.ports[0]?.port === 9191, {
        what: 'the edit to be applied',
      });
      const changesBefore = seen.length;
      // a field error, written twice the same way (editors often save twice)
      const bad = GOOD.replace('protocol: grpc', 'protocol: smtp');
      writeFileSync(file, bad);
      await waitFor(() => src.problem, { what: 'the bad edit to be rejected' });
      writeFileSync(file, bad);
      await waitFor(() => lines.some((l) => l.level === 'error'));
      expect(src.problem?.code).toBe('MESHFED_CONFIG_INVALID');
      expect(src.problem?.message).toContain('services[1].ports[0].protocol');
      expect(src.current().find((s) => s.name === 'billing')?.ports[0]?.port).toBe(9191);
      // a YAML syntax error is also rejected without losing the set
      writeFileSync(file, 'services: [\n');
      await waitFor(() => src.problem?.code === 'MESHFED_CONFIG_UNREADABLE');
      writeFileSync(file, GOOD);
      await waitFor(
        () =>
          src.problem === undefined &&
          src.current().find((s) => s.name === 'billing')?.ports[0]?.port === 9090,
      );
      const errors = lines.filter((l) => l.level === 'error');
      expect(errors).toHaveLength(2); // one per distinct bad content, not one per write
      expect(String(errors[0]!.msg)).toContain(file);
      expect(seen.length).toBe(changesBefore + 1);
    } finally {
      await src.stop();
    }
  });

  test('export/unexport rewrite the file atomically, keep comments, and the watcher picks it up', async () => {
    const file = tempFile(GOOD);
    const src = new StaticFileSource({ log: silentLogger(), file, debounceMs: 20 });
    await src.start();
    try {
      expect(await src.export('shop', 'orders')).toBe(true);
      expect(src.current().find((s) => s.name === 'orders')?.exported).toBe(true);
      const text = readFileSync(file, 'utf8');
      expect(text).toContain("# the shop's order service");
      expect(text).toContain('# services of cluster east');
      expect(text).toMatch(/exported: true/);
      expect(await src.export('shop', 'orders')).toBe(false); // already exported: no rewrite
      expect(await src.unexport('default', 'billing')).toBe(true);
      expect(src.current().find((s) => s.name === 'billing')?.exported).toBe(false);
    } finally {
      await src.stop();
    }
  });

  test('export of a service the file does not list fails with a stable code', () => {
    const file = tempFile(GOOD);
    let err: unknown;
    try {
      setExportedInFile(file, { namespace: 'shop', name: 'nope' }, true);
    } catch (e) {
      err = e;
    }
    expect(isMeshfedError(err, 'MESHFED_DISCOVERY_UNKNOWN_SERVICE')).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe(GOOD);
  });
});

describe('CombinedSource', () => {
  test('merges endpoints of the same service from two sources and follows either one', async () => {
    const a = tempFile(GOOD);
    const b = tempFile(
      'services:\n  - namespace: shop\n    name: orders\n    ports: [{ name: http, port: 8080, protocol: http }]\n    endpoints: [{ host: 10.0.0.9 }]\n',
    );
    const combined = new CombinedSource(
      [
        new StaticFileSource({ log: silentLogger(), file: a, debounceMs: 20 }),
        new StaticFileSource({ log: silentLogger(), file: b, debounceMs: 20 }),
      ],
      silentLogger(),
    );
    await combined.start();
    try {
      const orders = () => combined.current().find((s) => s.name === 'orders')!;
      expect(orders().endpoints.map((e) => e.host)).toEqual(['10.0.0.9', '127.0.0.1', '127.0.0.2']);
      expect(orders().exported).toBe(false);
      writeFileSync(b, readFileSync(b, 'utf8').replace('name: orders', 'name: orders\n    exported: true'));
      await waitFor(() => orders().exported, { what: 'the second file to mark orders exported' });
      expect(combined.current()).toHaveLength(2);
    } finally {
      await combined.stop();
    }
  });
});
