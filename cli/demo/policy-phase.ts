import { mkdirSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { MeshfedError } from '../../core/index.ts';
import { runCli } from '../main.ts';
import type { Demo } from './demo.ts';
import { DEMO_NAMESPACE } from './demo-layout.ts';

/**
 * The demo's policy phase, done the way an operator does it: an admin identity from the admin intermediate
 * (`meshfed ca admin`, `meshfed ca issue --kind admin`), policy documents written as YAML files, and one
 * `meshfed policy apply` per step, which signs the revision, publishes it and returns once every live
 * gateway reports it. The demo runs those very commands in-process and prints them for replay.
 */

/** The canary's steps: the share (%) of greeter.demo's calls that TrafficSplit/greeter-canary sends to v2. */
export const CANARY_STEPS = [10, 50, 100] as const;

/** The AuthorizationPolicy's deciding rule: calls from cluster west to ledger.demo are refused with it. */
export const DENY_RULE = 'deny-west';
export const DENIED_CLUSTER = 'west';
export const LEDGER_HOST = `ledger.${DEMO_NAMESPACE}.svc.clusterset.local`;

/** What one `meshfed policy apply` did, from its --json answer (or its error). */
export type ApplyOutcome =
  | { ok: true; scope: string; revision: number; reached: number; ms: number; unchanged?: boolean }
  | { ok: false; error: string };

/** What `meshfed policy apply --json` answers: a publication, or (nothing changed) the revision in force. */
interface ApplyAnswer {
  scope: string;
  revision?: number;
  revisionInForce?: number | null;
  gateways: { reached: string[] } | string[];
  ms?: number;
}

/** Collects what a command writes, as the terminal would have shown it. */
class TextSink extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

/** A path as a newcomer types it: relative to where the demo was started when it lies below, else absolute. */
export function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

function document(kind: string, name: string, spec: Record<string, unknown>) {
  return { apiVersion: 'meshfed.io/v1alpha1', kind, metadata: { name }, spec };
}

function canaryDocument(percent: number) {
  return document('TrafficSplit', 'greeter-canary', {
    service: `${DEMO_NAMESPACE}/greeter`,
    routes: [
      {
        name: 'canary',
        backends: [
          { service: `${DEMO_NAMESPACE}/greeter`, weight: 100 - percent },
          { service: `${DEMO_NAMESPACE}/greeter-v2`, weight: percent },
        ],
      },
    ],
  });
}

function ledgerDocument() {
  return document('AuthorizationPolicy', 'ledger', {
    target: { service: `${DEMO_NAMESPACE}/ledger` },
    rules: [{ name: DENY_RULE, action: 'DENY', from: [{ cluster: DENIED_CLUSTER }] }],
  });
}

export class PolicyPhase {
  readonly policyDir: string;
  readonly #demo: Demo;
  readonly #signal: AbortSignal;
  readonly #adminCa: string;
  readonly #operator: string;

  constructor(demo: Demo, o: { signal: AbortSignal }) {
    this.#demo = demo;
    this.#signal = o.signal;
    this.policyDir = join(demo.dir, 'policies');
    this.#adminCa = join(demo.dir, 'admin', 'ca');
    this.#operator = join(demo.dir, 'admin', 'operator');
  }

  canaryFile(percent: number): string {
    return join(this.policyDir, `greeter-canary-${percent}.yaml`);
  }

  get authorizationFile(): string {
    return join(this.policyDir, 'ledger-deny-west.yaml');
  }

  /** The admin intermediate and an operator's admin certificate, as `meshfed ca` makes them. */
  get identityCommands(): string[][] {
    return [
      ['ca', 'admin', '--ca', join(this.#demo.dir, 'root'), '--out', this.#adminCa],
      [
        'ca',
        'issue',
        '--ca',
        this.#adminCa,
        '--kind',
        'admin',
        '--name',
        'demo-operator',
        '--out',
        this.#operator,
      ],
    ];
  }

  /** `meshfed policy apply` of one file, signed by the operator, through east's gateway config. */
  applyArgs(file: string): string[] {
    return [
      'policy',
      'apply',
      '-f',
      file,
      '--config',
      this.#demo.cluster('east').configFile,
      '--cert',
      join(this.#operator, 'cert.pem'),
      '--key',
      join(this.#operator, 'key.pem'),
    ];
  }

  /** A command line to paste into a shell (every path the demo passes is absolute, and is shown shortened). */
  static shell(args: readonly string[]): string {
    return `npx meshfed ${args.map((a) => (isAbsolute(a) ? shown(a) : a)).join(' ')}`;
  }

  replay(file: string): string {
    return PolicyPhase.shell(this.applyArgs(file));
  }

  /** Issues the admin identity and writes every policy file (with a README of the commands in order). */
  async prepare(): Promise<void> {
    for (const args of this.identityCommands) await this.#run(args);
    mkdirSync(this.policyDir, { recursive: true });
    for (const percent of CANARY_STEPS) {
      writeFileSync(
        this.canaryFile(percent),
        `# Canary step: ${percent} % of the calls to greeter.demo go to greeter-v2 (it runs in eu only).\n# ${this.replay(this.canaryFile(percent))}\n${stringify(canaryDocument(percent))}`,
      );
    }
    writeFileSync(
      this.authorizationFile,
      `# Calls from cluster ${DENIED_CLUSTER} to ledger.demo are refused (403, x-meshfed-policy: ${DENY_RULE}); others pass.\n# ${this.replay(this.authorizationFile)}\n${stringify(ledgerDocument())}`,
    );
    const steps = [
      ...this.identityCommands.map((a) => PolicyPhase.shell(a)),
      ...CANARY_STEPS.map((p) => this.replay(this.canaryFile(p))),
      this.replay(this.authorizationFile),
      `npx meshfed policy list --config ${shown(this.#demo.cluster('east').configFile)}`,
    ];
    writeFileSync(
      join(this.policyDir, 'README.md'),
      `# The demo's policy phase, step by step\n\nWhat \`meshfed demo\` ran, in order (from the directory the demo was started in). The first two made the\nadmin identity (they refuse to overwrite it); each apply signs a new revision with it and waits until every\ngateway enforces it, and can be replayed as it is while the demo runs:\n\n\`\`\`\n${steps.join('\n')}\n\`\`\`\n`,
    );
  }

  /**
   * One policy revision: the apply command, run in-process. Never throws (the demo shows what failed). A file
   * whose documents are already in force (someone replayed it meanwhile) publishes nothing and says so.
   */
  async apply(file: string): Promise<ApplyOutcome> {
    let r: ApplyAnswer;
    try {
      r = JSON.parse(await this.#run([...this.applyArgs(file), '--json'])) as ApplyAnswer;
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
    if (r.revision === undefined) {
      return {
        ok: true,
        scope: r.scope,
        revision: r.revisionInForce ?? 0,
        reached: Array.isArray(r.gateways) ? r.gateways.length : 0,
        ms: 0,
        unchanged: true,
      };
    }
    const reached = Array.isArray(r.gateways) ? 0 : r.gateways.reached.length;
    return { ok: true, scope: r.scope, revision: r.revision, reached, ms: r.ms ?? 0 };
  }

  /** Runs one meshfed command in this process; its stdout, or an error carrying what it reported. */
  async #run(args: string[]): Promise<string> {
    const stdout = new TextSink();
    const stderr = new TextSink();
    const code = await runCli(args, { stdout, stderr, signal: this.#signal });
    if (code !== 0) {
      let message = stderr.text.trim();
      try {
        message = (JSON.parse(message) as { error: { message: string } }).error.message;
      } catch {
        // not --json: the text as the command wrote it
      }
      throw new MeshfedError(
        'MESHFED_INTERNAL',
        `the demo's "meshfed ${args.slice(0, 2).join(' ')}" exited with ${code}: ${message}`,
        { details: { args } },
      );
    }
    return stdout.text;
  }
}
