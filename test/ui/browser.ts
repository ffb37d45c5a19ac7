import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium } from 'playwright-core';

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
