// The header's certificate badge: this station's HTTPS certificates ("tls" in
// GET /api/v1/line: {"api": Cert|null, "ota": Cert|null}, null on plain HTTP) and a
// warning when one ends within WARN_DAYS (red once expired or under ALERT_DAYS), with
// the date and what to do. Nothing when TLS is off or every certificate is far from its
// end. tlsWarning() is pure (tests call it with the JSON).
import { el } from './fmt.js';

export const WARN_DAYS = 14;
export const ALERT_DAYS = 3;
const WHAT = { api: 'status page / REST API (api.tls)', ota: 'OTA endpoint (ota.tls)' };
const DAY_MS = 86400000;

// tls: the "tls" member; now: ms. null, or {level: 'warn'|'alert', text, title, certs}.
export function tlsWarning(tls, now = Date.now()) {
  if (!tls || typeof tls !== 'object') return null;
  const certs = [];
  for (const server of ['api', 'ota']) {
    const c = tls[server];
    if (!c || !c.not_after) continue;
    const end = Date.parse(c.not_after);
    if (!Number.isFinite(end) || end - now >= WARN_DAYS * DAY_MS) continue;
    // days_left as the station counts it (a started day counted: 2 for a -days 2 certificate)
    const days = Math.ceil((end - now) / DAY_MS);
    certs.push({ server, end, days, expired: end <= now, alert: end - now < ALERT_DAYS * DAY_MS, subject: c.subject || '' });
  }
  if (!certs.length) return null;
  certs.sort((a, b) => a.end - b.end);
  const first = certs[0];
  const date = new Date(first.end).toISOString().slice(0, 10);
  const when = first.expired ? `expired ${date}` : `expires ${date} (in ${first.days} d)`;
  const more = certs.length > 1 ? ` +${certs.length - 1}` : '';
  const text = `TLS certificate ${when}${more}: renew the certificate and reload: systemctl reload espstationd`;
  const title = certs.map((c) => `${WHAT[c.server]} ${c.subject}: ${c.expired ? 'expired' : 'not after'} ${new Date(c.end).toISOString()}`).join('\n');
  return { level: first.alert ? 'alert' : 'warn', text, title, certs };
}

// Shows w (tlsWarning's answer) in node; hides it for null.
export function renderTlsBadge(node, w) {
  if (!node) return;
  if (!w) {
    node.hidden = true;
    node.replaceChildren();
    delete node.dataset.level;
    return;
  }
  node.dataset.level = w.level;
  node.title = w.title;
  node.dataset.servers = w.certs.map((c) => c.server).join(' ');
  node.replaceChildren(el('span', { class: 'ico', 'aria-hidden': 'true' }, '⚠'), el('span', { class: 'txt' }, w.text));
  node.hidden = false;
}
