import type { Browser } from 'playwright-core';
import { createMesh, echoServer, httpService, request, type TestGateway } from '../gateway/harness.ts';
import {
  artefactDir,
  callsLeftEast,
  chromiumAvailable,
  expectThreeClustersFromEast,
  launchChromium,
  openDashboard,
  type PageDocument,
} from './browser.ts';

// The dashboard in headless Chromium (Debian's, driven by playwright-core) against three real gateways:
// it shows the three clusters and their links, and when east's hello instance dies the page shows the
// ejection and the calls moving to another cluster within 5 s, without a reload.

declare const document: PageDocument;
declare const window: Record<string, unknown>;

const HOST = 'hello.demo.svc.clusterset.local';

const maybe = chromiumAvailable('dashboard browser test') ? test : test.skip;

let browser: Browser | undefined;
const closers: (() => unknown)[] = [];

afterAll(async () => {
  await browser?.close();
  for (const c of closers.reverse()) await c();
});

async function federation() {
  const mesh = await createMesh();
  // east ejects a target after 2 failures in a row, for longer than this test runs
  const balancer = {
    outlier: { consecutiveFailures: 2, baseEjection: 60_000, maxEjectionPercent: 100 },
  };
  const gateways: Record<string, TestGateway> = {};
  const backends: Record<string, Awaited<ReturnType<typeof echoServer>>> = {};
  for (const cluster of ['east', 'west', 'eu']) {
    const g = await mesh.gateway(cluster, { balancer });
    const b = await echoServer(`${cluster}-hello`);
    g.source.set([httpService('demo', 'hello', [b.address])]);
    closers.push(
      () => g.close(),
      () => {
        b.server.closeAllConnections();
        b.server.close();
      },
    );
    gateways[cluster] = g;
    backends[cluster] = b;
  }
  for (const [name, g] of Object.entries(gateways)) {
    for (const [other, o] of Object.entries(gateways)) {
      if (other !== name)
        g.catalog.offer(other, httpService('demo', 'hello', [backends[other]!.address]), o.eastWest);
    }
  }
  return { gateways, backends };
}

maybe(
  'the dashboard shows three clusters and their links, then the ejection and the failover live',
  async () => {
    const { gateways, backends } = await federation();
    const east = gateways.east!;
    // steady calls from east, paced so two cores shared with other work keep up
    let calling = true;
    const load = (async () => {
      while (calling) {
        await request(east.egress, { host: HOST, path: '/' }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 15));
      }
    })();
    closers.push(async () => {
      calling = false;
      await load;
    });

    browser = await launchChromium();
    const { page, errors } = await openDashboard(browser, `http://${east.admin}/ui`, 1400);
    await expectThreeClustersFromEast(page, 5_000);
    // east serves its own calls first (same zone), and says so in words
    await page.waitForFunction(
      () => {
        const row = document.querySelector('#services tr[data-service="hello.demo"][data-cluster="east"]');
        return row?.textContent?.includes('healthy') && !row.textContent.includes(' 0%');
      },
      undefined,
      { timeout: 5_000 },
    );
    const artefacts = artefactDir('dashboard');
    await page.screenshot({ path: `${artefacts}1-steady.png`, fullPage: true });

    // a reload would lose this mark
    await page.evaluate(() => {
      window.meshfedMark = 1;
    });
    const before = await page.$$eval('#events li[data-kind="ejection"]', (l) => l.length);
    expect(before).toBe(0);

    // east's hello instance dies: new connections are refused, open ones are cut
    const killedAt = Date.now();
    backends.east!.server.close();
    backends.east!.server.closeAllConnections();

    await page
      .waitForFunction(
        () => {
          const ejected = document.querySelector('#events li[data-kind="ejection"]');
          const moved = [...document.querySelectorAll('#events li[data-kind="failover"]')].some((e) =>
            e.textContent?.includes('calls moved from east to'),
          );
          const local = document.querySelector(
            '#services tr[data-service="hello.demo"][data-cluster="east"]',
          );
          return ejected !== null && moved && local?.textContent?.includes('ejected');
        },
        undefined,
        { timeout: 5_000, polling: 100 },
      )
      .catch(async (err) => {
        console.log(
          await page.$eval('#events', (e) => e.textContent),
          await page.$eval('#services', (e) => e.textContent),
        );
        throw err;
      });
    expect(await page.evaluate(() => window.meshfedMark)).toBe(1);
    const ejection = await page.locator('#events li[data-kind="ejection"]').first().textContent();
    expect(ejection).toContain('hello.demo: a target in east was ejected');
    const failover = await page
      .locator('#events li[data-kind="failover"]', { hasText: 'calls moved from east to' })
      .first()
      .textContent();
    expect(failover).toMatch(/hello\.demo: calls moved from east to (eu, west|eu|west)$/);
    // and the table says where the calls go now: most of them to the other clusters
    await page.waitForFunction(callsLeftEast, undefined, { timeout: 5_000, polling: 100 });
    const seenWithin = Date.now() - killedAt;
    await page.screenshot({ path: `${artefacts}2-failover.png`, fullPage: true });
    expect(seenWithin).toBeLessThan(5_000);
    // the link that now carries the calls reads as busy in words, not only in colour
    const busy = await page.$$eval('#links tbody tr', (rows) =>
      rows.filter((r) => r.textContent?.includes('ok')).map((r) => r.getAttribute('data-to')),
    );
    expect(busy.some((to) => to === 'west' || to === 'eu')).toBe(true);
    // keyboard: the drawing's links and clusters take focus in turn and say what they are in words
    const spoken: string[] = [];
    for (let i = 0; i < 8; i++) {
      await page.keyboard.press('Tab');
      spoken.push(await page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? ''));
    }
    expect(spoken).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^link east to (west|eu): .* \(ok\)$/),
        expect.stringMatching(/^cluster east, east-region\/east-zone, live, this gateway$/),
      ]),
    );
    expect(errors).toEqual([]);
  },
  60_000,
);
