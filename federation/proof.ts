import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { MAX_SNAPSHOT_BYTES } from './messages.ts';

/**
 * The signed text an accepted message came in (its own JWS, or the snapshot part that carried it), kept only so
 * the persisted catalog can be re-verified at start. One Proof is shared by every item it vouches for.
 *
 * Held compactly, because a view of 100,000 entries would otherwise keep ~50 MB of JWS text alive: the header
 * segment (the x5c chain, ~2 KB, identical on every message of one signer) is interned, and the rest
 * (`payload.signature`) is deflated, which shrinks a ~90 KB snapshot part (64 KiB of entries) to ~3 KB in well under a millisecond. `text()` gives
 * back the exact signed bytes.
 */
export class Proof {
  /** the JWS header segment (shared between the proofs of one signer) */
  readonly header: string;
  /** `payload.signature`, deflated when `deflated` */
  readonly body: Buffer;
  readonly deflated: boolean;

  constructor(header: string, body: Buffer, deflated: boolean) {
    this.header = header;
    this.body = body;
    this.deflated = deflated;
  }

  /**
   * The compact JWS, byte for byte as it was signed. A proof read from disk is untrusted until verified: its
   * inflated size is bounded by the largest message a receiver accepts, so a deflate bomb in the catalog file
   * throws (RangeError ERR_BUFFER_TOO_LARGE) after 1 MiB instead of filling memory.
   */
  text(): string {
    const body = this.deflated
      ? inflateRawSync(this.body, { maxOutputLength: MAX_SNAPSHOT_BYTES })
      : this.body;
    return `${this.header}.${body.toString('latin1')}`;
  }
}

/** Below this, deflate does not pay for itself (a single entry's payload and signature are ~700 bytes). */
const DEFLATE_FROM = 2048;
const HEADERS_MAX = 1024;

/**
 * Makes Proofs, interning header segments (bounded: a flood of distinct headers only stops the sharing). Input
 * must be a compact JWS that the verifier already accepted, i.e. ASCII text with two dots.
 */
export class ProofMaker {
  readonly #headers = new Map<string, string>();

  make(jws: string | Uint8Array): Proof {
    const bytes = typeof jws === 'string' ? Buffer.from(jws, 'latin1') : jws;
    const dot = bytes.indexOf(0x2e);
    const headerText = Buffer.from(bytes.buffer, bytes.byteOffset, dot).toString('latin1');
    let header = this.#headers.get(headerText);
    if (header === undefined) {
      header = headerText;
      if (this.#headers.size < HEADERS_MAX) this.#headers.set(header, header);
    }
    const rest = bytes.subarray(dot + 1);
    // small bodies are copied (the caller's buffer may be a view of a much larger read buffer)
    if (rest.byteLength < DEFLATE_FROM) return new Proof(header, Buffer.from(rest), false);
    // small output chunks: with the default 16 KiB ones, the chunks of hundreds of parts wait for the GC as
    // external memory (~40 MB after a 100,000-entry sync), and the result is a view of one that we would keep
    const deflated = deflateRawSync(rest, { level: 1, chunkSize: 2048 });
    const exact = Buffer.allocUnsafeSlow(deflated.byteLength);
    deflated.copy(exact);
    return new Proof(header, exact, true);
  }
}
