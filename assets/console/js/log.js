// A webhook's queries log: its queued webhooks, newest first, kept live.

import { gql, nodes } from './api.js';
import { clock, h, notice, replace, say, select, statusBadge, when } from './dom.js';
import { live } from './live.js';
import { ROW_FIELDS, actionButtons, idButton } from './queued.js';

const STATUSES = ['PENDING', 'SENDING', 'SENT', 'RETRYING', 'FAILED', 'CANCELLED'];
const LOG = `query Log($w: ID!, $status: QueueStatus) { webhook(id: $w) { queue(status: $status, first: 50) {
  totalCount edges { node { ${ROW_FIELDS} } } } } }`;
const CHANGES = 'subscription LogChanges($w: ID) { queueUpdates(webhookId: $w) { queuedWebhook { id } } }';

export function queriesLog(webhook) {
  const status = notice();
  const filter = select([['', 'All statuses'], ...STATUSES.map((s) => [s, s.toLowerCase()])], '', { name: 'status', 'aria-label': 'Status' });
  const count = h('p', { class: 'count', role: 'status' });
  const tbody = h('tbody', {});
  let timer = null;

  async function load() {
    try {
      const data = await gql(LOG, { w: webhook.id, status: filter.value || null });
      const queue = data.webhook?.queue;
      const rows = nodes(queue);
      count.textContent = `${queue?.totalCount ?? 0} queued webhook${queue?.totalCount === 1 ? '' : 's'}`;
      replace(tbody, rows.length ? rows.map(row) : h('tr', {}, h('td', { colspan: 9 }, 'Nothing queued yet.')));
    } catch (error) {
      say(status, error.message, 'error');
    }
  }

  function row(r) {
    return h('tr', { dataset: { id: r.id, status: r.status } },
      h('td', {}, idButton(r)),
      h('td', {}, `${r.itemtype} ${r.itemId}`),
      h('td', {}, r.event.toLowerCase()),
      h('td', { title: r.lastError || '' }, statusBadge(r.status, r.isTest)),
      h('td', {}, r.lastStatusCode ?? ''),
      h('td', {}, `${r.sentTry}/${r.maxAttempts}`),
      h('td', {}, when(r.createTime)),
      h('td', {}, r.sentTime ? clock(r.sentTime) : ''),
      h('td', { class: 'actions' }, actionButtons(r, {
        done: ({ message }) => { say(status, message, 'ok'); load(); },
        failed: (error) => say(status, error.message, 'error'),
      })));
  }

  // Changes of this webhook's rows reload the log, at most twice a second.
  const stop = live.subscribe(CHANGES, { w: webhook.id }, {
    next: () => {
      if (timer) return;
      timer = setTimeout(() => { timer = null; load(); }, 500);
    },
    reconnected: load,
  });
  filter.addEventListener('change', load);
  load();
  const el = h('section', { 'aria-labelledby': 'log-title' },
    h('h2', { id: 'log-title' }, 'Queries log'),
    h('div', { class: 'filters' }, h('label', {}, 'Status ', filter)), count, status,
    h('div', { class: 'table-wrap' }, h('table', { class: 'grid', 'aria-label': 'Queries log' },
      h('thead', {}, h('tr', {}, ['Id', 'Item', 'Event', 'Status', 'Code', 'Attempts', 'Created', 'Sent', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)));
  return { el, stop: () => { stop(); clearTimeout(timer); } };
}
