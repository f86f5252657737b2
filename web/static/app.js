// espstation status page. Plain ES module, no build step, no dependencies.
//
// State comes from the REST API (/api/v1) and stays live through the
// Server-Sent Events stream (/api/v1/events): progress events patch a slot in
// place; every other event schedules a (debounced) re-fetch of the slots,
// counters and recent jobs, so the page never has to replay the daemon's state
// machine. When the stream reconnects the page re-fetches everything.

import * as api from './api.js';
import { fmtBytes, fmtBytesOf, fmtKbps, fmtDuration, fmtClock, fmtTime, parseTime, esc, el } from './fmt.js';
import { slotView } from './states.js';
import { startLine, stopLine } from './line.js';
import { tlsWarning, renderTlsBadge } from './tls.js';

const $ = (s, root = document) => root.querySelector(s);

const state = {
  slots: new Map(),   // key -> normalized slot
  order: [],          // slot keys in display order
  jobs: [],           // recent jobs (normalized)
  counters: null,
  firmware: [],
  bulks: [],
  bulkSel: null,      // id of the bulk shown in detail
  view: 'station',
};

// ---------------------------------------------------------------------------
// Slots grid

const slotNodes = new Map(); // key -> DOM node

function slotCard(key) {
  const n = document.createElement('article');
  n.className = 'slot';
  n.tabIndex = 0;
  n.setAttribute('role', 'button');
  n.dataset.key = key;
  n.innerHTML = `
    <div class="head"><span class="label"></span><span class="state"><span class="ico" aria-hidden="true"></span><span class="word"></span></span></div>
    <div class="ident"><span class="chip"></span><span class="mac"></span></div>
    <div class="phase"></div>
    <div class="fwline"></div>
    <div class="ota" hidden><span class="ip"></span><span class="ver"></span><span class="tgt"></span></div>
    <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"><i></i></div>
    <div class="nums"><span class="bytes"></span><span class="pct"></span><span class="speed"></span><span class="elapsed"></span></div>
    <div class="why" hidden><div class="reason"></div><div class="advice"></div></div>
    <div class="flag-note" hidden>⚑ Check this slot</div>
    <div class="baud-note" hidden></div>`;
  n.addEventListener('click', (e) => {
    const a = e.target.closest('a[data-mac]');
    if (a) { e.preventDefault(); openBoard(a.dataset.mac); return; }
    openSlot(key);
  });
  n.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); openSlot(key); }
  });
  return n;
}

function renderSlot(s) {
  let n = slotNodes.get(s.key);
  if (!n) { n = slotCard(s.key); slotNodes.set(s.key, n); }
  const v = slotView(s);
  n.dataset.tone = v.tone;
  n.dataset.phase = s.phase;
  n.classList.toggle('flagged', !!s.flagged);
  n.setAttribute('aria-label', `Slot ${s.label}: ${v.word}. ${v.phase}${s.flagged ? '. Check this slot.' : ''}`);
  $('.label', n).textContent = s.label;
  $('.state .ico', n).textContent = v.icon;
  $('.state .word', n).textContent = v.word;
  $('.chip', n).textContent = s.chip || '';
  $('.mac', n).innerHTML = s.mac ? `<a href="#" data-mac="${esc(s.mac)}">${esc(s.mac)}</a>` : '';
  $('.phase', n).textContent = v.phase;
  const fw = slotFirmware(s, v);
  const fwn = $('.fwline', n);
  fwn.replaceChildren(...(fw.runs ? [el('span', { class: 'fwrun' }, `Firmware ${fw.runs}`)] : []),
    ...(fw.flashed ? [el('span', { class: 'fwnote', title: `The board reports ${fw.runs}: it was updated over the network after this slot flashed ${fw.flashed}.` }, `⇡ updated over the network · flashed here: ${fw.flashed}`)] : []));
  fwn.hidden = !fw.runs;
  renderSlotOta(n, s);

  // Progress: shown while a job runs, and frozen at the end of a finished one.
  const bar = $('.bar', n);
  const nums = $('.nums', n);
  const hasBytes = s.total > 0;
  const pct = hasBytes ? Math.min(100, (100 * s.done) / s.total) : (v.tone === 'pass' || v.tone === 'online' || v.tone === 'wait' ? 100 : 0);
  const showBar = v.active || hasBytes;
  bar.hidden = !showBar;
  bar.classList.toggle('indeterminate', v.active && !hasBytes);
  $('i', bar).style.width = `${pct.toFixed(1)}%`;
  bar.setAttribute('aria-valuenow', pct.toFixed(1));
  bar.dataset.done = String(s.done || 0);
  bar.dataset.total = String(s.total || 0);
  bar.setAttribute('aria-valuetext', hasBytes ? `${fmtBytes(s.done)} of ${fmtBytes(s.total)}` : v.phase);
  nums.hidden = !(hasBytes || v.active || s.startedAt);
  $('.bytes', n).textContent = hasBytes ? fmtBytesOf(s.done, s.total) : '';
  $('.pct', n).textContent = hasBytes ? `${Math.floor(pct)} %` : '';
  $('.speed', n).textContent = s.kbps > 0 ? fmtKbps(s.kbps) : '';
  updateElapsed(n, s);

  const why = $('.why', n);
  const showWhy = !!(v.reason || v.advice);
  why.hidden = !showWhy;
  if (showWhy) {
    $('.reason', why).textContent = v.reason || '';
    const adv = $('.advice', why);
    adv.textContent = v.advice || '';
    why.title = [v.reason, v.advice && `Check: ${v.advice}`].filter(Boolean).join('\n');
    adv.hidden = !v.advice;
  }
  const flag = $('.flag-note', n);
  flag.hidden = !s.flagged;
  if (s.flagged) flag.textContent = `⚑ Check this slot${s.failures ? ` — ${s.failures} failures in a row` : ''}`;
  // Link back-off: the slot runs below the profile's baud (docs/API.md baud_limit).
  const bn = $('.baud-note', n);
  bn.hidden = !s.baudLimit;
  if (s.baudLimit) {
    bn.textContent = `limited to ${s.baudLimit} Bd`;
    bn.title = 'Link errors at a higher baud on this slot: check the cable/adapter. POST /api/v1/slots/{id}/reset-baud clears the limit.';
  }
  return n;
}

// The firmware a tile names: what the board carries (its record) once the slot's job is over,
// which after an update over the network is not the set the slot flashed (`flashed`, then
// shown as a note); while a job runs or after a failed one, the job's set.
function slotFirmware(s, v) {
  if (v.active || s.phase === 'failed' || !s.boardFirmware) return { runs: s.firmware, flashed: '' };
  const updated = !!s.firmware && s.boardFirmware !== s.firmware;
  return { runs: s.boardFirmware, flashed: updated ? s.firmware : '' };
}

// ---------------------------------------------------------------------------
// Network OTA on the tiles: IP, running version and whether the board runs its
// target (from GET /boards/{mac}/ota, cached per MAC; OTA events invalidate it).

const OTA_PHASES = new Set(['awaiting_network', 'online']);
const otaCache = new Map(); // mac -> {at, ota (normalized or null), pending}
const OTA_TTL = 30000;

function otaFor(mac) {
  const c = otaCache.get(mac);
  if (c && (c.pending || Date.now() - c.at < OTA_TTL)) return c.ota;
  const entry = { at: Date.now(), ota: c ? c.ota : null, pending: true };
  otaCache.set(mac, entry);
  api.boardOta(mac).then((o) => { entry.ota = o; }, () => { /* keep the last known */ }).finally(() => {
    entry.pending = false;
    entry.at = Date.now();
    for (const x of state.slots.values()) if (x.mac === mac) renderSlot(x);
  });
  return entry.ota;
}

function otaStatus(o) {
  if (!o || !o.target) return null;
  return o.onTarget
    ? { cls: 'ok', text: '✔ up to date', title: `runs its target ${o.target}${o.targetPinned ? ' (pinned)' : ' (profile)'}` }
    : { cls: 'pending', text: `⟳ update pending → ${o.target}`, title: `target ${o.target}${o.targetPinned ? ' (pinned)' : ' (profile)'}` };
}

function renderSlotOta(n, s) {
  const box = $('.ota', n);
  const show = OTA_PHASES.has(s.phase) && !!s.mac;
  const o = show ? otaFor(s.mac) : null;
  const st = otaStatus(o);
  box.hidden = !(show && (s.ip || s.runningVersion || st));
  if (box.hidden) return;
  $('.ip', box).textContent = s.ip || '';
  $('.ip', box).hidden = !s.ip;
  $('.ver', box).textContent = s.runningVersion ? `v${s.runningVersion.replace(/^v/, '')}` : '';
  $('.ver', box).hidden = !s.runningVersion;
  $('.ver', box).title = 'running version';
  const t = $('.tgt', box);
  t.hidden = !st;
  t.className = `tgt ${st ? st.cls : ''}`;
  t.textContent = st ? st.text : '';
  t.title = st ? st.title : '';
}

function updateElapsed(n, s) {
  const e = $('.elapsed', n);
  const v = slotView(s);
  let secs = null;
  if (v.active && s.startedAt) secs = (Date.now() - s.startedAt) / 1000;
  else if (s.seconds != null) secs = s.seconds;
  else if (s.startedAt && s.endedAt) secs = (s.endedAt - s.startedAt) / 1000;
  e.textContent = secs != null && secs >= 0 ? fmtClock(secs) : '';
  e.title = 'elapsed';
}

function renderSlots() {
  const grid = $('#slots');
  const keys = state.order;
  $('#slots-empty').hidden = keys.length > 0;
  grid.classList.toggle('dense', keys.length > 8);
  const want = keys.map((k) => renderSlot(state.slots.get(k)));
  // Reorder/insert without recreating nodes (keeps bar transitions smooth).
  want.forEach((node, i) => {
    if (grid.children[i] !== node) grid.insertBefore(node, grid.children[i] || null);
  });
  while (grid.children.length > want.length) grid.lastElementChild.remove();
  for (const k of [...slotNodes.keys()]) if (!state.slots.has(k)) slotNodes.delete(k);
  renderBusy();
}

function renderBusy() {
  const all = [...state.slots.values()];
  const busy = all.filter((s) => s.busy || slotView(s).active).length;
  $('#c-busy').textContent = `${busy} / ${all.length}`;
}

// ---------------------------------------------------------------------------
// Counters, recent jobs

function renderCounters() {
  const c = state.counters;
  if (!c) return;
  $('#c-passed').textContent = c.passed ?? '–';
  $('#c-failed').textContent = c.failed ?? '–';
  $('#c-rate').textContent = c.perHour != null ? (Math.round(c.perHour * 10) / 10).toString() : '–';
  $('#c-mean').textContent = c.meanSeconds != null ? fmtDuration(c.meanSeconds) : '–';
}

function jobRow(j) {
  const tr = document.createElement('tr');
  tr.dataset.job = j.id;
  tr.tabIndex = 0;
  tr.innerHTML = `
    <td title="${esc(j.startedAt ? new Date(j.startedAt).toLocaleString() : '')}">${esc(fmtTime(j.endedAt || j.startedAt))}</td>
    <td><b>${esc(j.slot || '–')}</b></td>
    <td class="mac">${j.mac ? `<a href="#" data-mac="${esc(j.mac)}">${esc(j.mac)}</a>` : '–'}</td>
    <td class="opt">${esc(j.chip || '–')}</td>
    <td class="opt">${esc(j.firmware || '–')}</td>
    <td><span class="pill ${esc(j.state)}">${esc(resultWord(j.state))}</span>${j.state === 'failed' && j.stage ? ` <span class="hint">in ${esc(j.stage)}</span>` : ''}</td>
    <td class="num opt">${j.seconds != null ? esc(fmtDuration(j.seconds)) : '–'}</td>
    <td class="num opt">${j.kbps > 0 ? Math.round(j.kbps) : '–'}</td>`;
  return tr;
}

function resultWord(s) {
  return ({ passed: '✔ passed', failed: '✖ failed', skipped: '↷ skipped', cancelled: '■ cancelled', running: '▶ running', queued: '… queued', interrupted: '⚠ interrupted' })[s] || s || '–';
}

function fillJobTable(tbody, jobs) {
  tbody.replaceChildren(...jobs.map(jobRow));
  if (!jobs.length) {
    const tr = document.createElement('tr');
    tr.innerHTML = '<td colspan="8" class="hint">No jobs yet.</td>';
    tbody.append(tr);
  }
}

function tableClicks(table) {
  table.addEventListener('click', (e) => {
    const a = e.target.closest('a[data-mac]');
    if (a) { e.preventDefault(); openBoard(a.dataset.mac); return; }
    const tr = e.target.closest('tr[data-job]');
    if (tr) openJob(tr.dataset.job);
  });
  table.addEventListener('keydown', (e) => {
    const tr = e.target.closest('tr[data-job]');
    if (tr && e.key === 'Enter') openJob(tr.dataset.job);
  });
}

// ---------------------------------------------------------------------------
// Loading

async function loadSlots() {
  const t0 = performance.now();
  const slots = await api.slots();
  const next = new Map();
  for (const s of slots) {
    const old = state.slots.get(s.key);
    // A slot.progress that arrived while this list was in flight is newer: keep it.
    if (old && old.sseAt && old.sseAt > t0) { next.set(s.key, old); continue; }
    if (old && old.jobId === s.jobId) s.seconds = old.seconds;
    next.set(s.key, s);
  }
  state.slots = next;
  state.order = slots.map((s) => s.key);
  attachJobTimes();
  renderSlots();
}

// Finished slots show the duration of their last job (from the recent jobs).
function attachJobTimes() {
  const byId = new Map(state.jobs.map((j) => [j.id, j]));
  for (const s of state.slots.values()) {
    const j = s.jobId != null ? byId.get(s.jobId) : null;
    if (j && j.seconds != null) s.seconds = j.seconds;
  }
}

async function loadCounters() {
  state.counters = await api.counters();
  renderCounters();
}

async function loadRecent() {
  const jobs = await api.jobs({ limit: 15 });
  await fillChips(jobs);
  state.jobs = jobs;
  fillJobTable($('#recent tbody'), state.jobs);
  attachJobTimes();
  for (const s of state.slots.values()) if (!slotView(s).active) renderSlot(s);
}

// Jobs carry the board's MAC, not its chip: look chips up in the board records
// (cached; slots also tell us the chip of the board they hold).
const chipOf = new Map();
let boardsFetchedAt = 0;
async function fillChips(jobs) {
  for (const s of state.slots.values()) if (s.mac && s.chip) chipOf.set(s.mac, s.chip);
  const missing = jobs.some((j) => j.mac && !j.chip && !chipOf.has(j.mac));
  if (missing && Date.now() - boardsFetchedAt > 3000) {
    boardsFetchedAt = Date.now();
    try {
      for (const b of await api.boards({ limit: 500 })) chipOf.set(b.mac, b.chip);
    } catch { /* chips stay blank */ }
  }
  for (const j of jobs) if (!j.chip && j.mac) j.chip = chipOf.get(j.mac) || '';
}

async function loadAll(what = { slots: true }) {
  const tasks = [loadCounters(), loadRecent()];
  if (what.slots) tasks.push(loadSlots());
  const results = await Promise.allSettled(tasks);
  const bad = results.find((r) => r.status === 'rejected');
  showBanner(bad ? `Cannot read the station: ${bad.reason.message}` : '');
  if (state.view === 'firmware' && what.slots) loadFirmware().catch(() => {});
  if (state.view === 'records') loadRecords().catch(() => {});
  if (state.view === 'bulk' && what.slots) loadBulks().catch(() => {});
}

// Coalesces bursts of events into one re-fetch; slots only when asked (the
// stream's slot.progress keeps them current otherwise).
let refetchTimer = 0;
let refetchSlots = false;
function scheduleRefetch(delay = 150, slots = false) {
  refetchSlots = refetchSlots || slots;
  if (refetchTimer) return;
  refetchTimer = setTimeout(() => {
    refetchTimer = 0;
    const what = { slots: refetchSlots };
    refetchSlots = false;
    loadAll(what);
  }, delay);
}

// The header's certificate badge (tls.js): GET /api/v1/line's "tls", read at start, when
// the stream (re)connects (a restart or reload may have changed the certificate), on a
// tls.expiring event and every 10 minutes (days_left moves slowly). A failed read keeps
// what is shown: the banner already says when the station cannot be read.
const TLS_POLL_MS = 600000;
let tlsData;
async function loadTls() {
  try {
    tlsData = (await api.line()).tls ?? null;
  } catch { return; }
  renderTlsBadge($('#tls-badge'), tlsWarning(tlsData));
}

function showBanner(msg) {
  const b = $('#banner');
  b.textContent = msg;
  b.hidden = !msg;
}

// ---------------------------------------------------------------------------
// Live: Server-Sent Events

// Named SSE events (docs/API.md "Event"); unknown kinds are ignored by design,
// and an unnamed event still arrives through onmessage.
const EVENT_KINDS = ['hello', 'slot.progress', 'port.added', 'port.removed', 'port.attached', 'port.detached',
  'job.requested', 'job.started', 'job.progress', 'board.identified', 'job.finished', 'job.interrupted',
  'slot.flagged', 'slot.baud_limited', 'slot.baud_limit_cleared', 'firmware.imported', 'firmware.deleted', 'profile.changed',
  'board.online', 'board.version', 'board.target', 'board.address', 'ota.served', 'ota.push.started', 'ota.push.finished',
  'bulk.started', 'bulk.board', 'bulk.stopped', 'bulk.finished', 'tls.expiring'];

let es = null;
let backoff = 1000;
let lastEventAt = 0;

function setLive(s, text) {
  const n = $('#live');
  n.dataset.state = s;
  $('.txt', n).textContent = text;
}

function connect() {
  if (es) es.close();
  setLive(es ? 'reconnecting' : 'connecting', es ? 'reconnecting…' : 'connecting…');
  es = new EventSource(api.eventsUrl());
  es.onopen = () => {
    backoff = 1000;
    setLive('live', 'live');
    lastEventAt = Date.now();
    scheduleRefetch(0, true); // (re)connected: the truth may have moved while we were away
    loadTls();
  };
  es.onerror = () => {
    setLive('reconnecting', 'reconnecting…');
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (HTTP error, daemon restart): retry ourselves.
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 15000);
    }
  };
  const onEvent = (e) => {
    lastEventAt = Date.now();
    let data = {};
    try { data = e.data ? JSON.parse(e.data) : {}; } catch { /* heartbeat or text */ }
    const kind = e.type === 'message' ? (data.kind || 'message') : e.type;
    // Persisted events carry the Event object; its "data" member is the payload.
    handleEvent(kind, data);
  };
  es.onmessage = onEvent;
  for (const k of EVENT_KINDS) es.addEventListener(k, onEvent);
}

function handleEvent(kind, data) {
  if (kind === 'hello') { scheduleRefetch(0, true); return; }
  if (kind === 'tls.expiring') { loadTls(); return; }
  if (kind === 'slot.progress') {
    // The full Slot object: replace the slot's view with it.
    const s = api.normSlot(data);
    if (!state.slots.has(s.key)) { scheduleRefetch(150, true); return; }
    s.sseAt = performance.now();
    const old = state.slots.get(s.key);
    if (old && old.jobId === s.jobId && s.seconds == null) s.seconds = old.seconds;
    state.slots.set(s.key, s);
    renderSlot(s);
    renderBusy();
    return;
  }
  // A persisted event: counters and recent jobs moved (slots follow by slot.progress,
  // but a re-fetch also catches ports that came or went, and a board that now runs other
  // firmware than its slot flashed: its tile names the board's record).
  scheduleRefetch(150, kind.startsWith('port.') || kind === 'board.version' || kind === 'board.online');
  if (kind.startsWith('firmware.') && state.view === 'firmware') loadFirmware().catch(() => {});
  // OTA state of a board moved: forget its cached record (tiles re-fetch it).
  if (/^(board\.(online|version|target|address)|ota\.|bulk\.board)/.test(kind)) {
    const mac = data.board;
    if (mac) otaCache.delete(mac); else otaCache.clear();
    for (const s of state.slots.values()) if (!mac || s.mac === mac) renderSlot(s);
  }
  if (kind.startsWith('bulk.')) scheduleBulkRefetch();
}

// A stream with heartbeats that has gone quiet is dead even if the socket isn't.
setInterval(() => {
  if (es && es.readyState === EventSource.OPEN && lastEventAt && Date.now() - lastEventAt > 45000) {
    connect();
  }
}, 5000);

// Elapsed clocks tick every second.
setInterval(() => {
  for (const [k, n] of slotNodes) {
    const s = state.slots.get(k);
    if (s && slotView(s).active) updateElapsed(n, s);
  }
}, 1000);

// ---------------------------------------------------------------------------
// Detail views (dialog)

const detail = $('#detail');

function openDialog(title, body) {
  $('#detail-title').textContent = title;
  const b = $('#detail-body');
  b.replaceChildren(...(Array.isArray(body) ? body : [body]));
  if (!detail.open) detail.showModal();
}

function kv(pairs) {
  const dl = document.createElement('dl');
  dl.className = 'kv';
  for (const [k, v] of pairs) {
    if (v == null || v === '') continue;
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd');
    if (v instanceof Node) dd.append(v); else dd.textContent = String(v);
    dl.append(dt, dd);
  }
  return dl;
}

function openSlot(key) {
  const s = state.slots.get(key);
  if (!s) return;
  if (s.mac) { openBoard(s.mac, s); return; }
  const v = slotView(s);
  openDialog(`Slot ${s.label}`, [kv([['State', v.word], ['Phase', v.phase], ['Port', s.uri], ['Key', s.key !== s.label ? s.key : '']]), slotActions(s)]);
}

function slotActions(s) {
  const row = el('div', { class: 'actions-row' });
  const v = slotView(s);
  if (v.active && s.jobId) {
    row.append(actionBtn('Cancel job', 'danger', () => api.cancelJob(s.jobId)));
  } else if (s.present !== false) {
    row.append(actionBtn('Re-flash this slot', '', () => api.reflash(s)));
  }
  return row;
}

function actionBtn(text, cls, fn) {
  const b = el('button', { type: 'button', class: cls }, text);
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      const r = await fn();
      toast(r && r.message ? r.message : `${text}: done`);
      scheduleRefetch(50, true);
    } catch (err) {
      toast(`${text}: ${err.message}`, true);
      if (err.status === 401) openSettings();
    } finally { b.disabled = false; }
  });
  return b;
}

async function openBoard(mac, slot) {
  openDialog(`Board ${mac}`, el('p', { class: 'hint' }, 'Loading…'));
  try {
    const { board, jobs } = await api.board(mac);
    for (const j of jobs) if (!j.chip) j.chip = board.chip;
    if (board.chip) chipOf.set(board.mac, board.chip);
    const parts = [kv([
      ['MAC', el('span', { class: 'mono' }, board.mac)],
      ['Chip', [board.chip, board.revision && `rev ${board.revision}`].filter(Boolean).join(' ')],
      ['Flash', board.flashSize ? fmtBytes(board.flashSize) : ''],
      ['On slot now', board.presentOn || (board.mac && 'not plugged in')],
      ['Last slot', board.presentOn ? '' : board.slot],
      ['Firmware', board.firmware],
      ['Per-board data', board.perBoard.map((p) => `${p.pool}: ${p.file}`).join(', ')],
      ['First seen', board.firstSeen ? new Date(board.firstSeen).toLocaleString() : ''],
      ['Last seen', board.lastSeen ? new Date(board.lastSeen).toLocaleString() : ''],
    ])];
    const s = slot || [...state.slots.values()].find((x) => x.mac === mac);
    parts.push(boardEditSection(board, slot));
    parts.push(otaSection(board, slot));
    if (s) parts.push(slotActions(s));
    parts.push(el('h3', {}, `History (${jobs.length})`));
    const t = el('table', { class: 'records' });
    t.innerHTML = '<thead><tr><th>Time</th><th>Slot</th><th>MAC</th><th class="opt">Chip</th><th class="opt">Firmware</th><th>Result</th><th class="num opt">Duration</th><th class="num opt">kbit/s</th></tr></thead><tbody></tbody>';
    fillJobTable(t.tBodies[0], jobs);
    tableClicks(t);
    parts.push(el('div', { class: 'table-wrap' }, t));
    openDialog(`Board ${board.mac}`, parts);
  } catch (err) {
    openDialog(`Board ${mac}`, el('p', { class: 'error-box' }, err.message));
  }
}

// Groups and notes of a board in its detail view, editable (PUT /boards/{mac}).
const GROUP_RE = /^[A-Za-z0-9._-]{1,64}$/;
function boardEditSection(board, slot) {
  const box = el('section', { class: 'board-edit', 'aria-label': 'Groups and notes' });
  const chips = board.groups.length
    ? el('span', { class: 'groups' }, board.groups.map((g) => el('span', { class: 'group-chip mono' }, g)))
    : el('span', { class: 'hint' }, 'none');
  box.append(el('h3', {}, 'Groups and notes'), kv([['Groups', chips], ['Notes', board.notes || '']]));
  const form = el('form', { class: 'board-edit-form', novalidate: true });
  const groups = el('input', { type: 'text', name: 'groups', id: 'board-groups', value: board.groups.join(' '),
    placeholder: 'line-a batch-42', autocomplete: 'off', spellcheck: 'false' });
  const notes = el('textarea', { name: 'notes', id: 'board-notes', rows: '3', maxlength: '511' });
  notes.value = board.notes;
  const msg = el('p', { class: 'form-msg', role: 'status', 'aria-live': 'polite' });
  const save = el('button', { type: 'submit', class: 'primary' }, 'Save');
  form.append(
    el('label', { for: 'board-groups' }, 'Groups ', el('span', { class: 'hint' }, '(separated by spaces or commas; letters, digits, . _ -)')),
    groups,
    el('label', { for: 'board-notes' }, 'Notes'),
    notes,
    el('div', { class: 'form-row' }, save, msg));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const names = groups.value.split(/[\s,]+/).filter(Boolean);
    const bad = names.find((g) => !GROUP_RE.test(g));
    msg.className = 'form-msg error';
    if (bad) { msg.textContent = `"${bad}" is not a group name: use 1 to 64 letters, digits, dots, dashes or underscores.`; return; }
    if (new Set(names).size > 16) { msg.textContent = 'At most 16 groups per board.'; return; }
    save.disabled = true;
    msg.className = 'form-msg';
    msg.textContent = 'Saving…';
    try {
      await api.updateBoard(board.mac, { groups: names, notes: notes.value.trim() ? notes.value : null });
      toast(`Board ${board.mac} saved`);
      openBoard(board.mac, slot);
    } catch (err) {
      msg.className = 'form-msg error';
      msg.textContent = err.message;
      if (err.status === 401) openSettings();
    } finally { save.disabled = false; }
  });
  box.append(form);
  return box;
}

function ago(ms) {
  if (ms == null) return '';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

// Where a board's address came from (docs/OTA.md "Addresses").
const ADDR_SOURCES = {
  'boot-check': 'boot check', 'checkin-auth': 'check-in with credentials', operator: 'operator',
  checkin: 'check-in without credentials', mdns: 'mDNS',
};

function addressCell(board) {
  const src = ADDR_SOURCES[board.ipSource] || board.ipSource || 'unknown source';
  return el('span', {}, el('span', { class: 'mono' }, board.ip),
    board.ipConfirmed ? ` (confirmed: ${src})`
      : el('span', { class: 'addr-unconfirmed' }, ` (unconfirmed: ${src}; no push goes there)`));
}

// The operator vouches for an address (POST /boards/{mac}/address): the unconfirmed one,
// or the pending claim.
function addressActions(board, slot) {
  const row = el('div', { class: 'form-row addr-actions' });
  const msg = el('span', { class: 'form-msg', role: 'status' });
  const act = (label, fields, what) => {
    const b = el('button', { type: 'button' }, label);
    b.addEventListener('click', async () => {
      if (!confirm(`Confirm ${what} as the address of ${board.mac}? Pushes (images, passwords) will go there.`)) return;
      b.disabled = true;
      try {
        await api.confirmAddress(board.mac, fields);
        toast(`Address of ${board.mac} confirmed`);
        openBoard(board.mac, slot);
      } catch (err) {
        msg.className = 'form-msg error';
        msg.textContent = err.message;
        if (err.status === 401) openSettings();
      } finally { b.disabled = false; }
    });
    return b;
  };
  if (!board.ipConfirmed) row.append(act(`Confirm ${board.ip}`, { ip: board.ip }, board.ip));
  if (board.ipClaim) row.append(act(`Accept claim ${board.ipClaim}`, { accept_claim: true }, board.ipClaim));
  row.append(msg);
  return row;
}

// The board's network / OTA record in its detail view.
function otaSection(board, slot) {
  const o = board.ota;
  const box = el('section', { class: 'ota-detail', 'aria-label': 'Network OTA' });
  box.append(el('h3', {}, 'Network OTA'));
  const online = board.onlineState ? board.onlineState.replace(/_/g, ' ') : '';
  const st = otaStatus(o);
  let target = '';
  if (o && o.target) {
    target = el('span', {}, el('span', { class: 'mono' }, o.target), ` (${o.targetPinned ? 'pinned' : 'from the profile'})`,
      st ? el('span', { class: `tgt ${st.cls}` }, st.text.replace(/ →.*$/, '')) : '');
  } else if (board.targetFirmware) {
    target = el('span', { class: 'mono' }, board.targetFirmware);
  }
  box.append(kv([
    ['Network', online ? el('span', { class: `netstate ${board.onlineState}` }, online) : 'unknown'],
    ['IP', board.ip ? addressCell(board) : ''],
    ['Claimed address', board.ipClaim ? el('span', {}, el('span', { class: 'mono' }, board.ipClaim),
      ` (${ADDR_SOURCES[board.ipClaimSource] || board.ipClaimSource || 'unknown'}; not used until confirmed)`) : ''],
    ['Running version', board.runningVersion],
    ['Target', target],
    ['Free space', o && o.freeSpace != null ? fmtBytes(o.freeSpace) : ''],
    ['Sketch', o && o.sketchSize != null ? `${fmtBytes(o.sketchSize)}${o.chipSize ? ` of ${fmtBytes(o.chipSize)} flash` : ''}` : ''],
    ['SDK', o ? o.sdkVersion : ''],
    ['Last check-in', o && o.lastCheckin ? `${new Date(o.lastCheckin).toLocaleString()} (${ago(o.lastCheckin)}${o.checkins ? `, ${o.checkins} check-in${o.checkins === 1 ? '' : 's'}` : ''})` : ''],
    ['Last served', o && o.servedVersion ? `${o.servedVersion}${o.servedAt ? ` at ${new Date(o.servedAt).toLocaleString()}` : ''}` : ''],
  ]));
  if (o && o.problem) box.append(el('div', { class: 'error-box' }, el('b', {}, 'OTA problem: '), o.problem));
  if (board.ip && (!board.ipConfirmed || board.ipClaim)) box.append(addressActions(board, slot));
  if (!o) box.append(el('p', { class: 'hint' }, 'Never checked in at the station\'s OTA endpoint.'));
  return box;
}

async function openJob(id) {
  openDialog(`Job ${id}`, el('p', { class: 'hint' }, 'Loading…'));
  try {
    const j = await api.job(id);
    const parts = [kv([
      ['Result', el('span', { class: `pill ${j.state}` }, resultWord(j.state))],
      ['Kind', j.kind],
      ['Slot', j.slot],
      ['Board', j.mac ? Object.assign(el('a', { href: '#' }, j.mac), { onclick: (e) => { e.preventDefault(); openBoard(j.mac); } }) : ''],
      ['Chip', j.chip],
      ['Firmware', j.firmware],
      ['Stage', j.stage],
      ['Started', j.startedAt ? new Date(j.startedAt).toLocaleString() : ''],
      ['Duration', j.seconds != null ? fmtDuration(j.seconds) : ''],
      ['Bytes', j.bytes > 0 ? fmtBytes(j.bytes) : ''],
      ['Speed', j.kbps > 0 ? fmtKbps(j.kbps) : ''],
      ['Retry', j.retries ? String(j.retries) : ''],
    ])];
    if (j.errorMessage || j.errorAdvice) {
      const box = el('div', { class: 'error-box' });
      box.append(el('div', { class: 'reason' }, el('b', {}, `${j.state === 'failed' ? 'Failed' : 'Note'}${j.errorStage ? ` during ${j.errorStage}` : ''}: `), j.errorMessage || ''));
      if (j.errorAdvice) box.append(el('div', { class: 'advice' }, j.errorAdvice));
      const dev = [
        j.deviceStatus != null && `device status 0x${j.deviceStatus.toString(16).toUpperCase().padStart(2, '0')}`,
        j.deviceError != null && `device error 0x${j.deviceError.toString(16).toUpperCase().padStart(2, '0')}`,
        j.errorOp != null && `command 0x${j.errorOp.toString(16).toUpperCase().padStart(2, '0')}`,
        j.errorAddress != null && `address 0x${j.errorAddress.toString(16).padStart(6, '0')}`,
      ].filter(Boolean).join(' · ');
      if (dev) box.append(el('div', { class: 'hint mono' }, dev));
      parts.push(box);
    }
    if (j.state === 'running' || j.state === 'queued') parts.push(el('div', { class: 'actions-row' }, actionBtn('Cancel job', 'danger', () => api.cancelJob(j.id))));
    parts.push(el('h3', {}, `Log (${j.log.length} lines)`));
    const log = el('div', { class: 'log', tabindex: '0' });
    for (const l of j.log) {
      const line = el('div', { class: `l-${l.level || 'info'}` });
      if (l.ts) line.append(el('span', { class: 'ts' }, fmtTime(l.ts, true)));
      line.append(l.line);
      log.append(line);
    }
    if (!j.log.length) log.textContent = '(no log lines)';
    parts.push(log);
    openDialog(`Job ${j.id}${j.slot ? ` · slot ${j.slot}` : ''}`, parts);
  } catch (err) {
    openDialog(`Job ${id}`, el('p', { class: 'error-box' }, err.message));
  }
}

// ---------------------------------------------------------------------------
// Records view

async function loadRecords() {
  const f = new FormData($('#records-filter'));
  const q = { limit: 200 };
  for (const [k, v] of f) if (v) q[k] = v;
  $('#csv-link').href = api.recordsCsvUrl(q);
  const jobs = await api.records(q);
  await fillChips(jobs);
  fillJobTable($('#records-table tbody'), jobs);
}

// ---------------------------------------------------------------------------
// Firmware view

async function loadFirmware() {
  const list = await api.firmwareList();
  // The list has region counts only; the catalog is small, so fetch each set's regions.
  const full = await Promise.all(list.slice(0, 60).map((f) => api.firmware(f.name, f.version).catch(() => f)));
  state.firmware = full.concat(list.slice(60));
  const box = $('#fw-list');
  if (!state.firmware.length) {
    box.replaceChildren(el('p', { class: 'empty-note' }, 'No firmware in the catalog yet.'));
    return;
  }
  box.replaceChildren(...state.firmware.map((f) => {
    const card = el('div', { class: 'fw' });
    card.dataset.fw = `${f.name}@${f.version}`;
    const regions = f.regions || [];
    card.innerHTML = `<div class="title"><b>${esc(f.name)}</b><span>${esc(f.version)}</span><span class="chiptag">${esc(f.chip)}</span>
      <span class="meta">${f.regionCount ?? regions.length} region${(f.regionCount ?? regions.length) === 1 ? '' : 's'}${f.totalBytes != null ? ` · ${esc(fmtBytes(f.totalBytes))}` : ''}</span></div>
      ${f.description ? `<div class="hint">${esc(f.description)}</div>` : ''}
      ${regions.length ? `<table><thead><tr><th>Offset</th><th>File</th><th>Kind</th><th>Size</th><th>SHA-256</th></tr></thead><tbody>${regions.map((r) => `
      <tr><td class="mono">${esc(r.offsetHex)}</td><td>${esc(r.file || '')}</td><td>${esc(r.kind || '')}</td><td>${r.size != null ? esc(fmtBytes(r.size)) : ''}</td><td class="mono" title="${esc(r.sha256 || '')}">${esc((r.sha256 || '').slice(0, 12))}…</td></tr>`).join('')}</tbody></table>` : ''}`;
    const actions = el('div', { class: 'actions' });
    actions.append(actionBtn('Delete', 'ghost', async () => {
      if (!confirm(`Delete ${f.name}@${f.version} from the catalog?`)) return { message: 'Kept.' };
      const r = await api.deleteFirmware(f);
      loadFirmware().catch(() => {});
      return r;
    }));
    card.append(actions);
    return card;
  }));
}

function showValidation(res) {
  const out = $('#fw-result');
  out.replaceChildren();
  const errs = res.messages.filter((m) => m.level === 'error').length;
  // With per-region messages below, the head only counts them (the API's own
  // message repeats the first problem).
  const summary = !res.ok && errs
    ? `Refused: ${errs} problem${errs > 1 ? 's' : ''} — nothing was imported.`
    : res.summary || (res.ok ? 'The firmware set is valid.' : 'The firmware set was refused.');
  const head = el('div', { class: `vmsg ${res.ok ? 'ok' : 'error'}` },
    el('span', { class: 'lvl' }, res.ok ? (res.imported ? 'imported' : 'valid') : 'invalid'), summary);
  out.append(head);
  for (const m of res.messages) {
    const d = el('div', { class: `vmsg ${m.level}` });
    d.dataset.region = m.where || '';
    d.append(el('span', { class: 'lvl' }, m.level));
    if (m.where) d.append(el('span', { class: 'where' }, m.where));
    d.append(m.message);
    out.append(d);
  }
}

async function submitFirmware(validateOnly) {
  const man = $('#fw-manifest').files[0];
  const bundle = $('#fw-bundle').files[0];
  if (bundle && (man || $('#fw-files').files.length)) {
    showValidation({ ok: false, summary: 'Choose either a bundle or the manifest and its files, not both.', messages: [] });
    return;
  }
  if (!man && !bundle) {
    showValidation({ ok: false, summary: 'Choose the manifest.json and its files, or one .tar / .tar.gz / .zip bundle, first.', messages: [] });
    return;
  }
  const fd = new FormData();
  if (man) fd.append('manifest', man, man.name);
  for (const f of $('#fw-files').files) fd.append(f.name, f, f.name); // part filename = manifest file name
  const btns = [$('#fw-validate'), $('#fw-submit')];
  btns.forEach((b) => { b.disabled = true; });
  $('#fw-result').replaceChildren(el('div', { class: 'hint' }, validateOnly ? 'Validating…' : 'Uploading…'));
  try {
    const res = bundle ? await api.uploadBundle(bundle, validateOnly) : await api.uploadFirmware(fd, validateOnly);
    showValidation(res);
    if (res.ok && !validateOnly) loadFirmware().catch(() => {});
  } catch (err) {
    if (err.status === 401) openSettings();
    showValidation(api.normValidation(err.body, err));
  } finally {
    btns.forEach((b) => { b.disabled = false; });
  }
}

// ---------------------------------------------------------------------------
// Bulk view: network updates of many boards (GET /api/v1/bulk), live through bulk.* events.

const BULK_WORD = { running: '▶ running', passed: '✔ passed', failed: '✖ failed', stopped: '⚠ stopped', cancelled: '■ cancelled', pending: '… pending', skipped: '↷ skipped' };

function bulkBar(c) {
  const bar = el('div', { class: 'bulkbar', role: 'img' });
  const total = c.total || 1;
  for (const k of ['passed', 'failed', 'skipped', 'running']) {
    if (!c[k]) continue;
    const seg = el('i', { class: k, title: `${c[k]} ${k}` });
    seg.style.width = `${(100 * c[k]) / total}%`;
    bar.append(seg);
  }
  const finished = c.passed + c.failed + c.skipped;
  bar.setAttribute('aria-label', `${finished} of ${c.total} boards finished`);
  bar.dataset.done = String(finished);
  bar.dataset.total = String(c.total);
  return bar;
}

function bulkCounts(c) {
  const wrap = el('div', { class: 'bulkcounts' });
  const add = (k, v, word) => { const s = el('span', { class: `cnt ${k}` }, el('b', {}, String(v)), ` ${word}`); s.dataset.count = k; s.dataset.value = String(v); wrap.append(s); };
  add('passed', c.passed, 'done');
  add('failed', c.failed, 'failed');
  add('skipped', c.skipped, 'skipped');
  add('pending', c.pending, 'pending');
  if (c.running) add('running', c.running, 'running');
  add('total', c.total, 'boards');
  return wrap;
}

function bulkCard(b) {
  const card = el('article', { class: `bulk${state.bulkSel === b.id ? ' selected' : ''}`, tabindex: '0', role: 'button' });
  card.dataset.bulk = String(b.id);
  card.dataset.state = b.state;
  card.append(el('div', { class: 'title' },
    el('b', {}, `#${b.id}`), el('span', { class: 'mono bfw' }, b.firmware),
    el('span', { class: 'chiptag' }, b.method),
    el('span', { class: `pill ${b.state}` }, BULK_WORD[b.state] || b.state),
    el('span', { class: 'meta' }, b.created ? fmtTime(b.created) : '')));
  card.append(bulkBar(b.counts), bulkCounts(b.counts));
  if (b.reason) card.append(el('div', { class: 'hint reason' }, b.reason));
  card.addEventListener('click', () => selectBulk(b.id));
  card.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); selectBulk(b.id); } });
  return card;
}

function selectBulk(id) {
  state.bulkSel = id;
  for (const c of document.querySelectorAll('#bulk-list .bulk')) c.classList.toggle('selected', c.dataset.bulk === String(id));
  loadBulkDetail().catch((e) => toast(e.message, true));
}

async function loadBulks() {
  const box = $('#bulk-list');
  let list;
  try {
    list = await api.bulks();
  } catch (err) {
    box.replaceChildren(el('p', { class: 'empty-note' }, err.status === 503 ? 'Network OTA is not running on this station (no "ota" section in its configuration).' : `Cannot read the bulk updates: ${err.message}`));
    $('#bulk-detail').replaceChildren();
    return;
  }
  list.sort((a, b) => b.id - a.id);
  state.bulks = list;
  if (!list.length) {
    box.replaceChildren(el('p', { class: 'empty-note' }, 'No bulk updates since the station started. Start one with POST /api/v1/bulk.'));
    $('#bulk-detail').replaceChildren();
    return;
  }
  box.replaceChildren(...list.map(bulkCard));
  if (state.bulkSel == null || !list.some((b) => b.id === state.bulkSel)) state.bulkSel = (list.find((b) => b.state === 'running') || list[0]).id;
  for (const c of box.querySelectorAll('.bulk')) c.classList.toggle('selected', c.dataset.bulk === String(state.bulkSel));
  await loadBulkDetail();
}

async function loadBulkDetail() {
  const out = $('#bulk-detail');
  const id = state.bulkSel;
  if (id == null) { out.replaceChildren(); return; }
  let b;
  try { b = await api.bulk(id); } catch (err) {
    out.replaceChildren(el('p', { class: 'error-box' }, err.message));
    return;
  }
  if (state.bulkSel !== id) return;
  const head = el('div', { class: 'title' }, el('h2', {}, `Bulk #${b.id}`), el('span', { class: `pill ${b.state}` }, BULK_WORD[b.state] || b.state));
  if (b.state === 'running') {
    head.append(actionBtn('Cancel bulk', 'danger', async () => {
      if (!confirm(`Cancel bulk #${b.id}? Boards not yet started stay pending; running ones finish.`)) return { message: 'Kept running.' };
      const r = await api.cancelBulk(b.id);
      scheduleBulkRefetch(0);
      return r;
    }));
  }
  const parts = [head, kv([
    ['Firmware', el('span', { class: 'mono' }, b.firmware)],
    ['Method', b.method],
    ['Started', b.created ? new Date(b.created).toLocaleString() : ''],
    ['Concurrency', b.concurrency],
    ['Retries', b.retries],
    ['Stops above', b.maxFailureRate != null ? `${Math.round(b.maxFailureRate * 100)} % failed` : ''],
  ]), bulkBar(b.counts), bulkCounts(b.counts)];
  if (b.reason) parts.push(el('div', { class: b.state === 'stopped' || b.state === 'failed' ? 'error-box' : 'hint' }, b.reason));
  const t = el('table', { class: 'records bulk-boards' });
  t.innerHTML = '<thead><tr><th>MAC</th><th>Result</th><th class="num">Attempts</th><th>Job</th><th>Error</th></tr></thead><tbody></tbody>';
  const order = { failed: 0, running: 1, passed: 2, skipped: 3, pending: 4 };
  const rows = (b.boards || []).slice().sort((x, y) => (order[x.state] ?? 9) - (order[y.state] ?? 9));
  t.tBodies[0].replaceChildren(...rows.map((x) => {
    const tr = el('tr');
    tr.dataset.mac = x.mac;
    tr.dataset.state = x.state;
    tr.innerHTML = `<td class="mac"><a href="#" data-mac="${esc(x.mac)}">${esc(x.mac)}</a></td>
      <td><span class="pill ${esc(x.state)}">${esc(BULK_WORD[x.state] || x.state)}</span></td>
      <td class="num">${x.attempts || '–'}</td>
      <td>${x.jobId != null ? `<a href="#" data-job="${esc(x.jobId)}">${esc(x.jobId)}</a>` : '–'}</td>
      <td class="err">${esc(x.error || '')}</td>`;
    return tr;
  }));
  if (!rows.length) t.tBodies[0].innerHTML = '<tr><td colspan="5" class="hint">No boards.</td></tr>';
  t.addEventListener('click', (e) => {
    const a = e.target.closest('a[data-mac]');
    if (a) { e.preventDefault(); openBoard(a.dataset.mac); return; }
    const j = e.target.closest('a[data-job]');
    if (j) { e.preventDefault(); openJob(j.dataset.job); }
  });
  parts.push(el('h3', {}, `Boards (${rows.length})`), el('div', { class: 'table-wrap' }, t));
  out.dataset.bulk = String(b.id);
  out.replaceChildren(...parts);
}

let bulkTimer = 0;
function scheduleBulkRefetch(delay = 200) {
  if (state.view !== 'bulk' || bulkTimer) return;
  bulkTimer = setTimeout(() => { bulkTimer = 0; loadBulks().catch(() => {}); }, delay);
}

// ---------------------------------------------------------------------------
// Settings, toast, routing

function openSettings() {
  $('#token-input').value = api.getToken();
  $('#settings').showModal();
}

function toast(msg, err = false) {
  const t = $('#toast');
  t.textContent = msg;
  t.classList.toggle('err', err);
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
}

function route() {
  const h = location.hash.replace(/^#\/?/, '');
  const [view, arg] = h.split('/');
  const v = ['records', 'firmware', 'bulk', 'line'].includes(view) ? view : 'station';
  state.view = v;
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== `view-${v}`;
  for (const a of document.querySelectorAll('.tabs a')) {
    if (a.dataset.view === v) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (v === 'line') startLine($('#line-list')); else stopLine();
  if (v === 'firmware') loadFirmware().catch((e) => toast(e.message, true));
  if (v === 'records') loadRecords().catch((e) => toast(e.message, true));
  if (v === 'bulk') {
    if (arg && /^\d+$/.test(arg)) state.bulkSel = Number(arg);
    loadBulks().catch((e) => toast(e.message, true));
  }
  if (view === 'board' && arg) openBoard(decodeURIComponent(arg));
  if (view === 'job' && arg) openJob(decodeURIComponent(arg));
}

function init() {
  tableClicks($('#recent'));
  tableClicks($('#records-table'));
  $('#records-filter').addEventListener('submit', (e) => { e.preventDefault(); loadRecords().catch((er) => toast(er.message, true)); });
  $('#fw-upload').addEventListener('submit', (e) => { e.preventDefault(); submitFirmware(false); });
  $('#fw-validate').addEventListener('click', () => submitFirmware(true));
  $('#settings-btn').addEventListener('click', openSettings);
  $('#settings').addEventListener('close', () => {
    const v = $('#settings').returnValue;
    if (v === 'save') { api.setToken($('#token-input').value.trim()); toast('Token saved in this browser.'); }
    if (v === 'clear') { api.setToken(''); toast('Token forgotten.'); }
  });
  detail.addEventListener('click', (e) => { if (e.target === detail) detail.close(); });
  window.addEventListener('hashchange', route);
  route();
  loadAll();
  loadTls();
  setInterval(loadTls, TLS_POLL_MS);
  connect();
}

init();

// For tests and curious technicians.
window.espstation = { state, reload: loadAll, tlsWarning };
