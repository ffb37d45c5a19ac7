import type { IssuedLeaf } from '../ca/index.ts';
import type { LocalService } from '../core/index.ts';
import type {
  AnnounceMessage,
  EntryMessage,
  LinksMessage,
  SnapshotMessage,
  TombstoneMessage,
  WithdrawMessage,
} from './messages.ts';
import type { PolicyStateMessage } from './policy-messages.ts';
import type { VerifiedBundle } from './policy-verifier.ts';
import type { Proof } from './proof.ts';

/**
 * Where a catalog message came from: a subject we subscribe to (`nats`), the answer to one of our own requests
 * (`reply`), or the persisted catalog (`file`). Rejections are counted and logged with it.
 */
export type MessageSource = 'nats' | 'reply' | 'file';

/** A verified message and what vouches for it (kept only when the view is persisted). */
interface Verified {
  /** the signer's SPIFFE ID */
  signer: string;
  /** the subject it came on, or "stateDir" */
  subject: string;
}

/**
 * The federation node's work, as named events: NATS callbacks, timers and the
 * persisted file only turn what happened into one of these, and one dispatcher (FederationEventQueue, handing
 * each to FederationEventHandler) handles them in order.
 */
export type FederationEvent =
  | ({
      type: 'EntryReceived';
      source: MessageSource;
      msg: EntryMessage | TombstoneMessage;
      proof: Proof | undefined;
    } & Verified)
  | ({
      type: 'AnnouncementReceived';
      source: MessageSource;
      msg: AnnounceMessage;
      proof: Proof | undefined;
      /** as persisted (file only): the cluster was stale when the view was written */
      stale?: boolean;
    } & Verified)
  | ({
      type: 'SnapshotPartReceived';
      /** `nats`: pushed on the cluster's bulk subject; `reply`: answering our request */
      source: 'nats' | 'reply';
      msg: SnapshotMessage;
      raw: Uint8Array;
    } & Verified)
  | ({ type: 'LinkReportReceived'; source: 'nats'; msg: LinksMessage } & Verified)
  | ({ type: 'GatewayWithdrawn'; source: 'nats'; msg: WithdrawMessage } & Verified)
  | { type: 'LinkReportDue'; source: 'timer' }
  | { type: 'SyncRequested'; source: 'nats'; subject: string; reply: string | undefined; data: Uint8Array }
  | { type: 'LocalServicesChanged'; source: 'discovery'; services: readonly LocalService[] }
  | { type: 'SignerRotated'; source: 'ca'; leaf: IssuedLeaf }
  | { type: 'HeartbeatDue'; source: 'timer' }
  | { type: 'RefreshDue'; source: 'timer' }
  | { type: 'MaintenanceDue'; source: 'timer' }
  | { type: 'PersistDue'; source: 'timer' | 'change' }
  | { type: 'PolicyBundleReceived'; source: 'nats' | 'file'; subject: string; bundle: VerifiedBundle }
  | { type: 'PolicyStateReceived'; source: 'nats'; subject: string; msg: PolicyStateMessage; signer: string }
  | {
      type: 'PolicyRequested';
      source: 'nats';
      subject: string;
      kind: 'ping' | 'get';
      reply: string;
      data: Uint8Array;
    }
  | { type: 'PolicyReportDue'; source: 'timer' }
  | {
      type: 'ConnectionStateChanged';
      source: 'nats';
      state: 'connected' | 'reconnected' | 'disconnected' | 'closed' | 'unavailable';
      server?: string;
      error?: string;
    };

export type FederationEventType = FederationEvent['type'];
