// The webhooks (#/webhooks): name, entity, itemtype, event, active, category, last status and
// the last hour's counts, filterable by category and entity.

import { gql, nodes } from './api.js';
import { append, h, notice, replace, say, select, statusBadge, when } from './dom.js';

const LIST = `query Webhooks($entityId: ID, $categoryId: ID, $after: String) {
  webhooks(entityId: $entityId, categoryId: $categoryId, first: 100, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id name isActive itemtype event entity { completename } category { completename }
      lastQueuedWebhook { id status isTest lastStatusCode createTime sentTime }
      stats { pending sending sent retrying failed cancelled } } } } }`;
const LISTS = 'query WebhookLists { entities { id completename } webhookCategories { id completename } }';

export function mount(main) {
  const filters = { entityId: '', categoryId: '' };
  const entitySelect = select([['', 'All entities']], '', { name: 'entityId' });
  const categorySelect = select([['', 'All categories']], '', { name: 'categoryId' });
  const status = notice();
  const count = h('p', { class: 'count', role: 'status' });
  const tbody = h('tbody', {});
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load more');
  let cursor = null;

  const form = h('form', { class: 'filters', 'aria-label': 'Filter webhooks' },
    h('label', {}, 'Category ', categorySelect), h('label', {}, 'Entity ', entitySelect));
  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Webhooks'), h('a', { class: 'btn primary', href: '#/webhooks/new' }, 'New webhook')),
    form, status, count,
    h('div', { class: 'table-wrap' }, h('table', { class: 'grid', 'aria-label': 'Webhooks' },
      h('thead', {}, h('tr', {}, ['Name', 'Entity', 'Itemtype', 'Event', 'Active', 'Category', 'Last status', 'Last hour'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)),
    more);

  function row(webhook) {
    const last = webhook.lastQueuedWebhook;
    const s = webhook.stats;
    const hour = [
      s.sent && `${s.sent} sent`, s.failed && `${s.failed} failed`, s.retrying && `${s.retrying} retrying`,
      (s.pending + s.sending) && `${s.pending + s.sending} pending`, s.cancelled && `${s.cancelled} cancelled`,
    ].filter(Boolean).join(', ') || 'none';
    return h('tr', { dataset: { id: webhook.id } },
      h('td', {}, h('a', { href: `#/webhooks/${webhook.id}` }, webhook.name)),
      h('td', {}, webhook.entity.completename),
      h('td', {}, webhook.itemtype),
      h('td', {}, webhook.event.toLowerCase()),
      h('td', {}, webhook.isActive ? 'yes' : h('span', { class: 'muted' }, 'no')),
      h('td', {}, webhook.category?.completename ?? ''),
      h('td', {}, last
        ? [statusBadge(last.status, last.isTest), last.lastStatusCode ? ` ${last.lastStatusCode}` : '',
          h('br', {}), h('small', {}, when(last.sentTime || last.createTime))]
        : h('span', { class: 'muted' }, 'never queued')),
      h('td', { 'data-part': 'hour' }, hour));
  }

  async function load(reset) {
    if (reset) {
      cursor = null;
      tbody.replaceChildren();
    }
    try {
      const data = await gql(LIST, {
        entityId: filters.entityId || null, categoryId: filters.categoryId || null, after: cursor,
      });
      const list = nodes(data.webhooks);
      append(tbody, list.map(row));
      if (!tbody.children.length) tbody.append(h('tr', {}, h('td', { colspan: 8 }, 'No webhook here yet.')));
      count.textContent = `${data.webhooks.totalCount} webhook${data.webhooks.totalCount === 1 ? '' : 's'}`;
      cursor = data.webhooks.pageInfo.endCursor;
      more.hidden = !data.webhooks.pageInfo.hasNextPage;
    } catch (error) {
      say(status, error.message, 'error');
    }
  }

  form.addEventListener('change', () => {
    filters.entityId = entitySelect.value;
    filters.categoryId = categorySelect.value;
    load(true);
  });
  more.addEventListener('click', () => load(false));
  (async () => {
    try {
      const lists = await gql(LISTS);
      for (const entity of lists.entities) entitySelect.append(h('option', { value: entity.id }, entity.completename));
      for (const category of lists.webhookCategories) categorySelect.append(h('option', { value: category.id }, category.completename));
    } catch (error) {
      say(status, error.message, 'error');
    }
  })();
  load(true);
}
