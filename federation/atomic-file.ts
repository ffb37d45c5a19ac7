import { mkdirSync } from 'node:fs';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Replaces `target` so that a crash at any point leaves either the old file or the new one, never a torn one:
 * write a temp file (mode 0600, in a 0700 folder), fsync it, rename it over the target, fsync the folder.
 */
export async function replaceFile(target: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  const dir = dirname(target);
  const tmp = `${target}.tmp-${process.pid}`;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const fh = await open(tmp, 'w', 0o600);
  try {
    try {
      await write(fh);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (err) {
    // a half-written temp file would hold on to the space a full disk needs back, and be left behind
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  const dfd = await open(dir, 'r');
  try {
    await dfd.sync();
  } finally {
    await dfd.close();
  }
}
