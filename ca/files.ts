import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { MeshfedError } from '../core/index.ts';

export interface OutputFile {
  path: string;
  content: string;
  /** private keys: mode 0600 (certificates get 0644) */
  secret?: boolean;
}

/**
 * Writes a set of files all-or-nothing: every target is checked first (an existing file is never replaced without
 * `force`), each file is written to a temp name in its directory, flushed, and only then renamed into place. On any
 * failure the temp files are removed, so no partial file is ever left behind.
 */
export function writeFilesAtomically(files: OutputFile[], o: { force?: boolean } = {}): void {
  for (const f of files) {
    if (!o.force && existsSync(f.path)) {
      throw new MeshfedError('MESHFED_FILE_EXISTS', `${f.path} already exists; pass --force to replace it`, {
        details: { path: f.path },
      });
    }
  }
  for (const dir of new Set(files.map((f) => dirname(f.path)))) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw unwritable(dir, err);
    }
  }
  const temps: { tmp: string; path: string }[] = [];
  try {
    for (const f of files) {
      const tmp = join(dirname(f.path), `.${basename(f.path)}.${randomBytes(4).toString('hex')}.tmp`);
      const fd = openSync(tmp, 'wx', f.secret ? 0o600 : 0o644);
      temps.push({ tmp, path: f.path });
      try {
        writeSync(fd, f.content);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    for (const t of temps) renameSync(t.tmp, t.path);
  } catch (err) {
    for (const t of temps) {
      try {
        unlinkSync(t.tmp);
      } catch {
        // already renamed into place or never created
      }
    }
    throw unwritable(temps.at(-1)?.path ?? dirname(files[0]?.path ?? '.'), err);
  }
}

function unwritable(path: string, err: unknown): MeshfedError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return new MeshfedError(
    'MESHFED_FILE_UNWRITABLE',
    `${path}: cannot write (${code}); check the directory exists and is writable`,
    {
      cause: err,
    },
  );
}

/** Reads an input file; a missing or unreadable file is a usage error naming it. */
export function readInputFile(path: string, hint = ''): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${path}: cannot read (${code === 'ENOENT' ? 'no such file' : code})${hint ? `; ${hint}` : ''}`,
      { cause: err },
    );
  }
}

/** Reads a private key file, refusing one that other users can read (like ssh does). */
export function readKeyFile(path: string, hint = ''): string {
  const text = readInputFile(path, hint);
  if (process.platform !== 'win32' && (statSync(path).mode & 0o077) !== 0) {
    throw new MeshfedError(
      'MESHFED_FILE_INSECURE',
      `${path}: the private key is readable by other users (mode ${(statSync(path).mode & 0o777).toString(8)}); run: chmod 600 ${path}`,
    );
  }
  return text;
}
