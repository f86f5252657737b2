// status.spec.mjs: the status page in a real browser (Debian's chromium driven
// by playwright-core). Run by tests/integration/test_browser.sh against the real
// espstationd with virtual boards, or against mock-server.mjs for a fast UI run:
//
//   node status.spec.mjs --url http://127.0.0.1:PORT --shots DIR
//        [--token T] [--flash-slot W1] [--fail-slot F1] [--slots W1,F1,...]
//        [--overlap-fw DIR] [--wrongchip-fw DIR] [--good-fw DIR]   (made here when not given:
//        DIR/manifest.json + part.bin, app.bin overlapping / an ESP32-C3 app.bin in an ESP32
//        set / a valid ESP32 set "uploaded@1.0" with app.bin)
//        [--bulk-macs M1,M2,... --bulk-firmware NAME@VER --bulk-fast N]
//        [--pull-slot P1 --pull-firmware NAME@VER [--pull-log FILE]]
//   node status.spec.mjs --mock --shots DIR       (starts mock-server.mjs itself)
//
// Checks, each printed as "ok N - ..." / "not ok N - ...":
//  1. the page loads and shows every expected slot;
//  2. progress of the flashing slot advances live (two samples, no reload);
//  3. the slot with an injected fault turns red (state "failed") with its reason
//     and what to check;
//  4. uploading a bad firmware set (overlapping regions) shows the validation
//     error naming the region; validating a wrong-chip set names the region too;
//  plus the detail views open (job log, board), the live indicator says "live",
//  the Bulk tab opens, and the page has no script errors. Screenshots land in --shots.
//  Mock only: network OTA on the tiles and in the board detail (IP, running version,
//  target), and the Bulk tab with fixed data (counts, per-board results, live bulk.*
//  updates, cancel). Real station with --bulk-macs: the spec starts an espota bulk over
//  those boards (concurrency 1; the first --bulk-fast pass at once, the next two stall)
//  while the Bulk tab is open, and checks it appears by itself with its firmware, its
//  counts equal GET /api/v1/bulk/{id}, it advances live, the detail lists every board's
//  result/job/error as the API does, and Cancel (with the token) cancels it.
//  Real station with --pull-slot: the board on that slot was flashed serially and checks in
//  over the network; the spec pins its target to --pull-firmware (PUT /boards/{mac}/target),
//  the board pulls it at its next check-in, and then (live, no reload) the tile names the
//  firmware the board runs and notes the set the slot flashed; the pull's job passed, its
//  duration covers the time the board itself took to receive the image (the last
//  "pull: received N bytes in X ms" of --pull-log, esp_netdev's log), its kbit/s is bytes over
//  that duration (or both null), and its recent-jobs row shows those figures (never "0.0 s";
//  "–" where unknown).
// Ends with "N passed, N failed" and exits non-zero on any failure.

import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { launch } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[i + 1] : def;
};
const flag = (name) => argv.includes(`--${name}`);

const MOCK = flag('mock');
const SHOTS = path.resolve(opt('shots', path.join(here, 'screenshots')));
const TOKEN = opt('token', MOCK ? 'mock-token' : '');
const FLASH_SLOT = opt('flash-slot', MOCK ? 'A1' : 'W1');
const FAIL_SLOT = opt('fail-slot', MOCK ? 'A2' : 'F1');
const SLOTS = (opt('slots', '') || [FLASH_SLOT, FAIL_SLOT].join(',')).split(',').filter(Boolean);
const TMO = Number(opt('timeout', '90')) * 1000;
// Real station: a bulk the spec starts itself (POST /api/v1/bulk, espota, concurrency 1):
// --bulk-macs M1,M2,... in bulk order: the first --bulk-fast take the push at once, the
// next two stall (so it keeps running), any after them are still pending at the cancel.
const BULK_MACS = (opt('bulk-macs', '') || '').split(',').filter(Boolean);
const BULK_FW = opt('bulk-firmware', '');
const BULK_FAST = Number(opt('bulk-fast', '0'));
const PULL_SLOT = opt('pull-slot', '');
const PULL_FW = opt('pull-firmware', '');
const PULL_LOG = opt('pull-log', '');
fs.mkdirSync(SHOTS, { recursive: true });

let passed = 0, failed = 0, n = 0;
function ok(cond, what, detail = '') {
  n++;
  if (cond) { passed++; console.log(`ok ${n} - ${what}`); } else { failed++; console.log(`not ok ${n} - ${what}${detail ? `\n#   ${detail}` : ''}`); }
  return cond;
}
const log = (...a) => console.log('#', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- firmware sets for the upload checks ----------------------------------------

// A minimal ESP32-family image header: magic 0xE9, 1 segment, ext header with chip id.
function espImage(chipId, size, seed) {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; b[i] = x & 0xff; }
  b[0] = 0xe9; b[1] = 1; b[2] = 2; b[3] = 0x20;
  b.writeUInt32LE(0x40080000, 4);
  b[8] = 0xee; b.fill(0, 9, 12);
  b.writeUInt16LE(chipId, 12);
  b.fill(0, 14, 24);
  return b;
}

function makeBadSets(dir) {
  const overlap = path.join(dir, 'fw-overlap');
  fs.mkdirSync(overlap, { recursive: true });
  fs.writeFileSync(path.join(overlap, 'part.bin'), Buffer.alloc(8192, 0x5a));
  fs.writeFileSync(path.join(overlap, 'app.bin'), espImage(0, 65536, 7));
  fs.writeFileSync(path.join(overlap, 'manifest.json'), JSON.stringify({
    name: 'overlap', version: '1.0', chip: 'esp32',
    regions: [{ offset: '0x8000', file: 'part.bin', kind: 'data' }, { offset: '0x9000', file: 'app.bin', kind: 'app' }],
  }, null, 1));
  const wrong = path.join(dir, 'fw-wrongchip');
  fs.mkdirSync(wrong, { recursive: true });
  fs.writeFileSync(path.join(wrong, 'app.bin'), espImage(5, 65536, 9)); // ESP32-C3 image
  fs.writeFileSync(path.join(wrong, 'manifest.json'), JSON.stringify({
    name: 'wrongchip', version: '1.0', chip: 'esp32',
    regions: [{ offset: '0x10000', file: 'app.bin', kind: 'app' }],
  }, null, 1));
  const good = path.join(dir, 'fw-good');
  fs.mkdirSync(good, { recursive: true });
  fs.writeFileSync(path.join(good, 'app.bin'), espImage(0, 65536, 11));
  fs.writeFileSync(path.join(good, 'manifest.json'), JSON.stringify({
    name: 'uploaded', version: '1.0', chip: 'esp32',
    regions: [{ offset: '0x10000', file: 'app.bin', kind: 'app' }],
  }, null, 1));
  return { overlap, wrong, good };
}

// A plain ustar archive of [name, Buffer] pairs (a firmware bundle).
function tarBundle(files) {
  const blocks = [];
  for (const [name, data] of files) {
    const h = Buffer.alloc(512);
    h.write(name, 0);
    h.write('0000644\0', 100); h.write('0000000\0', 108); h.write('0000000\0', 116);
    h.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124);
    h.write('00000000000\0', 136); h.write('        ', 148); h.write('0', 156);
    h.write('ustar\0', 257); h.write('00', 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

// ---- page helpers ----------------------------------------------------------------

async function slotInfo(page, label) {
  return page.evaluate((label) => {
    for (const n of document.querySelectorAll('#slots .slot')) {
      if (n.querySelector('.label').textContent.trim() !== label) continue;
      const bar = n.querySelector('.bar');
      const why = n.querySelector('.why');
      return {
        tone: n.dataset.tone, phase: n.dataset.phase,
        word: n.querySelector('.state .word').textContent.trim(),
        phaseText: n.querySelector('.phase').textContent.trim(),
        done: Number(bar.dataset.done || 0), total: Number(bar.dataset.total || 0),
        value: Number(bar.getAttribute('aria-valuenow') || 0), barHidden: bar.hidden,
        bytes: n.querySelector('.bytes').textContent.trim(),
        reason: why.hidden ? '' : why.querySelector('.reason').textContent.trim(),
        advice: why.hidden ? '' : why.querySelector('.advice').textContent.trim(),
        color: getComputedStyle(n).borderTopColor,
        flagged: n.classList.contains('flagged'),
      };
    }
    return null;
  }, label);
}

async function waitFor(fn, tmo, every = 100) {
  const end = Date.now() + tmo;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(every);
  }
  return null;
}

// ---- the Bulk tab against the real station ---------------------------------------------

// The bulk card's state and counts as the page shows them (a count the page leaves out,
// "running" at 0, reads 0).
async function bulkCard(page, id) {
  return page.evaluate((id) => {
    const c = document.querySelector(`#bulk-list .bulk[data-bulk="${id}"]`);
    if (!c) return null;
    const o = { state: c.dataset.state, text: c.innerText.replace(/\s+/g, ' '), running: 0 };
    for (const x of c.querySelectorAll('[data-count]')) o[x.dataset.count] = Number(x.dataset.value);
    const bar = c.querySelector('.bulkbar');
    o.barDone = Number(bar.dataset.done); o.barTotal = Number(bar.dataset.total);
    return o;
  }, id);
}
const COUNT_KEYS = ['total', 'pending', 'running', 'passed', 'failed', 'skipped'];
const sameCounts = (card, api) => !!card && !!api && COUNT_KEYS.every((k) => card[k] === (api.counts || {})[k]) && card.state === api.state;
async function apiBulk(id) {
  const r = await fetch(`${URL_}/api/v1/bulk/${id}`, { headers: TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {} });
  return r.status === 200 ? r.json() : { status: r.status };
}
// The page's card and GET /api/v1/bulk/{id} agree (read the page, the API, the page again,
// so a bulk.board event in between cannot make a match by chance).
async function cardMatchesApi(page, id, tmo = 10000) {
  let last = null;
  const got = await waitFor(async () => {
    const a = await bulkCard(page, id);
    const api = await apiBulk(id);
    const b = await bulkCard(page, id);
    last = { page: a, api: api && { state: api.state, counts: api.counts } };
    return sameCounts(a, api) && JSON.stringify(a) === JSON.stringify(b) ? { card: a, api } : null;
  }, tmo, 200);
  return got || { mismatch: last };
}

async function realBulk(page, navs) {
  const auth = { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' };
  const navs0 = navs.length;
  // Started while the Bulk tab is open: bulk.started makes the page list it by itself.
  const r = await fetch(`${URL_}/api/v1/bulk`, {
    method: 'POST', headers: auth,
    body: JSON.stringify({ select: { macs: BULK_MACS }, firmware: BULK_FW, method: 'espota', concurrency: 1, retries: 0, max_failure_rate: 1 }),
  });
  const started = await r.json().catch(() => ({}));
  ok(r.status === 202 && started.id != null && started.state === 'running', `POST /api/v1/bulk starts an espota bulk of ${BULK_MACS.length} boards`, `${r.status} ${JSON.stringify(started)}`);
  const id = started.id;
  if (id == null) return;
  const first = await waitFor(async () => {
    const c = await bulkCard(page, id);
    return c && c.state === 'running' ? c : null;
  }, 10000, 100);
  ok(!!first && first.text.includes(BULK_FW) && /espota/.test(first.text) && first.total === BULK_MACS.length,
    `bulk #${id} appears on the page by itself, running, with its firmware ${BULK_FW} and ${BULK_MACS.length} boards`, JSON.stringify(first));
  if (!first) return;
  log(`bulk #${id} first seen: ${first.passed} done / ${first.failed} failed / ${first.running} running / ${first.pending} pending`);
  // Live: more boards finish while the page is watched (no reload), the bulk still running.
  const moved = await waitFor(async () => {
    const c = await bulkCard(page, id);
    return c && c.passed + c.failed > first.passed + first.failed ? c : null;
  }, 30000, 100);
  ok(!!moved && navs.length === navs0, `bulk #${id} advances live on the page (bulk.board events, no reload)`, JSON.stringify({ first, moved, navs: navs.slice(navs0) }));
  if (moved) log(`bulk #${id} then: ${moved.passed} done / ${moved.failed} failed / ${moved.running} running / ${moved.pending} pending (${moved.state})`);
  const m1 = await cardMatchesApi(page, id);
  ok(!!m1.card && m1.card.state === 'running' && m1.card.running === 1 && m1.card.barDone === m1.card.passed + m1.card.failed + m1.card.skipped && m1.card.barTotal === m1.card.total,
    `bulk #${id}: the card's state and counts are those of GET /api/v1/bulk/${id}, and it is still running (a stalled board)`, JSON.stringify(m1.card || m1.mismatch));
  // Per-board results in the detail (the running bulk is selected by itself; click it anyway).
  await page.click(`#bulk-list .bulk[data-bulk="${id}"]`);
  const det = await waitFor(async () => {
    const d = await page.evaluate(() => {
      const d = document.querySelector('#bulk-detail');
      return { bulk: d.dataset.bulk, text: d.innerText, rows: [...d.querySelectorAll('tbody tr[data-mac]')].map((r) => ({ mac: r.dataset.mac, state: r.dataset.state, err: (r.querySelector('.err') || {}).innerText || '', job: (r.querySelector('a[data-job]') || { dataset: {} }).dataset.job || null })) };
    });
    if (d.bulk !== String(id)) return null;
    const api = await apiBulk(id);
    const want = (api.boards || []).map((b) => `${b.mac}=${b.state}:${b.job_id ?? ''}:${b.error || ''}`).sort().join(' ');
    const have = d.rows.map((x) => `${x.mac}=${x.state}:${x.job ?? ''}:${x.err}`).sort().join(' ');
    return want === have ? { ...d, api } : null;
  }, 10000, 200);
  ok(!!det && det.rows.length === BULK_MACS.length && det.rows.filter((x) => x.state === 'passed').length === BULK_FAST
    && det.rows.every((x) => x.state !== 'passed' || /^\d+$/.test(x.job || '')) && det.text.includes(BULK_FW),
    `bulk #${id}'s detail lists every board with the result, job and error of the API`, JSON.stringify(det && { rows: det.rows, api: det.api.boards }));
  const failedRows = det ? det.rows.filter((x) => x.state === 'failed') : [];
  if (failedRows.length) ok(failedRows.every((x) => x.err.length > 0), 'a failed board shows its error in the detail', JSON.stringify(failedRows));
  await page.screenshot({ path: path.join(SHOTS, 'bulk.png') });
  // Cancel with the token (set in the settings above): the bulk stops starting boards.
  const btn = await page.$('#bulk-detail button.danger');
  ok(!!btn, `the running bulk #${id} has a Cancel button`);
  if (!btn) return;
  page.once('dialog', (d) => d.accept());
  await btn.click();
  const cancelled = await waitFor(async () => {
    const c = await bulkCard(page, id);
    return c && c.state === 'cancelled' && !(await page.$('#bulk-detail button.danger')) ? c : null;
  }, 10000, 100);
  ok(!!cancelled, `Cancel bulk (with the token) cancels bulk #${id} and the button goes away`, JSON.stringify(await bulkCard(page, id)));
  const after = await apiBulk(id);
  const ac = after.counts || {};
  ok(after.state === 'cancelled' && ac.passed === BULK_FAST && ac.running === 1 && ac.pending === BULK_MACS.length - BULK_FAST - 1 - ac.failed && ac.pending >= 1,
    `GET /api/v1/bulk/${id} says cancelled; the stalled board still runs, the ones not yet started stay pending`, JSON.stringify(after && { state: after.state, counts: after.counts }));
  // Cancelled means no new board starts: the counts stay put while the page is watched.
  await sleep(1500);
  const still = await apiBulk(id);
  ok((still.counts || {}).pending === ac.pending && (still.counts || {}).passed === ac.passed, `no board of the cancelled bulk #${id} starts afterwards`, JSON.stringify(still.counts));
  const m2 = await cardMatchesApi(page, id, 15000);
  ok(!!m2.card, `after the cancel the page's counts of bulk #${id} match the API again`, JSON.stringify(m2.mismatch));
  await page.screenshot({ path: path.join(SHOTS, 'bulk-cancelled.png') });
}

// ---- an update over the network on the real station ------------------------------------

async function pullTile(page) {
  return page.evaluate((label) => {
    for (const n of document.querySelectorAll('#slots .slot')) {
      if (n.querySelector('.label').textContent.trim() !== label) continue;
      const fw = n.querySelector('.fwline');
      const a = n.querySelector('.mac a');
      const tgt = n.querySelector('.ota .tgt');
      const text = fw.hidden ? '' : fw.innerText.replace(/\s+/g, ' ').trim();
      return {
        phase: n.dataset.phase, mac: a ? a.dataset.mac : '', text,
        runs: (/^Firmware (\S+)/.exec(text) || [])[1] || '', flashed: (/flashed here: (\S+)/.exec(text) || [])[1] || '',
        tgt: tgt && !tgt.hidden ? tgt.innerText.trim() : '', ver: (n.querySelector('.ota .ver') || {}).innerText || '',
      };
    }
    return null;
  }, PULL_SLOT);
}

// A duration cell of the jobs table ("850 ms", "2.9 s", "12 s", "1:05") in seconds; NaN otherwise.
function cellSeconds(t) {
  let m;
  if ((m = /^(\d+) ms$/.exec(t))) return Number(m[1]) / 1000;
  if ((m = /^(\d+(?:\.\d+)?) s$/.exec(t))) return Number(m[1]);
  if ((m = /^(\d+):(\d\d)$/.exec(t))) return Number(m[1]) * 60 + Number(m[2]);
  return NaN;
}

async function realPull(page, navs) {
  const auth = { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' };
  const before = await waitFor(async () => {
    const t = await pullTile(page);
    return t && t.phase === 'online' && t.mac && t.runs ? t : null;
  }, TMO, 200);
  ok(!!before, `${PULL_SLOT} is online after its serial flash`, JSON.stringify(await pullTile(page)));
  if (!before) return;
  const flashed = before.runs;
  log(`${PULL_SLOT} before the pull: "${before.text}" ${before.ver}`);
  ok(flashed !== PULL_FW && !before.flashed, `${PULL_SLOT}'s tile names the set it flashed (${flashed}) before the update`, JSON.stringify(before));
  const navs0 = navs.length;
  const r = await fetch(`${URL_}/api/v1/boards/${encodeURIComponent(before.mac)}/target`, { method: 'PUT', headers: auth, body: JSON.stringify({ firmware: PULL_FW }) });
  ok(r.status === 200, `PUT /api/v1/boards/${before.mac}/target ${PULL_FW}`, `${r.status} ${await r.text()}`);
  // The board pulls at its next check-in and reports the new version at the one after: the
  // tile's OTA line says so (v1.1.0, up to date), and its firmware line must agree.
  const want = PULL_FW.split('@')[1];
  const reported = await waitFor(async () => {
    const t = await pullTile(page);
    return t && t.ver === `v${want}` && /up to date/.test(t.tgt) ? t : null;
  }, 60000, 200);
  ok(!!reported, `${PULL_SLOT}'s board reports v${want} and is up to date after the pull`, JSON.stringify(await pullTile(page)));
  const after = reported && await waitFor(async () => {
    const t = await pullTile(page);
    return t && t.runs === PULL_FW ? t : null;
  }, 5000, 200);
  ok(!!after && after.flashed === flashed && navs.length === navs0,
    `then ${PULL_SLOT}'s tile names what the board runs (${PULL_FW}) and notes the set the slot flashed (${flashed}), live`,
    JSON.stringify({ now: after || await pullTile(page), navs: navs.slice(navs0) }));
  if (after) log(`${PULL_SLOT} after the pull: "${after.text}" ${after.ver} ${after.tgt}`);
  await page.screenshot({ path: path.join(SHOTS, 'ota-pull.png') });

  // The pull's job in the API: passed, with a duration that covers what the board took.
  const q = new URLSearchParams({ mac: before.mac, kind: 'ota-pull', limit: '1' });
  const recs = await fetch(`${URL_}/api/v1/records?${q}`, { headers: { Authorization: `Bearer ${TOKEN}` } }).then((x) => x.json()).catch(() => ({}));
  const job = (recs.records || [])[0];
  ok(!!job && job.state === 'passed' && job.firmware === PULL_FW && job.bytes > 0, `the pull is a passed ota-pull job of ${PULL_FW}`, JSON.stringify(recs).slice(0, 400));
  if (!job) return;
  log(`pull job #${job.id}: ${job.bytes} bytes, seconds ${job.seconds}, kbps ${job.kbps}`);
  const consistent = job.seconds == null ? job.kbps == null
    : job.seconds > 0 && job.kbps > 0 && Math.abs(job.kbps - (job.bytes * 8) / 1000 / job.seconds) <= job.kbps * 0.01;
  ok(consistent, 'the pull\'s kbps is its bytes over its seconds (or both are null)', JSON.stringify(job));
  if (PULL_LOG) {
    const m = [...fs.readFileSync(PULL_LOG, 'utf8').matchAll(/pull: received (\d+) bytes in (\d+) ms/g)].pop();
    ok(!!m && Number(m[1]) === job.bytes, 'the board logged how long it took to receive the image', m ? m[0] : 'no "pull: received" line');
    if (m) {
      const boardS = Number(m[2]) / 1000;
      log(`the board received ${m[1]} bytes in ${boardS} s; the station says ${job.seconds} s`);
      ok(job.seconds != null && job.seconds >= boardS - 0.005 && job.seconds <= boardS + 2,
        `the pull's duration (${job.seconds} s) covers the board's own ${boardS} s (from the response's first byte to the board's close)`, JSON.stringify(job));
    }
  }
  // ... and its row in the recent jobs.
  const row = await waitFor(() => page.evaluate((id) => {
    const tr = document.querySelector(`#recent tbody tr[data-job="${id}"]`);
    if (!tr) return null;
    const td = [...tr.querySelectorAll('td')].map((x) => x.innerText.trim());
    return { firmware: td[4], dur: td[6], kbps: td[7] };
  }, String(job.id)), 10000, 200);
  const durOk = !!row && (job.seconds == null ? /^[–—-]$/.test(row.dur)
    : row.dur !== '0.0 s' && Math.abs(cellSeconds(row.dur) - job.seconds) <= Math.max(0.06, job.seconds * 0.02));
  const kbpsOk = !!row && (job.kbps == null ? /^[–—-]$/.test(row.kbps) : row.kbps === String(Math.round(job.kbps)));
  ok(durOk && kbpsOk && row.firmware === PULL_FW, `the pull's row in the recent jobs shows its duration and kbit/s (${row ? `${row.dur}, ${row.kbps}` : 'no row'})`,
    JSON.stringify({ row, seconds: job.seconds, kbps: job.kbps }));
}

// ---- main ----------------------------------------------------------------------------

let mock = null;
let URL_ = opt('url', '');
function startMock(port = 0) {
  mock = spawn(process.execPath, [path.join(here, 'mock-server.mjs'), '--port', String(port), '--token', TOKEN], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    mock.stdout.on('data', (d) => { const m = /listening on (\S+)/.exec(String(d)); if (m) resolve(m[1]); });
    mock.on('exit', (c) => reject(new Error(`mock exited ${c}`)));
  });
}
if (MOCK) URL_ = await startMock();
if (!URL_) { console.error('--url or --mock is required'); process.exit(2); }
URL_ = URL_.replace(/\/$/, '');
log(`page ${URL_}/ screenshots in ${SHOTS}`);

const tmpDir = fs.mkdtempSync(path.join(process.env.TEST_TMPDIR || '/tmp', 'browser-fw-'));
const made = makeBadSets(tmpDir);
const sets = {
  overlap: opt('overlap-fw') ? path.resolve(opt('overlap-fw')) : made.overlap,
  wrong: opt('wrongchip-fw') ? path.resolve(opt('wrongchip-fw')) : made.wrong,
  good: opt('good-fw') ? path.resolve(opt('good-fw')) : made.good,
};
const { context, close } = await launch({ width: 1920, height: 1080 });
const errors = [];
let exitCode = 1;
try {
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(`console: ${m.text()}`); });

  // 1. Page loads and shows the slots.
  const resp = await page.goto(`${URL_}/`, { waitUntil: 'domcontentloaded' });
  ok(resp && resp.status() === 200, 'GET / answers 200', resp ? `status ${resp.status()}` : 'no response');
  const labels = await waitFor(async () => {
    const l = await page.$$eval('#slots .slot .label', (ns) => ns.map((x) => x.textContent.trim()));
    return SLOTS.every((s) => l.includes(s)) ? l : null;
  }, 20000);
  ok(!!labels, `slots ${SLOTS.join(', ')} are shown`, `page shows: ${await page.$$eval('#slots .slot .label', (ns) => ns.map((x) => x.textContent.trim()).join(', '))}`);
  const live = await waitFor(() => page.$eval('#live', (n) => n.dataset.state === 'live'), 15000);
  ok(!!live, 'the live indicator says "live" (event stream connected)');

  // 2. Progress advances live on the flashing slot (no reload in between).
  const navs = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navs.push(f.url()); });
  // Either we catch it writing, or it has already finished (then re-flash it).
  const ACTIVE = ['queued', 'connecting', 'identifying', 'flashing', 'verifying', 'resetting', 'boot_check'];
  const caught = await waitFor(async () => {
    const s = await slotInfo(page, FLASH_SLOT);
    if (s && s.tone === 'work' && s.total > 0 && s.done > 0 && s.done < s.total) return { s };
    if (s && !ACTIVE.includes(s.phase) && s.phase !== 'idle' && s.phase !== 'empty') return { done: s };
    return null;
  }, TMO, 50);
  let first = caught && caught.s;
  if (!first && !MOCK) {
    // It may have finished before the page was ready: flash it again through the API.
    log(`${FLASH_SLOT} not caught flashing (${JSON.stringify(await slotInfo(page, FLASH_SLOT))}); forcing a re-flash`);
    const r = await fetch(`${URL_}/api/v1/slots/${FLASH_SLOT}/reflash`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...(TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {}) }, body: '{"force":true}' });
    log(`reflash -> ${r.status}`);
    first = await waitFor(async () => {
      const s = await slotInfo(page, FLASH_SLOT);
      return s && s.tone === 'work' && s.total > 0 && s.done > 0 && s.done < s.total ? s : null;
    }, TMO, 50);
  }
  ok(!!first, `${FLASH_SLOT} shows a working progress bar`, JSON.stringify(await slotInfo(page, FLASH_SLOT)));
  if (first) {
    log(`${FLASH_SLOT} sample 1: ${first.done}/${first.total} (${first.value}%) "${first.bytes}"`);
    await page.screenshot({ path: path.join(SHOTS, 'station-flashing.png') });
    const second = await waitFor(async () => {
      const s = await slotInfo(page, FLASH_SLOT);
      return s && s.done > first.done ? s : null;
    }, 15000, 100);
    ok(!!second && second.value >= first.value, `${FLASH_SLOT} progress advanced live`, JSON.stringify(second || await slotInfo(page, FLASH_SLOT)));
    if (second) log(`${FLASH_SLOT} sample 2: ${second.done}/${second.total} (${second.value}%)`);
    ok(navs.length === 0, 'no page reload while sampling', navs.join(' '));
  }

  // 3. The faulty board's slot turns red with its reason and advice.
  const bad = await waitFor(async () => {
    const s = await slotInfo(page, FAIL_SLOT);
    return s && s.phase === 'failed' && s.reason ? s : null;
  }, TMO, 200);
  ok(!!bad, `${FAIL_SLOT} is shown as failed with a reason`, JSON.stringify(await slotInfo(page, FAIL_SLOT)));
  if (bad) {
    log(`${FAIL_SLOT}: ${bad.word} / ${bad.phaseText} / ${bad.reason} / ${bad.advice}`);
    ok(bad.tone === 'fail' && /rgb\(239, 68, 68\)/.test(bad.color), `${FAIL_SLOT} is red`, `tone ${bad.tone}, colour ${bad.color}`);
    ok(/failed/i.test(bad.word), `${FAIL_SLOT} says "failed" in words, not colour alone`, bad.word);
    ok(bad.advice.length > 0, `${FAIL_SLOT} says what to check`, JSON.stringify(bad));
  }
  await page.screenshot({ path: path.join(SHOTS, 'station-1080.png') });
  await page.screenshot({ path: path.join(SHOTS, 'station-full.png'), fullPage: true });

  // Job log of the failed slot's job, from the recent-jobs table.
  const failedRow = page.locator('#recent tbody tr', { has: page.locator('.pill.failed') }).first();
  if (await failedRow.count()) {
    const failedId = await failedRow.getAttribute('data-job');
    await failedRow.click();
    const gotLog = await waitFor(() => page.$eval('#detail-body', (n) => !!n.querySelector('.log') && n.closest('dialog').open).catch(() => false), 10000);
    ok(!!gotLog, 'a failed job opens its log with the error detail');
    if (gotLog) {
      const txt = await page.$eval('#detail-body', (n) => n.innerText);
      // The error box must show this job's stored error message and advice, word for word.
      const rec = await fetch(`${URL_}/api/v1/jobs/${encodeURIComponent(failedId)}`, { headers: TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {} })
        .then((x) => x.json()).catch((e) => ({ fetchError: String(e) }));
      const box = await page.$eval('#detail-body', (n) => {
        const b = n.querySelector('.error-box');
        return b ? { reason: (b.querySelector('.reason') || {}).innerText || '', advice: (b.querySelector('.advice') || {}).innerText || '' } : null;
      });
      const err = (rec && rec.error) || {};
      ok(rec && rec.state === 'failed' && !!err.message && !!err.advice, `job ${failedId} is failed with a message and advice in the API`, JSON.stringify(rec).slice(0, 300));
      ok(!!box && /^Failed( during \S+)?: /.test(box.reason) && box.reason.includes(err.message || '\u0000'),
        'the job view shows the error message', JSON.stringify({ box, message: err.message }));
      ok(!!box && !!err.advice && box.advice.trim() === err.advice.trim(), 'the job view shows the advice (what to check)', JSON.stringify({ box, advice: err.advice, txt: txt.slice(0, 200) }));
      await page.screenshot({ path: path.join(SHOTS, 'job-log.png') });
    }
    await page.keyboard.press('Escape');
  } else {
    ok(false, 'the recent-jobs table lists the failed job');
  }

  // Board detail (click a MAC on a slot).
  const macLink = page.locator(`#slots .slot:has(.label:text-is("${FLASH_SLOT}")) .mac a`);
  if (await macLink.count()) {
    await macLink.click();
    const hist = await waitFor(() => page.$eval('#detail-body', (n) => /history/i.test(n.innerText)).catch(() => false), 10000);
    ok(!!hist, 'clicking a MAC opens the board with its history');
    await page.screenshot({ path: path.join(SHOTS, 'board-detail.png') });
    await page.keyboard.press('Escape');
  }

  // Real station: a board flashed serially, then updated over the network.
  if (!MOCK && PULL_SLOT && PULL_FW && TOKEN) await realPull(page, navs);

  // Mock only: a job waiting for a person says what to do on its tile (the slot's notice).
  if (MOCK) {
    const wait = await waitFor(() => page.evaluate(() => {
      const n = [...document.querySelectorAll('#slots .slot')].find((x) => x.querySelector('.label').textContent.trim() === 'B1');
      const why = n && n.querySelector('.why');
      return why && !why.hidden ? why.querySelector('.reason').textContent.trim() : null;
    }), 10000);
    ok(!!wait && /hold BOOT, tap EN/.test(wait), 'a job waiting for the board to be put in its loader by hand says so on its tile', String(wait));
  }

  // Mock only: network OTA state on an online tile and in its board detail.
  if (MOCK) {
    const ota = await waitFor(() => page.evaluate(() => {
      const n = [...document.querySelectorAll('#slots .slot')].find((x) => x.querySelector('.label').textContent.trim() === 'A4');
      const o = n && n.querySelector('.ota');
      return o && !o.hidden && /update pending/.test(o.innerText) ? o.innerText.replace(/\s+/g, ' ') : null;
    }), 10000);
    ok(!!ota && /127\.0\.0\.42/.test(ota) && /1\.0/.test(ota) && /relay@1\.1/.test(ota), 'an online tile shows IP, running version and "update pending → target"', String(ota));
    const upToDate = await waitFor(() => page.evaluate(() => [...document.querySelectorAll('#slots .slot[data-phase="awaiting_network"] .ota, #slots .slot[data-phase="online"] .ota')]
      .every((o) => o.hidden || !/undefined|null|NaN/.test(o.innerText))), 5000);
    ok(!!upToDate, 'OTA lines on tiles have no undefined/null values');
    await page.locator('#slots .slot:has(.label:text-is("A4")) .mac a').click();
    const det = await waitFor(() => page.$eval('#detail-body', (n) => (n.closest('dialog').open && /Network OTA/i.test(n.innerText) && /history/i.test(n.innerText) ? n.innerText : null)).catch(() => null), 10000);
    ok(!!det && /127\.0\.0\.42/.test(det) && /Running version\s+1\.0/.test(det), 'the board detail shows the IP and running version', String(det).slice(0, 400));
    ok(!!det && /relay@1\.1/.test(det) && /pinned/.test(det) && /Last check-in/.test(det) && /Free space/.test(det) && /SDK\s+2\.2\.2/.test(det),
      'the board detail shows the OTA record (target pinned, free space, SDK, last check-in)', String(det).slice(0, 600));
    await page.screenshot({ path: path.join(SHOTS, 'board-ota.png') });
    await page.keyboard.press('Escape');
  }

  // 4. Bad firmware: overlapping regions (upload) and a wrong-chip image (validate).
  if (TOKEN) {
    await page.click('#settings-btn');
    await page.fill('#token-input', TOKEN);
    await page.click('#token-save');
  }

  // Board detail: edit the board's groups and notes (real station: PUT /boards/{mac}).
  if (!MOCK && TOKEN) {
    const link = page.locator(`#slots .slot:has(.label:text-is("${FLASH_SLOT}")) .mac a`);
    const mac = (await link.count()) ? await link.getAttribute('data-mac') : null;
    ok(!!mac, `slot ${FLASH_SLOT} links its board (for editing groups)`);
    if (mac) {
      await link.click();
      await page.waitForSelector('#detail-body .board-edit-form');
      await page.fill('#board-groups', 'line-a bad/name');
      await page.click('.board-edit-form button[type="submit"]');
      const bad = await waitFor(() => page.$eval('.board-edit-form .form-msg.error', (n) => n.innerText || null).catch(() => null), 5000);
      ok(!!bad && /bad\/name/.test(bad), 'a bad group name is refused in the form, naming it', String(bad));
      await page.fill('#board-groups', 'line-a, batch-42');
      await page.fill('#board-notes', 'bench 3');
      await page.click('.board-edit-form button[type="submit"]');
      const shown = await waitFor(() => page.$eval('#detail-body .board-edit .groups', (n) => n.innerText.replace(/\s+/g, ' ').trim())
        .catch(() => null).then((t) => (t && /batch-42/.test(t) && /line-a/.test(t) ? t : null)), 10000);
      ok(!!shown, 'saving shows the new groups in the board detail', String(shown));
      const stored = await fetch(`${URL_}/api/v1/boards?group=batch-42`, { headers: { Authorization: `Bearer ${TOKEN}` } }).then((x) => x.json());
      const sb = (stored.boards || [])[0] || {};
      ok((stored.boards || []).length === 1 && sb.mac === mac && sb.notes === 'bench 3' && JSON.stringify(sb.groups) === '["batch-42","line-a"]',
        'the station stored the groups and notes (GET /boards?group=batch-42)', JSON.stringify(stored));
      await page.screenshot({ path: path.join(SHOTS, 'board-edit.png') });
      await page.keyboard.press('Escape');
    }
  }
  await page.click('.tabs a[data-view="firmware"]');
  await page.waitForSelector('#view-firmware:not([hidden])');
  await page.setInputFiles('#fw-manifest', path.join(sets.overlap, 'manifest.json'));
  await page.setInputFiles('#fw-files', [path.join(sets.overlap, 'part.bin'), path.join(sets.overlap, 'app.bin')]);
  await page.click('#fw-submit');
  const ov = await waitFor(() => page.$$eval('#fw-result .vmsg.error[data-region]', (ns) => ns.filter((x) => x.dataset.region).map((x) => x.innerText)).then((a) => (a.length ? a : null)), 15000);
  ok(!!ov, 'uploading overlapping regions shows a validation error per region', await page.$eval('#fw-result', (n) => n.innerText).catch(() => ''));
  if (ov) {
    log(`overlap: ${ov.join(' | ')}`);
    ok(ov.some((t) => /region 1/.test(t) && /app\.bin|part\.bin/.test(t) && /overlap/i.test(t)), 'the error names the region and says "overlap"', ov.join(' | '));
  }
  await page.screenshot({ path: path.join(SHOTS, 'firmware-overlap.png') });
  await page.setInputFiles('#fw-manifest', path.join(sets.wrong, 'manifest.json'));
  await page.setInputFiles('#fw-files', [path.join(sets.wrong, 'app.bin')]);
  await page.click('#fw-validate');
  const wc = await waitFor(() => page.$$eval('#fw-result .vmsg.error[data-region]', (ns) => ns.filter((x) => x.dataset.region && /app\.bin/.test(x.innerText)).map((x) => x.innerText)).then((a) => (a.length ? a : null)), 15000);
  ok(!!wc && wc.some((t) => /region 0/.test(t) && /ESP32-C3|chip/i.test(t)), 'validating a wrong-chip image names region 0 and the chip', wc ? wc.join(' | ') : await page.$eval('#fw-result', (n) => n.innerText).catch(() => ''));
  if (wc) log(`wrong chip: ${wc.join(' | ')}`);
  const catalogNames = await page.$$eval('#fw-list .fw', (ns) => ns.map((x) => x.dataset.fw));
  ok(!catalogNames.some((x) => /^(overlap|wrongchip)@/.test(x)), 'the bad sets did not enter the catalog', catalogNames.join(', '));
  await page.screenshot({ path: path.join(SHOTS, 'firmware.png'), fullPage: true });
  // A good set is imported and appears in the catalog.
  const goodName = JSON.parse(fs.readFileSync(path.join(sets.good, 'manifest.json'), 'utf8'));
  await page.setInputFiles('#fw-manifest', path.join(sets.good, 'manifest.json'));
  await page.setInputFiles('#fw-files', [path.join(sets.good, 'app.bin')]);
  await page.click('#fw-submit');
  const imported = await waitFor(() => page.$$eval('#fw-list .fw', (ns, want) => ns.some((x) => x.dataset.fw === want), `${goodName.name}@${goodName.version}`), 15000);
  ok(!!imported && await page.$eval('#fw-result', (n) => /imported/i.test(n.innerText)), `a valid set uploads and appears in the catalog (${goodName.name}@${goodName.version})`,
    await page.$eval('#fw-result', (n) => n.innerText).catch(() => ''));
  await page.screenshot({ path: path.join(SHOTS, 'firmware-imported.png') });
  // The same set as one .tar through the bundle input (manifest and file inputs cleared).
  const bundleMan = { ...goodName, version: `${goodName.version}-tar` };
  const tarPath = path.join(tmpDir, 'fw-bundle.tar');
  fs.writeFileSync(tarPath, tarBundle([['manifest.json', Buffer.from(JSON.stringify(bundleMan))],
    ['app.bin', fs.readFileSync(path.join(sets.good, 'app.bin'))]]));
  await page.setInputFiles('#fw-manifest', []);
  await page.setInputFiles('#fw-files', []);
  await page.setInputFiles('#fw-bundle', tarPath);
  await page.click('#fw-submit');
  const bundled = await waitFor(() => page.$$eval('#fw-list .fw', (ns, want) => ns.some((x) => x.dataset.fw === want), `${bundleMan.name}@${bundleMan.version}`), 15000);
  ok(!!bundled && await page.$eval('#fw-result', (n) => /imported/i.test(n.innerText)), `a .tar bundle uploads through the bundle input and appears in the catalog (${bundleMan.name}@${bundleMan.version})`,
    await page.$eval('#fw-result', (n) => n.innerText).catch(() => ''));
  await page.setInputFiles('#fw-bundle', []);

  // The Bulk tab: opens on the real station too (where OTA may be off: a note).
  await page.click('.tabs a[data-view="bulk"]');
  await page.waitForSelector('#view-bulk:not([hidden])');
  const bulkShown = await waitFor(() => page.$eval('#bulk-list', (n) => n.children.length > 0), 10000);
  ok(!!bulkShown, 'the Bulk tab shows the bulk updates (or says why there are none)', await page.$eval('#bulk-list', (n) => n.innerText).catch(() => ''));
  if (MOCK) {
    const counts = (id) => page.evaluate((id) => {
      const c = document.querySelector(`#bulk-list .bulk[data-bulk="${id}"]`);
      if (!c) return null;
      const o = { state: c.dataset.state, text: c.innerText.replace(/\s+/g, ' ') };
      for (const x of c.querySelectorAll('[data-count]')) o[x.dataset.count] = Number(x.dataset.value);
      const bar = c.querySelector('.bulkbar');
      o.barDone = Number(bar.dataset.done); o.barTotal = Number(bar.dataset.total);
      return o;
    }, id);
    const b1 = await waitFor(() => counts(1), 10000);
    ok(!!b1 && b1.state === 'stopped' && b1.passed === 8 && b1.failed === 5 && b1.skipped === 2 && b1.pending === 5 && b1.total === 20,
      'bulk #1 is listed as stopped with 8 done / 5 failed / 2 skipped / 5 pending', JSON.stringify(b1));
    ok(!!b1 && /8 done/.test(b1.text) && /5 failed/.test(b1.text) && /sensor-node@2\.5\.0/.test(b1.text) && b1.barDone === 15 && b1.barTotal === 20,
      'bulk #1 shows its firmware, counts in words and a progress bar', JSON.stringify(b1));
    await page.click('#bulk-list .bulk[data-bulk="1"]');
    const det1 = await waitFor(() => page.evaluate(() => {
      const d = document.querySelector('#bulk-detail');
      if (d.dataset.bulk !== '1') return null;
      const rows = [...d.querySelectorAll('tbody tr[data-mac]')];
      return { rows: rows.length, failed: rows.filter((r) => r.dataset.state === 'failed').length, text: d.innerText };
    }), 10000);
    ok(!!det1 && det1.rows === 20 && det1.failed === 5 && /no answer from/.test(det1.text) && /max_failure_rate|failed/.test(det1.text),
      'the bulk detail lists every board with its result and error', JSON.stringify(det1 && { ...det1, text: det1.text.slice(0, 300) }));
    await page.click('#bulk-list .bulk[data-bulk="2"]');
    const b2a = await waitFor(() => counts(2), 10000);
    const navs2 = navs.length;
    const b2b = b2a && await waitFor(async () => {
      const c = await counts(2);
      return c && c.passed + c.failed > b2a.passed + b2a.failed ? c : null;
    }, 15000, 200);
    ok(!!b2b && b2b.state === 'running' && navs.length === navs2, 'the running bulk #2 advances live (bulk.board events)', JSON.stringify({ b2a, b2b }));
    const det2 = await waitFor(() => page.$eval('#bulk-detail', (d) => d.dataset.bulk === '2' && /passed/.test(d.innerText)), 10000);
    ok(!!det2, 'the running bulk\'s detail shows per-board results');
    await page.screenshot({ path: path.join(SHOTS, 'bulk.png') });
    page.once('dialog', (d) => d.accept());
    await page.click('#bulk-detail button.danger');
    // the state word and the detail view (button removed) update separately: wait for both
    const cancelled = await waitFor(async () => {
      const c = await counts(2);
      return c && c.state === 'cancelled' && !(await page.$('#bulk-detail button.danger')) ? c : null;
    }, 10000);
    ok(!!cancelled, 'Cancel bulk (with the token) cancels it and the button goes away', JSON.stringify(await counts(2)));
    await page.screenshot({ path: path.join(SHOTS, 'bulk-cancelled.png') });
  } else if (BULK_MACS.length) {
    await realBulk(page, navs);
  } else {
    await page.screenshot({ path: path.join(SHOTS, 'bulk.png') });
  }

  // Phone-sized view of the station.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.click('.tabs a[data-view="station"]');
  await sleep(500);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  ok(overflow <= 1, 'no horizontal scrolling on a phone-sized screen', `overflow ${overflow}px`);
  await page.screenshot({ path: path.join(SHOTS, 'phone.png'), fullPage: false });

  // Mock only (we own the server): the stream drops, the page says so and comes back by itself.
  if (MOCK) {
    const port = new URL(URL_).port;
    const old = mock;
    await new Promise((r) => { old.once('exit', r); old.kill('SIGTERM'); });
    const down = await waitFor(() => page.$eval('#live', (n) => n.dataset.state === 'reconnecting' && n.innerText.includes('reconnecting')), 10000);
    ok(!!down, 'when the station goes away the page says "reconnecting…"');
    await page.screenshot({ path: path.join(SHOTS, 'phone-reconnecting.png') });
    await startMock(port);
    const back = await waitFor(() => page.$eval('#live', (n) => n.dataset.state === 'live'), 20000);
    ok(!!back, 'the page reconnects by itself when the station is back');
  }

  ok(errors.length === 0, 'no script errors on the page', errors.join('\n#   '));
  exitCode = failed ? 1 : 0;
} catch (err) {
  failed++;
  console.log(`not ok ${++n} - unexpected error: ${err.stack || err}`);
  try { await context.pages()[0].screenshot({ path: path.join(SHOTS, 'error.png') }); } catch { /* no page */ }
} finally {
  await close();
  if (mock) mock.kill('SIGTERM');
  fs.rmSync(tmpDir, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : exitCode);
