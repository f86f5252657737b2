// screenshot.mjs: one screenshot of a page with Debian's chromium (a dev helper
// for looking at the status page; not part of the test).
//   node screenshot.mjs URL OUT.png [WIDTH] [HEIGHT] [WAIT_MS]     (FULL=1: full page)
import { launch } from './lib.mjs';

const [url, out, w, h, wait] = process.argv.slice(2);
if (!url || !out) { console.error('usage: node screenshot.mjs URL OUT.png [WIDTH] [HEIGHT] [WAIT_MS]'); process.exit(2); }
const { context, close } = await launch({ width: +w || 1920, height: +h || 1080 });
try {
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log('console:', m.text()); });
  page.on('pageerror', (e) => console.log('pageerror:', e.message));
  await page.goto(url);
  await page.waitForTimeout(+wait || 3000);
  await page.screenshot({ path: out, fullPage: process.env.FULL === '1' });
} finally {
  await close();
}
