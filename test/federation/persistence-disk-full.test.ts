import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../core/index.ts';
import { CATALOG_FILE, writeCatalogFile } from '../../federation/index.ts';
import { CatalogPersistence } from '../../federation/catalog-persistence.ts';
import type { CatalogStore } from '../../federation/catalog-store.ts';

// Found by the chaos suite (state dir full during catalog persistence): every failed write left its
// temp file behind and logged the same error again, twice a second, for as long as the disk was full.

const EMPTY = { entries: [], tombstones: [], announces: [] };

/** a state dir whose catalog.json cannot be replaced (it is a non-empty directory): every write fails */
function blockedDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-persist-'));
  mkdirSync(join(dir, CATALOG_FILE, 'blocker'), { recursive: true });
  return dir;
}

test('a failed catalog write leaves no temp file behind', async () => {
  const dir = blockedDir();
  await expect(writeCatalogFile(dir, 'view', EMPTY, Date.now())).rejects.toMatchObject({
    code: 'MESHFED_CATALOG_STORE',
  });
  expect(readdirSync(dir)).toEqual([CATALOG_FILE]);
});

test('a persistence error is logged once per failure streak, and the recovery once', async () => {
  const dir = blockedDir();
  const lines: { level: string; msg: string }[] = [];
  const log = {
    error: (_o: unknown, msg: string) => lines.push({ level: 'error', msg }),
    info: (_o: unknown, msg: string) => lines.push({ level: 'info', msg }),
  } as unknown as Logger;
  const store = { version: 1, size: 0, exportState: () => EMPTY } as unknown as CatalogStore;
  const p = new CatalogPersistence({
    dir,
    cluster: 'view',
    store,
    verifier: {} as never,
    rejections: {} as never,
    log,
    now: Date.now,
  });
  // close() writes the last state whenever it was not written yet: three failing writes
  for (let i = 0; i < 3; i++) await p.close();
  expect(lines.filter((l) => l.level === 'error')).toHaveLength(1);
  rmSync(join(dir, CATALOG_FILE), { recursive: true });
  await p.close();
  expect(JSON.parse(readFileSync(join(dir, CATALOG_FILE), 'utf8')).cluster).toBe('view');
  expect(lines.map((l) => l.level)).toEqual(['error', 'info']);
});
