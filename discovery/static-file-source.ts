import { createHash } from 'node:crypto';
import { type FSWatcher, readFileSync, renameSync, unlinkSync, watch, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import {
  type EndpointSource,
  type LocalService,
  type Logger,
  MeshfedError,
  parseConfigText,
  type ServiceRef,
  toMeshfedError,
  yaml,
} from '../core/index.ts';
import { type StaticFile, staticFileSchema } from './config.ts';
import { ServiceSetHolder } from './service-set.ts';

export interface StaticFileSourceOptions {
  file: string;
  log: Logger;
  /** quiet period after the last change event before the file is re-read (ms) */
  debounceMs: number;
}

/** Turns a validated file into the services it declares. */
export function servicesFromStaticFile(file: StaticFile): LocalService[] {
  return file.services.map((s) => ({
    namespace: s.namespace,
    name: s.name,
    exported: s.exported,
    source: 'static',
    ports: s.ports.map((p) => ({
      name: p.name,
      port: p.port,
      protocol: p.protocol as LocalService['ports'][0]['protocol'],
    })),
    endpoints: s.endpoints.map((e) => {
      const ports: Record<string, number> = {};
      for (const p of s.ports) ports[p.name] = e.ports[p.name] ?? p.port;
      return e.zone === undefined
        ? { host: e.host, ports, healthy: e.healthy }
        : { host: e.host, ports, healthy: e.healthy, zone: e.zone };
    }),
  }));
}

/**
 * Services from a YAML file, reloaded when it changes. The directory is watched (editors and
 * `export()` replace the file by rename, which a watch on the file itself would lose); events
 * are debounced and a content hash skips no-op saves. A bad edit keeps the last good set and
 * logs one error per distinct bad content, naming the file and the field.
 */
export class StaticFileSource implements EndpointSource {
  readonly name = 'static';
  readonly file: string;
  private readonly log: Logger;
  private readonly debounceMs: number;
  private readonly holder: ServiceSetHolder;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastHash = '';
  private lastError: MeshfedError | undefined;
  private reloads = 0;

  constructor(options: StaticFileSourceOptions) {
    this.file = options.file;
    this.log = options.log.child({ source: 'static', file: options.file });
    this.debounceMs = options.debounceMs;
    this.holder = new ServiceSetHolder((err) => this.log.error({ err }, 'a discovery listener threw'));
  }

  /** Reads the file once (a bad file at start is an error the caller sees) and starts watching. */
  async start(): Promise<void> {
    const text = this.readText();
    this.holder.set(servicesFromStaticFile(this.parse(text)));
    this.lastHash = hash(text);
    const target = basename(this.file);
    this.watcher = watch(dirname(this.file), { persistent: false }, (_event, name) => {
      if (name === null || name === target) this.schedule();
    });
    this.watcher.on('error', (err) => this.log.error({ err }, 'watching the services file failed'));
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
  }

  current(): readonly LocalService[] {
    return this.holder.current();
  }

  onChange(listener: (services: readonly LocalService[]) => void): () => void {
    return this.holder.onChange(listener);
  }

  /** The error of the last rejected edit, if the file is currently bad (for status output). */
  get problem(): MeshfedError | undefined {
    return this.lastError;
  }

  /** How many times a changed file was read and accepted. */
  get reloadCount(): number {
    return this.reloads;
  }

  /** Re-reads the file now (the watcher calls this after its debounce). */
  reload(): boolean {
    let text: string;
    try {
      text = this.readText();
    } catch (err) {
      // a rename in progress or a deleted file: keep serving the last good set
      this.reportOnce(
        toMeshfedError(err, 'MESHFED_CONFIG_UNREADABLE'),
        `unreadable:${(err as Error).message}`,
      );
      return false;
    }
    const h = hash(text);
    if (h === this.lastHash) return false;
    let parsed: StaticFile;
    try {
      parsed = this.parse(text);
    } catch (err) {
      this.reportOnce(toMeshfedError(err), h);
      return false;
    }
    this.lastHash = h;
    this.lastErrorKey = '';
    if (this.lastError) this.log.info('services file is valid again; applying it');
    this.lastError = undefined;
    this.reloads++;
    this.holder.set(servicesFromStaticFile(parsed));
    return true;
  }

  /** Marks a service exported, rewriting the file atomically and keeping its comments. */
  export(namespace: string, name: string): Promise<boolean> {
    return this.setExported({ namespace, name }, true);
  }

  unexport(namespace: string, name: string): Promise<boolean> {
    return this.setExported({ namespace, name }, false);
  }

  private async setExported(ref: ServiceRef, exported: boolean): Promise<boolean> {
    const changed = setExportedInFile(this.file, ref, exported);
    if (changed) this.reload();
    return changed;
  }

  private lastErrorKey = '';

  private reportOnce(err: MeshfedError, key: string): void {
    this.lastError = err;
    if (key === this.lastErrorKey) return;
    this.lastErrorKey = key;
    this.log.error(
      { err: { code: err.code, message: err.message } },
      `rejected an edit of ${this.file}; keeping the last good services until it is fixed`,
    );
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reload();
    }, this.debounceMs);
  }

  private readText(): string {
    return readFileSync(this.file, 'utf8');
  }

  private parse(text: string): StaticFile {
    return parseConfigText(staticFileSchema, text, { source: this.file });
  }
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Sets `exported` of one service in a static services file. Edits the YAML document in place (so
 * comments and layout survive) and replaces the file by rename, so a reader never sees half a file.
 * Returns false when the flag already had that value.
 */
export function setExportedInFile(file: string, ref: ServiceRef, exported: boolean): boolean {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new MeshfedError('MESHFED_CONFIG_UNREADABLE', `${file}: cannot read the services file`, {
      cause: err,
    });
  }
  // validate first: never rewrite a file that is already broken
  const parsed = parseConfigText(staticFileSchema, text, { source: file });
  const index = parsed.services.findIndex((s) => s.namespace === ref.namespace && s.name === ref.name);
  if (index === -1) {
    throw new MeshfedError(
      'MESHFED_DISCOVERY_UNKNOWN_SERVICE',
      `${file} lists no service ${ref.namespace}/${ref.name}; add it to the file first (known: ${
        parsed.services.map((s) => `${s.namespace}/${s.name}`).join(', ') || 'none'
      })`,
      { details: { file, namespace: ref.namespace, name: ref.name } },
    );
  }
  if (parsed.services[index]!.exported === exported) return false;
  const { isMap, isSeq, parseDocument } = yaml();
  const doc = parseDocument(text);
  const services = doc.get('services');
  if (!isSeq(services)) throw new MeshfedError('MESHFED_INTERNAL', `${file}: services is not a list`);
  const node = services.items[index];
  if (!isMap(node)) throw new MeshfedError('MESHFED_INTERNAL', `${file}: services[${index}] is not a map`);
  node.set('exported', exported);
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    writeFileSync(tmp, doc.toString(), { mode: 0o644 });
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing left behind to clean
    }
    throw new MeshfedError('MESHFED_FILE_UNWRITABLE', `${file}: cannot rewrite the services file`, {
      cause: err,
    });
  }
  return true;
}
