import { MeshfedError } from '../../core/index.ts';
import type { Layer } from './dispatch.ts';

/**
 * Graceful drain: once `drain()` is called new calls are refused with MESHFED_GATEWAY_DRAINING
 * (the edge maps it to 503 + `connection: close`, or GOAWAY), while calls in flight finish.
 * `drain()` resolves when none is left or the grace period ends, with how many were cut short.
 */
export class Drain {
  private inFlight = 0;
  private draining = false;
  private waiters: (() => void)[] = [];

  get isDraining(): boolean {
    return this.draining;
  }

  get active(): number {
    return this.inFlight;
  }

  /** Registers one call; throws when draining. Call the returned function when it ends. */
  enter(): () => void {
    if (this.draining) {
      throw new MeshfedError(
        'MESHFED_GATEWAY_DRAINING',
        'this gateway is draining and takes no new requests; send them to another gateway',
        {
          retryable: true,
        },
      );
    }
    this.inFlight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight--;
      if (this.inFlight === 0) for (const w of this.waiters.splice(0)) w();
    };
  }

  async drain(graceMs: number): Promise<{ remaining: number }> {
    this.draining = true;
    if (this.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        timer = setTimeout(resolve, graceMs);
      });
      clearTimeout(timer);
    }
    return { remaining: this.inFlight };
  }

  layer<R, P = undefined>(): Layer<R, P> {
    return (next) => async (ctx) => {
      const leave = this.enter();
      try {
        return await next(ctx);
      } finally {
        leave();
      }
    };
  }
}
