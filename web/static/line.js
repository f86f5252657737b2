// The Line tab: every station sharing this station's records database
// (GET /api/v1/line), its slots and counters; a station that stopped heartbeating
// is greyed with how long ago. Polled every 2 s while the tab is open (the rows
// change with the stations' heartbeats, not with this station's events).
import { getToken } from './api.js';
import { el, fmtDuration } from './fmt.js';

const POLL_MS = 2000;
let timer = 0;
let root = null;

async function fetchLine() {
  const headers = { Accept: 'application/json' };
  const t = getToken();
  if (t) headers.Authorization = `Bearer ${t}`;
  const res = await fetch('/api/v1/line', { headers, cache: 'no-store' });
  if (!res.ok) throw new Error(`GET /api/v1/line: ${res.status} ${res.statusText}`);
  return res.json();
}

function ago(s) {
  if (s == null) return '–';
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function slotRow(s) {
  const prog = s.progress != null ? `${s.progress} %` : '';
  const stage = [s.stage, prog].filter(Boolean).join(' ');
  const tr = el('tr', { 'data-state': s.state || '' },
    el('td', {}, s.slot || ''),
    el('td', { class: 'lstate' }, s.state || ''),
    el('td', { class: 'mono' }, s.mac || ''),
    el('td', {}, s.chip || ''),
    el('td', { class: 'num' }, s.job != null ? String(s.job) : ''),
    el('td', {}, stage || (s.error || '')));
  return tr;
}

function stationCard(st, gone_after_s) {
  const gone = st.state === 'gone';
  const c = st.counters || {};
  const card = el('article', { class: `line-station${gone ? ' gone' : ''}`, 'data-station': st.name, 'data-state': st.state });
  const title = el('div', { class: 'title' },
    el('b', {}, st.name),
    st.this ? el('span', { class: 'this' }, 'this station') : null,
    el('span', { class: `lbadge ${gone ? 'gone' : 'up'}` }, gone ? `gone · last heard ${ago(st.age_s)}` : 'up'),
    st.address ? el('a', { class: 'addr mono', href: st.address }, st.address) : null,
    el('span', { class: 'meta' }, [st.version ? `v${st.version}` : '', gone ? '' : `heartbeat ${ago(st.age_s)}`].filter(Boolean).join(' · ')));
  const counts = el('div', { class: 'lcounts' },
    el('span', { class: 'pass' }, `${c.passed ?? '–'} passed`),
    el('span', { class: 'fail' }, `${c.failed ?? '–'} failed`),
    el('span', {}, `${c.interrupted ?? '–'} interrupted`),
    el('span', {}, `${c.running ?? '–'} running`),
    el('span', { class: 'meta' }, 'today'));
  const parts = [title, counts];
  if (gone && st.gone_mark) {
    const g = st.gone_mark;
    parts.push(el('p', { class: 'gone-note' },
      `No heartbeat for more than ${gone_after_s} s: ${g.jobs} unfinished job(s) marked interrupted by ${g.by}.`));
  }
  const slots = st.slots || [];
  if (slots.length) {
    const t = el('table', { class: 'records line-slots' },
      el('thead', {}, el('tr', {}, ...['Slot', 'State', 'MAC', 'Chip', 'Job', 'Stage'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...slots.map(slotRow)));
    parts.push(el('div', { class: 'table-wrap' }, t));
  } else {
    parts.push(el('p', { class: 'empty-note' }, 'No slots.'));
  }
  if (gone) parts.push(el('p', { class: 'meta' }, `Shown as last reported, ${fmtDuration(st.age_s)} ago.`));
  card.replaceChildren(...parts);
  return card;
}

async function refresh() {
  if (!root) return;
  try {
    const d = await fetchLine();
    const list = (d.stations || []).map((s) => stationCard(s, d.gone_after_s));
    const up = (d.stations || []).filter((s) => s.state === 'up').length;
    const head = el('p', { class: 'line-summary' },
      `${(d.stations || []).length} station(s), ${up} up · database ${d.backend || ''} · this station ${d.this || ''}`);
    const db = d.database || {};
    const j = db.journal;
    const parts = [head];
    if (db.connected === false) {
      // The line's database is away: this station goes on flashing into its journal.
      parts.push(el('p', { class: 'banner', role: 'alert' },
        `records database unreachable: ${db.error || ''} · this station keeps flashing; ` +
        `${j ? j.pending : '?'} write(s) kept in its journal until the database answers`));
    } else if (j && j.pending > 0) {
      parts.push(el('p', { class: 'banner' },
        `writing ${j.pending} journaled write(s) to the records database`));
    }
    root.replaceChildren(...parts, ...list);
  } catch (e) {
    root.replaceChildren(el('p', { class: 'banner' }, e.message));
  }
}

export function startLine(node) {
  root = node;
  refresh();
  if (!timer) timer = setInterval(refresh, POLL_MS);
}

export function stopLine() {
  if (timer) clearInterval(timer);
  timer = 0;
}
