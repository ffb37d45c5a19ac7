import { connect, type Msg } from '@nats-io/transport-node';
import { createRegistry, waitFor } from '../../core/index.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import { captureLogger } from '../doubles/log-capture.ts';
import { announceMessage, counterValue, makePki, signerOf, startNode } from './helpers.ts';

/**
 * Issue 12: every event carries where it came from. A stale announcement that arrived as the answer to our own
 * request used to be logged as `source: 'nats'`, because the source was fixed deep in a call chain.
 */
test('a stale announcement answering our sync-all request is rejected with source "reply"', async () => {
  const [nats, pki] = await Promise.all([startNatsServer({ name: 'sources' }), makePki(['east', 'view'])]);
  const observer = await connect({ servers: nats.url });
  const { log, lines } = captureLogger();
  const registry = createRegistry();
  let view: Awaited<ReturnType<typeof startNode>> | undefined;
  try {
    const requests: Msg[] = [];
    observer.subscribe('meshfed.sync-all', { callback: (_e, m) => void requests.push(m) });
    await observer.flush();
    view = await startNode({ pki, cluster: 'view', servers: [nats.url], registry, logger: log });
    const request = await waitFor(() => requests[0], { what: 'the view’s sync-all request' });

    const now = Date.now();
    const announce = (revision: number): string => signerOf(pki, 'east').sign(announceMessage({ revision }));
    observer.publish('meshfed.announce.east', announce(now * 1000));
    await observer.flush();
    await waitFor(() => view!.clusters().some((c) => c.cluster === 'east'), { what: 'east’s announcement' });
    // then an older one, as the answer to the view's own request
    observer.publish(request.reply!, announce(now * 1000 - 1));
    await observer.flush();
    await waitFor(async () => (await counterValue(registry, 'stale_revision')) === 1, {
      what: 'the stale reply to be rejected',
    });
    const line = lines.find((l) => l.reason === 'stale_revision');
    expect(line).toMatchObject({ source: 'reply', subject: request.reply });
  } finally {
    await view?.stop();
    await observer.close();
    await nats.stop();
    nats.cleanup();
  }
});
