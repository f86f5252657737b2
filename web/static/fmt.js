// Formatting helpers for the status page.

export function parseTime(v) {
  if (v == null || v === '') return null;
  if (typeof v === 'number') return v > 1e12 ? v : v * 1000; // ms or s since the epoch
  const n = Number(v);
  if (Number.isFinite(n) && /^\d+(\.\d+)?$/.test(String(v))) return parseTime(n);
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t;
}

export function fmtBytes(n) {
  if (n == null || !Number.isFinite(n)) return '–';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KiB`;
  return `${(n / 1048576).toFixed(n < 10485760 ? 2 : 1)} MiB`;
}

// "212 / 896 KiB", "1.11 / 1.19 MiB": done and total in the total's unit.
export function fmtBytesOf(done, total) {
  if (total < 1024) return `${done} / ${total} B`;
  if (total < 1048576) return `${Math.floor(done / 1024)} / ${Math.round(total / 1024)} KiB`;
  return `${(done / 1048576).toFixed(2)} / ${(total / 1048576).toFixed(2)} MiB`;
}

export function fmtKbps(k) {
  if (!(k > 0)) return '';
  return k >= 1000 ? `${(k / 1000).toFixed(2)} Mbit/s` : `${Math.round(k)} kbit/s`;
}

export function fmtClock(s) {
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const p = (x) => String(x).padStart(2, '0');
  return h ? `${h}:${p(m)}:${p(r)}` : `${m}:${p(r)}`;
}

export function fmtDuration(s) {
  if (s == null || !Number.isFinite(s)) return '–';
  if (s < 1) return s < 0.0005 ? '< 1 ms' : `${Math.round(s * 1000)} ms`;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 90) return `${Math.round(s)} s`;
  return fmtClock(s);
}

export function fmtTime(ms, withSeconds = false) {
  if (ms == null) return '–';
  const d = new Date(ms);
  const today = new Date();
  const opts = { hour: '2-digit', minute: '2-digit', ...(withSeconds ? { second: '2-digit' } : {}), hour12: false };
  if (d.toDateString() === today.toDateString()) return d.toLocaleTimeString([], opts);
  return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${d.toLocaleTimeString([], opts)}`;
}

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
}

// el('div', {class: 'x'}, 'text', childNode, ...)
export function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    n.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    n.append(c instanceof Node ? c : String(c));
  }
  return n;
}
