import { deepFreeze } from '../core/index.ts';
import type { DaemonConfig } from './daemon-config.ts';

/** Config keys SIGHUP applies to the running process; a change anywhere else needs a restart. */
export const LIVE_CONFIG_KEYS: readonly string[] = ['observability.logLevel', 'drainNotice', 'drainTimeout'];

function isLive(path: string): boolean {
  return LIVE_CONFIG_KEYS.some((k) => path === k || path.startsWith(`${k}.`));
}

type Json = Record<string, unknown>;

function isSection(v: unknown): v is Json {
  // a parsed address ({ host, port }) is one field, not a section
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !('host' in v && 'port' in v);
}

/** Dotted paths of the fields that differ between two parsed configs (lists and addresses compare whole). */
export function changedConfigPaths(a: unknown, b: unknown, prefix = ''): string[] {
  if (!isSection(a) || !isSection(b)) return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix];
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    out.push(...changedConfigPaths(a[k], b[k], prefix === '' ? k : `${prefix}.${k}`));
  }
  return out;
}

export interface ReloadPlan {
  /** live keys that changed, now in `config` */
  applied: string[];
  /** changed keys that need a restart; `config` keeps their running value */
  needsRestart: string[];
  /** what the process runs on after the reload: the running config with the live keys of the new one */
  config: DaemonConfig;
}

/** What a SIGHUP does with a re-read config: live keys move, every other change is named and refused. */
export function planReload(running: DaemonConfig, next: DaemonConfig): ReloadPlan {
  const changed = changedConfigPaths(running, next);
  const config = structuredClone(running) as Json;
  for (const key of LIVE_CONFIG_KEYS) {
    const parts = key.split('.');
    const last = parts.pop()!;
    let from = next as unknown as Json;
    let to = config;
    for (const p of parts) {
      from = from[p] as Json;
      to = to[p] as Json;
    }
    to[last] = from[last];
  }
  return {
    applied: changed.filter(isLive),
    needsRestart: changed.filter((p) => !isLive(p)),
    config: deepFreeze(config as unknown as DaemonConfig),
  };
}
