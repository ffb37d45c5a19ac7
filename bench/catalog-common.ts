import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LocalService } from '../core/index.ts';

/** A benchmark service: two ports and `healthy` healthy endpoints (its weight in the catalog). */
export function benchService(name: string, healthy: number): LocalService {
  return {
    namespace: 'bench',
    name,
    source: 'bench',
    exported: true,
    ports: [
      { name: 'http', port: 8080, protocol: 'http' },
      { name: 'grpc', port: 9090, protocol: 'grpc' },
    ],
    endpoints: Array.from({ length: healthy }, (_, k) => ({
      host: `10.0.${k >> 8}.${k & 255}`,
      ports: { http: 8080 },
      healthy: true,
    })),
  };
}

/**
 * Adds `figures` to bench/results/<name>: runs of different sizes accumulate in one file, and a size run again
 * replaces its own figures.
 */
export function mergeResults(name: string, figures: Record<string, unknown>): void {
  const dir = new URL('results/', import.meta.url).pathname;
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  let previous: Record<string, unknown> = {};
  try {
    previous = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    previous = {};
  }
  writeFileSync(file, `${JSON.stringify({ ...previous, ...figures }, null, 2)}\n`);
}
