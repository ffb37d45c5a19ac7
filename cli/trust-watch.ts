import { unwatchFile, watchFile } from 'node:fs';

/**
 * Calls `onChange` when any of `files` changes on disk, once they have been quiet for `debounceMs` (a tool
 * that rewrites several files, or a Kubernetes volume swapping its symlink, changes them one after the
 * other). Polls with stat like CertificateSource.fromFiles: a file replaced by a rename is seen, which
 * fs.watch on the old inode is not. Returns the function that stops watching.
 */
export function watchTrustFiles(
  files: readonly string[],
  o: { pollMs: number; debounceMs: number; onChange: () => void },
): () => void {
  let timer: NodeJS.Timeout | undefined;
  const changed = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      o.onChange();
    }, o.debounceMs);
    timer.unref();
  };
  const unique = [...new Set(files)];
  for (const f of unique) watchFile(f, { interval: o.pollMs, persistent: false }, changed);
  return () => {
    if (timer) clearTimeout(timer);
    for (const f of unique) unwatchFile(f, changed);
  };
}
