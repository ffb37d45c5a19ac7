import { refuse } from '../answers.ts';
import { isInternalHeader } from '../headers.ts';
import { isOriginForm } from '../http-request.ts';
import type { RequestLayer } from '../pipeline.ts';

/** Refuses a request target that is not origin-form (meshfed is not a forward proxy) with a 400. */
export const requestTargetCheck: RequestLayer = (next) => (r) => {
  if (!isOriginForm(r.method, r.target)) {
    refuse(
      'invalid-request-target',
      `request target "${r.target.slice(0, 100)}" is not origin-form: send the path (/...) and name the service in Host`,
    );
  }
  return next(r);
};

export type UnderscoreAction = 'allow' | 'drop-header' | 'reject-request';

/**
 * What `headersWithUnderscores` does with a request header whose name contains '_'. A name that a backend would read as one of meshfed's internal
 * headers (`x_meshfed_caller`) is always dropped (rejected under 'reject-request'), whatever the action.
 */
export function underscoreHeaders(action: UnderscoreAction): RequestLayer {
  return (next) => (r) => {
    const headers = r.headers as Record<string, unknown>;
    // for…in, not Object.keys: no array per request (a property deleted during the walk is not visited again)
    for (const name in headers) {
      if (!name.includes('_')) continue;
      if (action === 'reject-request') {
        refuse(
          'header-with-underscore',
          `header "${name.slice(0, 100)}" has an underscore, which this gateway refuses (headersWithUnderscores: reject-request)`,
        );
      }
      if (action === 'drop-header' || isInternalHeader(name)) delete headers[name];
    }
    return next(r);
  };
}
