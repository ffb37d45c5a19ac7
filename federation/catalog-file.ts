import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { MeshfedError } from '../core/index.ts';

/**
 * The last verified catalog on disk. It stores the signed proofs themselves (each distinct one once) plus which
 * (key, revision) each held item is, so loading re-verifies every signature and can never resurrect an entry
 * that a later tombstone or snapshot removed. Writes are atomic: temp file, fsync, rename, fsync of the folder.
 */
export const CATALOG_FILE = 'catalog.json';
const FORMAT = 'meshfed-catalog/1';

export interface CatalogFile {
  format: typeof FORMAT;
  cluster: string;
  savedAt: number;
  proofs: string[];
  /** [key, revision, proof index] */
  entries: [string, number, number][];
  tombstones: [string, number, number][];
  /** [cluster, revision, proof index, stale] */
  announces: [string, number, number, boolean][];
}

export function writeCatalogFile(
  dir: string,
  cluster: string,
  state: {
    entries: { key: string; revision: number; proof: string }[];
    tombstones: { key: string; revision: number; proof: string }[];
    announces: { cluster: string; revision: number; proof: string; stale: boolean }[];
  },
  now = Date.now(),
): void {
  const proofs: string[] = [];
  const index = new Map<string, number>();
  const ref = (p: string): number => {
    let i = index.get(p);
    if (i === undefined) {
      i = proofs.length;
      proofs.push(p);
      index.set(p, i);
    }
    return i;
  };
  const file: CatalogFile = {
    format: FORMAT,
    cluster,
    savedAt: now,
    proofs,
    entries: state.entries.map((e) => [e.key, e.revision, ref(e.proof)]),
    tombstones: state.tombstones.map((t) => [t.key, t.revision, ref(t.proof)]),
    announces: state.announces.map((a) => [a.cluster, a.revision, ref(a.proof), a.stale]),
  };
  const target = join(dir, CATALOG_FILE);
  const tmp = `${target}.tmp-${process.pid}`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(file));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, target);
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_CATALOG_STORE',
      `cannot write the catalog to ${target}: ${(err as Error).message}; check that stateDir is writable`,
      { cause: err, retryable: true },
    );
  }
}

/** Reads the file; undefined when there is none. A damaged file is an error (the caller logs it and starts empty). */
export function readCatalogFile(dir: string): CatalogFile | undefined {
  const target = join(dir, CATALOG_FILE);
  let text: string;
  try {
    text = readFileSync(target, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MeshfedError('MESHFED_CATALOG_STORE', `cannot read ${target}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let file: CatalogFile;
  try {
    file = JSON.parse(text) as CatalogFile;
  } catch (err) {
    throw new MeshfedError('MESHFED_CATALOG_STORE', `${target} is not valid JSON; delete it to start empty`, {
      cause: err,
    });
  }
  const okRows = (rows: unknown, width: number): boolean =>
    Array.isArray(rows) && rows.every((r) => Array.isArray(r) && r.length === width);
  if (
    file?.format !== FORMAT ||
    !Array.isArray(file.proofs) ||
    !file.proofs.every((p) => typeof p === 'string') ||
    !okRows(file.entries, 3) ||
    !okRows(file.tombstones, 3) ||
    !okRows(file.announces, 4)
  ) {
    throw new MeshfedError(
      'MESHFED_CATALOG_STORE',
      `${target} is not a ${FORMAT} file; delete it to start empty`,
    );
  }
  return file;
}
