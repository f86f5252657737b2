// tls.spec.mjs: the status page's certificate badge in a real browser (Debian's chromium
// through playwright-core), run by tests/integration/test_browser_tls.sh against a station
// whose REST API speaks HTTPS with a certificate made by the test (the browser ignores the
// test CA's certificate errors):
//
//   node tls.spec.mjs --url https://127.0.0.1:PORT --expect alert|warn|none [--date YYYY-MM-DD]
//        [--shots DIR] [--name NAME]
//
// Checks, each printed as "ok N - ..." / "not ok N - ...":
//  1. --expect alert|warn: the header shows the badge at that level (red for alert) with the
//     date --date and what to do (renew, "systemctl reload espstationd");
//     --expect none: no badge once the page has read the station;
//  2. on a phone's width (390 px) the page has no horizontal overflow, the badge included;
//  and the page has no script errors. Screenshots: DIR/NAME.png and DIR/NAME-phone.png.
// Ends with "N passed, N failed" and exits non-zero on any failure.
import fs from 'node:fs';
import path from 'node:path';
import { launch } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[i + 1] : def;
};
const URL_ = opt('url', '');
const EXPECT = opt('expect', '');
const DATE = opt('date', '');
const SHOTS = path.resolve(opt('shots', '.'));
const NAME = opt('name', `tls-${EXPECT}`);
if (!URL_ || !['alert', 'warn', 'none'].includes(EXPECT)) {
  console.error('usage: tls.spec.mjs --url URL --expect alert|warn|none [--date D] [--shots DIR] [--name N]');
  process.exit(2);
}
fs.mkdirSync(SHOTS, { recursive: true });

let passed = 0, failed = 0, n = 0;
function ok(cond, what, detail = '') {
  n++;
  if (cond) { passed++; console.log(`ok ${n} - ${what}`); } else { failed++; console.log(`not ok ${n} - ${what}${detail ? `\n#   ${detail}` : ''}`); }
  return cond;
}

const { context, close } = await launch({ width: 1400, height: 900, args: ['--ignore-certificate-errors'] });
const errors = [];
try {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) errors.push(m.text()); });
  page.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });
  // The page has read /api/v1/line (the badge's source) once this answer is in.
  const lineRead = page.waitForResponse((r) => r.url().endsWith('/api/v1/line') && r.status() === 200, { timeout: 30000 });
  await page.goto(`${URL_}/`, { waitUntil: 'domcontentloaded' });
  const read = await lineRead.then(() => true, () => false);
  ok(read, 'the page read GET /api/v1/line');
  const badge = page.locator('#tls-badge');
  if (EXPECT === 'none') {
    await page.waitForTimeout(300); // the render after the answer
    ok(await badge.isHidden(), 'no certificate badge', `shown: '${await badge.textContent().catch(() => '')}'`);
  } else {
    let shown = false;
    try { await badge.waitFor({ state: 'visible', timeout: 15000 }); shown = true; } catch { /* below */ }
    const text = ((await badge.textContent().catch(() => '')) || '').trim();
    const level = await badge.getAttribute('data-level').catch(() => null);
    ok(shown, 'the header shows the certificate badge', `text '${text}'`);
    ok(level === EXPECT, `the badge is at level ${EXPECT}`, `level ${level}`);
    ok(!DATE || text.includes(DATE), `the badge gives the date ${DATE}`, `text '${text}'`);
    ok(/renew the certificate/.test(text) && /systemctl reload espstationd/.test(text), 'the badge says what to do', `text '${text}'`);
    const inHeader = await badge.evaluate((b) => !!b.closest('header.top')).catch(() => false);
    ok(inHeader, 'the badge is in the header');
    if (EXPECT === 'alert') {
      const bg = await badge.evaluate((b) => getComputedStyle(b).backgroundColor).catch(() => '');
      ok(/^rgb\(239, 68, 68\)$/.test(bg), 'an alert badge is red', `background ${bg}`);
    }
  }
  await page.screenshot({ path: path.join(SHOTS, `${NAME}.png`) });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  const over = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  ok(over <= 0, 'no horizontal overflow at 390 px', `${over} px too wide`);
  await page.screenshot({ path: path.join(SHOTS, `${NAME}-phone.png`), fullPage: true });
  ok(errors.length === 0, 'no script errors', errors.join(' | '));
} finally {
  await close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
