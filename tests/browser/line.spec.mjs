// line.spec.mjs: the status page's Line tab in a real browser (Debian's chromium through
// playwright-core), run by tests/integration/test_browser_line.sh against a station of a
// line of stations on one PostgreSQL:
//
//   node line.spec.mjs --url http://127.0.0.1:PORT --up st1,st2 --gone st3 --self st1
//        [--slot L1A] [--shots DIR]
//
// Checks, each printed as "ok N - ..." / "not ok N - ...":
//  1. the Line tab opens (#/line) and shows a card per station (--up and --gone);
//  2. each --up station is "up", not greyed; --self is marked "this station" and lists its
//     slot --slot with a state;
//  3. the --gone station is greyed (class gone, lower opacity) and says "gone" with how long
//     ago and which station took over its jobs, its slots as last reported;
//  4. the view is live: the gone station's age changes without a reload;
//  and the page has no script errors. Screenshot: DIR/line.png.
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
const UP = opt('up', '').split(',').filter(Boolean);
const GONE = opt('gone', '');
const SELF = opt('self', UP[0] || '');
const SLOT = opt('slot', '');
const SHOTS = path.resolve(opt('shots', '.'));
if (!URL_ || !UP.length || !GONE) {
  console.error('usage: line.spec.mjs --url URL --up A,B --gone C [--self A] [--slot S] [--shots DIR]');
  process.exit(2);
}
fs.mkdirSync(SHOTS, { recursive: true });

let passed = 0, failed = 0, n = 0;
function ok(cond, what, detail = '') {
  n++;
  if (cond) { passed++; console.log(`ok ${n} - ${what}`); } else { failed++; console.log(`not ok ${n} - ${what}${detail ? `\n#   ${detail}` : ''}`); }
  return cond;
}

const { context, close } = await launch({ width: 1400, height: 1000 });
const errors = [];
try {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  // Failed requests are judged by URL below (the console only says "Failed to load resource").
  page.on('console', (m) => { if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) errors.push(m.text()); });
  // A board that never checked in has no OTA record: the station view's 404 for it is expected.
  page.on('response', (r) => {
    if (r.status() >= 400 && !(r.status() === 404 && /\/api\/v1\/boards\/[^/]+\/ota$/.test(r.url()))) errors.push(`${r.status()} ${r.url()}`);
  });
  await page.goto(`${URL_}/#/line`, { waitUntil: 'domcontentloaded' });
  const card = (name) => page.locator(`.line-station[data-station="${name}"]`);

  // 1. a card per station
  let shown = false;
  try {
    await page.waitForFunction((want) => want.every((w) => document.querySelector(`.line-station[data-station="${w}"]`)),
      [...UP, GONE], { timeout: 30000 });
    shown = true;
  } catch { /* reported below */ }
  const names = await page.locator('.line-station').evaluateAll((ns) => ns.map((x) => x.dataset.station));
  ok(shown && names.length >= UP.length + 1, `the Line tab shows ${UP.length + 1} stations`, `shown: ${names.join(',')}`);
  ok(await page.locator('.tabs a[data-view="line"]').getAttribute('aria-current') === 'page', 'the Line tab is the current tab');

  // 2. up stations
  for (const s of UP) {
    const c = card(s);
    const badge = (await c.locator('.lbadge').textContent().catch(() => '')) || '';
    const cls = (await c.getAttribute('class').catch(() => '')) || '';
    ok(badge.trim() === 'up' && !cls.includes('gone'), `station ${s} is shown up`, `badge '${badge}', class '${cls}'`);
  }
  const self = card(SELF);
  ok(((await self.locator('.this').textContent().catch(() => '')) || '').includes('this station'), `${SELF} is marked as this station`);
  if (SLOT) {
    const row = self.locator('tbody tr', { hasText: SLOT });
    const st = ((await row.locator('.lstate').textContent().catch(() => '')) || '').trim();
    ok(st.length > 0, `${SELF} lists slot ${SLOT} with its state`, `state '${st}'`);
  }

  // 3. the gone station: greyed, "gone", how long ago, who took over
  const g = card(GONE);
  const gcls = (await g.getAttribute('class').catch(() => '')) || '';
  const gbadge = ((await g.locator('.lbadge').textContent().catch(() => '')) || '').trim();
  const opacity = Number(await g.evaluate((x) => getComputedStyle(x).opacity).catch(() => '1'));
  ok(gcls.includes('gone') && opacity < 1, `station ${GONE} is greyed`, `class '${gcls}', opacity ${opacity}`);
  ok(/^gone · last heard \d+ (s|min|h) ago$/.test(gbadge), `station ${GONE} says gone and how long ago`, `badge '${gbadge}'`);
  const gslots = await g.locator('tbody tr').count();
  ok(gslots > 0, `station ${GONE} still shows its slots as last reported`, `${gslots} rows`);
  const note = ((await g.locator('.gone-note').textContent().catch(() => '')) || '');
  ok(/marked interrupted by /.test(note) && UP.some((u) => note.includes(`by ${u}`)), `station ${GONE} says who took over its jobs`, `note '${note}'`);

  // 4. live: the page re-reads the line without a reload (the gone station's age grows)
  const badgeText = async () => ((await g.locator('.lbadge').textContent().catch(() => '')) || '').trim();
  let changed = false;
  for (let i = 0; i < 40 && !changed; i++) {
    await page.waitForTimeout(500);
    changed = (await badgeText()) !== gbadge;
  }
  ok(changed, 'the Line tab updates live (the gone station\'s age grows)', `stayed '${gbadge}'`);

  await page.screenshot({ path: path.join(SHOTS, 'line.png'), fullPage: true });
  ok(errors.length === 0, 'no script errors', errors.join(' | '));
} finally {
  await close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
