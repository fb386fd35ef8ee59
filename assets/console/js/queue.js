// The queue dashboard (#/queue): live counters, deliveries per second, and a live table of
// queue changes with the actions on failed and retrying rows.

import { gql, nodes } from './api.js';
import { RateChart } from './chart.js';
import { append, button, clock, h, notice, replace, say, select, statusBadge } from './dom.js';
import { live } from './live.js';
import { ROW_FIELDS, actionButtons, idButton } from './queued.js';

const STATS_FIELDS = 'pending sending sent retrying failed cancelled oldestPendingAgeSeconds sentLastMinute';
const COUNTERS = [
  ['pending', 'Pending'], ['sending', 'Sending'], ['sent', 'Sent'], ['retrying', 'Retrying'],
  ['failed', 'Failed'], ['cancelled', 'Cancelled'], ['sentLastMinute', 'Sent last minute'],
  ['oldestPendingAgeSeconds', 'Oldest pending'],
];
const STATUSES = ['PENDING', 'SENDING', 'SENT', 'RETRYING', 'FAILED', 'CANCELLED'];
/** Rows the live table keeps. */
const MAX_ROWS = 100;
/** Rows read to fill the chart's past when the page opens. */
const BACKFILL = 300;

const SNAPSHOT = `query QueuePage($webhookId: ID, $entityId: ID, $status: QueueStatus, $first: Int) {
  queueStats(webhookId: $webhookId) { ${STATS_FIELDS} }
  queuedWebhooks(webhookId: $webhookId, entityId: $entityId, status: $status, first: $first) { edges { node { ${ROW_FIELDS} } } }
}`;
const LISTS = `query QueueLists { entities { id completename } webhooks(first: 500) { edges { node { id name } } } }`;
const STATS_LIVE = `subscription LiveStats($webhookId: ID) { queueStats(webhookId: $webhookId) { ${STATS_FIELDS} } }`;
const UPDATES_LIVE = `subscription LiveQueue($webhookId: ID, $entityId: ID, $status: QueueStatus) {
  queueUpdates(webhookId: $webhookId, entityId: $entityId, status: $status) {
    previousStatus missedUpdates queuedWebhook { ${ROW_FIELDS} } } }`;
/** Every change, for the chart (whatever the table's filters). */
const ENDINGS_LIVE = `subscription LiveEndings { queueUpdates { previousStatus queuedWebhook { id status sentTime } } }`;

function age(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

export function mount(main) {
  const filters = { webhookId: '', entityId: '', status: '' };
  const webhookNames = new Map();
  const rows = new Map();
  let missed = 0;
  let stopUpdates = null;
  let stopStats = null;
  /** Live changes that came while a snapshot was being read: applied again after it. */
  let buffered = null;

  const counters = h('dl', { class: 'counters', 'aria-label': 'Queue counters' });
  const counterValues = {};
  for (const [key, label] of COUNTERS) {
    counterValues[key] = h('dd', { 'data-counter': key }, '…');
    append(counters, h('div', { class: `counter counter-${key}` }, h('dt', {}, label), counterValues[key]));
  }
  const chart = new RateChart(300);
  const webhookSelect = select([['', 'All webhooks']], '', { name: 'webhookId' });
  const entitySelect = select([['', 'All entities']], '', { name: 'entityId' });
  const statusSelect = select([['', 'All statuses'], ...STATUSES.map((s) => [s, s.toLowerCase()])], '', { name: 'status' });
  const filterForm = h('form', { class: 'filters', 'aria-label': 'Filter the live table' },
    h('label', {}, 'Webhook ', webhookSelect),
    h('label', {}, 'Entity ', entitySelect),
    h('label', {}, 'Status ', statusSelect));
  const missedNote = h('p', { class: 'notice warn', role: 'status', hidden: true });
  const actionNote = notice();
  const tbody = h('tbody', {});
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'grid live-table', 'aria-label': 'Live queue changes' },
    h('thead', {}, h('tr', {}, ['Id', 'Webhook', 'Item', 'Event', 'Status', 'Code', 'Attempts', 'Time', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody));

  replace(main,
    h('h1', {}, 'Queue'),
    h('section', { 'aria-labelledby': 'counters-title' }, h('h2', { id: 'counters-title', class: 'sr-only' }, 'Counters'), counters),
    h('section', { 'aria-labelledby': 'chart-title' }, h('h2', { id: 'chart-title' }, 'Deliveries per second'), chart.el),
    h('section', { 'aria-labelledby': 'table-title' },
      h('h2', { id: 'table-title' }, 'Live queue'), filterForm, missedNote, actionNote, table));

  function showStats(stats) {
    for (const [key] of COUNTERS) {
      counterValues[key].textContent = key === 'oldestPendingAgeSeconds' ? age(stats[key]) : String(stats[key]);
    }
  }

  function wanted(row) {
    return (!filters.webhookId || row.webhookId === filters.webhookId) && (!filters.status || row.status === filters.status);
  }

  function renderRow(row) {
    const name = webhookNames.get(row.webhookId);
    const tr = h('tr', { dataset: { id: row.id, status: row.status } },
      h('td', {}, idButton(row)),
      h('td', {}, h('a', { href: `#/webhooks/${row.webhookId}` }, name || `#${row.webhookId}`)),
      h('td', {}, h('a', { href: `#/items/${encodeURIComponent(row.itemtype)}` }, row.itemtype), ` ${row.itemId}`),
      h('td', {}, row.event.toLowerCase()),
      h('td', { title: row.lastError || '' }, statusBadge(row.status, row.isTest)),
      h('td', {}, row.lastStatusCode ?? ''),
      h('td', {}, `${row.sentTry}/${row.maxAttempts}`),
      h('td', {}, h('time', { datetime: row.sentTime || row.createTime }, clock(row.sentTime || row.createTime))),
      h('td', { class: 'actions' }, actionButtons(row, {
        done: ({ row: updated, message }) => {
          say(actionNote, message, 'ok');
          if (updated) upsert(updated);
        },
        failed: (error) => say(actionNote, error.message, 'error'),
      })));
    return tr;
  }

  /** Shows a row (new or changed) at the top; one that the filters exclude goes. */
  function upsert(row) {
    if (buffered) buffered.push(row);
    rows.get(row.id)?.el.remove();
    rows.delete(row.id);
    if (!wanted(row)) return;
    const el = renderRow(row);
    rows.set(row.id, { row, el });
    tbody.prepend(el);
    while (tbody.children.length > MAX_ROWS) {
      const last = tbody.lastElementChild;
      rows.delete(last.dataset.id);
      last.remove();
    }
  }

  function showRows(list) {
    rows.clear();
    tbody.replaceChildren();
    for (const row of list.slice(0, MAX_ROWS).reverse()) upsert(row);
    if (!list.length) tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: 9 }, 'No queued webhooks yet.')));
  }

  const variables = () => ({
    webhookId: filters.webhookId || null, entityId: filters.entityId || null, status: filters.status || null,
  });

  async function loadSnapshot(backfill = false) {
    const during = [];
    buffered = during;
    try {
      const data = await gql(SNAPSHOT, { ...variables(), first: backfill ? BACKFILL : MAX_ROWS });
      buffered = null;
      showStats(data.queueStats);
      const list = nodes(data.queuedWebhooks);
      if (backfill) {
        for (const row of list) {
          if (row.sentTime && ['SENT', 'FAILED'].includes(row.status)) chart.add(row.status, Date.parse(row.sentTime));
        }
        chart.draw();
      }
      showRows(list);
      for (const row of during) upsert(row);
      missed = 0;
      missedNote.hidden = true;
    } catch (error) {
      buffered = null;
      say(actionNote, error.message, 'error');
    }
  }

  function subscribe() {
    stopUpdates?.();
    stopStats?.();
    tbody.querySelector('tr.empty')?.remove();
    stopStats = live.subscribe(STATS_LIVE, { webhookId: filters.webhookId || null }, {
      next: (data) => showStats(data.queueStats),
      error: (message) => say(actionNote, message, 'error'),
    });
    stopUpdates = live.subscribe(UPDATES_LIVE, variables(), {
      next: (data) => {
        const update = data.queueUpdates;
        if (update.missedUpdates > 0) {
          missed += update.missedUpdates;
          replace(missedNote, `${missed} queue changes were missed (the console fell behind). `,
            button('Reload the table', () => loadSnapshot(false), { variant: 'small' }));
          missedNote.hidden = false;
        }
        tbody.querySelector('tr.empty')?.remove();
        upsert(update.queuedWebhook);
      },
      error: (message) => say(actionNote, message, 'error'),
      reconnected: () => loadSnapshot(false),
    });
  }

  const stopEndings = live.subscribe(ENDINGS_LIVE, {}, {
    next: (data) => {
      const { queuedWebhook: row } = data.queueUpdates;
      if (row.status === 'SENT' || row.status === 'FAILED') chart.add(row.status, row.sentTime ? Date.parse(row.sentTime) : Date.now());
    },
  });

  filterForm.addEventListener('change', () => {
    filters.webhookId = webhookSelect.value;
    filters.entityId = entitySelect.value;
    filters.status = statusSelect.value;
    subscribe();
    loadSnapshot(false);
  });

  (async () => {
    try {
      const lists = await gql(LISTS);
      for (const webhook of nodes(lists.webhooks)) {
        webhookNames.set(webhook.id, webhook.name);
        webhookSelect.append(h('option', { value: webhook.id }, webhook.name));
      }
      for (const entity of lists.entities) entitySelect.append(h('option', { value: entity.id }, entity.completename));
      for (const entry of rows.values()) {
        const el = renderRow(entry.row);
        entry.el.replaceWith(el);
        entry.el = el;
      }
    } catch (error) {
      say(actionNote, error.message, 'error');
    }
  })();
  subscribe();
  loadSnapshot(true);

  return () => {
    stopUpdates?.();
    stopStats?.();
    stopEndings();
    chart.stop();
  };
}
