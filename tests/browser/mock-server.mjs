// mock-server.mjs: a throwaway stand-in for espstationd's HTTP side, following
// docs/API.md, for developing the status page and for a fast UI test without
// the daemon. Serves web/static at /, fake JSON under /api/v1 and a live SSE
// stream with simulated boards.
//
//   node mock-server.mjs [--port 0] [--port-file FILE] [--static DIR] [--token T] [--speed F] [--slots N]
//
// Prints "mock listening on http://127.0.0.1:PORT" when ready. Stops on SIGTERM/SIGINT.
// It simulates eight slots in every state the page knows (flashing, failed with
// advice, flagged, awaiting network, online, skipped, empty, queued) and loops the
// flashing one so progress keeps moving. Boards carry network-OTA state
// (GET /boards/{mac}/ota, the "ota" member of GET /boards/{mac}), and there are
// two bulk updates: #1 stopped (8 done, 5 failed, 2 skipped, 5 pending) and #2
// running, finishing one board every --bulk-ms (2500) ms with bulk.* events.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, arr) => {
  if (v.startsWith('--')) a.push([v.slice(2), arr[i + 1] && !arr[i + 1].startsWith('--') ? arr[i + 1] : 'true']);
  return a;
}, []));
const STATIC = path.resolve(args.static || path.join(here, '../../web/static'));
const TOKEN = args.token || 'mock-token';
const SPEED = Number(args.speed || 1);

const iso = (ms = Date.now()) => new Date(ms).toISOString();
const T0 = Date.now();

// ---- model -------------------------------------------------------------------------

let nextJob = 100;
let nextEvent = 1;
const events = [];
const jobs = [];
const boards = new Map();
const firmware = new Map();
const otas = new Map(); // mac -> OTA record (docs/API.md "Network OTA")

function setOta(mac, extra = {}) {
  otas.set(mac, {
    free_space: 1310720, sketch_size: 917504, sketch_md5: '0123456789abcdef0123456789abcdef', chip_size: 4194304,
    sdk_version: '4.4.7', last_checkin: iso(Date.now() - 45e3), checkins: 12, served_version: null, served_at: null,
    problem: null, target: null, target_pinned: false, on_target: false, ...extra,
  });
}

function addBoard(mac, chip, extra = {}) {
  boards.set(mac, {
    mac, chip, revision: chip === 'ESP8266' ? null : 300, flash_id: 1458400, flash_size: 4194304, crystal_mhz: 40,
    first_seen: iso(T0 - 3600e3), last_seen: iso(), slot: null, present_on: null,
    current_firmware: null, current_md5: null, ip: null, running_version: null, target_firmware: null,
    online_state: null, notes: null, ...extra,
  });
}

function region(offset, file, kind, size) {
  return { offset, file, kind, size, sha256: 'a3f1'.padEnd(64, '9c'), md5: 'd41d8cd98f00b204e9800998ecf8427e' };
}
firmware.set('sensor-node@2.4.1', { name: 'sensor-node', version: '2.4.1', chip: 'ESP32', description: 'Line 1 production image',
  regions: [region(0x1000, 'bootloader.bin', 'bootloader', 24336), region(0x8000, 'partitions.bin', 'partition-table', 3072), region(0x10000, 'app.bin', 'app', 917504)] });
firmware.set('relay@1.0', { name: 'relay', version: '1.0', chip: 'ESP8266', description: null,
  regions: [region(0, 'app.bin', 'app', 393216)] });
firmware.set('c3-beacon@0.9.2', { name: 'c3-beacon', version: '0.9.2', chip: 'ESP32-C3', description: null,
  regions: [region(0, 'bootloader.bin', 'bootloader', 20000), region(0x10000, 'app.bin', 'app', 655360)] });
for (const f of firmware.values()) f.total_bytes = f.regions.reduce((a, r) => a + r.size, 0);

function newJob(slot, mac, fw, state, extra = {}) {
  const j = {
    id: nextJob++, kind: 'flash', board: mac, slot, firmware: fw, state, stage: null,
    started_at: iso(), ended_at: null, progress: null, bytes: null, wire_bytes: null, kbps: null,
    seconds: null, retries: 0, result_code: null, error: null, log: [], ...extra,
  };
  jobs.unshift(j);
  return j;
}

function jlog(j, line, level = 'info') { j.log.push({ ts: iso(), level, line }); }

const ADVICE_WRITE = 'the board\'s flash chip failed to program at this address: try another board; if several fail in this slot, check the flash voltage (3.3 V rail) and the socket';

// Past jobs for the records table (times spread over the day).
const pastMacs = [];
for (let i = 0; i < 26; i++) {
  const mac = `24:6f:28:${(0x10 + i).toString(16)}:${(0x40 + i * 3).toString(16)}:${(0x80 + i * 5).toString(16).slice(-2)}`;
  pastMacs.push(mac);
  addBoard(mac, i % 5 === 4 ? 'ESP8266' : 'ESP32', { current_firmware: i % 5 === 4 ? 'relay@1.0' : 'sensor-node@2.4.1', slot: `A${(i % 8) + 1}`, online_state: 'online', ip: `127.0.0.${20 + i}`, running_version: i % 5 === 4 ? '1.0' : '2.4.1' });
  setOta(mac, i % 5 === 4 ? { target: 'relay@1.0', on_target: true, sdk_version: '2.2.2-dev(38a443e)', chip_size: 4194304 } : { target: 'sensor-node@2.4.1', on_target: true });
  const failed = i === 7 || i === 15 || i === 22;
  const start = T0 - (26 - i) * 140e3;
  const secs = 11 + (i * 7) % 6 + (i % 3) * 0.4;
  const j = newJob(`A${(i % 8) + 1}`, mac, i % 5 === 4 ? 'relay@1.0' : 'sensor-node@2.4.1', failed ? 'failed' : 'passed', {
    started_at: iso(start), ended_at: iso(start + secs * 1000), seconds: secs, bytes: 945000, wire_bytes: 610000,
    kbps: failed ? null : 640 + (i * 37) % 260, stage: failed ? 'sync' : 'done', result_code: failed ? -110 : 0,
    error: failed ? { stage: 'sync', message: 'no reply to SYNC after 7 attempts', advice: 'check the cable / auto-reset circuit; hold BOOT while plugging in', device_status: null, device_error: null, op: 8, address: null } : null,
  });
  jlog(j, 'open /dev/ttyUSB3 at 115200');
  jlog(j, failed ? 'no reply to SYNC after 7 attempts' : 'sync ok after 1 try', failed ? 'error' : 'info');
}

function slotObj(index, label, extra = {}) {
  return {
    index, id: label, key: `pci-0000:00:14.0-usb-0:${index + 1}:1.0`, label, uri: `/dev/ttyUSB${index}`,
    present: true, manual: false, usb_jtag: false, phase: 'idle', busy: false, stage: null, progress: null,
    mac: null, chip: null, firmware: null, job_id: null, job_kind: null, elapsed_ms: null, error: null,
    failures: 0, flagged: false, attempt: 0, ...extra,
  };
}

const slots = [
  slotObj(0, 'A1'), slotObj(1, 'A2'), slotObj(2, 'A3'), slotObj(3, 'A4'),
  slotObj(4, 'A5'), slotObj(5, 'A6'), slotObj(6, 'A7'), slotObj(7, 'A8'),
];

function setupStatic() {
  // A2: failed at write with advice.
  addBoard('24:6f:28:7a:d8:91', 'ESP32');
  const j2 = newJob('A2', '24:6f:28:7a:d8:91', 'sensor-node@2.4.1', 'failed', {
    stage: 'write', seconds: 6.8, ended_at: iso(), bytes: 196608, result_code: -5,
    error: { stage: 'write', message: 'flash write failed at 0x030000 (stub status 0xC4)', advice: ADVICE_WRITE, device_status: 0xc4, device_error: 0, op: 0x11, address: 0x30000 },
  });
  jlog(j2, 'sync ok after 1 try'); jlog(j2, 'stub running, baud 921600'); jlog(j2, 'write 0x10000: 917504 bytes (deflated 601203)');
  jlog(j2, 'flash write failed at 0x030000 (stub status 0xC4)', 'error');
  Object.assign(slots[1], { phase: 'failed', stage: 'write', mac: j2.board, chip: 'ESP32', firmware: j2.firmware, job_id: j2.id, job_kind: 'flash',
    progress: { done: 196608, total: 917504, percent: 21.4, kbps: 702.1 }, failures: 1,
    error: { stage: 'write', message: j2.error.message, advice: ADVICE_WRITE, device_status: 0xc4, device_error: 0 } });
  // A3: awaiting network.
  addBoard('24:6f:28:7a:d8:92', 'ESP32', { online_state: 'awaiting_network', current_firmware: 'sensor-node@2.4.1', slot: 'A3', present_on: 'A3' });
  const j3 = newJob('A3', '24:6f:28:7a:d8:92', 'sensor-node@2.4.1', 'passed', { stage: 'done', seconds: 12.4, ended_at: iso(), bytes: 944912, kbps: 812.3 });
  Object.assign(slots[2], { phase: 'awaiting_network', mac: j3.board, chip: 'ESP32', firmware: j3.firmware, job_id: j3.id, job_kind: 'flash', progress: { done: 944912, total: 944912, percent: 100, kbps: 812.3 } });
  // A4: online.
  addBoard('18:fe:34:a1:b2:c3', 'ESP8266', { online_state: 'online', current_firmware: 'relay@1.0', ip: '127.0.0.42', running_version: '1.0', target_firmware: 'relay@1.1', slot: 'A4', present_on: 'A4' });
  setOta('18:fe:34:a1:b2:c3', { free_space: 2654208, sketch_size: 393216, chip_size: 4194304, sdk_version: '2.2.2-dev(38a443e)', checkins: 3,
    last_checkin: iso(Date.now() - 20e3), served_version: '1.0', served_at: iso(Date.now() - 600e3), target: 'relay@1.1', target_pinned: true, on_target: false });
  const j4 = newJob('A4', '18:fe:34:a1:b2:c3', 'relay@1.0', 'passed', { stage: 'done', seconds: 9.1, ended_at: iso(), bytes: 393216, kbps: 455.0 });
  Object.assign(slots[3], { phase: 'online', mac: j4.board, chip: 'ESP8266', firmware: 'relay@1.0', job_id: j4.id, job_kind: 'flash', ip: '127.0.0.42', running_version: '1.0' });
  // A5: empty.
  Object.assign(slots[4], { present: false, phase: 'empty', uri: '/dev/ttyUSB4' });
  // A6: skipped, already carries the image.
  addBoard('58:cf:79:0a:3c:5e', 'ESP32-C3', { current_firmware: 'c3-beacon@0.9.2', slot: 'A6', present_on: 'A6', online_state: 'awaiting_network' });
  const j6 = newJob('A6', '58:cf:79:0a:3c:5e', 'c3-beacon@0.9.2', 'skipped', { stage: 'compare', seconds: 2.1, ended_at: iso(), error: { stage: 'compare', message: 'already carries c3-beacon@0.9.2 (flash MD5 matches)', advice: null } });
  Object.assign(slots[5], { phase: 'skipped', mac: j6.board, chip: 'ESP32-C3', firmware: j6.firmware, job_id: j6.id, job_kind: 'flash', error: null });
  // A7: flagged after three failures.
  addBoard('24:6f:28:7a:d8:97', 'ESP32');
  const j7 = newJob('A7', '24:6f:28:7a:d8:97', null, 'failed', { stage: 'sync', seconds: 21.0, ended_at: iso(), retries: 2,
    error: { stage: 'sync', message: 'no reply to SYNC after 7 attempts', advice: 'check the cable / auto-reset circuit; hold BOOT while plugging in', device_status: null, device_error: null, op: 8, address: null } });
  Object.assign(slots[6], { phase: 'failed', stage: 'sync', mac: null, chip: null, job_id: j7.id, job_kind: 'flash', failures: 3, flagged: true,
    error: { message: 'no reply to SYNC after 7 attempts', advice: 'check the cable / auto-reset circuit; hold BOOT while plugging in', device_status: null, device_error: null } });
  // A8: queued.
  Object.assign(slots[7], { phase: 'queued', busy: true, mac: null });
  // B1: a job that waits for the board to be put in its loader by hand (a set that asks not to
  // be reset, "before": "no-reset"): the slot's notice.
  const j9 = newJob('B1', null, 'nr@1', 'running', { stage: 'sync' });
  slots.push(slotObj(8, 'B1', { phase: 'connecting', busy: true, stage: 'sync', firmware: 'nr@1', job_id: j9.id, job_kind: 'flash',
    notice: 'waiting for the board to be put in its loader by hand (hold BOOT, tap EN): nr@1 asks not to be reset (before no-reset)' }));
}
setupStatic();
// --slots N (> 8): more slots, idle or passed, for layout checks of big stations.
for (let i = 8; i < Number(args.slots || 8); i++) {
  const label = `${String.fromCharCode(65 + Math.floor(i / 8))}${(i % 8) + 1}`;
  slots.push(slotObj(i, label, i % 3 ? { phase: 'awaiting_network', mac: `24:6f:28:99:00:${i.toString(16).padStart(2, '0')}`, chip: 'ESP32', firmware: 'sensor-node@2.4.1' } : {}));
}

// A1 flashes in a loop: connect, identify, write (1.2 MB), verify, reset, awaiting network, again.
const A1 = slots[0];
let a1 = null;
function a1Start() {
  const mac = `24:6f:28:7b:${(a1 ? a1.n + 1 : 0).toString(16).padStart(2, '0')}:01`;
  addBoard(mac, 'ESP32');
  const j = newJob('A1', null, null, 'running', { stage: 'open' });
  a1 = { n: a1 ? a1.n + 1 : 0, job: j, mac, t: Date.now(), total: 1245184 };
  Object.assign(A1, { phase: 'connecting', busy: true, stage: 'sync', mac: null, chip: null, firmware: null, job_id: j.id, job_kind: 'flash', progress: null, error: null, elapsed_ms: 0 });
  emit('job.started', 'A1', null, j.id, { uri: A1.uri, attempt: 0, kind: 'flash' });
  slotProgress(A1);
}
function a1Tick() {
  if (!a1) return;
  const el = (Date.now() - a1.t) * SPEED;
  const j = a1.job;
  A1.elapsed_ms = Date.now() - a1.t;
  const writeStart = 1500, writeLen = 14000;
  if (el < 700) return;
  if (el < writeStart && A1.phase === 'connecting') {
    Object.assign(A1, { phase: 'identifying', stage: 'identify', mac: a1.mac, chip: 'ESP32' });
    j.board = a1.mac;
    emit('board.identified', 'A1', a1.mac, j.id, { chip: 'ESP32', revision: 300 });
    slotProgress(A1);
    return;
  }
  if (el >= writeStart && el < writeStart + writeLen) {
    const frac = (el - writeStart) / writeLen;
    const done = Math.min(a1.total, Math.floor(a1.total * frac / 4096) * 4096);
    const kbps = 780 + 60 * Math.sin(el / 900);
    if (A1.phase !== 'flashing') {
      Object.assign(A1, { phase: 'flashing', stage: 'write', firmware: 'sensor-node@2.4.1' });
      j.firmware = 'sensor-node@2.4.1'; j.stage = 'write';
      emit('job.progress', 'A1', a1.mac, j.id, { phase: 'flashing', stage: 'write' });
    }
    A1.progress = { done, total: a1.total, percent: Math.round(1000 * done / a1.total) / 10, kbps: Math.round(kbps * 10) / 10 };
    j.progress = A1.progress; j.bytes = done;
    slotProgress(A1);
    return;
  }
  if (el >= writeStart + writeLen && el < writeStart + writeLen + 1200) {
    if (A1.phase !== 'verifying') {
      A1.progress = { done: a1.total, total: a1.total, percent: 100, kbps: 801.2 };
      Object.assign(A1, { phase: 'verifying', stage: 'verify' });
      emit('job.progress', 'A1', a1.mac, j.id, { phase: 'verifying', stage: 'verify' });
      slotProgress(A1);
    }
    return;
  }
  if (el >= writeStart + writeLen + 1200 && A1.phase === 'verifying') {
    Object.assign(A1, { phase: 'awaiting_network', stage: 'done', busy: false, elapsed_ms: null });
    Object.assign(j, { state: 'passed', stage: 'done', ended_at: iso(), seconds: el / 1000 / SPEED, kbps: 801.2, bytes: a1.total, progress: null, result_code: 0 });
    const b = boards.get(a1.mac);
    Object.assign(b, { current_firmware: 'sensor-node@2.4.1', slot: 'A1', present_on: 'A1', online_state: 'awaiting_network' });
    emit('job.finished', 'A1', a1.mac, j.id, { state: 'passed', kind: 'flash', firmware: j.firmware, bytes: a1.total, seconds: j.seconds });
    slotProgress(A1);
    return;
  }
  if (el >= writeStart + writeLen + 5000) a1Start();
}

// ---- bulk updates --------------------------------------------------------------------

const BULK_MS = Number(args['bulk-ms'] || 2500) / SPEED;
const bulks = [];
function bulkCounts(b) {
  const c = { total: b.boards.length, pending: 0, running: 0, passed: 0, failed: 0, skipped: 0 };
  for (const x of b.boards) c[x.state]++;
  return c;
}
function bulkView(b, withBoards) {
  const { boards: bb, ...rest } = b;
  return { ...rest, counts: bulkCounts(b), ...(withBoards ? { boards: bb } : {}) };
}
function bulkMacs(prefix, n) {
  return Array.from({ length: n }, (_, i) => `${prefix}:${(i + 1).toString(16).padStart(2, '0')}`);
}
// #1: stopped by its failure rate.
{
  const b = { id: 1, state: 'stopped', firmware: 'sensor-node@2.5.0', method: 'espota', concurrency: 4, retries: 0, max_failure_rate: 0.2,
    created: iso(T0 - 1800e3), reason: 'stopped: 5 of 20 boards failed, more than the allowed 20 % (max_failure_rate 0.2)', boards: [] };
  const states = [...Array(8).fill('passed'), ...Array(5).fill('failed'), ...Array(2).fill('skipped'), ...Array(5).fill('pending')];
  bulkMacs('24:6f:28:b1:00', 20).forEach((mac, i) => {
    addBoard(mac, 'ESP32', { online_state: 'online', ip: `127.0.1.${i + 1}`, running_version: states[i] === 'passed' || states[i] === 'skipped' ? '2.5.0' : '2.4.1' });
    b.boards.push({ mac, state: states[i], attempts: states[i] === 'pending' || states[i] === 'skipped' ? 0 : 1, job_id: states[i] === 'pending' || states[i] === 'skipped' ? null : 40 + i,
      error: states[i] === 'failed' ? `no answer from 127.0.1.${i + 1}:3232: is the board on the network and running ArduinoOTA?` : null });
  });
  bulks.push(b);
}
// #2: running, one board finishes every BULK_MS.
{
  const b = { id: 2, state: 'running', firmware: 'relay@1.1', method: 'pull', concurrency: 2, retries: 1, max_failure_rate: 0.5,
    created: iso(), reason: null, boards: [] };
  bulkMacs('84:cc:a8:20:00', 24).forEach((mac, i) => {
    addBoard(mac, 'ESP8266', { online_state: 'online', ip: `127.0.2.${i + 1}`, running_version: '1.0', target_firmware: 'relay@1.1' });
    setOta(mac, { target: 'relay@1.1', target_pinned: true, on_target: false, sdk_version: '2.2.2-dev(38a443e)' });
    b.boards.push({ mac, state: i < 2 ? 'running' : 'pending', attempts: i < 2 ? 1 : 0, job_id: null, error: null });
  });
  bulks.push(b);
}
function bulkTick() {
  for (const b of bulks) {
    if (b.state !== 'running') continue;
    const run = b.boards.find((x) => x.state === 'running');
    if (run) {
      const n = b.boards.indexOf(run);
      const fail = n % 7 === 5;
      Object.assign(run, fail
        ? { state: 'failed', error: 'the board did not check in with relay@1.1 within 300 s (it still reports 1.0)' }
        : { state: 'passed' });
      if (!fail) {
        Object.assign(boards.get(run.mac), { running_version: '1.1', current_firmware: 'relay@1.1' });
        Object.assign(otas.get(run.mac), { on_target: true, served_version: '1.1', served_at: iso(), last_checkin: iso() });
      }
      emit('bulk.board', null, run.mac, null, { bulk_id: b.id, state: run.state, attempts: run.attempts, error: run.error });
      const next = b.boards.find((x) => x.state === 'pending');
      if (next) Object.assign(next, { state: 'running', attempts: 1 });
    }
    if (!b.boards.some((x) => x.state === 'running' || x.state === 'pending')) {
      const c = bulkCounts(b);
      b.state = c.failed ? 'failed' : 'passed';
      emit('bulk.finished', null, null, null, { bulk_id: b.id, state: b.state, counts: c });
    }
  }
}

// ---- SSE ---------------------------------------------------------------------------

const clients = new Set();
function send(res, text) { try { res.write(text); } catch { /* gone */ } }
function emit(kind, slot, board, job, data) {
  const ev = { id: nextEvent++, ts: iso(), kind, slot, board, job, data };
  events.push(ev);
  for (const c of clients) send(c, `id: ${ev.id}\nevent: ${kind}\ndata: ${JSON.stringify(ev)}\n\n`);
}
function slotProgress(s) {
  for (const c of clients) send(c, `event: slot.progress\ndata: ${JSON.stringify(s)}\n\n`);
}

// ---- HTTP --------------------------------------------------------------------------

function json(res, status, obj, headers = {}) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}
function error(res, status, code, message, extra = {}) {
  json(res, status, { error: { code, message, ...extra } });
}
function authed(req) {
  return (req.headers.authorization || '') === `Bearer ${TOKEN}`;
}
function readBody(req, limit = 64 << 20) {
  return new Promise((resolve, reject) => {
    const chunks = []; let n = 0;
    req.on('data', (c) => { n += c.length; if (n > limit) { reject(new Error('too large')); req.destroy(); } else chunks.push(c); });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// Minimal multipart/form-data parser: [{name, filename, data}].
// A plain ustar bundle (the real station also reads tar.gz and zip) as upload parts.
function parseTar(buf) {
  const parts = [];
  for (let pos = 0; pos + 512 <= buf.length;) {
    const h = buf.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.subarray(0, 100).toString().replace(/\0[^]*$/, '').replace(/^(\.\/)+/, '');
    const size = parseInt(h.subarray(124, 136).toString().replace(/\0[^]*$/, '').trim() || '0', 8);
    const data = buf.subarray(pos + 512, pos + 512 + size);
    if (h[156] === 0x30 || h[156] === 0) parts.push(name === 'manifest.json' ? { name: 'manifest', filename: name, data } : { name, filename: name, data });
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return parts;
}

function parseMultipart(buf, ctype) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(ctype || '');
  if (!m) return null;
  const boundary = Buffer.from(`--${m[1] || m[2]}`);
  const parts = [];
  let pos = buf.indexOf(boundary);
  while (pos >= 0) {
    pos += boundary.length;
    if (buf.slice(pos, pos + 2).toString() === '--') break;
    pos += 2; // CRLF
    const hend = buf.indexOf('\r\n\r\n', pos);
    if (hend < 0) break;
    const head = buf.slice(pos, hend).toString();
    const next = buf.indexOf(boundary, hend + 4);
    if (next < 0) break;
    const data = buf.slice(hend + 4, next - 2);
    const name = /name="([^"]*)"/i.exec(head);
    const filename = /filename="([^"]*)"/i.exec(head);
    parts.push({ name: name ? name[1] : '', filename: filename ? filename[1] : null, data });
    pos = next;
  }
  return parts;
}

const CHIP_IDS = { 0: 'ESP32', 2: 'ESP32-S2', 5: 'ESP32-C3', 9: 'ESP32-S3', 12: 'ESP32-C2', 13: 'ESP32-C6' };

// The catalog's checks, roughly: files present, regions sorted and not overlapping,
// 4 KiB aligned, app images for the set's chip.
function validate(parts) {
  const problems = [];
  const mpart = parts.find((p) => p.name === 'manifest');
  if (!mpart) return { status: 400, err: { code: 'bad_request', message: 'no "manifest" part in the upload' } };
  let man;
  try { man = JSON.parse(mpart.data.toString()); } catch (e) {
    return { status: 422, err: { code: 'validation_failed', message: `manifest.json: ${e.message}`, problems: [{ severity: 'error', region: null, file: null, message: `manifest.json: ${e.message}` }] } };
  }
  const files = new Map(parts.filter((p) => p !== mpart).map((p) => [p.filename || p.name, p.data]));
  const chip = String(man.chip || '').toUpperCase().replace(/^ESP32(C|S)/, 'ESP32-$1');
  const regs = (man.regions || []).map((r, i) => ({ i, file: r.file, offset: typeof r.offset === 'string' ? parseInt(r.offset, 16) : r.offset }));
  for (const r of regs) {
    const data = files.get(r.file);
    if (!data) { problems.push({ severity: 'error', region: r.i, file: r.file, message: `regions[${r.i}] ${r.file}: file missing from the upload` }); continue; }
    r.size = data.length;
    if (r.offset % 4096) problems.push({ severity: 'error', region: r.i, file: r.file, message: `regions[${r.i}] ${r.file}: offset 0x${r.offset.toString(16)} is not a multiple of 4096` });
    if (data[0] === 0xe9 && chip !== 'ESP8266' && data.length > 24) {
      const id = data.readUInt16LE(12);
      const got = CHIP_IDS[id] || `chip id ${id}`;
      if (got !== chip) problems.push({ severity: 'error', region: r.i, file: r.file, message: `regions[${r.i}] ${r.file}: image is for ${got} (chip id ${id}) but this firmware set is for ${chip}` });
    }
  }
  const sorted = regs.filter((r) => r.size != null).sort((a, b) => a.offset - b.offset);
  for (let k = 1; k < sorted.length; k++) {
    const a = sorted[k - 1], b = sorted[k];
    if (a.offset + a.size > b.offset) {
      problems.push({ severity: 'error', region: b.i, file: b.file, message: `regions[${b.i}] ${b.file}: overlaps regions[${a.i}] ${a.file} (0x${a.offset.toString(16)}..0x${(a.offset + a.size).toString(16)} and 0x${b.offset.toString(16)}..0x${(b.offset + b.size).toString(16)})` });
    }
  }
  if (problems.length) return { status: 422, err: { code: 'validation_failed', message: `firmware set ${man.name}@${man.version} is not valid: ${problems.length} problem${problems.length > 1 ? 's' : ''}`, problems } };
  return { status: 200, man, chip, regs };
}

function staticFile(req, res, p) {
  let rel = decodeURIComponent(p.replace(/^\/static\//, '/'));
  if (rel === '/' || rel === '') rel = '/index.html';
  if (rel.split('/').some((s) => s.startsWith('.'))) return error(res, 404, 'not_found', 'no such file');
  const file = path.join(STATIC, rel);
  fs.readFile(file, (err, data) => {
    if (err) return error(res, 404, 'not_found', `no such file: ${rel}`);
    const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json' };
    res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-cache' });
    res.end(data);
  });
}

function page(list, url, key) {
  const limit = Math.min(1000, Number(url.searchParams.get('limit') || 100));
  const offset = Number(url.searchParams.get('offset') || 0);
  return { [key]: list.slice(offset, offset + limit), limit, offset };
}

function jobView(j, withLog) {
  const { log, ...rest } = j;
  return withLog ? { ...rest, log } : rest;
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  const m = (re) => re.exec(p);
  let r;
  try {
    if (!p.startsWith('/api/v1/')) return staticFile(req, res, p);
    if (req.method !== 'GET' && !authed(req)) return error(res, 401, 'unauthorized', 'missing or wrong bearer token', {});
    if (p === '/api/v1/events') {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
      res.write('retry: 2000\n\n');
      const last = Number(req.headers['last-event-id'] || url.searchParams.get('last_event_id') || NaN);
      res.write(`event: hello\ndata: ${JSON.stringify({ last_event_id: nextEvent - 1 })}\n\n`);
      if (Number.isFinite(last)) for (const ev of events.filter((e) => e.id > last)) res.write(`id: ${ev.id}\nevent: ${ev.kind}\ndata: ${JSON.stringify(ev)}\n\n`);
      clients.add(res);
      const hb = setInterval(() => send(res, ': ping\n\n'), 15000);
      req.on('close', () => { clients.delete(res); clearInterval(hb); });
      return;
    }
    // board_firmware: the board's record, as the station reports it (docs/API.md "Slot").
    if (p === '/api/v1/slots') return json(res, 200, { slots: slots.map((s) => ({ ...s, board_firmware: (boards.get(s.mac) || {}).current_firmware ?? null })) });
    if ((r = m(/^\/api\/v1\/slots\/([^/]+)$/))) {
      const s = slots.find((x) => x.id === decodeURIComponent(r[1]));
      return s ? json(res, 200, s) : error(res, 404, 'not_found', `no slot ${r[1]}`);
    }
    if ((r = m(/^\/api\/v1\/slots\/([^/]+)\/reflash$/)) && req.method === 'POST') {
      const s = slots.find((x) => x.id === decodeURIComponent(r[1]));
      if (!s) return error(res, 404, 'not_found', `no slot ${r[1]}`);
      if (s.busy) return error(res, 409, 'slot_busy', `slot ${s.id} is busy with job ${s.job_id} (${s.phase})`, { job: s.job_id });
      if (!s.present) return error(res, 409, 'slot_empty', `no board on slot ${s.id}`);
      const j = newJob(s.id, s.mac, s.firmware, 'queued');
      Object.assign(s, { phase: 'queued', busy: true, job_id: j.id, error: null });
      emit('job.requested', s.id, s.mac, j.id, { kind: 'flash', force: true });
      slotProgress(s);
      return json(res, 202, jobView(j), { Location: `/api/v1/jobs/${j.id}` });
    }
    if (p === '/api/v1/counters') {
      const today = jobs.filter((j) => j.kind === 'flash');
      const passed = today.filter((j) => j.state === 'passed').length;
      const failed = today.filter((j) => j.state === 'failed').length;
      return json(res, 200, {
        since: iso(new Date().setHours(0, 0, 0, 0)), flashed_today: passed, passed, failed,
        by_state: { passed, failed }, boards_last_hour: 23, boards_per_hour: 23,
        mean_flash_seconds: [{ slot: 'A1', mean_seconds: 13.2, jobs: 4 }, { slot: 'A2', mean_seconds: 12.6, jobs: 3 }],
        slots: { total: slots.length, present: slots.filter((s) => s.present).length, busy: slots.filter((s) => s.busy).length, failed: slots.filter((s) => s.phase === 'failed').length },
      });
    }
    if (p === '/api/v1/jobs' && req.method === 'GET') {
      let list = jobs;
      for (const k of ['state', 'slot', 'kind']) if (url.searchParams.get(k)) list = list.filter((j) => j[k] === url.searchParams.get(k));
      if (url.searchParams.get('board')) list = list.filter((j) => j.board === url.searchParams.get('board'));
      return json(res, 200, page(list.map((j) => jobView(j)), url, 'jobs'));
    }
    if (p === '/api/v1/records') {
      let list = jobs;
      const q = url.searchParams;
      if (q.get('result')) list = list.filter((j) => j.state === q.get('result'));
      if (q.get('mac')) list = list.filter((j) => (j.board || '').includes(q.get('mac').toLowerCase()));
      if (q.get('firmware')) list = list.filter((j) => (j.firmware || '').startsWith(q.get('firmware')));
      if (q.get('chip')) list = list.filter((j) => j.board && boards.get(j.board) && boards.get(j.board).chip.toLowerCase() === q.get('chip').toLowerCase());
      if (q.get('format') === 'csv') {
        res.writeHead(200, { 'Content-Type': 'text/csv; charset=utf-8', 'Content-Disposition': 'attachment; filename="espstation-records.csv"' });
        res.end(['id,kind,state,board_mac,slot,firmware,stage,started_at,ended_at,seconds', ...list.map((j) => [j.id, j.kind, j.state, j.board, j.slot, j.firmware, j.stage, j.started_at, j.ended_at, j.seconds].join(','))].join('\r\n'));
        return;
      }
      return json(res, 200, page(list.map((j) => jobView(j)), url, 'records'));
    }
    if ((r = m(/^\/api\/v1\/jobs\/(\d+)$/))) {
      const j = jobs.find((x) => x.id === Number(r[1]));
      return j ? json(res, 200, jobView(j, true)) : error(res, 404, 'not_found', `no job ${r[1]}`);
    }
    if ((r = m(/^\/api\/v1\/jobs\/(\d+)\/cancel$/)) && req.method === 'POST') {
      const j = jobs.find((x) => x.id === Number(r[1]));
      if (!j) return error(res, 404, 'not_found', `no job ${r[1]}`);
      if (!['running', 'queued'].includes(j.state)) return error(res, 409, 'job_finished', `job ${j.id} already ended (${j.state})`);
      return json(res, 202, jobView(j));
    }
    if (p === '/api/v1/boards') return json(res, 200, page([...boards.values()], url, 'boards'));
    if ((r = m(/^\/api\/v1\/boards\/([^/]+)$/))) {
      const mac = decodeURIComponent(r[1]).toLowerCase().replace(/-/g, ':');
      const b = boards.get(mac);
      return b ? json(res, 200, { ...b, ota: otas.get(mac) || null, jobs: jobs.filter((j) => j.board === mac).map((j) => jobView(j)) }) : error(res, 404, 'not_found', `no board ${mac}`);
    }
    if ((r = m(/^\/api\/v1\/boards\/([^/]+)\/ota$/)) && req.method === 'GET') {
      const mac = decodeURIComponent(r[1]).toLowerCase().replace(/-/g, ':');
      const o = otas.get(mac);
      return o ? json(res, 200, o) : error(res, 404, 'not_found', `board ${mac} never checked in at the OTA endpoint`, { field: 'mac' });
    }
    if (p === '/api/v1/bulk' && req.method === 'GET') return json(res, 200, { bulks: bulks.slice().reverse().map((b) => bulkView(b, false)) });
    if ((r = m(/^\/api\/v1\/bulk\/(\d+)(\/cancel)?$/))) {
      const b = bulks.find((x) => x.id === Number(r[1]));
      if (!b) return error(res, 404, 'not_found', `no bulk update ${r[1]}`, { field: 'bulk' });
      if (r[2]) {
        if (req.method !== 'POST') return error(res, 405, 'method_not_allowed', 'use POST');
        if (b.state === 'running') {
          b.state = 'cancelled';
          b.reason = 'cancelled by the operator';
          for (const x of b.boards) if (x.state === 'running') x.state = 'passed';
          emit('bulk.stopped', null, null, null, { bulk_id: b.id, state: b.state, counts: bulkCounts(b) });
        }
        return json(res, 202, bulkView(b, true));
      }
      return json(res, 200, bulkView(b, true));
    }
    if (p === '/api/v1/firmware' && req.method === 'GET') {
      return json(res, 200, { firmware: [...firmware.values()].map((f) => ({ name: f.name, version: f.version, chip: f.chip, regions: f.regions.length, total_bytes: f.total_bytes })) });
    }
    if ((r = m(/^\/api\/v1\/firmware\/([^/]+)\/([^/]+)$/))) {
      const key = `${decodeURIComponent(r[1])}@${decodeURIComponent(r[2])}`;
      const f = firmware.get(key);
      if (!f) return error(res, 404, 'not_found', `no firmware ${key}`);
      if (req.method === 'DELETE') { firmware.delete(key); emit('firmware.deleted', null, null, null, { name: f.name, version: f.version }); return json(res, 200, { deleted: { name: f.name, version: f.version } }); }
      return json(res, 200, { ...f, manifest: {} });
    }
    if ((p === '/api/v1/firmware' || p === '/api/v1/firmware/validate') && req.method === 'POST') {
      const ct = req.headers['content-type'] || '';
      const body = await readBody(req);
      const parts = /^application\/(x-tar|octet-stream)/i.test(ct) ? parseTar(body) : parseMultipart(body, ct);
      if (!parts) return error(res, 415, 'unsupported_media_type', 'expected multipart/form-data');
      const v = validate(parts);
      if (v.status !== 200) return json(res, v.status, p.endsWith('validate') && v.status === 422 ? { valid: false, error: v.err } : { error: v.err });
      if (p.endsWith('validate')) return json(res, 200, { valid: true, problems: [] });
      const key = `${v.man.name}@${v.man.version}`;
      if (firmware.has(key) && url.searchParams.get('replace') !== 'true') return error(res, 409, 'exists', `firmware ${key} is already in the catalog (use ?replace=true)`);
      const f = { name: v.man.name, version: String(v.man.version), chip: v.chip, description: v.man.description || null,
        regions: v.regs.map((g) => region(g.offset, g.file, 'app', g.size)) };
      f.total_bytes = f.regions.reduce((a, g) => a + g.size, 0);
      firmware.set(key, f);
      emit('firmware.imported', null, null, null, { name: f.name, version: f.version });
      return json(res, 201, { imported: f, warnings: [] });
    }
    return error(res, 404, 'not_found', `no such endpoint: ${req.method} ${p}`);
  } catch (e) {
    return error(res, 500, 'internal', String(e && e.message));
  }
});

server.listen(Number(args.port || 0), '127.0.0.1', () => {
  const port = server.address().port;
  if (args['port-file']) fs.writeFileSync(args['port-file'], String(port));
  console.log(`mock listening on http://127.0.0.1:${port}`);
  a1Start();
  setInterval(a1Tick, 250);
  emit('bulk.started', null, null, null, { bulk_id: 2, firmware: 'relay@1.1', total: 24 });
  setInterval(bulkTick, BULK_MS);
});
const stop = () => { for (const c of clients) c.end(); server.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
