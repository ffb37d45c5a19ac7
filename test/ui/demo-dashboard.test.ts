import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { Demo, dashboardUrl } from '../../cli/demo/demo.ts';
import { greeterClient, HttpCaller, sayHello } from '../../cli/demo/traffic.ts';
import {
  artefactDir,
  callsLeftEast,
  chromiumAvailable,
  expectThreeClustersFromEast,
  launchChromium,
  openDashboard,
  type PageDocument,
  type PageElement,
} from './browser.ts';

// The must-show, on the demo itself: the same processes `npm run demo` starts (three nats-servers
// joined as a supercluster, three `meshfed gateway` processes, the demo services), east calling hello.demo
// as the demo does, and east's dashboard in headless Chromium. It shows three clusters and their links;
// when east's hello instance is stopped, the page shows it ejected and the calls moving to west/eu within
// 5 s of the kill, without a reload. West calls greeter.demo, served by eu: east's page draws that link too,
// from west's link reports. A screenshot of each state is kept under test-artifacts/ui/.

declare const document: PageDocument;
declare const window: Record<string, unknown>;

const HELLO = 'hello.demo.svc.clusterset.local';
/** what the issue asks: the failover is on the page within this long after the kill */
const SHOWN_WITHIN_MS = 5_000;
/** every load loop here ends by itself: at most this many calls, for at most this long */
const MAX_CALLS = 20_000;
const MAX_LOAD_MS = 150_000;

const maybe = chromiumAvailable('demo dashboard browser test') ? test : test.skip;

let demo: Demo | undefined;
let dir: string | undefined;
let browser: Browser | undefined;
const closers: (() => Promise<unknown>)[] = [];

afterAll(async () => {
  for (const c of closers.reverse()) await c().catch(() => undefined);
  await browser?.close();
  await demo?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

interface Load {
  /** calls by the cluster that answered them ("failed": no answer) */
  served: Map<string, number>;
  stop: () => Promise<void>;
}

/** Runs `batch` (which names the cluster that answered each call), pausing `pauseMs` between batches, until stopped or bounded. */
function boundedLoad(batch: () => Promise<string[]>, pauseMs: number, close: () => unknown): Load {
  const served = new Map<string, number>();
  const until = Date.now() + MAX_LOAD_MS;
  let running = true;
  let calls = 0;
  const loop = (async () => {
    while (running && calls < MAX_CALLS && Date.now() < until) {
      const answered = await batch();
      calls += answered.length;
      for (const key of answered) served.set(key, (served.get(key) ?? 0) + 1);
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  })();
  return {
    served,
    stop: async () => {
      running = false;
      await loop;
      await close();
    },
  };
}

/** The demo's own load: east calls hello.demo in batches of five, ten batches a second. */
function eastLoad(egress: string): Load {
  const caller = new HttpCaller(egress, HELLO);
  const five = async () =>
    (await Promise.all(Array.from({ length: 5 }, () => caller.call()))).map((r) =>
      r.ok ? (r.cluster ?? '?') : 'failed',
    );
  return boundedLoad(five, 100, () => caller.close());
}

/**
 * West calls greeter.demo (gRPC) with its own greeter stopped, so eu serves it: a link between two clusters
 * other than east, which east's page shows only from west's link reports.
 */
function westToEu(egress: string): Load {
  const client = greeterClient(egress);
  const one = async () => [
    await sayHello(client, 'demo test').then(
      (r) => r.cluster,
      () => 'failed',
    ),
  ];
  return boundedLoad(one, 50, () => client.close());
}

async function text(page: Page, selector: string): Promise<string> {
  return (await page.locator(selector).allTextContents()).join(' | ');
}

maybe(
  "on the demo, east's dashboard shows three clusters and their links, then east's hello ejected and its calls moving to west/eu within 5 s, without a reload",
  async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshfed-demo-ui-'));
    demo = new Demo({ dir });
    const startedAt = Date.now();
    await demo.start();
    console.log(
      `demo ready in ${Date.now() - startedAt} ms (three nats-servers, three gateways, five services)`,
    );
    const east = demo.cluster('east');

    const load = eastLoad(east.addresses.egress);
    closers.push(load.stop);
    await demo.stopService('west', 'greeter');
    const greeter = westToEu(demo.cluster('west').addresses.egress);
    closers.push(greeter.stop);

    browser = await launchChromium();
    const { page, errors } = await openDashboard(browser, dashboardUrl(east.addresses.admin), 1500);
    await expectThreeClustersFromEast(page, 10_000);
    // east serves its own calls (same zone), and the page says so in words
    await page
      .waitForFunction(
        () => {
          const row = document.querySelector('#services tr[data-service="hello.demo"][data-cluster="east"]');
          const share = Number(/(\d+)%/.exec(row?.textContent ?? '')?.[1] ?? 0);
          return row?.textContent?.includes('healthy') && share >= 80;
        },
        undefined,
        { timeout: 15_000, polling: 100 },
      )
      .catch(async (err) => {
        console.log(await text(page, '#services tbody tr'), load.served);
        throw err;
      });
    // the link between two other clusters: west → eu, as west's gateway reports it, with its figures
    const reported = await page
      .waitForFunction(
        () => {
          const row = document.querySelector('#links tr[data-from="west"][data-to="eu"]');
          const t = row?.textContent ?? '';
          return row?.getAttribute('data-measured') === 'reported' && /\d+\.\d% *[\d.]+ ms/.test(t) && t;
        },
        undefined,
        { timeout: 15_000, polling: 200 },
      )
      .then((h) => h.jsonValue() as Promise<string>)
      .catch(async (err) => {
        console.log(await text(page, '#links tbody tr'), greeter.served);
        throw err;
      });
    expect(reported).toContain("west's gateway (reported");
    const westEu = await page.$eval('#links tr[data-from="west"][data-to="eu"]', (r) =>
      [...(r as unknown as { cells: Iterable<PageElement> }).cells].map((c) => c.textContent ?? ''),
    );
    // from, to, req/s, success, p99, state, measured by
    expect(Number(westEu[2])).toBeGreaterThan(0);
    expect(westEu[3]).toMatch(/^\d+\.\d%$/);
    expect(westEu[4]).toMatch(/^[\d.]+ ms$/);
    expect(await page.locator('#topology .link.reported[aria-label^="link west to eu: "]').count()).toBe(1);
    const artefacts = artefactDir('ui');
    const steady = `${artefacts}demo-1-steady.png`;
    await page.screenshot({ path: steady, fullPage: true });

    // a reload would lose this mark
    await page.evaluate(() => {
      window.meshfedMark = 1;
    });

    // the demo's failover phase: east's hello instance is stopped
    const killedAt = Date.now();
    await demo.stopService('east', 'hello');

    await page
      .waitForFunction(
        () => {
          const local = document.querySelector(
            '#services tr[data-service="hello.demo"][data-cluster="east"]',
          );
          const moved = [...document.querySelectorAll('#events li[data-kind="failover"]')].some((e) =>
            e.textContent?.includes('hello.demo: calls moved from east to'),
          );
          return local?.textContent?.includes('ejected') && moved;
        },
        undefined,
        { timeout: SHOWN_WITHIN_MS, polling: 100 },
      )
      .catch(async (err) => {
        console.log(await text(page, '#events li'), await text(page, '#services tbody tr'), load.served);
        throw err;
      });
    // and the table says where the calls go now: most of them to west and eu
    await page.waitForFunction(callsLeftEast, undefined, {
      timeout: Math.max(1, SHOWN_WITHIN_MS - (Date.now() - killedAt)),
      polling: 100,
    });
    const shownAfterMs = Date.now() - killedAt;
    const failover = `${artefacts}demo-2-failover.png`;
    await page.screenshot({ path: failover, fullPage: true });
    console.log(
      `the page showed the ejection and the failover ${shownAfterMs} ms after east's hello was stopped; screenshots: ${steady} ${failover}`,
    );
    expect(shownAfterMs).toBeLessThan(SHOWN_WITHIN_MS);
    // no reload happened, and the events say what happened in words
    expect(await page.evaluate(() => window.meshfedMark)).toBe(1);
    const events = await text(page, '#events li');
    expect(events).toMatch(/hello\.demo: calls moved from east to (eu, west|eu|west)/);
    // the links that now carry east's calls read as busy in words, not only in colour
    const busy = await page.$$eval('#links tbody tr', (rows) =>
      rows
        .filter((r) => r.getAttribute('data-from') === 'east' && r.textContent?.includes('ok'))
        .map((r) => r.getAttribute('data-to')),
    );
    expect(busy.some((to) => to === 'west' || to === 'eu')).toBe(true);
    // and the calls really went there: the demo's own caller was answered by west or eu after the kill
    expect((load.served.get('west') ?? 0) + (load.served.get('eu') ?? 0)).toBeGreaterThan(0);
    expect(errors).toEqual([]);
  },
  240_000,
);
