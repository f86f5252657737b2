// cross-origin.spec.mjs: a web page of another origin, open in the station's own
// browser, must not be able to change the station (docs/API.md "Who may do what").
// Run by tests/integration/test_browser_cross_origin.sh against the real espstationd
// (no api.token: loopback clients are trusted) with a board on --slot and the set
// --fw-name@--fw-version in the catalog (its files in --fw-dir):
//
//   node cross-origin.spec.mjs --url http://127.0.0.1:PORT --slot A1 --fw-dir DIR
//        --fw-name app --fw-version 1.0 --evil-bin FILE --shots DIR
//
// (--evil-bin: another valid image for the set, so that a replace would succeed.)
//
// The second origin is a tiny page served here (node http) as http://evil.example:P/
// (chromium maps evil.example to 127.0.0.1, --host-resolver-rules): cross-site. It tries
// what a page can send without a CORS preflight -- no-cors fetch POSTs (empty, "JSON"
// that the browser turns into text/plain, a FormData firmware upload with
// ?replace=true), HTML form posts (urlencoded and multipart with a file), and a no-cors
// DELETE, plus cors-mode JSON POST/PUT/DELETE (preflighted, never granted). Then the
// checks, each printed as "ok N - ..." / "not ok N - ...":
//  1. the station started no job, recorded no firmware event, and the set's files and
//     hashes are unchanged (read with node's own fetch, not through the page);
//  2. DNS rebinding: the station's page under http://evil.example:PORT/ is refused
//     (403), and a same-origin JSON POST from that page is refused too;
//  3. the status page still works from its own origin: it loads and lists the slot, and
//     a JSON POST (info) and a FormData validate from that origin are accepted.
// Ends with "N passed, N failed" and exits non-zero on any failure.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { launch } from './lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[i + 1] : def;
};
const URL_ = opt('url', '');
const SLOT = opt('slot', 'A1');
const FW_DIR = opt('fw-dir', '');
const FW_NAME = opt('fw-name', 'app');
const FW_VERSION = opt('fw-version', '1.0');
const EVIL_BIN = opt('evil-bin', '');
const SHOTS = path.resolve(opt('shots', '.'));
if (!URL_ || !FW_DIR || !EVIL_BIN) {
  console.error('usage: cross-origin.spec.mjs --url URL --fw-dir DIR --evil-bin FILE [--slot ID] [--shots DIR]');
  process.exit(2);
}
fs.mkdirSync(SHOTS, { recursive: true });
const STATION_PORT = new URL(URL_).port;

let passed = 0, failed = 0, n = 0;
function ok(cond, what, detail = '') {
  n++;
  if (cond) { passed++; console.log(`ok ${n} - ${what}`); } else { failed++; console.log(`not ok ${n} - ${what}${detail ? `\n#   ${detail}` : ''}`); }
  return cond;
}
const log = (...a) => console.log('#', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What the station holds, read directly (node fetch: no Origin, JSON).
async function stationState() {
  const get = async (p) => (await fetch(`${URL_}${p}`)).json();
  const jobs = await get('/api/v1/jobs?limit=1000');
  const fw = await get(`/api/v1/firmware/${FW_NAME}/${FW_VERSION}`);
  const list = await get('/api/v1/firmware');
  return {
    jobs: (jobs.jobs || []).map((j) => `${j.id}:${j.kind}`).join(','),
    set: JSON.stringify((fw.regions || []).map((r) => r.sha256)),
    catalog: (list.firmware || []).map((f) => `${f.name}@${f.version}`).sort().join(','),
  };
}

// ---- the second origin ---------------------------------------------------------------------

const manifest = fs.readFileSync(path.join(FW_DIR, 'manifest.json'));
// Another valid app.bin than the catalog's (--evil-bin): a replaced set would show a new hash.
const evilBin = fs.readFileSync(EVIL_BIN);

const attackPage = `<!doctype html><meta charset="utf-8"><title>evil</title>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe>
<form id="f1" method="POST" target="sink1" action="${URL_}/api/v1/slots/${SLOT}/erase">
  <input name="all" value="true"></form>
<form id="f2" method="POST" target="sink2" enctype="multipart/form-data"
      action="${URL_}/api/v1/firmware?replace=true">
  <input type="file" name="manifest"><input type="file" name="app.bin"></form>
<form id="f3" method="POST" target="sink3" enctype="text/plain"
      action="${URL_}/api/v1/slots/${SLOT}/erase"><input name='{"all":true,"x":"' value='"}'></form>
<script>
const S = ${JSON.stringify(URL_)};
const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const manifest = b64(${JSON.stringify(manifest.toString('base64'))});
const bin = b64(${JSON.stringify(evilBin.toString('base64'))});
window.results = {};
async function attempt(name, fn) {
  try { const r = await fn(); window.results[name] = r && r.type ? r.type + ':' + r.status : 'sent'; }
  catch (e) { window.results[name] = 'error:' + e.name; }
}
window.run = async () => {
  const slot = S + '/api/v1/slots/${SLOT}';
  await attempt('nocors-empty-erase', () => fetch(slot + '/erase', { method: 'POST', mode: 'no-cors', body: '' }));
  await attempt('nocors-json-erase', () => fetch(slot + '/erase', { method: 'POST', mode: 'no-cors',
    headers: { 'Content-Type': 'application/json' }, body: '{"all": true}' }));
  await attempt('nocors-reset-baud', () => fetch(slot + '/reset-baud', { method: 'POST', mode: 'no-cors' }));
  const fd = new FormData();
  fd.append('manifest', new Blob([manifest]), 'manifest.json');
  fd.append('app.bin', new Blob([bin]), 'app.bin');
  await attempt('nocors-upload-replace', () => fetch(S + '/api/v1/firmware?replace=true', { method: 'POST', mode: 'no-cors', body: fd }));
  await attempt('nocors-delete', () => fetch(S + '/api/v1/firmware/${FW_NAME}/${FW_VERSION}', { method: 'DELETE', mode: 'no-cors' }));
  await attempt('cors-json-erase', () => fetch(slot + '/erase', { method: 'POST',
    headers: { 'Content-Type': 'application/json' }, body: '{}' }));
  await attempt('cors-delete', () => fetch(S + '/api/v1/firmware/${FW_NAME}/${FW_VERSION}', { method: 'DELETE' }));
  await attempt('cors-put-active', () => fetch(S + '/api/v1/profiles/active', { method: 'PUT',
    headers: { 'Content-Type': 'application/json' }, body: '{"name": null}' }));
  // HTML forms: no script can stop a browser from sending these
  const dt1 = new DataTransfer(); dt1.items.add(new File([manifest], 'manifest.json'));
  const dt2 = new DataTransfer(); dt2.items.add(new File([bin], 'app.bin'));
  const f2 = document.getElementById('f2');
  f2.elements[0].files = dt1.files; f2.elements[1].files = dt2.files;
  const loaded = (name) => new Promise((res) => {
    const fr = document.querySelector('iframe[name=' + name + ']');
    fr.addEventListener('load', () => res(), { once: true });
    setTimeout(res, 5000);
  });
  for (const [id, sink] of [['f1', 'sink1'], ['f2', 'sink2'], ['f3', 'sink3']]) {
    const l = loaded(sink);
    document.getElementById(id).submit();
    await l;
    window.results['form-' + id] = 'submitted';
  }
  return window.results;
};
</script>`;

const evil = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(attackPage);
});
await new Promise((r) => evil.listen(0, '127.0.0.1', r));
const EVIL_PORT = evil.address().port;
const EVIL_URL = `http://evil.example:${EVIL_PORT}/`;
log(`second origin ${EVIL_URL} (127.0.0.1:${EVIL_PORT}), station ${URL_}`);

const { context, close } = await launch({
  width: 1280, height: 900,
  args: ['--host-resolver-rules=MAP evil.example 127.0.0.1'],
});
let exitCode = 1;
try {
  const before = await stationState();
  log('before', JSON.stringify(before));

  // ---- 1. the attack page --------------------------------------------------------------------
  const page = await context.newPage();
  const resp = await page.goto(EVIL_URL, { waitUntil: 'load' });
  ok(resp && resp.status() === 200, 'the second origin (evil.example) is served');
  const results = await page.evaluate(() => window.run());
  log('attempts', JSON.stringify(results));
  ok(Object.keys(results).length >= 11, 'the page made every attempt', JSON.stringify(results));
  await sleep(1500); // anything the station would start has started by now
  await page.screenshot({ path: path.join(SHOTS, 'cross-origin-attack.png') });
  const after = await stationState();
  log('after', JSON.stringify(after));
  ok(after.jobs === before.jobs, 'no job was started by the other origin (erase, reset-baud)', `${before.jobs} -> ${after.jobs}`);
  ok(after.set === before.set, `${FW_NAME}@${FW_VERSION} was not replaced`, `${before.set} -> ${after.set}`);
  ok(after.catalog === before.catalog, 'the catalog is unchanged', `${before.catalog} -> ${after.catalog}`);
  const prof = await (await fetch(`${URL_}/api/v1/profiles`)).json();
  ok(prof.active != null, 'the active profile was not cleared', JSON.stringify(prof.active));
  await page.close();

  // ---- 2. DNS rebinding: the station's own port under a foreign name ------------------------
  const rb = await context.newPage();
  const r2 = await rb.goto(`http://evil.example:${STATION_PORT}/`, { waitUntil: 'load' });
  ok(r2 && r2.status() === 403, 'the status page under a rebound name is refused (403)', String(r2 && r2.status()));
  const r3 = await rb.evaluate(async (slot) => {
    const r = await fetch(`/api/v1/slots/${slot}/erase`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    return { status: r.status, body: await r.text() };
  }, SLOT);
  ok(r3.status === 403 && /Host/.test(r3.body), 'a same-origin JSON POST under the rebound name is refused (403 Host)', JSON.stringify(r3));
  await rb.close();
  const afterRebind = await stationState();
  ok(afterRebind.jobs === before.jobs, 'no job after the rebinding attempt', `${before.jobs} -> ${afterRebind.jobs}`);

  // ---- 3. the status page still works from its own origin -----------------------------------
  const own = await context.newPage();
  const r4 = await own.goto(`${URL_}/`, { waitUntil: 'load' });
  ok(r4 && r4.status() === 200, 'the status page loads from its own origin');
  const shown = await own.waitForFunction((slot) => [...document.querySelectorAll('#slots .slot .label')]
    .some((l) => l.textContent.trim() === slot), SLOT, { timeout: 20000 }).then(() => true, () => false);
  ok(shown, `the page lists slot ${SLOT}`);
  const r5 = await own.evaluate(async (slot) => {
    const r = await fetch(`/api/v1/slots/${slot}/info`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    return { status: r.status, body: await r.text() };
  }, SLOT);
  ok(r5.status === 202, 'a JSON POST from the page itself starts a job (202)', JSON.stringify(r5));
  const r6 = await own.evaluate(async ({ m, b }) => {
    const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
    const fd = new FormData();
    fd.append('manifest', new Blob([b64(m)]), 'manifest.json');
    fd.append('app.bin', new Blob([b64(b)]), 'app.bin');
    const r = await fetch('/api/v1/firmware/validate', { method: 'POST', body: fd });
    return { status: r.status, body: await r.text() };
  }, { m: manifest.toString('base64'), b: fs.readFileSync(path.join(FW_DIR, 'app.bin')).toString('base64') });
  ok(r6.status === 200, 'a multipart validate from the page itself is accepted (its Origin is the station)', JSON.stringify(r6).slice(0, 300));
  await own.screenshot({ path: path.join(SHOTS, 'cross-origin-own-page.png') });
  await own.close();
  exitCode = failed ? 1 : 0;
} catch (e) {
  console.log(`not ok ${++n} - spec crashed: ${e.stack || e}`);
  failed++;
} finally {
  await close();
  evil.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : exitCode);
