import type { Counter, Logger } from '../../core/index.ts';
import { answerFor, Refusal } from '../answers.ts';
import type { GatewayRequest, RequestLayer } from '../pipeline.ts';

/**
 * The outermost layer: whatever a layer inside refuses or throws becomes an answer to the caller (a
 * refusal is counted by its reason), so no request can end with an unhandled rejection.
 */
export function answerLayer(options: { refused: Counter; log: Logger }): RequestLayer {
  const answer = (r: GatewayRequest, err: unknown): void => {
    if (err instanceof Refusal) {
      options.refused.inc({ listener: r.listener, reason: err.reason });
      if (err.closesConnection) r.closeConnection();
    } else options.log.warn({ err, listener: r.listener }, 'request failed inside the gateway');
    const a = answerFor(err);
    r.status = a.status;
    try {
      r.answer(a);
    } catch {
      r.io.res.destroy();
    }
  };
  // not an async function: a request that is not refused costs one `catch`, not a frame and an await
  return (next) => (r) => {
    let done: Promise<void>;
    try {
      done = next(r);
    } catch (err) {
      answer(r, err);
      return Promise.resolve();
    }
    return done.catch((err: unknown) => answer(r, err));
  };
}
