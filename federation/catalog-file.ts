import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MeshfedError } from '../core/index.ts';
import { replaceFile } from './atomic-file.ts';
import { Proof, ProofMaker } from './proof.ts';

/**
 * The last verified catalog on disk. It stores the signed proofs themselves (each distinct one once, in Proof's
 * compact form: interned header + deflated rest) plus which (key, revision) each held item is, so loading
 * re-verifies every signature and can never resurrect an entry that a later tombstone or snapshot removed.
 * Writes are atomic (temp file, fsync, rename, fsync of the folder) and asynchronous, in small pieces, so
 * writing a 100,000-entry view never holds up the event loop.
 */
export const CATALOG_FILE = 'catalog.json';
const FORMAT = 'meshfed-catalog/2';
/** the format before compact proofs (plain JWS strings); still read, so an upgrade keeps the persisted view */
const LEGACY_FORMAT = 'meshfed-catalog/1';

/** A proof as stored: [header index, 'z' (deflated) or 'r' (raw), base64 of the rest of the JWS]. */
export type StoredProof = [number, 'z' | 'r', string];

export interface CatalogFile {
  format: typeof FORMAT;
  cluster: string;
  savedAt: number;
  /** JWS header segments, shared by the proofs of one signer */
  headers: string[];
  proofs: StoredProof[];
  /** [key, revision, proof index] */
  entries: [string, number, number][];
  tombstones: [string, number, number][];
  /** [cluster, revision, proof index, stale] */
  announces: [string, number, number, boolean][];
}

/**
 * What is written. The lists may be live views of the store (CatalogStore.exportState): they are iterated twice,
 * once at the call to index the proofs and again while the rows are written, and a row whose proof was not
 * indexed then (it arrived during the write) is left for the next write, which the change has already asked for.
 */
export interface CatalogState {
  entries: Iterable<{ key: string; revision: number; proof: string | Proof }>;
  tombstones: Iterable<{ key: string; revision: number; proof: string | Proof }>;
  announces: Iterable<{ cluster: string; revision: number; proof: string | Proof; stale: boolean }>;
}

/** rows per write: each piece is a few hundred KB of JSON at most */
const ROWS_PER_PIECE = 4096;
const PROOFS_PER_PIECE = 32;

export async function writeCatalogFile(
  dir: string,
  cluster: string,
  state: CatalogState,
  now: number,
): Promise<void> {
  const maker = new ProofMaker();
  const proofs: Proof[] = [];
  // a snapshot part vouches for hundreds of entries: it is written once (Proofs are shared objects)
  const index = new Map<string | Proof, number>();
  const indexProof = (p: string | Proof): void => {
    if (index.has(p)) return;
    index.set(p, proofs.length);
    proofs.push(typeof p === 'string' ? maker.make(p) : p);
  };
  for (const list of [state.entries, state.tombstones, state.announces])
    for (const item of list) indexProof(item.proof);
  const headers: string[] = [];
  const headerIndex = new Map<string, number>();
  const stored = (p: Proof): StoredProof => {
    let h = headerIndex.get(p.header);
    if (h === undefined) {
      h = headers.length;
      headers.push(p.header);
      headerIndex.set(p.header, h);
    }
    return [h, p.deflated ? 'z' : 'r', p.body.toString('base64')];
  };
  const target = join(dir, CATALOG_FILE);
  try {
    await replaceFile(target, async (fh) => {
      const write = (s: string) => fh.write(s);
      /** writes `"name":[rows…]` in pieces of `per` rows, never holding more than one piece */
      const rows = async <T>(name: string, list: Iterable<T>, per: number, row: (item: T) => unknown) => {
        await write(`${JSON.stringify(name)}:[`);
        let piece: unknown[] = [];
        let first = true;
        const flush = async () => {
          if (piece.length === 0) return;
          const text = JSON.stringify(piece);
          piece = [];
          await write(`${first ? '' : ','}${text.slice(1, -1)}`);
          first = false;
        };
        for (const item of list) {
          const r = row(item);
          if (r === undefined) continue;
          piece.push(r);
          if (piece.length >= per) await flush();
        }
        await flush();
        await write(']');
      };
      const proofRef = (p: string | Proof): number | undefined => index.get(p);
      await write(
        `{"format":${JSON.stringify(FORMAT)},"cluster":${JSON.stringify(cluster)},"savedAt":${now},`,
      );
      // headers are only known once every proof is encoded: proofs first, then the headers they name
      await rows('proofs', proofs, PROOFS_PER_PIECE, stored);
      await write(`,"headers":${JSON.stringify(headers)},`);
      await rows('entries', state.entries, ROWS_PER_PIECE, (e) => {
        const i = proofRef(e.proof);
        return i === undefined ? undefined : [e.key, e.revision, i];
      });
      await write(',');
      await rows('tombstones', state.tombstones, ROWS_PER_PIECE, (t) => {
        const i = proofRef(t.proof);
        return i === undefined ? undefined : [t.key, t.revision, i];
      });
      await write(',');
      await rows('announces', state.announces, ROWS_PER_PIECE, (a) => {
        const i = proofRef(a.proof);
        return i === undefined ? undefined : [a.cluster, a.revision, i, a.stale];
      });
      await write('}');
    });
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_CATALOG_STORE',
      `cannot write the catalog to ${target}: ${(err as Error).message}; check that stateDir is writable`,
      { cause: err, retryable: true },
    );
  }
}

/** A read catalog file: its rows, and its proofs one at a time (text to re-verify, compact form to keep). */
export interface LoadedCatalog {
  /** false for a file of the previous format: it should be written again in this one */
  current: boolean;
  cluster: string;
  savedAt: number;
  proofCount: number;
  /** the proof's compact JWS text, or undefined when the stored form is damaged */
  proofText(i: number): string | undefined;
  /** the proof to hold in memory (no re-compression) */
  proof(i: number): Proof;
  entries: [string, number, number][];
  tombstones: [string, number, number][];
  announces: [string, number, number, boolean][];
}

/** Reads the file; undefined when there is none. A damaged file is an error (the caller logs it and starts empty). */
export function readCatalogFile(dir: string): LoadedCatalog | undefined {
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
  const legacy = (file as { format?: unknown } | null)?.format === LEGACY_FORMAT;
  const okProofs = legacy
    ? Array.isArray(file.proofs) && (file.proofs as unknown[]).every((p) => typeof p === 'string')
    : file?.format === FORMAT &&
      Array.isArray(file.headers) &&
      file.headers.every((h) => typeof h === 'string') &&
      okRows(file.proofs, 3);
  // cluster and savedAt are read (and logged) at load: a file without them is as damaged as one without rows
  const okHeader = typeof file?.cluster === 'string' && Number.isFinite(file.savedAt);
  if (
    !okProofs ||
    !okHeader ||
    !okRows(file.entries, 3) ||
    !okRows(file.tombstones, 3) ||
    !okRows(file.announces, 4)
  ) {
    throw new MeshfedError(
      'MESHFED_CATALOG_STORE',
      `${target} is not a ${FORMAT} file; delete it to start empty`,
    );
  }
  if (legacy) {
    const texts = file.proofs as unknown as string[];
    const maker = new ProofMaker();
    return {
      current: false,
      cluster: file.cluster,
      savedAt: file.savedAt,
      proofCount: texts.length,
      proofText: (i) => texts[i],
      // asked for verified proofs only, which are well-formed JWS
      proof: (i) => maker.make(texts[i]!),
      entries: file.entries,
      tombstones: file.tombstones,
      announces: file.announces,
    };
  }
  const proofs = new Map<number, Proof | null>();
  const proofAt = (i: number): Proof | null => {
    let p = proofs.get(i);
    if (p === undefined) {
      const row = file.proofs[i];
      const header = row ? file.headers[row[0]] : undefined;
      p =
        row && typeof header === 'string' && (row[1] === 'z' || row[1] === 'r') && typeof row[2] === 'string'
          ? new Proof(header, Buffer.from(row[2], 'base64'), row[1] === 'z')
          : null;
      proofs.set(i, p);
    }
    return p;
  };
  return {
    current: true,
    cluster: file.cluster,
    savedAt: file.savedAt,
    proofCount: file.proofs.length,
    proofText: (i) => {
      try {
        return proofAt(i)?.text();
      } catch {
        // a damaged deflate stream, or one that inflates beyond the largest message: the proof is unusable
        return undefined;
      }
    },
    proof: (i) => proofAt(i)!,
    entries: file.entries,
    tombstones: file.tombstones,
    announces: file.announces,
  };
}
