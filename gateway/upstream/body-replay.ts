/**
 * What a retry needs of a request body that a failed try already consumed: its payload, kept while the
 * first try streams it, up to a bound. A body that is still arriving, larger than the bound, or sent by a
 * codec that cannot record it is not replayable, and a try that consumed it is never retried (the
 * bytes are gone). A bound of 64 KiB keeps what a retry may cost in memory small while covering the
 * bodies of nearly every API call.
 */
export const REPLAY_LIMIT_BYTES = 64 * 1024;

export class BodyReplay {
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  #complete = false;
  #kept = true;

  /** a body some codec sent without recording it: never replayable */
  static unrecorded(): BodyReplay {
    const r = new BodyReplay();
    r.#drop();
    return r;
  }

  /** a payload chunk the first try sent (copied: a codec may reuse its buffers) */
  record(chunk: Buffer): void {
    if (!this.#kept) return;
    this.#bytes += chunk.length;
    if (this.#bytes > REPLAY_LIMIT_BYTES) this.#drop();
    else this.#chunks.push(Buffer.from(chunk));
  }

  /** the whole body has been seen */
  end(): void {
    this.#complete = true;
  }

  /** the body can be sent again, whole */
  get replayable(): boolean {
    return this.#complete && this.#kept;
  }

  /** the recorded payload; only meaningful when replayable */
  get chunks(): readonly Buffer[] {
    return this.#chunks;
  }

  #drop(): void {
    this.#kept = false;
    this.#chunks.length = 0;
  }
}

/**
 * Whether a request can be sent to another target: it has no body, no try has started its body yet, or
 * the body the earlier try sent is replayable.
 */
export function canResend(r: { hasBody: boolean; replay?: BodyReplay | undefined }): boolean {
  return !r.hasBody || r.replay === undefined || r.replay.replayable;
}
