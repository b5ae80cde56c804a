// Debian's Chromium for the tests of the page: headless, a fresh profile, and the flags this network needs (it
// refuses Chromium's own background connections); it trusts exactly the servers' keys it is given (SPKI pins), as a
// user who compared the fingerprints would. And the page's log-in form, filled as a user does.
import { existsSync } from 'node:fs';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Why the browser tests cannot run here, or null. */
export const chromiumMissing = (): string | null => (existsSync(CHROMIUM) ? null : 'no Chromium: apt-get install -y chromium');

/** Chromium with its profile in `profile`, trusting the keys `spkiPins` (base64 SHA-256 of each SubjectPublicKeyInfo). */
export function launchChromium(profile: string, spkiPins: string[], options: { acceptDownloads?: boolean } = {}): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    ...options,
    viewport: { width: 1200, height: 800 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${spkiPins.join(',')}`,
    ],
  });
}

/** Fills the log-in form and presses `how`; resolves once the file list shows. */
export async function enter(page: Page, user: string, password: string, how: 'Log in' | 'Sign up'): Promise<void> {
  await page.fill('#user', user);
  await page.fill('#password', password);
  await page.getByRole('button', { name: how, exact: true }).click();
  await page.waitForSelector('text=Total directory size', { timeout: 15_000 });
}
