import type { Counter, Logger } from '../../core/index.ts';
import { answerFor, Refusal } from '../answers.ts';
import type { RequestLayer } from '../pipeline.ts';

/**
 * The outermost layer: whatever a layer inside refuses or throws becomes an answer to the caller (a
 * refusal is counted by its reason), so no request can end with an unhandled rejection.
 */
export function answerLayer(options: { refused: Counter; log: Logger }): RequestLayer {
  return (next) => async (r) => {
    try {
      await next(r);
    } catch (err) {
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
    }
  };
}
