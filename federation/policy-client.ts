import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { MeshfedError, type PolicyDocument } from '../core/index.ts';
import type { JwsSigner } from './jws.ts';
import {
  POLICY_SCHEMA_VERSION,
  type PolicyBundleMessage,
  type PolicyStateMessage,
} from './policy-messages.ts';
import type { PolicyVerifier, VerifiedBundle } from './policy-verifier.ts';
import type { Subjects } from './subjects.ts';

/** A live gateway as its signed state report shows it. */
export interface GatewayPolicyState {
  cluster: string;
  gateway: string;
  instance: string;
  /** scope → signed revision in force */
  scopes: Record<string, number>;
}

/** Signs all documents of one scope at one revision: the unit that travels and applies whole. */
export function signPolicyBundle(
  signer: JwsSigner,
  o: { scope: string; revision: number; issuedAt: number; documents: readonly PolicyDocument[] },
): string {
  const msg: PolicyBundleMessage = {
    v: POLICY_SCHEMA_VERSION,
    type: 'policy',
    scope: o.scope,
    revision: o.revision,
    issuedAt: o.issuedAt,
    documents: [...o.documents],
  };
  return signer.sign(msg);
}

/** The signer's clock in µs, and always past the revision before (receivers refuse anything not newer). */
export function nextPolicyRevision(previous: number | undefined, now: number): number {
  return Math.max((previous ?? 0) + 1, now * 1000);
}

function stateOf(msg: PolicyStateMessage): GatewayPolicyState {
  return {
    cluster: msg.cluster,
    gateway: msg.gateway,
    instance: msg.instance,
    scopes: Object.fromEntries(msg.scopes.map((s) => [s.scope, s.revision])),
  };
}

/**
 * What `meshfed policy` does over NATS: find the live gateways (a ping every gateway answers with its signed
 * state report), fetch the signed bundle in force, publish a new one, and wait until every live gateway
 * reports it. Everything received is verified with the trust bundle before it is believed.
 */
export class PolicyClient {
  readonly #nc: NatsConnection;
  readonly #subjects: Subjects;
  readonly #verifier: PolicyVerifier;
  readonly #inboxPrefix: string;

  constructor(o: { nc: NatsConnection; subjects: Subjects; verifier: PolicyVerifier; inboxPrefix?: string }) {
    this.#nc = o.nc;
    this.#subjects = o.subjects;
    this.#verifier = o.verifier;
    this.#inboxPrefix = o.inboxPrefix ?? '_INBOX';
  }

  /**
   * Every gateway that answers a ping (one entry per process): those answering within `windowMs`, and while any
   * answer keeps arriving, those answering within `windowMs` of the previous one. When none answered within
   * `windowMs`, it waits up to `maxMs` for a first answer: on a loaded host or a slow NATS link every gateway
   * may answer late, and an empty list would have `policy apply` build a revision on nothing.
   */
  async discover(windowMs: number, maxMs = windowMs): Promise<GatewayPolicyState[]> {
    const found = new Map<string, GatewayPolicyState>();
    const inbox = createInbox(this.#inboxPrefix);
    const started = performance.now();
    let lastAnswer = Number.NEGATIVE_INFINITY;
    let wake: (() => void) | undefined;
    const sub = this.#nc.subscribe(inbox, {
      callback: (err, m) => {
        if (err) return;
        const v = this.#verifier.state(m.data);
        if (!v.ok) return;
        found.set(v.msg.instance, stateOf(v.msg));
        lastAnswer = performance.now();
        wake?.();
      },
    });
    // listening ends windowMs after the start or after the last answer, whichever is later; with no answer
    // at all, at maxMs
    const endsAt = (): number =>
      found.size === 0
        ? started + Math.max(windowMs, maxMs)
        : Math.min(Math.max(started + windowMs, lastAnswer + windowMs), started + Math.max(windowMs, maxMs));
    try {
      this.#nc.publish(this.#subjects.policyPing, new Uint8Array(0), { reply: inbox });
      await this.#nc.flush();
      for (let left = endsAt() - performance.now(); left > 0; left = endsAt() - performance.now()) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          // a first answer after windowMs shortens the wait: wake up and measure again
          if (found.size > 0) return;
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    } finally {
      sub.unsubscribe();
    }
    return [...found.values()].sort((a, b) =>
      `${a.cluster}/${a.gateway}/${a.instance}`.localeCompare(`${b.cluster}/${b.gateway}/${b.instance}`),
    );
  }

  /** The signed bundle of `scope` at `revision` from any gateway holding exactly it; verified. */
  async fetch(scope: string, revision: number, timeoutMs: number): Promise<VerifiedBundle> {
    let data: Uint8Array;
    try {
      const m = await this.#nc.request(this.#subjects.policyGet(scope, revision), new Uint8Array(0), {
        timeout: timeoutMs,
      });
      data = m.data;
    } catch (err) {
      throw new MeshfedError(
        'MESHFED_NATS_UNAVAILABLE',
        `no gateway answered with policy ${scope} revision ${revision} within ${timeoutMs} ms`,
        { cause: err, retryable: true },
      );
    }
    // the chain as of signing: an admin certificate may have expired since, the policy is still in force
    const v = this.#verifier.bundle(data, { chainAt: 'issuedAt' });
    if (!v.ok || v.scope !== scope || v.revision !== revision) {
      throw new MeshfedError(
        'MESHFED_POLICY_REJECTED',
        `the policy a gateway sent for ${scope} revision ${revision} does not verify: ${v.ok ? 'another scope or revision' : `${v.reason}: ${v.detail}`}`,
      );
    }
    return v;
  }

  /**
   * The newest bundle of `scope` that any of `gateways` enforces (undefined when none holds one), so an apply
   * builds on what is in force and never rolls another admin's change back.
   */
  async current(scope: string, gateways: readonly GatewayPolicyState[], timeoutMs: number) {
    const newest = Math.max(0, ...gateways.map((g) => g.scopes[scope] ?? 0));
    return newest === 0 ? undefined : this.fetch(scope, newest, timeoutMs);
  }

  async publish(scope: string, raw: string): Promise<void> {
    this.#nc.publish(this.#subjects.policy(scope), raw);
    await this.#nc.flush();
  }

  /**
   * Waits until every gateway of `gateways` reports `scope` at `revision` or newer (by state reports, and a
   * ping every `repingMs` for those that stay silent); returns who did and who did not by the deadline. With
   * `publish`, that signed bundle goes out once the reports are listened to, so none is missed.
   */
  async waitForRevision(o: {
    scope: string;
    revision: number;
    gateways: readonly GatewayPolicyState[];
    timeoutMs: number;
    repingMs?: number;
    publish?: string;
  }): Promise<{ reached: GatewayPolicyState[]; missing: GatewayPolicyState[]; ms: number }> {
    const started = Date.now();
    const pending = new Map(o.gateways.map((g) => [g.instance, g]));
    const reached: GatewayPolicyState[] = [];
    let done: (() => void) | undefined;
    const settle = (data: Uint8Array): void => {
      const v = this.#verifier.state(data);
      if (!v.ok || !pending.has(v.msg.instance)) return;
      const s = stateOf(v.msg);
      if ((s.scopes[o.scope] ?? 0) < o.revision) return;
      pending.delete(s.instance);
      reached.push(s);
      if (pending.size === 0) done?.();
    };
    const inbox = createInbox(this.#inboxPrefix);
    const callback = (err: Error | null, m: Msg): void => {
      if (!err) settle(m.data);
    };
    const subs: Subscription[] = [
      this.#nc.subscribe(this.#subjects.policyState('*'), { callback }),
      this.#nc.subscribe(inbox, { callback }),
    ];
    const finished = new Promise<void>((resolve) => {
      done = resolve;
    });
    const ping = setInterval(
      () => this.#nc.publish(this.#subjects.policyPing, new Uint8Array(0), { reply: inbox }),
      o.repingMs ?? 250,
    );
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.#nc.flush();
      if (o.publish !== undefined) await this.publish(o.scope, o.publish);
      if (pending.size > 0) {
        await Promise.race([
          finished,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, o.timeoutMs);
          }),
        ]);
      }
    } finally {
      clearInterval(ping);
      clearTimeout(timer);
      for (const s of subs) s.unsubscribe();
    }
    return { reached, missing: [...pending.values()], ms: Date.now() - started };
  }
}
