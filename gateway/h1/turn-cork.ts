import type { Socket } from 'node:net';

/**
 * Holds the body bytes written to a socket during one turn of the event loop, so that they leave in one
 * write. A TLS socket hands its cleartext over in pieces of 16 KiB, each its own 'data' event with the
 * microtasks run between them: forwarded one by one, a 64 KiB body cost its gateway four or five write
 * syscalls (and the reader as many wake-ups) where one writev carries them.
 *
 * The hold ends when the body does (`release`), when a write finds the socket's buffer at its high-water
 * mark (the writer releases, so backpressure is judged on what the kernel took, not on what was held
 * back), or at the end of the turn
 * (setImmediate), whichever comes first: a body that trickles in is never delayed past the turn its bytes
 * arrived in.
 */
export class TurnCork {
  readonly #socket: Socket;
  #held = false;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  /** Holds what is written to the socket from now until `release` or the end of the turn. */
  hold(): void {
    const s = this.#socket;
    if (this.#held || s.destroyed) return;
    this.#held = true;
    s.cork();
    setImmediate(this.release);
  }

  /**
   * Lets the held bytes go (the socket's own corks, if any, still apply); true when the socket's buffer is
   * below its high-water mark afterwards. A no-op when nothing is held.
   */
  readonly release = (): boolean => {
    const s = this.#socket;
    if (this.#held) {
      this.#held = false;
      s.uncork();
    }
    return s.writableLength < s.writableHighWaterMark;
  };
}
