// REST client for the status page, written against docs/API.md (v1).
// Everything the page shows goes through the normalizers here, so the rest of
// the page does not depend on the exact wire names.

import { parseTime } from './fmt.js';

const BASE = '/api/v1';
const TOKEN_KEY = 'espstation.token';

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}
export function setToken(t) {
  try { if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
}

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const e = body && body.error;
    super(e && e.message ? e.message : fallback || `HTTP ${status}`);
    this.status = status;
    this.code = e ? e.code : null;
    this.body = body;
  }
}

function qs(params = {}) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? `?${s}` : '';
}

// Percent-encodes a slot id / MAC / firmware name for a path segment.
const seg = (s) => encodeURIComponent(String(s));

async function request(method, path, { body, json, query, contentType } = {}) {
  const headers = { Accept: 'application/json' };
  const t = getToken();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (contentType) headers['Content-Type'] = contentType;
  let payload = body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(`${BASE}${path}${qs(query)}`, { method, headers, body: payload, cache: 'no-store' });
  } catch (err) {
    throw new ApiError(0, null, `station unreachable (${err.message})`);
  }
  let data = null;
  const ct = res.headers.get('Content-Type') || '';
  if (ct.includes('json')) {
    try { data = await res.json(); } catch { data = null; }
  }
  if (!res.ok) throw new ApiError(res.status, data, `${res.status} ${res.statusText}`);
  return data;
}

// ---------------------------------------------------------------------------
// Normalizers

const num = (v) => (v == null || v === '' || !Number.isFinite(Number(v)) ? null : Number(v));

export function normSlot(r) {
  const p = r.progress || {};
  const err = r.error || null;
  const elapsed = num(r.elapsed_ms);
  return {
    key: String(r.key ?? r.id ?? r.index),
    id: String(r.id ?? r.label ?? r.key ?? r.index),
    index: r.index,
    label: r.label || r.id || r.key || `#${r.index}`,
    uri: r.uri || '',
    present: r.present !== false,
    phase: r.phase || (r.present === false ? 'empty' : 'idle'),
    busy: !!r.busy,
    stage: r.stage || '',
    done: num(p.done) ?? 0,
    total: num(p.total) ?? 0,
    kbps: num(p.kbps) ?? 0,
    mac: r.mac || '',
    chip: r.chip || '',
    firmware: r.firmware || '',
    boardFirmware: r.board_firmware || '',
    jobId: r.job_id ?? null,
    jobKind: r.job_kind || '',
    startedAt: elapsed != null ? Date.now() - elapsed : null,
    errorStage: (err && err.stage) || (r.phase === 'failed' ? r.stage : '') || '',
    errorMessage: err ? err.message || '' : '',
    errorAdvice: err ? err.advice || '' : '',
    deviceStatus: err ? num(err.device_status) : null,
    deviceError: err ? num(err.device_error) : null,
    notice: r.notice || '', // a running job waits for something a person must do (docs/API.md)
    failures: num(r.failures) ?? 0,
    flagged: !!r.flagged,
    baudLimit: num(r.baud_limit) ?? null,
    attempt: num(r.attempt) ?? 0,
    ip: r.ip || '',
    runningVersion: r.running_version || '',
    seconds: null,
  };
}

export function normJob(r) {
  const e = r.error || null;
  const p = r.progress || null;
  return {
    id: r.id,
    kind: r.kind || '',
    mac: r.board || r.board_mac || '',
    chip: r.chip || '',
    slot: r.slot || '',
    firmware: r.firmware || '',
    state: r.state || '',
    stage: r.stage || '',
    startedAt: parseTime(r.started_at),
    endedAt: parseTime(r.ended_at),
    bytes: num(r.bytes) ?? (p ? num(p.done) : null),
    wireBytes: num(r.wire_bytes),
    kbps: num(r.kbps) ?? (p ? num(p.kbps) : null),
    seconds: num(r.seconds),
    retries: num(r.retries) ?? 0,
    resultCode: num(r.result_code),
    errorStage: e ? e.stage || '' : '',
    errorMessage: e ? e.message || '' : '',
    errorAdvice: e ? e.advice || '' : '',
    deviceStatus: e ? num(e.device_status) : null,
    deviceError: e ? num(e.device_error) : null,
    errorOp: e ? num(e.op) : null,
    errorAddress: e ? num(e.address) : null,
    log: (r.log || []).map((l) => ({ ts: parseTime(l.ts), level: l.level || 'info', line: l.line ?? '' })),
  };
}

export function normBoard(r) {
  const rev = num(r.revision);
  return {
    mac: r.mac,
    chip: r.chip || '',
    revision: rev != null ? `v${Math.floor(rev / 100)}.${rev % 100}` : '',
    flashSize: num(r.flash_size),
    crystal: num(r.crystal_mhz),
    firstSeen: parseTime(r.first_seen),
    lastSeen: parseTime(r.last_seen),
    slot: r.slot || '',
    presentOn: r.present_on || '',
    firmware: r.current_firmware || '',
    md5: r.current_md5 || '',
    ip: r.ip || '',
    // how far the station trusts ip (docs/OTA.md "Addresses"): pushes need it confirmed
    ipConfirmed: r.ip_confirmed === true,
    ipSource: r.ip_source || '',
    ipClaim: r.ip_claim || '',
    ipClaimSource: r.ip_claim_source || '',
    runningVersion: r.running_version || '',
    targetFirmware: r.target_firmware || '',
    onlineState: r.online_state || '',
    notes: r.notes || '',
    groups: Array.isArray(r.groups) ? r.groups.map(String) : [],
    ota: r.ota ? normOta(r.ota) : null,
    // per-board data pool files (GET /boards/{mac} only)
    perBoard: Array.isArray(r.per_board)
      ? r.per_board.map((p) => ({ pool: String(p.pool || ''), file: String(p.file || ''), md5: p.md5 || '' }))
      : [],
  };
}

// A board's OTA record (GET /boards/{mac}/ota, or the "ota" member of GET /boards/{mac}).
export function normOta(r) {
  return {
    freeSpace: num(r.free_space),
    sketchSize: num(r.sketch_size),
    sketchMd5: r.sketch_md5 || '',
    chipSize: num(r.chip_size),
    sdkVersion: r.sdk_version || '',
    lastCheckin: parseTime(r.last_checkin),
    checkins: num(r.checkins) ?? 0,
    servedVersion: r.served_version || '',
    servedAt: parseTime(r.served_at),
    problem: r.problem || '',
    target: r.target || '',
    targetPinned: !!r.target_pinned,
    onTarget: !!r.on_target,
  };
}

// A bulk update (GET /bulk lists them without "boards").
export function normBulk(r) {
  const c = r.counts || {};
  const counts = {
    total: num(c.total) ?? 0, pending: num(c.pending) ?? 0, running: num(c.running) ?? 0,
    passed: num(c.passed) ?? 0, failed: num(c.failed) ?? 0, skipped: num(c.skipped) ?? 0,
  };
  return {
    id: r.id,
    state: r.state || '',
    firmware: r.firmware || '',
    method: r.method || '',
    concurrency: num(r.concurrency),
    retries: num(r.retries),
    maxFailureRate: num(r.max_failure_rate),
    created: parseTime(r.created),
    reason: r.reason || '',
    counts,
    boards: Array.isArray(r.boards)
      ? r.boards.map((b) => ({ mac: b.mac, state: b.state || '', attempts: num(b.attempts) ?? 0, jobId: b.job_id ?? null, error: b.error || '' }))
      : null,
  };
}

export function normCounters(r) {
  const per = Array.isArray(r.mean_flash_seconds) ? r.mean_flash_seconds : [];
  let n = 0, sum = 0;
  for (const s of per) {
    const j = num(s.jobs) ?? 0, m = num(s.mean_seconds);
    if (m != null && j > 0) { n += j; sum += m * j; }
  }
  return {
    passed: num(r.passed) ?? num(r.flashed_today),
    failed: num(r.failed),
    perHour: num(r.boards_per_hour) ?? num(r.boards_last_hour),
    meanSeconds: n ? sum / n : (typeof r.mean_flash_seconds === 'number' ? r.mean_flash_seconds : null),
    perSlot: per,
    slots: r.slots || null,
  };
}

function offsetHex(o) {
  const n = num(o);
  return n == null ? String(o ?? '') : `0x${n.toString(16).padStart(5, '0')}`;
}

export function normFirmware(r) {
  return {
    name: r.name,
    version: r.version,
    chip: r.chip || '',
    description: r.description || '',
    totalBytes: num(r.total_bytes),
    regionCount: Array.isArray(r.regions) ? r.regions.length : num(r.regions),
    regions: Array.isArray(r.regions)
      ? r.regions.map((g) => ({ ...g, offsetHex: offsetHex(g.offset) }))
      : null,
  };
}

// A validation report (200 from /validate, 201 from upload, or a 422 body) in
// page terms: {ok, summary, messages: [{level, where, message}]}.
export function normValidation(body, err) {
  const b = body || {};
  const e = b.error || null;
  const problems = (e && e.problems) || b.problems || b.warnings || [];
  const messages = problems.map((p) => {
    const where = p.region != null
      ? `region ${p.region}${p.file ? ` (${p.file})` : ''}`
      : p.file ? p.file : /^bundle entry/.test(p.message || '') ? 'bundle' : 'manifest';
    return { level: p.severity === 'warning' ? 'warning' : p.severity === 'error' ? 'error' : (p.severity || 'error'), where, message: p.message || '', region: p.region ?? null, file: p.file ?? null };
  });
  const ok = !e && !err && b.valid !== false;
  let summary = '';
  if (e) summary = e.message;
  else if (err) summary = err.message;
  else if (b.imported) summary = `Imported ${b.imported.name}@${b.imported.version} (${b.imported.chip}).`;
  else if (b.valid) summary = 'The firmware set is valid; nothing was imported.';
  return { ok, summary, messages, imported: b.imported || null };
}

// ---------------------------------------------------------------------------
// Endpoints

export const eventsUrl = () => {
  const t = getToken();
  return `${BASE}/events${t ? qs({ access_token: t }) : ''}`;
};
export const recordsCsvUrl = (q = {}) => {
  const t = getToken();
  const { limit, ...rest } = q; // CSV is never paged
  return `${BASE}/records${qs({ ...rest, format: 'csv', ...(t ? { access_token: t } : {}) })}`;
};

export async function slots() {
  const d = await request('GET', '/slots');
  return (d.slots || []).map(normSlot);
}
// The line of stations; its "tls" member is this station's certificates (header badge).
export async function line() {
  return request('GET', '/line');
}
export async function counters() {
  return normCounters(await request('GET', '/counters'));
}
export async function jobs(query = {}) {
  const d = await request('GET', '/jobs', { query });
  return (d.jobs || []).map(normJob);
}
// Records view: filters mac, chip, firmware, result, slot, since, until.
export async function records(query = {}) {
  const d = await request('GET', '/records', { query });
  return (d.records || []).map(normJob);
}
export async function job(id) {
  return normJob(await request('GET', `/jobs/${seg(id)}`));
}
export async function board(mac) {
  const d = await request('GET', `/boards/${seg(mac)}`);
  return { board: normBoard(d), jobs: (d.jobs || []).map(normJob) };
}
// PUT /boards/{mac}: { notes?, groups? } (a member left out is kept). Returns the board.
export async function updateBoard(mac, fields) {
  return normBoard(await request('PUT', `/boards/${seg(mac)}`, { json: fields }));
}
// POST /boards/{mac}/address: { ip } or { accept_claim: true }: the operator confirms the
// board's address (pushes go only to a confirmed one). Returns the board.
export async function confirmAddress(mac, fields) {
  return normBoard(await request('POST', `/boards/${seg(mac)}/address`, { json: fields }));
}
export async function boards(query = {}) {
  const d = await request('GET', '/boards', { query });
  return (d.boards || []).map(normBoard);
}
export async function firmwareList() {
  const d = await request('GET', '/firmware');
  return (d.firmware || []).map(normFirmware);
}
export async function firmware(name, version) {
  return normFirmware(await request('GET', `/firmware/${seg(name)}/${seg(version)}`));
}
export async function deleteFirmware(f) {
  await request('DELETE', `/firmware/${seg(f.name)}/${seg(f.version)}`);
  return { message: `Deleted ${f.name}@${f.version}` };
}
export async function uploadFirmware(formData, validateOnly, replace = false) {
  const path = validateOnly ? '/firmware/validate' : '/firmware';
  const d = await request('POST', path, { body: formData, query: replace && !validateOnly ? { replace: 'true' } : {} });
  return normValidation(d);
}
// A firmware bundle (.tar, .tar.gz, .zip) sent as the raw body. Browsers give such
// files inconsistent (or no) types, so the type is set from the name; the station
// recognises the format from the content anyway.
export function bundleContentType(name) {
  const n = (name || '').toLowerCase();
  if (n.endsWith('.zip')) return 'application/zip';
  if (n.endsWith('.tar')) return 'application/x-tar';
  if (n.endsWith('.tar.gz') || n.endsWith('.tgz') || n.endsWith('.gz')) return 'application/gzip';
  return 'application/octet-stream';
}
export async function uploadBundle(file, validateOnly, replace = false) {
  const path = validateOnly ? '/firmware/validate' : '/firmware';
  const d = await request('POST', path, { body: file, contentType: bundleContentType(file.name), query: replace && !validateOnly ? { replace: 'true' } : {} });
  return normValidation(d);
}
export async function reflash(slot, force = true) {
  const d = await request('POST', `/slots/${seg(slot.id)}/reflash`, { json: { force } });
  return { message: `Re-flash of slot ${slot.label} started (job ${d && d.id})`, job: d };
}
export async function cancelJob(id) {
  await request('POST', `/jobs/${seg(id)}/cancel`, { json: {} });
  return { message: `Cancelling job ${id}…` };
}
export async function boardOta(mac) {
  try {
    return normOta(await request('GET', `/boards/${seg(mac)}/ota`));
  } catch (err) {
    if (err.status === 404 || err.status === 503) return null; // never checked in / no OTA on this station
    throw err;
  }
}
export async function bulks() {
  const d = await request('GET', '/bulk');
  return (d.bulks || []).map(normBulk);
}
export async function bulk(id) {
  return normBulk(await request('GET', `/bulk/${seg(id)}`));
}
export async function cancelBulk(id) {
  await request('POST', `/bulk/${seg(id)}/cancel`, { json: {} });
  return { message: `Cancelling bulk ${id}: no new boards will start` };
}
