// lib.mjs: launches Debian's chromium through playwright-core (never a
// downloaded browser) with a fresh profile directory. Playwright insists on
// passing the profile itself (launchPersistentContext) instead of a
// --user-data-dir argument; the effect is the same: a new, empty profile.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// args: extra chromium switches (e.g. --host-resolver-rules for a second origin).
export async function launch({ width = 1920, height = 1080, args = [] } = {}) {
  const profile = fs.mkdtempSync(path.join(process.env.TEST_TMPDIR || os.tmpdir(), 'chromium-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width, height },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage', ...args],
    timeout: 60000,
  });
  const close = async () => {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}
