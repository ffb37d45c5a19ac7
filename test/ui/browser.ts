import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';

// What the browser tests share: Debian's Chromium (installed by scripts/ensure-chromium.sh), driven headless
// by playwright-core, and the folder where their screenshots are kept as test artefacts (gitignored).

/** The page's globals, as far as the checks that run in it use them (the project compiles without the DOM library). */
export interface PageElement {
  textContent: string | null;
  getAttribute(name: string): string | null;
}
export interface PageDocument {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement> & { length: number };
  activeElement: PageElement | null;
}

export const CHROMIUM = '/usr/bin/chromium';

/**
 * Whether the browser tests can run here. Where Chromium is missing they are skipped, and the reason is
 * printed once (the only case in which they may be skipped: scripts/ensure-chromium.sh installs it when
 * it can).
 */
export function chromiumAvailable(suite: string): boolean {
  const available = existsSync(CHROMIUM);
  if (!available) {
    console.warn(
      `${suite} skipped: ${CHROMIUM} is missing (scripts/ensure-chromium.sh installs it as root with apt-get)`,
    );
  }
  return available;
}

/** A test artefact folder under test-artifacts/ (created; gitignored). */
export function artefactDir(name: string): string {
  const dir = fileURLToPath(new URL(`../../test-artifacts/${name}/`, import.meta.url));
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

declare const document: PageDocument;

/** Opens a dashboard and waits for its live feed; errors the page reports are collected in `errors`. */
export async function openDashboard(
  browser: Browser,
  url: string,
  height: number,
): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1200, height } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  await page.goto(url);
  await page.waitForSelector('#feed-status[data-state="live"]', { timeout: 10_000 });
  return { page, errors };
}

/** East's page shows the three clusters, drawn and listed, and east's links to the other two. */
export async function expectThreeClustersFromEast(page: Page, timeoutMs: number): Promise<void> {
  await page.waitForFunction(() => document.querySelectorAll('#topology .node').length === 3, undefined, {
    timeout: timeoutMs,
  });
  const clusters = await page.$$eval('#clusters tbody tr', (rows) =>
    rows.map((r) => r.getAttribute('data-cluster')),
  );
  expect(clusters.sort()).toEqual(['east', 'eu', 'west']);
  const links = await page.$$eval('#links tbody tr', (rows) =>
    rows.map((r) => `${r.getAttribute('data-from')}→${r.getAttribute('data-to')}`),
  );
  expect(links).toEqual(expect.arrayContaining(['east→west', 'east→eu']));
  expect(await page.locator('#topology .link').count()).toBeGreaterThanOrEqual(2);
}

/**
 * In the page (self-contained, for waitForFunction): the services table gives west and eu together a larger
 * share of east's calls to hello.demo than east itself.
 */
export function callsLeftEast(): boolean {
  const share = (c: string) =>
    Number(
      /(\d+)%/.exec(
        document.querySelector(`#services tr[data-service="hello.demo"][data-cluster="${c}"]`)?.textContent ??
          '',
      )?.[1] ?? 0,
    );
  return share('west') + share('eu') > share('east');
}
